# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""MONAI bundles of monai_qmix, rendered from one template (``python -m monai_qmix.bundles render [--check]``).

* :mod:`.specs`: one row of parameters per bundle (:data:`BUNDLE_SPECS`);
* :mod:`.template`: the template (Python dicts) of ``train.json``, ``evaluate.json``, ``inference.json``,
  ``multi_gpu_train.json``, ``audit.json``, ``metadata.json``, ``schema.json``, ``logging.conf``, ``README.md``,
  ``LICENSE``;
* :mod:`.render`: rendering and the check that committed bundles equal their rendering;
* :mod:`.scripts`: the Python glue the configs call (datalists with a fail-fast dataset check, CSV writer).
"""

from __future__ import annotations

from monai_qmix.bundles.render import check_bundles, main, render_all, render_bundle, write_bundles
from monai_qmix.bundles.specs import BUNDLE_SPECS, SYNTHETIC_COMMAND, BundleSpec

__all__ = [
    "BUNDLE_SPECS",
    "SYNTHETIC_COMMAND",
    "BundleSpec",
    "check_bundles",
    "main",
    "render_all",
    "render_bundle",
    "write_bundles",
]
