# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Ignite handler that recalibrates batch norm at the end of every training epoch (see
:mod:`monai_qmix.networks.batchnorm`).

Attach it *before* the validation and checkpoint handlers (handlers of one event run in attach order), so that the
validation, the saved checkpoint and the next epoch's sample separation (``EPOCH_STARTED``) all use statistics of
un-augmented images. :class:`~monai_qmix.engines.QMixTrainer` attaches one itself with
``bn_recalibration_loader=...``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import torch
from ignite.engine import Events

from monai_qmix.networks.batchnorm import recalibrate_batchnorm

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["BatchNormRecalibrationHandler"]


class BatchNormRecalibrationHandler:
    """Recompute the batch-norm running statistics of the networks over ``loader`` every ``interval`` epochs.

    Args:
        loader: un-augmented training images (e.g. the training set with the test transform).
        networks: the networks to recalibrate; default the engine's ``networks`` (QMixTrainer: A and B) or
            ``network`` (MONAI trainers).
        interval: run at the end of every ``interval``-th epoch.
        image_key: image key of the batches.
        num_batches: use only the first ``num_batches`` batches of ``loader`` (``None``: all).
        device: device of the forward passes; default the engine's ``state.device`` or the network's.
        name: logger name; default the engine's logger.

    Raises:
        ValueError: ``interval`` < 1.

    Example (a MONAI bundle's ``train#handlers``, before the ``ValidationHandler``)::

        {"_target_": "monai_qmix.handlers.BatchNormRecalibrationHandler", "loader": "@train#separation_loader"}
    """

    def __init__(
        self,
        loader: Iterable,
        networks: torch.nn.Module | Sequence[torch.nn.Module] | None = None,
        interval: int = 1,
        image_key: str = "image",
        num_batches: int | None = None,
        device: str | torch.device | None = None,
        name: str | None = None,
    ) -> None:
        if isinstance(interval, bool) or int(interval) != interval or int(interval) < 1:
            raise ValueError(f"interval must be an integer >= 1, got {interval!r}.")
        self.loader = loader
        self.networks = [networks] if isinstance(networks, torch.nn.Module) else networks
        self.interval = int(interval)
        self.image_key = image_key
        self.num_batches = num_batches
        self.device = device
        self.logger = logging.getLogger(name) if name else None
        self.last_count = 0

    def attach(self, engine: Engine) -> None:
        """Run at ``Events.EPOCH_COMPLETED(every=interval)``."""
        if self.logger is None:
            self.logger = engine.logger
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)

    def _networks(self, engine: Engine) -> list[torch.nn.Module]:
        if self.networks is not None:
            return list(self.networks)
        nets = getattr(engine, "networks", None)
        if nets is None:
            net = getattr(engine, "network", None)
            if net is None:
                raise ValueError("networks: none given and the engine has neither 'networks' nor 'network'.")
            nets = [net]
        return list(nets)

    def __call__(self, engine: Engine) -> None:
        device = self.device or getattr(engine.state, "device", None) or getattr(engine, "device", None)
        counts = [
            recalibrate_batchnorm(net, self.loader, device, self.image_key, self.num_batches)
            for net in self._networks(engine)
        ]
        self.last_count = max(counts, default=0)
        if self.logger is not None:
            self.logger.debug(f"epoch {engine.state.epoch}: batch norm recalibrated on {self.last_count} images")
