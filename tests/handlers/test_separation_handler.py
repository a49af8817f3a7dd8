# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Tests of ``SampleSeparationHandler`` on a bare Ignite engine with a tiny network and loader."""

from __future__ import annotations

import glob
import logging
import os
import tempfile
import unittest

import numpy as np
from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader, CheckpointSaver
from parameterized import parameterized
from torch.utils.data import DataLoader

from monai_qmix.handlers import SampleSeparationHandler, SeparationEvents
from monai_qmix.separation import SeparationResult
from tests.separation._toy import ToyNet, toy_items


class FakeWriter:
    def __init__(self):
        self.scalars: list[tuple[str, float, int]] = []

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))


def bare_engine() -> Engine:
    return Engine(lambda e, b: None)


class TestSampleSeparationHandler(unittest.TestCase):
    def setUp(self):
        self.loader = DataLoader(toy_items(30, with_group=True), batch_size=10)
        self.net_a, self.net_b = ToyNet(seed=0), ToyNet(seed=1)

    def test_co_divide_run(self):
        writer = FakeWriter()
        engine = bare_engine()
        fired: list[tuple[int, list[str]]] = []
        with tempfile.TemporaryDirectory() as tmp:
            handler = SampleSeparationHandler(
                self.loader,
                {"A": self.net_a, "B": self.net_b},
                warmup_epochs=1,
                output_dir=tmp,
                summary_writer=writer,
                progress=False,
            )
            handler.attach(engine)
            handler.attach(engine)  # guarded: no second registration
            engine.add_event_handler(
                SeparationEvents.SEPARATION_COMPLETED,
                lambda e: fired.append((e.state.epoch, sorted(e.state.separation))),
            )
            seen_at_epoch_start = []
            engine.add_event_handler(
                Events.ITERATION_STARTED(once=1), lambda e: seen_at_epoch_start.append(hasattr(e.state, "separation"))
            )
            self.net_a.train()
            engine.run([0, 1], max_epochs=2)
            files = sorted(os.path.basename(p) for p in glob.glob(os.path.join(tmp, "*")))
        self.assertEqual(fired, [(2, ["A", "B"])])  # epochs are 1-based; warm-up epoch 1 skipped
        self.assertEqual(seen_at_epoch_start, [False])  # nothing published during warm-up
        self.assertEqual(engine.state.separation_epoch, {"A": 2, "B": 2})
        res = engine.state.separation["A"]
        self.assertIsInstance(res, SeparationResult)
        np.testing.assert_array_equal(res.indices, np.arange(30))
        self.assertEqual(sum(res.counts().values()), 30)
        self.assertIn("auc_clean", engine.state.separation_metrics["B"])  # truth from the batch key
        self.assertTrue(self.net_a.training and self.net_b.training)  # train mode restored after scoring
        self.assertEqual(
            files,
            [f"separation_{k}_epoch002.{x}" for k in "AB" for x in ("csv", "png")],
        )
        tags = {t for t, _, _ in writer.scalars}
        self.assertTrue({"separation/A/n_correct", "separation/B/auc_clean"} <= tags)
        self.assertEqual({s for _, _, s in writer.scalars}, {2})

    def test_two_handlers_interval_and_logging(self):
        engine = bare_engine()
        h_a = SampleSeparationHandler(self.loader, self.net_a, key="A", interval=2, progress=False, name="sepA")
        h_b = SampleSeparationHandler(
            self.loader,
            self.net_b,
            key="B",
            interval=2,
            progress=False,
            noise_group=["correct", "mis_h", "mis_l"] * 10,
            separation_kwargs={"mode": "dividemix"},
            scoring_kwargs={"uncertainty": "variance", "mc_samples": 3},
        )
        h_a.attach(engine)
        h_b.attach(engine)
        count = []
        engine.add_event_handler(SeparationEvents.SEPARATION_COMPLETED, lambda e: count.append(e.state.epoch))
        with self.assertLogs("sepA", level=logging.INFO) as logs:
            engine.run([0], max_epochs=3)
        self.assertEqual(count, [1, 1, 3, 3])  # one event per handler call; epochs 1 and 3
        self.assertEqual(sorted(engine.state.separation), ["A", "B"])
        self.assertEqual(engine.state.separation["B"].mode, "dividemix")
        self.assertIn("Separation A epoch 3: correct=", logs.output[-1])
        self.assertIn("AUC_clean", logs.output[-1])
        self.assertEqual([h_a.should_run(e) for e in range(1, 6)], [True, False, True, False, True])

    def test_checkpoint_round_trip(self):
        engine = bare_engine()
        handler = SampleSeparationHandler(self.loader, {"A": self.net_a}, progress=False)
        handler.attach(engine)
        with tempfile.TemporaryDirectory() as tmp:
            CheckpointSaver(tmp, {"separation": handler}, save_final=True).attach(engine)
            engine.run([0], max_epochs=1)
            ckpt = glob.glob(os.path.join(tmp, "*.pt"))
            self.assertEqual(len(ckpt), 1)
            # resume: a new handler that will not run (long warm-up) still publishes the restored result
            engine2 = bare_engine()
            fresh = SampleSeparationHandler(self.loader, {"A": ToyNet(seed=5)}, warmup_epochs=10, progress=False)
            fresh.attach(engine2)  # attached before the loader: still published at the first EPOCH_STARTED
            CheckpointLoader(ckpt[0], {"separation": fresh}, map_location="cpu").attach(engine2)
            seen = []
            engine2.add_event_handler(Events.ITERATION_STARTED, lambda e: seen.append(e.state.separation["A"]))
            engine2.run([0], max_epochs=1)
        before, after = engine.state.separation["A"], seen[0]
        np.testing.assert_array_equal(after.groups, before.groups)
        np.testing.assert_array_equal(after.probs, before.probs)
        self.assertEqual(engine2.state.separation_epoch, {"A": 1})
        with self.assertRaisesRegex(KeyError, "results"):
            fresh.load_state_dict({})

    @parameterized.expand(
        [
            [{"networks": "net"}, TypeError, "networks"],
            [{"networks": {}}, ValueError, "networks"],
            [{"loader": 3}, TypeError, "loader"],
            [{"warmup_epochs": -1}, ValueError, "warmup_epochs"],
            [{"interval": 0}, ValueError, "interval"],
            [{"separation_kwargs": {"n_component": 3}}, ValueError, "n_component"],
            [{"scoring_kwargs": {"device": "cpu"}}, ValueError, "scoring_kwargs"],
            [{"summary_writer": object()}, TypeError, "summary_writer"],
            [{"state_attr": "not valid"}, ValueError, "state_attr"],
        ]
    )
    def test_invalid(self, kwargs, exc, msg):
        args = {"loader": self.loader, "networks": self.net_a, **kwargs}
        with self.assertRaisesRegex(exc, msg):
            SampleSeparationHandler(**args)


if __name__ == "__main__":
    unittest.main()
