# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""QMix losses: sample-reweighing loss, contrastive enhancement loss, prior regulariser, Ω(t), SSL targets."""

from __future__ import annotations

from .co_training_targets import CoTrainingTargets
from .contrastive_enhancement import ContrastiveEnhancementLoss, MisLContrastMode
from .prior_regularization import PriorRegularizationLoss, estimate_class_prior
from .sample_reweighing import (
    GROUP_CORRECT,
    GROUP_MIS_H,
    GROUP_MIS_L,
    GroupNormalization,
    MisHLossType,
    SampleReweighingLoss,
)
from .schedules import (
    DIVIDEMIX_PRESETS,
    QMIX_PRESETS,
    DivideMixPreset,
    OmegaSchedule,
    OmegaScheduleType,
    QMixPreset,
    get_dividemix_preset,
    get_qmix_preset,
    omega_schedule,
)
from .separation_weighted import SeparationWeightedLoss
from .ssl import (
    MisLTargetRule,
    co_guess,
    co_refine,
    linear_rampup,
    mean_prediction,
    mixup,
    pseudo_label,
    sharpen,
)

__all__ = [
    "DIVIDEMIX_PRESETS",
    "DivideMixPreset",
    "get_dividemix_preset",
    "SampleReweighingLoss",
    "SeparationWeightedLoss",
    "MisHLossType",
    "GroupNormalization",
    "GROUP_CORRECT",
    "GROUP_MIS_H",
    "GROUP_MIS_L",
    "ContrastiveEnhancementLoss",
    "MisLContrastMode",
    "PriorRegularizationLoss",
    "estimate_class_prior",
    "OmegaSchedule",
    "OmegaScheduleType",
    "omega_schedule",
    "QMixPreset",
    "QMIX_PRESETS",
    "get_qmix_preset",
    "sharpen",
    "mean_prediction",
    "co_refine",
    "co_guess",
    "MisLTargetRule",
    "CoTrainingTargets",
    "pseudo_label",
    "mixup",
    "linear_rampup",
]
