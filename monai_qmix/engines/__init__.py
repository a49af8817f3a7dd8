# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.

from __future__ import annotations

from .co_training import CoTrainingSteps, GroupSampler
from .evaluator import EnsembleCombine, EnsembleInferer, EnsembleMode, QMixEvaluator, ensemble_probabilities
from .rng_state import RNGState, find_randomizables
from .trainer import CoTrainingLoop, QMixTrainer, TrainingMethod

__all__ = [
    "CoTrainingLoop",
    "CoTrainingSteps",
    "GroupSampler",
    "EnsembleCombine",
    "EnsembleInferer",
    "EnsembleMode",
    "QMixEvaluator",
    "QMixTrainer",
    "RNGState",
    "TrainingMethod",
    "ensemble_probabilities",
    "find_randomizables",
]
