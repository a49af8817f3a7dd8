# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""A checkpointable snapshot of every random number generator a training run depends on.

Exact resume needs more than the networks and optimisers: the data order (torch's global generator or the
loader's own ``generator``), the augmentations (the ``R`` of every MONAI ``Randomizable`` transform reachable from
the dataset), numpy's and Python's global generators (third-party code may use them) and any extra
``torch.Generator`` (e.g. the trainer's MixUp generator). :class:`RNGState` collects them into a state dict of
tensors and numbers, so MONAI's ``CheckpointSaver`` / ``CheckpointLoader`` (``weights_only=True``) handle it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from monai.transforms import Randomizable

__all__ = ["RNGState", "find_randomizables"]

_LEAF_TYPES = (str, bytes, int, float, bool, complex, type(None), torch.Tensor, np.ndarray, torch.nn.Module)


def find_randomizables(obj: Any, max_depth: int = 12) -> list[Randomizable]:
    """All distinct :class:`~monai.transforms.Randomizable` objects reachable from ``obj``, in a stable order.

    Walks attributes, lists, tuples and dict values depth-first (like MONAI's ``set_rnd``, plus dict values),
    skipping tensors, arrays, modules and primitives; each object is visited once.

    Args:
        obj: a data loader, dataset or transform.
        max_depth: recursion limit.
    """
    found: list[Randomizable] = []
    seen: set[int] = set()

    def walk(o: Any, depth: int) -> None:
        if depth > max_depth or isinstance(o, _LEAF_TYPES) or id(o) in seen:
            return
        seen.add(id(o))
        if isinstance(o, Randomizable):
            found.append(o)
        if isinstance(o, Mapping):
            children: Iterable = o.values()
        elif isinstance(o, (list, tuple)):
            children = o
        elif hasattr(o, "__dict__"):
            children = [v for k, v in vars(o).items() if not k.startswith("__")]
        else:
            return
        for child in children:
            walk(child, depth + 1)

    walk(obj, 0)
    return found


def _np_state_to_dict(state: tuple) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = state
    return {
        "keys": torch.as_tensor(np.asarray(keys, dtype=np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }


def _np_state_from_dict(d: Mapping[str, Any]) -> tuple:
    keys = np.asarray(torch.as_tensor(d["keys"]).cpu().numpy(), dtype=np.uint32)
    return ("MT19937", keys, int(d["pos"]), int(d["has_gauss"]), float(d["cached"]))


class RNGState:
    """``state_dict``-able snapshot of the random generators of a run.

    Captured: torch's CPU generator (and CUDA generators when CUDA is initialised), numpy's and Python's global
    generators, the ``generator`` of ``data_loader`` (when it has one), the ``R`` of every ``Randomizable``
    reachable from ``data_loader`` (its dataset's transforms) and the given extra ``torch.Generator`` objects.

    Args:
        data_loader: the training loader (or dataset); ``None`` captures only the global generators.
        generators: extra named ``torch.Generator`` objects.

    Example:
        >>> state = RNGState().state_dict()
        >>> a = torch.rand(1)
        >>> RNGState().load_state_dict(state)
        >>> bool(torch.rand(1) == a)
        True
    """

    def __init__(self, data_loader: Any = None, generators: Mapping[str, torch.Generator] | None = None) -> None:
        self.data_loader = data_loader
        self.generators = dict(generators or {})
        for k, g in self.generators.items():
            if not isinstance(g, torch.Generator):
                raise TypeError(f"generators[{k!r}]: expected a torch.Generator, got {type(g).__name__}.")

    def _loader_generator(self) -> torch.Generator | None:
        g = getattr(self.data_loader, "generator", None)
        return g if isinstance(g, torch.Generator) else None

    def state_dict(self) -> dict[str, Any]:
        """Tensors and numbers only (loadable with ``torch.load(weights_only=True)``)."""
        py = random.getstate()
        sd: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": _np_state_to_dict(np.random.get_state()),
            "python": {"version": int(py[0]), "state": torch.as_tensor(py[1], dtype=torch.int64)},
            "generators": {k: g.get_state() for k, g in self.generators.items()},
            "transforms": [_np_state_to_dict(t.R.get_state()) for t in find_randomizables(self.data_loader)],
        }
        if py[2] is not None:
            sd["python"]["gauss"] = float(py[2])
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            sd["cuda"] = torch.cuda.get_rng_state_all()
        g = self._loader_generator()
        if g is not None:
            sd["loader"] = g.get_state()
        return sd

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the generators.

        Raises:
            KeyError: when a required entry is missing.
            ValueError: when the number of randomizable transforms differs from the snapshot's.
        """
        for key in ("torch", "numpy", "python"):
            if key not in state_dict:
                raise KeyError(f"state_dict: missing {key!r}; expected an RNGState.state_dict() output.")
        torch.set_rng_state(torch.as_tensor(state_dict["torch"], dtype=torch.uint8).cpu())
        np.random.set_state(_np_state_from_dict(state_dict["numpy"]))
        py = state_dict["python"]
        random.setstate((int(py["version"]), tuple(int(v) for v in py["state"].tolist()), py.get("gauss")))
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])
        for k, s in state_dict.get("generators", {}).items():
            if k in self.generators:
                self.generators[k].set_state(torch.as_tensor(s, dtype=torch.uint8).cpu())
        g = self._loader_generator()
        if g is not None and "loader" in state_dict:
            g.set_state(torch.as_tensor(state_dict["loader"], dtype=torch.uint8).cpu())
        transforms = find_randomizables(self.data_loader)
        saved = state_dict.get("transforms", [])
        if len(saved) != len(transforms):
            raise ValueError(
                f"state_dict: the snapshot holds {len(saved)} randomizable transform states but the data loader "
                f"has {len(transforms)}; was the checkpoint written with the same transforms?"
            )
        for t, s in zip(transforms, saved):
            t.R.set_state(_np_state_from_dict(s))
