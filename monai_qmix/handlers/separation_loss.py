# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Ignite handler feeding a separation-weighted loss with the indices and separation result of every batch.

MONAI's ``SupervisedTrainer`` calls ``loss_function(pred, label)``, so the loss sees neither the batch's sample
indices nor the trainer state. :class:`SeparationLossHandler` runs at ``ITERATION_STARTED``, when the batch is
already on ``engine.state.batch``. It passes the batch's ``index`` values, the split published by
:class:`~monai_qmix.handlers.SampleSeparationHandler` (``engine.state.separation[key]``) and the epoch to
:meth:`~monai_qmix.losses.SeparationWeightedLoss.set_batch`. It has the same shape as MONAI's ``LrScheduleHandler``,
which wraps a top-level object: ``{"_target_": "monai_qmix.handlers.SeparationLossHandler", "loss": "@loss"}``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ignite.engine import Events

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["SeparationLossHandler"]


class SeparationLossHandler:
    """Call ``loss.set_batch(index, separation, epoch)`` before every training iteration.

    Args:
        loss: a :class:`~monai_qmix.losses.SeparationWeightedLoss` (any object with a callable ``set_batch``); the
            same instance must be the trainer's ``loss_function``.
        key: which published split to use: ``engine.state.<state_attr>[key]`` (``"A"``, the key of a
            single-network :class:`~monai_qmix.handlers.SampleSeparationHandler`).
        index_key: batch key holding the stable sample indices (the datalist's ``"index"``).
        state_attr: ``engine.state`` attribute that holds the published splits (as the separation handler's).
        name: logger name; default the engine's logger.

    Raises:
        TypeError: when ``loss`` has no callable ``set_batch``.
        ValueError: for an empty ``key`` or ``index_key``, or a ``state_attr`` that is not an identifier.
    """

    def __init__(
        self,
        loss: Any,
        key: str = "A",
        index_key: str = "index",
        state_attr: str = "separation",
        name: str | None = None,
    ) -> None:
        if not callable(getattr(loss, "set_batch", None)):
            raise TypeError(
                f"loss: expected a SeparationWeightedLoss (an object with set_batch), got {type(loss).__name__}."
            )
        for what, value in (("key", key), ("index_key", index_key)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{what}: expected a non-empty string, got {value!r}.")
        if not isinstance(state_attr, str) or not state_attr.isidentifier():
            raise ValueError(f"state_attr: expected a Python identifier, got {state_attr!r}.")
        self.loss = loss
        self.key = key
        self.index_key = index_key
        self.state_attr = state_attr
        self.logger = logging.getLogger(name)
        self._name = name

    def attach(self, engine: Engine) -> None:
        """Register on ``Events.ITERATION_STARTED`` (once)."""
        if self._name is None:
            self.logger = engine.logger
        if not engine.has_event_handler(self, Events.ITERATION_STARTED):
            engine.add_event_handler(Events.ITERATION_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        """Hand the current batch's indices, the latest split of ``key`` and the epoch to the loss.

        Raises:
            KeyError: when the batch is not a dict holding ``index_key`` (add an ``index`` to every datalist item).
        """
        batch = engine.state.batch
        if not isinstance(batch, Mapping) or self.index_key not in batch:
            keys = sorted(map(str, batch)) if isinstance(batch, Mapping) else type(batch).__name__
            raise KeyError(
                f"index_key={self.index_key!r} not found in the training batch (keys: {keys}); give every "
                "datalist item its position, e.g. [dict(d, index=i) for i, d in enumerate(datalist)]."
            )
        store = getattr(engine.state, self.state_attr, None)
        separation = store.get(self.key) if isinstance(store, Mapping) else None
        self.loss.set_batch(batch[self.index_key], separation, epoch=engine.state.epoch)
