# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Tests of the training progress bar, the training-curve files and the TensorBoard notice."""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import tempfile
import unittest
import warnings
from unittest import mock

import numpy as np
import torch
from ignite.engine import Engine, Events

from monai_qmix.bundles import scripts
from monai_qmix.handlers import SampleSeparationHandler, TrainingCurveHandler, TrainingProgressBar, loss_value


def _trainer(losses_per_epoch, validator=None):
    """An engine whose iteration ``i`` of epoch ``e`` outputs ``losses_per_epoch[e - 1][i]``; optional validation."""
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)

    def step(engine, _):
        return {"loss": torch.tensor(losses_per_epoch[engine.state.epoch - 1][engine.state.iteration % 2 - 1])}

    eng = Engine(step)
    eng.optimizer = opt
    if validator is not None:
        eng.add_event_handler(Events.EPOCH_COMPLETED, lambda e: validator.run([0], max_epochs=1))
    return eng


def _validator(values):
    ev = Engine(lambda e, b: None)
    ev.state.key_metric_name = "val_qwk"

    @ev.on(Events.COMPLETED)
    def _metrics(e):
        v = values.pop(0)
        e.state.metrics = {"val_qwk": v, "val_per_class_recall": [0.1, 0.2], "val_acc": torch.tensor(v / 2)}

    return ev


class TestLossValue(unittest.TestCase):
    def test_dict_and_decollated_outputs(self):
        self.assertAlmostEqual(loss_value({"loss": torch.tensor(0.25)}), 0.25)
        self.assertAlmostEqual(loss_value([{"loss": torch.tensor(0.5)}, {"loss": torch.tensor(0.5)}]), 0.5)
        self.assertTrue(np.isnan(loss_value({"pred": 1})))
        self.assertTrue(np.isnan(loss_value(None)))


class TestTrainingCurveHandler(unittest.TestCase):
    def test_rows_png_and_resume(self):
        with tempfile.TemporaryDirectory() as tmp:
            losses = [[1.0, 3.0], [0.5, 1.5], [0.2, 0.4]]
            ev = _validator([0.3, 0.6, 0.5])
            eng = _trainer(losses, ev)
            h = TrainingCurveHandler(tmp, validator=ev)
            h.attach(eng)
            with self.assertLogs("monai_qmix.training", level="INFO") as logs:
                eng.run([0, 1], max_epochs=2)
            self.assertEqual(len(logs.output), 2)  # one line per epoch, with the epoch's mean loss
            self.assertIn(
                "Epoch 1/2 -- train_loss (mean) 2.0000, lr 0.1, val_acc 0.1500, val_qwk 0.3000", logs.output[0]
            )
            with open(h.csv_path) as f:
                rows = list(csv.DictReader(f))
            self.assertEqual([int(r["epoch"]) for r in rows], [1, 2])
            self.assertEqual([float(r["train_loss"]) for r in rows], [2.0, 1.0])  # means over the iterations
            self.assertEqual([float(r["val_qwk"]) for r in rows], [0.3, 0.6])
            self.assertAlmostEqual(float(rows[0]["val_acc"]), 0.15, places=6)  # 0-d tensors are recorded, lists are not
            self.assertNotIn("val_per_class_recall", rows[0])
            self.assertEqual(float(rows[0]["lr"]), 0.1)
            self.assertTrue(os.path.getsize(h.png_path) > 0)
            self.assertEqual([f for f in os.listdir(tmp) if f.endswith(".tmp")], [])  # no temporary file left
            # resume: a new handler continues the rows of the restored epochs and appends epoch 3
            eng2 = _trainer(losses, ev)
            h2 = TrainingCurveHandler(tmp, validator=ev)
            h2.attach(eng2)
            eng2.state.epoch, eng2.state.max_epochs = 2, 3
            eng2.state.iteration = 4
            eng2.run([0, 1], max_epochs=3)
            with open(h2.csv_path) as f:
                rows = list(csv.DictReader(f))
            self.assertEqual([int(r["epoch"]) for r in rows], [1, 2, 3])
            self.assertAlmostEqual(float(rows[2]["train_loss"]), 0.3)
            self.assertEqual(float(rows[2]["val_qwk"]), 0.5)

    def test_without_validator(self):
        with tempfile.TemporaryDirectory() as tmp:
            eng = _trainer([[1.0, 1.0]])
            h = TrainingCurveHandler(os.path.join(tmp, "new"), save_png=False)
            h.attach(eng)
            eng.run([0, 1], max_epochs=1)
            with open(h.csv_path) as f:
                (row,) = list(csv.DictReader(f))
            self.assertEqual(set(row), {"epoch", "train_loss", "lr"})
            self.assertFalse(os.path.exists(h.png_path))


class TestPartitionSizes(unittest.TestCase):
    def test_group_sizes_per_network_after_warmup(self):
        from monai_qmix.handlers import partition_sizes
        from monai_qmix.separation import separate

        rng = np.random.default_rng(0)
        loss = np.concatenate([rng.uniform(0, 0.2, 40), rng.uniform(0.8, 1, 20)])
        unc = np.concatenate([rng.uniform(0, 0.2, 50), rng.uniform(0.8, 1, 10)])
        result = separate(loss, unc, seed=0)
        counts = np.bincount(result.groups, minlength=3)

        with tempfile.TemporaryDirectory() as tmp:
            eng = _trainer([[1.0, 1.0]] * 3)

            @eng.on(Events.EPOCH_STARTED)
            def publish(e):  # as SampleSeparationHandler after a 1-epoch warm-up
                if e.state.epoch >= 2:
                    e.state.separation = {"A": result, "B": result}

            h = TrainingCurveHandler(tmp)
            h.attach(eng)
            eng.run([0, 1], max_epochs=3)
            self.assertEqual(partition_sizes(eng)["B_mis_l"], int(counts[2]))
            with open(h.csv_path) as f:
                rows = list(csv.DictReader(f))
            self.assertEqual(rows[0]["A_correct"], "")  # warm-up epoch: no partition yet
            for r in rows[1:]:
                got = [int(r[f"{k}_{g}"]) for k in "AB" for g in ("correct", "mis_h", "mis_l")]
                self.assertEqual(got, counts.tolist() * 2)
            self.assertEqual(sum(got[:3]), 60)
            line = TrainingCurveHandler.format_row(
                {
                    k: (v if k.endswith("loss") else int(v))
                    for k, v in {"epoch": 2, "train_loss": 0.5, "A_correct": 40}.items()
                },
                3,
            )
            self.assertEqual(line, "Epoch 2/3 -- train_loss (mean) 0.5000 | partition A: correct 40")
            self.assertTrue(os.path.getsize(h.png_path) > 0)
        self.assertEqual(partition_sizes(_trainer([[1.0]])), {})


class TestTrainingProgressBar(unittest.TestCase):
    def test_postfix_shows_the_loss(self):
        eng = _trainer([[0.75, 0.75]])
        bar = TrainingProgressBar()
        self.assertEqual(bar.output_transform({"loss": torch.tensor(0.75)}), {"loss": 0.75})
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            bar.attach(eng)
            eng.run([0, 1], max_epochs=1)
        self.assertIn("loss=0.75", err.getvalue())


class TestTensorBoardNotice(unittest.TestCase):
    def test_missing_tensorboard_is_said_once(self):
        out = io.StringIO()
        scripts.tensorboard_available.cache_clear()  # once per process: start from a fresh process's state
        self.addCleanup(scripts.tensorboard_available.cache_clear)
        with (
            mock.patch.object(scripts, "optional_import", return_value=(None, False)),
            contextlib.redirect_stdout(out),
        ):
            self.assertFalse(scripts.tensorboard_available())
            self.assertFalse(scripts.tensorboard_available())
        self.assertEqual(out.getvalue().count("tensorboard is not installed"), 1)
        self.assertIn("[tracking]", out.getvalue())


class TestSeparationWithoutPlantedNoise(unittest.TestCase):
    def test_one_line_no_auc_warnings(self):
        torch.manual_seed(0)
        x = torch.randn(40, 4)
        batches = [{"image": x[i : i + 10], "label": torch.arange(i, i + 10) % 3, "index": torch.arange(i, i + 10)}
                   for i in range(0, 40, 10)]  # fmt: skip
        net = torch.nn.Linear(4, 3)
        h = SampleSeparationHandler(batches, net, noise_group=["correct"] * 40, progress=False, name="sep_test")
        eng = Engine(lambda e, b: None)
        h.attach(eng)
        with self.assertLogs("sep_test", level=logging.INFO) as logs, warnings.catch_warnings():
            warnings.simplefilter("error")  # no "AUC undefined" warning any more
            eng.run([0], max_epochs=3)
        notices = [m for m in logs.output if "no planted noise" in m]
        self.assertEqual(len(notices), 1)
        self.assertEqual(len([m for m in logs.output if "Separation A epoch" in m]), 3)
        self.assertFalse(any("AUC_clean=" in m for m in logs.output))
        self.assertEqual(eng.state.separation_metrics.get("A"), None)


class TestWarningsOnce(unittest.TestCase):
    @staticmethod
    def _warn_each_epoch(engine):
        warnings.warn(f"epoch {engine.state.epoch}: degenerate input handled", UserWarning, stacklevel=1)

    def test_varying_text_shown_once_then_counted(self):
        eng = Engine(lambda e, b: None)
        eng.add_event_handler(Events.EPOCH_COMPLETED, self._warn_each_epoch)
        shown = []
        with (
            warnings.catch_warnings(),
            mock.patch.object(warnings, "showwarning", lambda m, *a, **k: shown.append(str(m))),
            self.assertLogs("monai_qmix.training", level=logging.WARNING) as logs,
        ):
            warnings.simplefilter("default")  # Python's default: repeats of the *same* text hidden
            from monai_qmix.handlers import warnings_once

            with warnings_once() as seen:
                eng.run([0], max_epochs=4)
                warnings.warn("another statement", RuntimeWarning, stacklevel=1)
        self.assertEqual(shown, ["epoch 1: degenerate input handled", "another statement"])
        self.assertEqual(sorted(n for _, n in seen.values()), [0, 3])
        self.assertEqual(len(logs.output), 1)  # only the repeated warning gets a count line
        self.assertIn("UserWarning from test_training_log.py", logs.output[0])
        self.assertIn("repeated 3 more time(s)", logs.output[0])
        self.assertIn("epoch 1: degenerate input handled", logs.output[0])

    def test_filters_still_apply_and_showwarning_restored(self):
        from monai_qmix.handlers import warnings_once

        before = warnings.showwarning
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with self.assertRaisesRegex(UserWarning, "made an error"), warnings_once():
                warnings.warn("made an error", UserWarning, stacklevel=1)
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            with warnings_once():
                for i in range(3):
                    warnings.warn(f"recorded {i}", UserWarning, stacklevel=1)
        self.assertEqual([str(w.message) for w in rec], ["recorded 0"])
        self.assertIs(warnings.showwarning, before)

    def test_run_training_shows_each_warning_once(self):
        eng = Engine(lambda e, b: None)
        eng.add_event_handler(Events.EPOCH_COMPLETED, self._warn_each_epoch)
        eng.run = lambda: Engine.run(eng, [0], max_epochs=3)
        with warnings.catch_warnings(record=True) as rec, self.assertLogs("monai_qmix.training", "WARNING") as logs:
            warnings.simplefilter("default")
            scripts.run_training(eng)
        self.assertEqual([str(w.message) for w in rec], ["epoch 1: degenerate input handled"])
        self.assertIn("repeated 2 more time(s)", logs.output[0])
