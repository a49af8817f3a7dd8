# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Per-epoch loaders of the two-loader co-training loop of :class:`~monai_qmix.engines.QMixTrainer`.

DivideMix (``Train_cifar.py``) and the official QMix ``dataset.py`` rebuild, every epoch and for every network, a
*labelled* loader (DivideMix: the clean set; QMix: Correct ∪ Mis-L) and an *unlabelled* loader (Mis-H) over the
partition of the partner network. Here both are ordinary ``DataLoader`` objects over the **one** training dataset,
each with a :class:`GroupSampler` that draws a seeded random order of the group's dataset positions (sharded across
ranks like ``DistributedSampler`` when ``torch.distributed`` is initialised), so no dataset is copied.

:class:`CoTrainingSteps` is the iterable the Ignite engine runs over: it yields one *step* dict per optimiser step
of one network, ``{"network": "A" | "B", "labelled": batch | None, "unlabelled": batch | None, "step": i,
"steps": n}``, network A's pass first, then network B's.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Sampler

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

__all__ = ["GroupSampler", "CoTrainingPass", "CoTrainingSteps", "distributed_world"]


def distributed_world() -> tuple[int, int]:
    """``(num_replicas, rank)`` of the default process group, ``(1, 0)`` when ``torch.distributed`` is not in use."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class GroupSampler(Sampler[int]):
    """Seeded random order over a fixed subset of dataset positions, sharded across ranks.

    Every ``iter()`` draws a new permutation of ``indices`` from the sampler's own ``torch.Generator`` (so a loader
    restarted within an epoch gets a new order, and no global random state is used). With ``num_replicas > 1`` the
    permutation is padded by repeating its head to a multiple of ``num_replicas`` and rank ``r`` takes every
    ``num_replicas``-th element from ``r`` (as ``torch.utils.data.DistributedSampler``); all ranks must use the same
    ``seed`` and draw the same number of times, so their shards are disjoint up to the padding.

    Args:
        indices: dataset positions of the subset (1-D, non-negative).
        seed: seed of the sampler's generator.
        shuffle: draw a random permutation (``False``: the given order).
        num_replicas: number of ranks (default: the world size of the initialised process group, else 1).
        rank: this rank (default: the rank of the initialised process group, else 0).

    Raises:
        ValueError: for a non 1-D or negative ``indices``, or an invalid ``num_replicas`` / ``rank``.

    Example:
        >>> s = GroupSampler([3, 5, 7], seed=0)
        >>> sorted(s), len(s)
        ([3, 5, 7], 3)
    """

    def __init__(
        self,
        indices: Sequence[int] | np.ndarray,
        seed: int = 0,
        shuffle: bool = True,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        idx = np.asarray(indices, dtype=np.int64)
        if idx.ndim != 1:
            raise ValueError(f"indices must be 1-D dataset positions, got shape {idx.shape}.")
        if idx.size and int(idx.min()) < 0:
            raise ValueError(f"indices must be non-negative dataset positions, got min {int(idx.min())}.")
        world, this_rank = distributed_world()
        num_replicas = world if num_replicas is None else int(num_replicas)
        rank = this_rank if rank is None else int(rank)
        if num_replicas < 1:
            raise ValueError(f"num_replicas must be >= 1, got {num_replicas}.")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, num_replicas={num_replicas}), got {rank}.")
        self.indices = idx
        self.shuffle = bool(shuffle)
        self.num_replicas, self.rank = num_replicas, rank
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.num_samples = math.ceil(idx.size / num_replicas) if idx.size else 0
        self._skip = 0

    def fast_forward(self, draws: int, skip: int = 0) -> None:
        """Advance the sampler as if ``draws`` full iterations had been made and skip the first ``skip`` positions
        of the next one (used to resume within an epoch).

        Raises:
            ValueError: for a negative ``draws`` or ``skip``.
        """
        if draws < 0 or skip < 0:
            raise ValueError(f"draws and skip must be >= 0, got draws={draws}, skip={skip}.")
        if self.shuffle and self.indices.size:
            for _ in range(int(draws)):
                torch.randperm(self.indices.size, generator=self.generator)
        self._skip = int(skip)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        n = self.indices.size
        if n == 0:
            return iter([])
        order = torch.randperm(n, generator=self.generator).numpy() if self.shuffle else np.arange(n)
        idx = self.indices[order]
        total = self.num_samples * self.num_replicas
        if total > n:
            idx = np.concatenate([idx, np.resize(idx, total - n)])
        skip, self._skip = self._skip, 0
        return iter(idx[self.rank : total : self.num_replicas][skip:].tolist())


class CoTrainingPass:
    """One network's pass of an epoch: one pass over ``primary``, ``secondary`` restarted whenever exhausted.

    Args:
        network: ``"A"`` or ``"B"``, the network trained in this pass.
        loaders: ``{"labelled": loader | None, "unlabelled": loader | None}``.
        primary: the role whose loader defines the pass (``"labelled"``; ``"unlabelled"`` when the labelled
            loader is empty).
        start: the first step to yield (``> 0`` resumes within the pass: the loaders' :class:`GroupSampler` are
            fast-forwarded to the state they had at that step).
    """

    def __init__(
        self, network: str, loaders: dict[str, DataLoader | None], primary: str = "labelled", start: int = 0
    ) -> None:
        if primary not in loaders or loaders[primary] is None:
            raise ValueError(
                f"primary must name a loader of {sorted(k for k, v in loaders.items() if v)}, got {primary!r}."
            )
        self.network, self.loaders, self.primary = network, loaders, primary
        self.secondary = next((k for k in loaders if k != primary), None)
        self.start = int(start)

    def __len__(self) -> int:
        return len(self.loaders[self.primary])  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        steps = len(self)
        first = self.loaders[self.primary]
        second = self.loaders.get(self.secondary) if self.secondary else None
        second_iter = None
        if self.start >= steps:
            return
        if self.start > 0:  # resume: the state each loader had at step `start`
            first.sampler.fast_forward(0, self.start * first.batch_size)  # type: ignore[union-attr]
            if second is not None and len(second) > 0:
                draws, batches = divmod(self.start, len(second))
                second.sampler.fast_forward(draws, batches * second.batch_size)
                second_iter = iter(second)
        for i, batch in enumerate(first, start=self.start):  # type: ignore[arg-type]
            step: dict[str, Any] = {
                "network": self.network,
                "step": i,
                "steps": steps,
                "labelled": None,
                "unlabelled": None,
            }
            step[self.primary] = batch
            if second is not None and len(second) > 0:
                try:
                    if second_iter is None:
                        raise StopIteration
                    other = next(second_iter)
                except StopIteration:  # restart the secondary loader (DivideMix's unlabeled_train_iter)
                    second_iter = iter(second)
                    other = next(second_iter)
                step[self.secondary] = other  # type: ignore[index]
            yield step


class CoTrainingSteps:
    """The data the engine iterates in the two-loader loop: the current epoch's passes, one step at a time.

    The plan of an epoch (a list of :class:`CoTrainingPass`) is set by the trainer at ``EPOCH_STARTED`` through
    :meth:`set_plan`; the iterator is lazy, so the first step of an epoch is built only after the epoch's handlers
    (separation, plan) ran, and it continues with the next epoch's plan after the last step of an epoch.
    """

    def __init__(self) -> None:
        self._plan: list[CoTrainingPass] | None = None

    def set_plan(self, passes: list[CoTrainingPass]) -> int:
        """Set the passes of the coming epoch; returns its number of steps."""
        self._plan = list(passes)
        return sum(len(p) for p in self._plan)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            if self._plan is None:
                raise RuntimeError(
                    "CoTrainingSteps: no epoch plan; QMixTrainer sets it at EPOCH_STARTED (loop='two_loader')."
                )
            plan, self._plan = self._plan, None
            for p in plan:
                yield from p
