# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Reliability of the rendered bundles (issue 16): checkpoints that survive interruptions and a resume that continues
exactly, with the best checkpoint kept. Tiny seeded CPU runs (16 images, 32 px, 3 epochs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import warnings
from pathlib import Path

import torch
from ignite.engine import Events

from monai_qmix.handlers.checkpoint import SAVER_KEY
from tests.bundle.layouts import make_dataset
from tests.bundle.test_bundles import REPO, TINY, bundle_files, initialized, workflow

RUN = {**TINY, "epochs": 3, "warmup_epochs": 1, "val_fraction": 0.25}


def _load(path: str) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def record_metrics(wf) -> dict[int, dict[str, float]]:
    """Validation metrics of every epoch of a workflow's run."""
    out: dict[int, dict[str, float]] = {}
    ev = wf.parser.get_parsed_content("validate#evaluator")
    ev.add_event_handler(Events.EPOCH_COMPLETED, lambda e: out.update({e.state.epoch: dict(e.state.metrics)}))
    return out


def run(wf) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        wf.run()


class TestResume(unittest.TestCase):
    def test_interrupt_then_resume_equals_uninterrupted(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = make_dataset("aptos", os.path.join(tmp, "data"), n=16, size=32)
            ref_root, root = os.path.join(tmp, "ref"), os.path.join(tmp, "run")
            ref = initialized(workflow("aptos", ["train"], "train", bundle_root=ref_root, dataset_dir=data, **RUN))
            ref_metrics = record_metrics(ref)
            run(ref)
            self.assertEqual(sorted(ref_metrics), [1, 2, 3])

            # the same run, interrupted (Ctrl-C) in the middle of epoch 3
            wf = initialized(workflow("aptos", ["train"], "train", bundle_root=root, dataset_dir=data, **RUN))
            first = record_metrics(wf)

            def interrupt(engine):
                raise KeyboardInterrupt

            wf.trainer.add_event_handler(
                Events.ITERATION_COMPLETED(once=2 * wf.trainer.state.epoch_length + 1), interrupt
            )
            with self.assertRaises(SystemExit) as cm:
                run(wf)
            self.assertEqual(cm.exception.code, 130)
            self.assertIn("epoch 3", cm.exception.message)
            self.assertIn("--resume auto", cm.exception.message)
            last = _load(os.path.join(root, "models", "model_last.pt"))
            self.assertEqual(last["trainer"]["iteration"], 2 * wf.trainer.state.epoch_length)  # epoch 2, complete
            self.assertFalse(os.path.exists(os.path.join(root, "models", "model_final.pt")))

            # resume: epoch 3 only, with the same metrics as the uninterrupted run
            again = initialized(
                workflow("aptos", ["train"], "train", bundle_root=root, dataset_dir=data, resume="auto", **RUN)
            )
            second = record_metrics(again)
            run(again)
            self.assertEqual(sorted(first), [1, 2])
            self.assertEqual(sorted(second), [3])
            self.assertEqual({**first, **second}, ref_metrics)
            for k, v in _load(os.path.join(ref_root, "models", "model_final.pt"))["network_a"].items():
                torch.testing.assert_close(_load(os.path.join(root, "models", "model_final.pt"))["network_a"][k], v)
            # model.pt holds the best epoch of the whole run (first maximum of the key metric)
            qwk = [ref_metrics[e]["val_qwk"] for e in (1, 2, 3)]
            best = _load(os.path.join(root, "models", "model.pt"))[SAVER_KEY]
            self.assertEqual(best["best_metric_epoch"], qwk.index(max(qwk)) + 1)
            self.assertAlmostEqual(best["best_metric"], max(qwk))


class TestSigterm(unittest.TestCase):
    def test_sigterm_keeps_loadable_checkpoints(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = make_dataset("aptos", os.path.join(tmp, "data"), n=16, size=32)
            cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", bundle_files("aptos")["train"]]
            cmd += ["--bundle_root", tmp, "--dataset_dir", data, "--epochs", "200", "--warmup_epochs", "1"]
            for k, v in {**TINY, "val_fraction": 0.25}.items():
                if k != "epochs":
                    cmd += [f"--{k}", str(v)]
            env = {**os.environ, "PYTHONPATH": str(REPO)}
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            last = Path(tmp, "models", "model_last.pt")
            deadline = time.time() + 120
            while not last.exists() and proc.poll() is None and time.time() < deadline:
                time.sleep(0.2)
            time.sleep(0.5)  # somewhere in a later epoch, possibly during a save
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=120)
            self.assertEqual(proc.returncode, 143, err[-3000:])
            self.assertIn("Training interrupted (SIGTERM)", err)
            self.assertIn("model_last.pt holds epoch", err)
            files = sorted(os.listdir(os.path.join(tmp, "models")))
            self.assertEqual([f for f in files if ".tmp" in f], [])
            for f in files:  # every checkpoint left behind loads
                ckpt = _load(os.path.join(tmp, "models", f))
                self.assertIn("network_a", ckpt)
            self.assertGreaterEqual(_load(str(last))["trainer"]["iteration"], 1)


if __name__ == "__main__":
    unittest.main()
