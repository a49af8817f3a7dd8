# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Small test helpers (MONAI's own tests/test_utils.py is not shipped in the wheel)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor

#: Converters that tests loop over so every transform is exercised with numpy, torch and MetaTensor input.
TEST_NDARRAYS: tuple[Callable[[Any], Any], ...] = (
    np.asarray,
    torch.as_tensor,
    lambda x: MetaTensor(torch.as_tensor(x)),
)


def to_numpy(x: Any) -> np.ndarray:
    """Return ``x`` as a numpy array (detached, on CPU)."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def assert_allclose(actual: Any, desired: Any, rtol: float = 1e-5, atol: float = 1e-7, type_test: bool = False) -> None:
    """Compare arrays/tensors of any kind; optionally require the same container type."""
    if type_test:
        assert type(actual) is type(desired), f"type mismatch: {type(actual)} vs {type(desired)}"
    np.testing.assert_allclose(to_numpy(actual), to_numpy(desired), rtol=rtol, atol=atol)


def retina_image(size: int = 64) -> np.ndarray:
    """The CC0 fundus photograph shipped with scikit-image, resized to ``size``, as float32 (3, H, W) in [0, 1]."""
    from skimage.data import retina
    from skimage.transform import resize

    img = retina().astype(np.float32) / 255.0  # (H, W, 3) uint8 -> float
    img = resize(img, (size, size), order=1, anti_aliasing=True, preserve_range=True).astype(np.float32)
    return np.ascontiguousarray(img.transpose(2, 0, 1))


def load_script(path: Any, name: str) -> Any:
    """Import a script that is not a package module (e.g. ``benchmarks/cost.py``) under the module name ``name``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
