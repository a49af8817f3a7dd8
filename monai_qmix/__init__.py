# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""monai_qmix: QMix (Hou et al., IEEE TMI 2025, arXiv:2404.05169) as a MONAI plugin.

Learning with *mixed* noise: mislabelled images (label noise) and images too poor to grade (data noise).
Sub-packages mirror MONAI: `transforms`, `data`, `separation`, `losses`, `networks`, `handlers`,
`engines`. Lower layers never import higher ones, so any single transform or loss can be used alone.
"""

from __future__ import annotations

from ._version import __version__

__all__ = ["__version__"]
