# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Tests of ``SeparationLossHandler`` on a bare Ignite engine whose step calls ``loss(pred, label)``."""

from __future__ import annotations

import unittest

import numpy as np
import torch
from ignite.engine import Engine, Events
from parameterized import parameterized

from monai_qmix.handlers.separation_loss import SeparationLossHandler
from monai_qmix.losses import SeparationWeightedLoss
from monai_qmix.separation import SeparationResult


def partition(groups) -> SeparationResult:
    g = np.asarray(groups, dtype=np.int64)
    z = np.zeros(len(g), dtype=np.float32)
    return SeparationResult(
        indices=np.arange(len(g)), probs=np.eye(3, dtype=np.float32)[g], groups=g, loss=z, uncertainty=z,
        loss_norm=z, uncertainty_norm=z,
    )  # fmt: skip


def batches(n=8, b=4):
    return [
        {"image": torch.randn(b, 3), "label": torch.arange(i, i + b) % 3, "index": torch.arange(i, i + b)}
        for i in range(0, n, b)
    ]


class TestSeparationLossHandler(unittest.TestCase):
    def test_feeds_the_loss(self):
        loss = SeparationWeightedLoss()
        seen = []

        def step(engine, batch):  # what SupervisedTrainer does: loss(pred, label), nothing else
            out = loss(batch["image"], batch["label"])
            seen.append((engine.state.epoch, loss.last_groups.tolist()))
            return out

        engine = Engine(step)
        handler = SeparationLossHandler(loss)
        handler.attach(engine)
        handler.attach(engine)  # guarded
        self.assertEqual(len(engine._event_handlers[Events.ITERATION_STARTED]), 1)
        groups = [0, 1, 2, 0, 2, 1, 0, 0]
        engine.add_event_handler(  # as SampleSeparationHandler publishes after warm-up
            Events.EPOCH_STARTED(once=2), lambda e: setattr(e.state, "separation", {"A": partition(groups)})
        )
        engine.run(batches(), max_epochs=2)
        self.assertEqual(seen[:2], [(1, [0] * 4), (1, [0] * 4)])  # warm-up: all Correct, no warning
        self.assertEqual(seen[2:], [(2, groups[:4]), (2, groups[4:])])
        self.assertEqual((loss.num_calls, loss.num_separated_calls), (4, 2))

    def test_other_key_and_missing_index(self):
        loss = SeparationWeightedLoss()
        engine = Engine(lambda e, b: loss(b["image"], b["label"]))
        SeparationLossHandler(loss, key="B").attach(engine)
        splits = {"A": partition([1] * 8), "B": partition([2] * 8)}
        engine.add_event_handler(Events.STARTED, lambda e: setattr(e.state, "separation", splits))
        used = []
        engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: used.extend(loss.last_groups.tolist()))
        engine.run(batches(), max_epochs=1)
        self.assertEqual(used, [2] * 8)
        engine2 = Engine(lambda e, b: None)
        SeparationLossHandler(loss).attach(engine2)
        with self.assertRaisesRegex(KeyError, "index_key='index'.*enumerate"):
            engine2.run([{"image": torch.zeros(2, 3), "label": torch.zeros(2)}], max_epochs=1)

    @parameterized.expand(
        [
            ({"loss": torch.nn.CrossEntropyLoss()}, TypeError, "set_batch"),
            ({"key": ""}, ValueError, "key"),
            ({"index_key": None}, ValueError, "index_key"),
            ({"state_attr": "not valid"}, ValueError, "state_attr"),
        ]
    )
    def test_validation(self, kwargs, error, name):
        args = {"loss": SeparationWeightedLoss(), **kwargs}
        with self.assertRaisesRegex(error, name):
            SeparationLossHandler(**args)


if __name__ == "__main__":
    unittest.main()
