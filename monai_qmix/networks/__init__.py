# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Networks: ``QMixNet`` (backbone + classifier head + projector head)."""

from __future__ import annotations

from .batchnorm import batchnorm_layers, recalibrate_batchnorm
from .efficientnet_lite import INPUT_NORMALISATION, EfficientNetLite, efficientnet_lite, find_pretrained_weights
from .qmix_net import Backbone, QMixNet, SmallCNN, build_backbone, load_pretrained
from .wrappers import is_wrapped, unwrap_network, wrapped_method

__all__ = [
    "INPUT_NORMALISATION",
    "Backbone",
    "EfficientNetLite",
    "QMixNet",
    "SmallCNN",
    "batchnorm_layers",
    "build_backbone",
    "efficientnet_lite",
    "find_pretrained_weights",
    "is_wrapped",
    "load_pretrained",
    "recalibrate_batchnorm",
    "unwrap_network",
    "wrapped_method",
]
