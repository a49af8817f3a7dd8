# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Ignite handlers of monai_qmix (MONAI handler idiom)."""

from __future__ import annotations

from .bn_recalibration import BatchNormRecalibrationHandler
from .checkpoint import AtomicCheckpointSaver, CheckpointResumer, atomic_torch_save, atomic_write, resolve_resume
from .co_training_diagnostics import (
    TARGET_KINDS,
    CoTrainingDiagnosticsHandler,
    CoTrainingEvents,
    target_accuracy_summary,
)
from .grading_metrics import (
    GradingAccuracy,
    MacroF1,
    OneVsRestAUC,
    PerClassRecall,
    QuadraticWeightedKappa,
    grading_metric_set,
    grading_report,
    quadratic_weighted_kappa,
)
from .separation import FixedPartitionHandler, SampleSeparationHandler, SeparationEvents, ground_truth_partition
from .separation_loss import SeparationLossHandler
from .training_log import TrainingCurveHandler, TrainingProgressBar, loss_value, partition_sizes, warnings_once

__all__ = [
    "AtomicCheckpointSaver",
    "FixedPartitionHandler",
    "ground_truth_partition",
    "BatchNormRecalibrationHandler",
    "CheckpointResumer",
    "CoTrainingDiagnosticsHandler",
    "CoTrainingEvents",
    "TARGET_KINDS",
    "target_accuracy_summary",
    "GradingAccuracy",
    "MacroF1",
    "OneVsRestAUC",
    "PerClassRecall",
    "QuadraticWeightedKappa",
    "SampleSeparationHandler",
    "SeparationEvents",
    "SeparationLossHandler",
    "TrainingCurveHandler",
    "TrainingProgressBar",
    "loss_value",
    "partition_sizes",
    "atomic_torch_save",
    "atomic_write",
    "grading_metric_set",
    "grading_report",
    "quadratic_weighted_kappa",
    "resolve_resume",
    "warnings_once",
]
