# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Sample separation (QMix phase 1): score every sample, split with a GMM, measure the split. No Ignite here."""

from __future__ import annotations

from .metrics import align_groups, separation_metrics
from .report import CSV_COLUMNS, plot_separation, write_separation_csv
from .result import CORRECT, GROUP_NAMES, MIS_H, MIS_L, SeparationResult, group_codes
from .scoring import UNCERTAINTY_MEASURES, feature_head_split, score_samples
from .separate import (
    MAPPING_RULES,
    SEPARATION_MODES,
    dividemix_mapping,
    loss_first_mapping,
    minmax_normalise,
    qmix_mapping,
    separate,
)

__all__ = [
    "CORRECT",
    "CSV_COLUMNS",
    "UNCERTAINTY_MEASURES",
    "GROUP_NAMES",
    "MIS_H",
    "MIS_L",
    "MAPPING_RULES",
    "SEPARATION_MODES",
    "SeparationResult",
    "align_groups",
    "dividemix_mapping",
    "feature_head_split",
    "plot_separation",
    "score_samples",
    "write_separation_csv",
    "group_codes",
    "minmax_normalise",
    "qmix_mapping",
    "loss_first_mapping",
    "separate",
    "separation_metrics",
]
