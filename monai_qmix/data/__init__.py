# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Data: dataset readers, patient-level splits, mixed-noise training sets, preparation and SynthDR.

Readers and the split helper are imported eagerly. The modules that are also command-line programs
(``prepare``, ``synthetic``, ``mixed_noise``) are imported lazily on first attribute access, so that
``python -m monai_qmix.data.<module>`` does not find its module pre-imported (runpy's RuntimeWarning).
"""

from __future__ import annotations

import importlib
from typing import Any

from .image_check import IMAGE_MODES, LoadFundusImaged, UnreadableImageError, check_image, check_images, to_rgb
from .readers import (
    DATASETS,
    DR_GRADES,
    IMAGE_EXTENSIONS,
    ODIR_CLASSES,
    ODIR_QUALITY_KEYWORDS,
    QUALITY_HIGH,
    QUALITY_LOW,
    QUALITY_UNKNOWN,
    READERS,
    UNGRADABLE,
    DatalistError,
    DatasetInfo,
    load_aptos,
    load_csv,
    load_datalist,
    load_ddr,
    load_deepdrid,
    load_drac,
    load_drtid,
    load_eyepacs,
    load_eyeq,
    load_idrid,
    load_json,
    load_messidor2,
    load_odir,
    parse_quality,
)
from .split import split_by_patient

_LAZY = {
    "build_mixed_noise": "mixed_noise",
    "apply_noise_file": "mixed_noise",
    "save_noise_file": "mixed_noise",
    "load_noise_file": "mixed_noise",
    "noise_table": "mixed_noise",
    "format_noise_table": "mixed_noise",
    "mixed_noise_preset": "mixed_noise",
    "MIXED_NOISE_PRESETS": "mixed_noise",
    "NOISE_GROUPS": "mixed_noise",
    "generate_synthdr": "synthetic",
    "render_fundus": "synthetic",
    "grade_counts": "synthetic",
    "GRADE_RULES": "synthetic",
    "prepare_datalist": "prepare",
    "prepare_image": "prepare",
    "crop_to_fov": "prepare",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DATASETS",
    "DR_GRADES",
    "IMAGE_EXTENSIONS",
    "IMAGE_MODES",
    "LoadFundusImaged",
    "UnreadableImageError",
    "check_image",
    "check_images",
    "to_rgb",
    "ODIR_CLASSES",
    "ODIR_QUALITY_KEYWORDS",
    "QUALITY_HIGH",
    "QUALITY_LOW",
    "QUALITY_UNKNOWN",
    "READERS",
    "UNGRADABLE",
    "DatalistError",
    "DatasetInfo",
    "load_aptos",
    "load_csv",
    "load_datalist",
    "load_ddr",
    "load_deepdrid",
    "load_drac",
    "load_drtid",
    "load_eyepacs",
    "load_eyeq",
    "load_idrid",
    "load_json",
    "load_messidor2",
    "load_odir",
    "parse_quality",
    "split_by_patient",
    *_LAZY,
]
