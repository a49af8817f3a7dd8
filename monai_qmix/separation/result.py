# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""The outcome of one sample separation (:class:`SeparationResult`) and the shared group vocabulary.

Group codes are ``0 = correct``, ``1 = mis_h``, ``2 = mis_l`` everywhere in ``monai_qmix``; probability columns
follow the same order. (The official QMix ``dataset.py`` used 0 clean, 1 Mis-L, 2 Mis-H; we do not.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch

__all__ = [
    "CORRECT",
    "MIS_H",
    "MIS_L",
    "GROUP_NAMES",
    "SeparationResult",
    "group_codes",
]

CORRECT, MIS_H, MIS_L = 0, 1, 2
#: Group names indexed by group code.
GROUP_NAMES: tuple[str, str, str] = ("correct", "mis_h", "mis_l")

# accepted spellings of the group names (lower-cased, "-" and " " turned into "_")
_ALIASES = {
    "correct": CORRECT,
    "clean": CORRECT,
    "mis_h": MIS_H,
    "mish": MIS_H,
    "noisy": MIS_H,
    "mis_l": MIS_L,
    "misl": MIS_L,
    "bad": MIS_L,
}
_UNKNOWN = {"", "none", "unknown", "nan", "-1"}


def group_codes(groups: Any) -> np.ndarray:
    """Turn group names or codes into an int64 array of codes (``-1`` for unknown).

    Accepts codes ``0/1/2`` (``-1`` or ``None`` = unknown) and the names ``"correct"``, ``"mis_h"``, ``"mis_l"``
    (case-insensitive; ``"Mis-H"``, ``"clean"``, ``"noisy"`` and ``"bad"`` are accepted as aliases; ``""``,
    ``"unknown"`` and ``None`` mean unknown).

    Args:
        groups: a sequence, numpy array or tensor of names or codes.

    Returns:
        int64 numpy array of the same length.

    Raises:
        ValueError: when a value is neither a known name nor a code in ``{-1, 0, 1, 2}``.
    """
    if isinstance(groups, torch.Tensor):
        groups = groups.detach().cpu().numpy()
    arr = np.asarray(groups, dtype=object).reshape(-1)
    out = np.empty(arr.shape[0], dtype=np.int64)
    for i, g in enumerate(arr):
        if g is None:
            out[i] = -1
            continue
        if isinstance(g, (str, np.str_)):
            key = str(g).strip().lower().replace("-", "_").replace(" ", "_")
            if key in _UNKNOWN:
                out[i] = -1
            elif key in _ALIASES:
                out[i] = _ALIASES[key]
            elif key.lstrip("-").isdigit() and int(key) in (-1, 0, 1, 2):
                out[i] = int(key)
            else:
                raise ValueError(
                    f"noise_group: unknown group {g!r}; expected one of {GROUP_NAMES}, codes 0/1/2 or -1/None."
                )
            continue
        try:
            fg = float(g)
        except (TypeError, ValueError) as e:
            raise ValueError(f"noise_group: unknown group {g!r} of type {type(g).__name__}.") from e
        if np.isnan(fg):
            out[i] = -1
        elif fg in (-1.0, 0.0, 1.0, 2.0):
            out[i] = int(fg)
        else:
            raise ValueError(f"noise_group: unknown group code {g!r}; expected 0, 1, 2 (or -1 for unknown).")
    return out


def _to_numpy(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return x


@dataclass
class SeparationResult:
    """Partition of the training set into Correct / Mis-H / Mis-L, as produced by :func:`separate`.

    All per-sample arrays are ordered by ascending sample ``index`` (use :meth:`positions` or
    :meth:`groups_for` / :meth:`probs_for` to look samples up by index, e.g. with the ``index`` of a batch).
    The object holds only numpy arrays, dicts, strings and numbers, so it pickles cheaply; :meth:`state_dict`
    converts it to tensors/primitives that ``torch.load(weights_only=True)`` (MONAI ``CheckpointLoader``) accepts.

    Attributes:
        indices: (N,) int64 sample indices, ascending.
        probs: (N, 3) float32 posterior of each group, columns ``[correct, mis_h, mis_l]``. In ``"dividemix"``
            mode column 1 is the "noisy" (unlabelled) probability and ``probs[:, 2] == 0``.
        groups: (N,) int64 hard group codes (``0 correct, 1 mis_h, 2 mis_l``).
        loss: (N,) float32 raw per-sample loss (as given, non-finite values kept).
        uncertainty: (N,) float32 raw per-sample uncertainty (zeros when none was given).
        loss_norm: (N,) float32 min-max normalised loss used for the fit (non-finite values replaced).
        uncertainty_norm: (N,) float32 min-max normalised uncertainty used for the fit.
        means: fitted component means in the normalised space, keyed by fit: ``-1`` is the fit on all samples,
            a class label ``c`` the per-class fit of class ``c``. Each value is (K, D) with D columns
            ``(loss, uncertainty)`` (``(loss,)`` in ``"dividemix"`` mode).
        mapping: component → group code for each fit (same keys as ``means``), each (K,) int64.
        mode: ``"qmix"`` (3 groups) or ``"dividemix"`` (2 groups).
        labels: (N,) int64 given labels, or ``None``.
        fallback: ``None`` when every fit was regular, otherwise a description of the degenerate case(s) handled.
    """

    indices: np.ndarray
    probs: np.ndarray
    groups: np.ndarray
    loss: np.ndarray
    uncertainty: np.ndarray
    loss_norm: np.ndarray
    uncertainty_norm: np.ndarray
    means: dict[int, np.ndarray] = field(default_factory=dict)
    mapping: dict[int, np.ndarray] = field(default_factory=dict)
    mode: str = "qmix"
    labels: np.ndarray | None = None
    fallback: str | None = None

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def counts(self) -> dict[str, int]:
        """Number of samples in each group, keyed by group name."""
        bc = np.bincount(self.groups, minlength=3)
        return {name: int(bc[c]) for c, name in enumerate(GROUP_NAMES)}

    def positions(self, index: Any) -> np.ndarray:
        """Positions in the result arrays of the given sample indices.

        Args:
            index: sample indices (int, sequence, numpy array or tensor).

        Returns:
            int64 numpy array of positions.

        Raises:
            KeyError: when an index is not part of this result.
        """
        idx = np.asarray(_to_numpy(index), dtype=np.int64).reshape(-1)
        n = len(self)
        if n > 0 and self.indices[0] == 0 and self.indices[-1] == n - 1:  # contiguous 0..N-1: index == position
            pos = idx
            bad = (pos < 0) | (pos >= n)
        else:
            pos = np.searchsorted(self.indices, idx)
            bad = pos >= n
            bad[~bad] = self.indices[pos[~bad]] != idx[~bad]
        if bad.any():
            raise KeyError(f"index: sample indices {idx[bad][:10].tolist()} are not in this separation result.")
        return pos

    def _lookup(self, arr: np.ndarray, index: Any) -> Any:
        out = arr[self.positions(index)]
        if isinstance(index, torch.Tensor):
            return torch.as_tensor(out, device=index.device)
        return out

    def groups_for(self, index: Any) -> Any:
        """Hard groups of the samples with the given indices (a tensor in → a tensor on its device out)."""
        return self._lookup(self.groups, index)

    def probs_for(self, index: Any) -> Any:
        """Group posteriors (rows ``[correct, mis_h, mis_l]``) of the given indices (tensor in → tensor out)."""
        return self._lookup(self.probs, index)

    def state_dict(self) -> dict[str, Any]:
        """Tensors and primitives only, loadable with ``torch.load(..., weights_only=True)``."""
        sd: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                sd[f.name] = torch.from_numpy(np.ascontiguousarray(v))
            elif isinstance(v, dict):
                sd[f.name] = {int(k): torch.from_numpy(np.ascontiguousarray(a)) for k, a in v.items()}
            else:
                sd[f.name] = v
        return sd

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> SeparationResult:
        """Rebuild a result from :meth:`state_dict` output.

        Raises:
            KeyError: when a required field is missing from ``state``.
        """
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in state:
                if f.name in ("means", "mapping", "mode", "labels", "fallback"):
                    continue
                raise KeyError(f"state: SeparationResult field {f.name!r} is missing from the state dict.")
            v = state[f.name]
            if isinstance(v, torch.Tensor):
                kwargs[f.name] = v.detach().cpu().numpy()
            elif isinstance(v, Mapping):
                kwargs[f.name] = {int(k): np.asarray(_to_numpy(a)) for k, a in v.items()}
            else:
                kwargs[f.name] = v
        return cls(**kwargs)

    @staticmethod
    def group_names(codes: Sequence[int] | np.ndarray) -> list[str]:
        """Names of the given group codes."""
        return [GROUP_NAMES[int(c)] if 0 <= int(c) < 3 else "unknown" for c in codes]
