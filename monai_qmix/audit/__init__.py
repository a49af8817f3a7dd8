# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Dataset audit: find the probably-mislabelled (Mis-H) and the low-quality (Mis-L) images of a retinal dataset.

``find_noisy_samples`` (cleanlab's shape, QMix's 3-group separation), a fundus-aware image-quality score measured
inside the field of view (``fundus_quality``), quick out-of-fold models, and the report writer behind
``python -m monai_qmix.audit``. The command-line module ``cli`` is not imported here (runpy's RuntimeWarning).
"""

from __future__ import annotations

from .api import LOW_QUALITY_RULES, AuditTable, find_noisy_samples, precision_at_k
from .loading import load_images
from .oof import AUDIT_BACKBONES, TinyBackbone, build_audit_network, oof_probs, predict_probs, train_classifier
from .quality import QUALITY_CHANNELS, QUALITY_COMPONENTS, fundus_quality, quality_flags
from .report import SUSPECT_LISTS, contact_sheet, write_report

__all__ = [
    "AUDIT_BACKBONES",
    "LOW_QUALITY_RULES",
    "QUALITY_CHANNELS",
    "QUALITY_COMPONENTS",
    "SUSPECT_LISTS",
    "AuditTable",
    "TinyBackbone",
    "build_audit_network",
    "contact_sheet",
    "find_noisy_samples",
    "fundus_quality",
    "load_images",
    "oof_probs",
    "precision_at_k",
    "predict_probs",
    "quality_flags",
    "train_classifier",
    "write_report",
]
