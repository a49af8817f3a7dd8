# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Private validation helpers shared by the QMix losses (not part of the public API)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Collection
from typing import Any

import torch
from monai.utils import look_up_option

__all__ = [
    "autocast_off",
    "check_option",
    "check_positive",
    "check_non_negative",
    "as_float32",
    "as_class_indices",
    "as_soft_target",
]


def check_option(name: str, value: Any, options: Collection[str]) -> str:
    """Return ``value`` if it is one of ``options``; otherwise raise ``ValueError`` naming ``name``."""
    try:
        return str(look_up_option(value, options))
    except ValueError as e:
        raise ValueError(f"{name}={value!r} is not supported; expected one of {sorted(options)}. ({e})") from None


def check_positive(name: str, value: float) -> float:
    """Return ``value`` as float if it is finite and > 0; otherwise raise ``ValueError`` naming ``name``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}.") from None
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}.")
    return v


def check_non_negative(name: str, value: float) -> float:
    """Return ``value`` as float if it is finite and >= 0; otherwise raise ``ValueError`` naming ``name``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a non-negative finite number, got {value!r}.") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a non-negative finite number, got {value!r}.")
    return v


def as_float32(x: torch.Tensor) -> torch.Tensor:
    """Upcast half / bfloat16 tensors to float32 (losses are computed in >= float32 for numerical safety)."""
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.float()
    return x


def as_class_indices(name: str, labels: Any, batch: int, device: torch.device | None = None) -> torch.Tensor:
    """Validate integer class labels of shape ``(B,)`` or ``(B, 1)`` and return them as a long tensor ``(B,)``.

    Raises:
        ValueError: (naming ``name``) for a wrong shape, non-integer values or negative values.
    """
    t = torch.as_tensor(labels, device=device)
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 1 or t.shape[0] != batch:
        raise ValueError(f"{name} must have shape ({batch},) (one integer per sample), got {tuple(t.shape)}.")
    if t.is_floating_point() or t.is_complex():
        if t.numel() and not bool(torch.all(t == torch.round(t.real if t.is_complex() else t))):
            raise ValueError(f"{name} must hold integer class indices, got non-integer values.")
    elif t.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer class indices, got a boolean tensor.")
    t = t.long()
    if t.numel() and int(t.min()) < 0:
        raise ValueError(f"{name} must hold non-negative class indices, got minimum {int(t.min())}.")
    return t


def as_soft_target(name: str, target: Any, batch: int, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    """Return a ``(B, C)`` float target from soft targets ``(B, C)`` or class indices ``(B,)``.

    Raises:
        ValueError: (naming ``name``) for a wrong shape or an index outside ``[0, num_classes)``.
    """
    t = torch.as_tensor(target, device=like.device)
    if t.ndim == 2 and tuple(t.shape) == (batch, num_classes):
        return t.to(like.dtype)
    if t.ndim == 1 or (t.ndim == 2 and t.shape[1] == 1):
        idx = as_class_indices(name, t, batch, device=like.device)
        if idx.numel() and int(idx.max()) >= num_classes:
            raise ValueError(f"{name} holds class index {int(idx.max())} but there are only {num_classes} classes.")
        return torch.nn.functional.one_hot(idx, num_classes).to(like.dtype)
    raise ValueError(
        f"{name} must have shape ({batch}, {num_classes}) (soft targets) or ({batch},) (class indices), "
        f"got {tuple(t.shape)}."
    )


def autocast_off(device: torch.device) -> contextlib.AbstractContextManager:
    """Context that disables autocast on ``device`` so a loss's matmuls run in the (>= float32) input dtype."""
    try:
        return torch.autocast(device_type=device.type, enabled=False)
    except (RuntimeError, ValueError):  # device type without autocast support
        return contextlib.nullcontext()
