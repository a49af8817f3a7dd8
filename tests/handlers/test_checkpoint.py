# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Atomic checkpoint writes, the best / last / final saver and the resume that keeps the best metric."""

from __future__ import annotations

import math
import os
import tempfile
import unittest
from unittest import mock

import torch
from ignite.engine import Engine, Events

from monai_qmix.handlers import AtomicCheckpointSaver, CheckpointResumer, atomic_torch_save, resolve_resume
from monai_qmix.handlers.checkpoint import SAVER_KEY


def _load(path: str) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


class FakeEvaluator:
    """What the saver reads from MONAI's evaluator: ``state.epoch``, ``state.metrics``, ``state.key_metric_name``."""

    def __init__(self, values: dict[int, float]):
        self.values = values
        self.state = type("S", (), {"epoch": 0, "metrics": {}, "key_metric_name": "val_qwk"})()
        self.metric_cmp_fn = lambda a, b: a > b

    def validate(self, engine: Engine) -> None:
        e = engine.state.epoch
        if e in self.values:
            self.state.epoch, self.state.metrics = e, {"val_qwk": self.values[e]}


def trainer_with_saver(tmp: str, values: dict[int, float], net: torch.nn.Module, max_epochs: int = 4):
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max_epochs)

    def step(engine, batch):
        opt.step()  # no gradients: a no-op that keeps the scheduler's order check quiet
        with torch.no_grad():
            for p in net.parameters():
                p.add_(1.0)

    engine = Engine(step)
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: sched.step())
    ev = FakeEvaluator(values)
    engine.add_event_handler(Events.EPOCH_COMPLETED, ev.validate)
    saver = AtomicCheckpointSaver(tmp, {"trainer": engine, "net": net, "opt": opt, "sched": sched}, evaluator=ev)
    saver.attach(engine)
    return engine, saver, sched


class TestAtomicSave(unittest.TestCase):
    def test_failed_rename_keeps_previous_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.pt")
            atomic_torch_save({"w": torch.ones(3)}, path)
            with mock.patch("monai_qmix.handlers.checkpoint.os.replace", side_effect=OSError("killed")):
                with self.assertRaises(OSError):
                    atomic_torch_save({"w": torch.zeros(3)}, path)
            torch.testing.assert_close(_load(path)["w"], torch.ones(3))  # the previous checkpoint, intact
            self.assertEqual(os.listdir(tmp), ["model.pt"])  # no temporary file left behind

    def test_interrupted_write_keeps_previous_file(self):
        real_save = torch.save

        def partial_save(obj, f, *args, **kwargs):
            f.write(b"PK\x03\x04 half a file")  # a write cut short (kill / full disk / Ctrl-C)
            raise KeyboardInterrupt

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.pt")
            atomic_torch_save({"w": torch.ones(3)}, path)
            for _ in range(3):
                with mock.patch("monai_qmix.handlers.checkpoint.torch.save", side_effect=partial_save):
                    with self.assertRaises(KeyboardInterrupt):
                        atomic_torch_save({"w": torch.zeros(3)}, path)
                torch.testing.assert_close(_load(path)["w"], torch.ones(3))
                self.assertEqual(os.listdir(tmp), ["model.pt"])
            self.assertIs(torch.save, real_save)

    @unittest.skipUnless(hasattr(os, "fork"), "needs os.fork (POSIX) to kill a saving process cheaply")
    def test_sigkill_during_saves_never_leaves_a_broken_file(self):
        """20 real SIGKILLs of a (forked) process that saves a 16 MB checkpoint in a loop, at seeded random moments:
        the file left behind always loads and holds one complete save."""
        import random
        import signal
        import time

        rng = random.Random(0)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.pt")
            atomic_torch_save({"i": -1, "w": torch.full((1 << 22,), -1.0)}, path)
            within = 0
            for _ in range(20):
                pid = os.fork()
                if pid == 0:  # the child saves until it is killed
                    try:
                        i = 0
                        while True:
                            atomic_torch_save({"i": i, "w": torch.full((1 << 22,), float(i))}, path)
                            i += 1
                    finally:
                        os._exit(1)
                time.sleep(rng.uniform(0.02, 0.3))  # somewhere in a save (one takes about 0.05-0.2 s)
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                ckpt = _load(path)
                self.assertTrue(bool((ckpt["w"] == float(ckpt["i"])).all()))
                for f in os.listdir(tmp):  # a kill within a save leaves its temporary file: never model.pt
                    if f != "model.pt":
                        os.remove(os.path.join(tmp, f))
                        within += 1
            self.assertGreater(within, 0, "no kill landed within a save")

    def test_first_write_failure_leaves_nothing(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "sub", "model.pt")
            with mock.patch("monai_qmix.handlers.checkpoint.os.replace", side_effect=OSError("killed")):
                with self.assertRaises(OSError):
                    atomic_torch_save({"w": torch.ones(1)}, path)
            self.assertEqual(os.listdir(os.path.join(tmp, "sub")), [])


class TestSaverAndResume(unittest.TestCase):
    def test_best_last_final(self):
        with tempfile.TemporaryDirectory() as tmp:
            net = torch.nn.Linear(2, 1)
            engine, saver, _ = trainer_with_saver(tmp, {1: 0.2, 2: 0.5, 3: 0.4, 4: 0.1}, net)
            engine.run([0, 1], max_epochs=4)
            self.assertEqual(sorted(os.listdir(tmp)), ["model.pt", "model_final.pt", "model_last.pt"])
            best, last = _load(os.path.join(tmp, "model.pt")), _load(os.path.join(tmp, "model_last.pt"))
            self.assertEqual(best[SAVER_KEY]["best_metric_epoch"], 2)
            self.assertAlmostEqual(best[SAVER_KEY]["best_metric"], 0.5)
            self.assertEqual(best["trainer"]["iteration"], 4)  # epoch 2 of 2 iterations
            self.assertEqual(last["trainer"]["iteration"], 8)
            self.assertEqual(last[SAVER_KEY]["best_metric_epoch"], 2)
            self.assertIn("epoch 4", saver.describe())

    def test_resume_keeps_best_and_extends_cosine(self):
        with tempfile.TemporaryDirectory() as tmp:
            net = torch.nn.Linear(2, 1)
            engine, _, _ = trainer_with_saver(tmp, {1: 0.2, 2: 0.9, 3: 0.4}, net, max_epochs=3)
            engine.run([0, 1], max_epochs=3)
            best_before = _load(os.path.join(tmp, "model.pt"))
            # resume with a worse epoch 4 and 5, the run extended from 3 to 6 epochs
            net2 = torch.nn.Linear(2, 1)
            engine2, saver2, sched2 = trainer_with_saver(tmp, {4: 0.5, 5: 0.95, 6: 0.3}, net2, max_epochs=6)
            lrs = {}
            engine2.add_event_handler(
                Events.EPOCH_STARTED, lambda e: lrs.update({e.state.epoch: sched2.get_last_lr()[0]})
            )
            path = resolve_resume("auto", tmp)
            self.assertEqual(path, os.path.join(tmp, "model_last.pt"))
            CheckpointResumer(path, saver2.objects, map_location="cpu").attach(engine2)
            epochs = []
            engine2.add_event_handler(Events.EPOCH_COMPLETED, lambda e: epochs.append(e.state.epoch))
            engine2.add_event_handler(
                Events.EPOCH_COMPLETED(once=4),
                lambda e: self.assertEqual(_load(os.path.join(tmp, "model.pt"))[SAVER_KEY]["best_metric_epoch"], 2),
            )
            engine2.run([0, 1], max_epochs=6)
            self.assertEqual(epochs, [4, 5, 6])
            best = _load(os.path.join(tmp, "model.pt"))
            self.assertEqual(best[SAVER_KEY]["best_metric_epoch"], 5)  # 0.5 < 0.9 kept epoch 2; 0.95 replaced it
            self.assertNotEqual(best_before["net"]["bias"].item(), best["net"]["bias"].item())
            # the LR follows the cosine of the new length (6 epochs) from epoch 4 on: 0.1 (1 + cos(pi t / 6)) / 2
            for e, lr in lrs.items():
                self.assertAlmostEqual(lr, 0.05 * (1 + math.cos(math.pi * (e - 1) / 6)), places=6)

    def test_resume_refuses_shorter_run_and_missing_objects(self):
        with tempfile.TemporaryDirectory() as tmp:
            engine, _, _ = trainer_with_saver(tmp, {1: 0.2, 2: 0.3, 3: 0.1}, torch.nn.Linear(2, 1), max_epochs=3)
            engine.run([0], max_epochs=3)
            engine2, saver2, _ = trainer_with_saver(tmp, {}, torch.nn.Linear(2, 1), max_epochs=2)
            CheckpointResumer(os.path.join(tmp, "model_last.pt"), saver2.objects).attach(engine2)
            with self.assertRaisesRegex(ValueError, "epoch 3, beyond epochs=2"):
                engine2.run([0], max_epochs=2)
            engine3, saver3, _ = trainer_with_saver(tmp, {}, torch.nn.Linear(2, 1), max_epochs=4)
            objs = {**saver3.objects, "network_b": torch.nn.Linear(2, 1)}
            CheckpointResumer(os.path.join(tmp, "model_last.pt"), objs).attach(engine3)
            with self.assertRaisesRegex(ValueError, r"has no \['network_b'\]"):
                engine3.run([0], max_epochs=4)

    def test_resolve_resume(self):
        with tempfile.TemporaryDirectory() as tmp:
            self.assertIsNone(resolve_resume(None, tmp))
            self.assertIsNone(resolve_resume("auto", tmp))  # nothing yet: from scratch
            with self.assertRaisesRegex(FileNotFoundError, "resume: no checkpoint file"):
                resolve_resume(os.path.join(tmp, "nope.pt"), tmp)


if __name__ == "__main__":
    unittest.main()
