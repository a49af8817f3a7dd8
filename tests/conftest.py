# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""pytest configuration: one torch thread per test process (the suite runs with ``-n 2`` on 2 cores, and torch's
default of one thread per core per process oversubscribes the CPU: a tiny scoring pass took 0.43 s instead of
0.003 s)."""

from __future__ import annotations

import torch

torch.set_num_threads(1)
