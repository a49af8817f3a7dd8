# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Reliability of the rendered bundles (issue 16): checkpoints that survive interruptions and a resume that continues
exactly, with the best checkpoint kept. Tiny seeded CPU runs (16 images, 32 px, 3 epochs)."""

from __future__ import annotations

import csv
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
from parameterized import parameterized

from monai_qmix.bundles import BUNDLE_SPECS, render_bundle
from monai_qmix.bundles.scripts import InvalidSettings, SettingError, parse_setting
from monai_qmix.bundles.template import AUDIT_SETTINGS, SETTINGS, Setting, hyper_parameters
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
    @classmethod
    def setUpClass(cls) -> None:
        """One dataset and one uninterrupted reference run for every test of the class."""
        cls._tmp = tempfile.TemporaryDirectory()
        cls.data = make_dataset("aptos", os.path.join(cls._tmp.name, "data"), n=16, size=32)
        cls.ref_root = os.path.join(cls._tmp.name, "ref")
        ref = initialized(workflow("aptos", ["train"], "train", bundle_root=cls.ref_root, dataset_dir=cls.data, **RUN))
        cls.ref_metrics = record_metrics(ref)
        run(ref)

    @classmethod
    def tearDownClass(cls) -> None:
        cls._tmp.cleanup()

    def resume_equals_uninterrupted(self, root: str, ref_root: str, data: str, first: dict, ref_metrics: dict) -> None:
        """``--resume auto`` in ``root`` runs epoch 3 only; metrics and final weights equal the run in ``ref_root``."""
        again = initialized(
            workflow("aptos", ["train"], "train", bundle_root=root, dataset_dir=data, resume="auto", **RUN)
        )
        second = record_metrics(again)
        run(again)
        self.assertEqual(sorted(first), [1, 2])
        self.assertEqual(sorted(second), [3])
        self.assertEqual({**first, **second}, ref_metrics)
        final, ref_final = (_load(os.path.join(r, "models", "model_final.pt")) for r in (root, ref_root))
        for net in ("network_a", "network_b"):
            for k, v in ref_final[net].items():
                torch.testing.assert_close(final[net][k], v, rtol=0, atol=0)

    def test_interrupt_then_resume_equals_uninterrupted(self):
        with tempfile.TemporaryDirectory() as tmp:
            data, ref_root, root, ref_metrics = self.data, self.ref_root, os.path.join(tmp, "run"), self.ref_metrics
            self.assertEqual(sorted(ref_metrics), [1, 2, 3])

            # the same run, interrupted (Ctrl-C) in the middle of epoch 3
            wf = initialized(workflow("aptos", ["train"], "train", bundle_root=root, dataset_dir=data, **RUN))
            first = record_metrics(wf)

            # (the two-loader loop sets epoch_length at every epoch start: count the iterations of epoch 3)
            seen = {"end_of_epoch_2": None, "in_epoch_3": 0}

            def interrupt(engine):
                if engine.state.epoch == 3:
                    seen["in_epoch_3"] += 1
                    if seen["in_epoch_3"] == 1:
                        raise KeyboardInterrupt

            def epoch_done(engine):
                if engine.state.epoch == 2:
                    seen["end_of_epoch_2"] = engine.state.iteration

            wf.trainer.add_event_handler(Events.ITERATION_COMPLETED, interrupt)
            wf.trainer.add_event_handler(Events.EPOCH_COMPLETED, epoch_done)
            with self.assertRaises(SystemExit) as cm:
                run(wf)
            self.assertEqual(cm.exception.code, 130)
            self.assertIn("epoch 3", cm.exception.message)
            self.assertIn("--resume auto", cm.exception.message)
            last = _load(os.path.join(root, "models", "model_last.pt"))
            self.assertEqual(last["trainer"]["iteration"], seen["end_of_epoch_2"])  # epoch 2, complete
            self.assertFalse(os.path.exists(os.path.join(root, "models", "model_final.pt")))

            # resume: epoch 3 only, with the same metrics and weights as the uninterrupted run
            self.resume_equals_uninterrupted(root, ref_root, data, first, ref_metrics)
            # model.pt holds the best epoch of the whole run (first maximum of the key metric)
            qwk = [ref_metrics[e]["val_qwk"] for e in (1, 2, 3)]
            best = _load(os.path.join(root, "models", "model.pt"))[SAVER_KEY]
            self.assertEqual(best["best_metric_epoch"], qwk.index(max(qwk)) + 1)
            self.assertAlmostEqual(best["best_metric"], max(qwk))

    @parameterized.expand([["step", Events.ITERATION_COMPLETED], ["fetch", Events.GET_BATCH_STARTED]])
    def test_sigint_within_an_epoch_saves_there_and_resumes_exactly(self, _phase, event):
        """A real SIGINT during a step (or a batch fetch) of epoch 3: the run stops at the end of that step, writes
        model_last.pt there (two-loader loop), and the resumed run equals the uninterrupted one."""
        with tempfile.TemporaryDirectory() as tmp:
            data, ref_root, root, ref_metrics = self.data, self.ref_root, os.path.join(tmp, "run"), self.ref_metrics
            wf = initialized(workflow("aptos", ["train"], "train", bundle_root=root, dataset_dir=data, **RUN))
            first = record_metrics(wf)
            seen = {"in_epoch_3": 0, "length": None}

            def interrupt(engine):
                if engine.state.epoch == 3:
                    seen["in_epoch_3"] += 1
                    seen["length"] = engine.state.epoch_length
                    if seen["in_epoch_3"] == 2:
                        os.kill(os.getpid(), signal.SIGINT)

            wf.trainer.add_event_handler(event, interrupt)
            with self.assertRaises(SystemExit) as cm:
                run(wf)
            self.assertEqual(cm.exception.code, 130)
            self.assertGreater(seen["length"], 2)  # the signal came in the middle of epoch 3
            steps = 2  # a signal during the fetch of step 2 stops the run at the end of step 2
            self.assertIn(f"holds epoch 2 and {steps} step(s) of epoch 3", cm.exception.message)
            last = _load(os.path.join(root, "models", "model_last.pt"))
            self.assertEqual(last["trainer"]["epochs_completed"], 2)
            self.assertEqual(last["trainer"]["iterations_into_epoch"], steps)
            self.assertIs(signal.getsignal(signal.SIGINT), signal.default_int_handler)  # restored

            self.resume_equals_uninterrupted(root, ref_root, data, first, ref_metrics)
            with open(os.path.join(root, "eval", "training_curves.csv")) as f:  # the rows of epochs 1-2 were kept
                self.assertEqual([r["epoch"] for r in csv.DictReader(f)], ["1", "2", "3"])
            with open(os.path.join(root, "eval", "diagnostics", "co_training_diagnostics.csv")) as f:
                self.assertEqual([r["epoch"] for r in csv.DictReader(f)], ["1", "2", "3"])

    def test_second_sigint_stops_at_once(self):
        with tempfile.TemporaryDirectory() as tmp:
            wf = initialized(workflow("aptos", ["train"], "train", bundle_root=tmp, dataset_dir=self.data, **RUN))
            after = []

            def interrupt(engine):
                if engine.state.epoch == 3:
                    os.kill(os.getpid(), signal.SIGINT)  # deferred to the end of the step
                    os.kill(os.getpid(), signal.SIGINT)  # raises here
                    after.append(engine.state.iteration)  # never reached

            wf.trainer.add_event_handler(Events.ITERATION_COMPLETED, interrupt)
            with self.assertRaises(SystemExit) as cm:
                run(wf)
            self.assertEqual(cm.exception.code, 130)
            self.assertEqual(after, [])
            self.assertRegex(cm.exception.message, "model_last.pt holds epoch 2[,;]")  # the step did not end
            self.assertEqual(_load(os.path.join(tmp, "models", "model_last.pt"))["trainer"]["iterations_into_epoch"], 0)


class TestRunTraining(unittest.TestCase):
    def test_other_exception_propagates_and_last_checkpoint_stays(self):
        from ignite.engine import Engine

        from monai_qmix.bundles.scripts import run_training
        from monai_qmix.handlers import AtomicCheckpointSaver

        with tempfile.TemporaryDirectory() as tmp:
            net = torch.nn.Linear(2, 1)

            def step(engine, batch):
                if engine.state.epoch == 2:
                    raise RuntimeError("boom in epoch 2")

            engine = Engine(step)
            saver = AtomicCheckpointSaver(tmp, {"trainer": engine, "net": net})
            saver.attach(engine)
            with self.assertRaisesRegex(RuntimeError, "boom in epoch 2"):
                run_training(_Runner(engine, [0, 1], 3), saver)
            self.assertEqual(sorted(os.listdir(tmp)), ["model_last.pt"])
            self.assertEqual(_load(os.path.join(tmp, "model_last.pt"))["trainer"]["iteration"], 2)
            self.assertIs(signal.getsignal(signal.SIGTERM), signal.SIG_DFL)  # the SIGTERM handler is restored

    def test_sigterm_lost_in_a_finaliser_still_stops_at_the_next_iteration(self):
        from ignite.engine import Engine

        from monai_qmix.bundles.scripts import run_training

        class SignalsOnCollection:
            def __del__(self):  # the handler's raise inside __del__ is printed as "Exception ignored" and lost
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(1000):  # let the interpreter run the Python-level handler here
                    pass

        seen = []

        def step(engine, batch):
            seen.append(engine.state.iteration)
            if engine.state.iteration == 2:
                SignalsOnCollection()  # collected at once (refcount 0)

        engine = Engine(step)
        with self.assertRaises(SystemExit) as cm:
            run_training(_Runner(engine, list(range(10)), 5))
        self.assertEqual(cm.exception.code, 143)
        self.assertIn("Training interrupted (SIGTERM)", cm.exception.message)
        self.assertEqual(seen, [1, 2])  # stopped after the iteration in which the signal was lost
        self.assertIs(signal.getsignal(signal.SIGTERM), signal.SIG_DFL)
        self.assertFalse(engine.has_event_handler(lambda e: None, Events.ITERATION_COMPLETED))


class _Runner:
    """An engine whose ``run()`` takes no arguments, as the bundles' trainer."""

    def __init__(self, engine, data, max_epochs):
        self.engine, self.data, self.max_epochs = engine, data, max_epochs
        self.state = engine.state
        self._event_handlers = engine._event_handlers
        self.add_event_handler = engine.add_event_handler
        self.remove_event_handler = engine.remove_event_handler

    def run(self):
        self.engine.run(self.data, max_epochs=self.max_epochs)
        self.state = self.engine.state


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
            try:
                out, err = proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()  # before the temporary folder is removed under a still-writing run
                out, err = proc.communicate()
                self.fail(f"the run did not stop within 120 s of SIGTERM; its stderr ends with:\n{err[-3000:]}")
            self.assertEqual(proc.returncode, 143, err[-3000:])
            self.assertIn("Training interrupted (SIGTERM)", err)
            self.assertIn("model_last.pt holds epoch", err)
            files = sorted(os.listdir(os.path.join(tmp, "models")))
            self.assertEqual([f for f in files if ".tmp" in f], [])
            for f in files:  # every checkpoint left behind loads
                ckpt = _load(os.path.join(tmp, "models", f))
                self.assertIn("network_a", ckpt)
            self.assertGreaterEqual(_load(str(last))["trainer"]["iteration"], 1)


#: (overrides, text every message must contain) for the train workflow; each is refused at initialize.
BAD_SETTINGS = [
    ({"epoch": 50}, ["unknown setting 'epoch'", "Did you mean 'epochs'?"]),
    ({"resume_ckpt": "x.pt"}, ["unknown setting 'resume_ckpt'", "Did you mean 'resume'?"]),
    ({"epochs": "two"}, ["setting 'epochs': got 'two' (str); expected an integer >= 1"]),
    ({"image_size": "abc"}, ["setting 'image_size': got 'abc'", "an integer >= 8"]),
    ({"gmm_n_init": 0}, ["setting 'gmm_n_init': got 0 (int); expected an integer >= 1"]),
    ({"progress": "maybe"}, ["setting 'progress': got 'maybe'", "true or false"]),
    ({"method": "qmx"}, ["setting 'method'", "Did you mean 'qmix'?"]),
    ({"lr": 0}, ["setting 'lr': got 0", "a number > 0"]),
    ({"val_fraction": 1.5}, ["setting 'val_fraction'", "> 0 and < 1"]),
    ({"norm_mean": [0.5, 0.5]}, ["setting 'norm_mean'", "a list of 3 numbers"]),
    ({"epochs": 3, "warmup_epochs": 3}, ["warmup_epochs < epochs for method='qmix'"]),
    ({"epochs": 2, "warmup_epochs": 5, "method": "dividemix"}, ["method='dividemix'"]),
]


def init_error(name: str, workflow_type: str, files: list[str], **overrides) -> InvalidSettings:
    wf = workflow(name, files, workflow_type, **overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            wf.initialize()
        except InvalidSettings as e:
            return e
    raise AssertionError(f"{overrides} was accepted")


class TestSettings(unittest.TestCase):
    def test_one_table(self):
        # every documented hyper-parameter and every path / setting key of the rendered configs has a spec
        for name in BUNDLE_SPECS:
            self.assertEqual(set(hyper_parameters(BUNDLE_SPECS[name])) - set(SETTINGS), set(), name)
            for k, v in hyper_parameters(BUNDLE_SPECS[name]).items():  # the defaults pass their own spec
                self.assertEqual(parse_setting(k, v, SETTINGS[k]), v, k)
        import json

        train = json.loads(render_bundle("aptos")["configs/train.json"])
        audit = json.loads(render_bundle("synthetic")["configs/audit.json"])
        for key in ("dataset_dir", "output_dir", "ckpt_dir", "resume", "num_classes", "class_names"):
            self.assertIn(key, train)
            self.assertIn(key, SETTINGS)
        for key, spec in AUDIT_SETTINGS.items():
            self.assertIn(key, audit)
            if not (isinstance(audit[key], str) and audit[key].startswith("$")):
                parse_setting(key, audit[key], spec)

    @parameterized.expand(
        [
            (True, True), (False, False), ("false", False), ("False", False), ("TRUE", True), (" yes ", True),
            ("no", False), ("1", True), ("0", False), (1, True), (0, False),
        ]
    )  # fmt: skip
    def test_booleans(self, given, parsed):
        self.assertIs(parse_setting("progress", given, Setting("bool")), parsed)

    @parameterized.expand([("maybe",), ("",), (2,), (None,), ("off",)])
    def test_bad_booleans(self, given):
        with self.assertRaisesRegex(SettingError, "setting 'progress'"):
            parse_setting("progress", given, Setting("bool"))

    def test_numbers_and_null(self):
        self.assertEqual(parse_setting("epochs", "12", SETTINGS["epochs"]), 12)
        self.assertEqual(parse_setting("lr", "1e-3", SETTINGS["lr"]), 0.001)
        self.assertIsNone(parse_setting("noise_preset", "null", SETTINGS["noise_preset"]))
        self.assertEqual(parse_setting("quality_threshold", "auto", AUDIT_SETTINGS["quality_threshold"]), "auto")
        for key, value in (("epochs", 2.5), ("epochs", True), ("lr", float("nan")), ("epochs", None)):
            with self.assertRaisesRegex(SettingError, f"setting '{key}'"):
                parse_setting(key, value, SETTINGS[key])

    @parameterized.expand([(i,) for i in range(len(BAD_SETTINGS))])
    def test_refused_at_initialize(self, i):
        overrides, parts = BAD_SETTINGS[i]
        with tempfile.TemporaryDirectory() as tmp:
            # the dataset folder does not exist: the settings are refused before any data is looked at
            common = {**TINY, "bundle_root": tmp, "dataset_dir": os.path.join(tmp, "none"), **overrides}
            e = init_error("aptos", "train", ["train"], **common)
            for part in parts:
                self.assertIn(part, e.message)
            self.assertFalse(os.path.exists(os.path.join(tmp, "models")))

    def test_all_problems_at_once_and_every_workflow(self):
        with tempfile.TemporaryDirectory() as tmp:
            common = {**TINY, "bundle_root": tmp, "dataset_dir": os.path.join(tmp, "none")}
            e = init_error("synthetic", "train", ["train"], **{**common, "epochs": "two", "fov_crop": "nah"})
            self.assertEqual(len(e.errors), 2)
            self.assertIn("2 invalid setting(s)", e.message)
            self.assertFalse(os.path.exists(os.path.join(tmp, "none")))  # SynthDR was not generated
            for wf_type, files in (("eval", ["train", "evaluate"]), ("infer", ["train", "inference"])):
                e = init_error("ddr", wf_type, files, **{**common, "batch_size": -1})
                self.assertIn("setting 'batch_size': got -1", e.message)
            e = init_error("ddr", "eval", ["train", "evaluate"], **{**common, "eval_splt": "test"})
            self.assertIn("Did you mean 'eval_split'?", e.message)

    def test_export_checks_settings(self):
        from monai.bundle import ckpt_export

        with tempfile.TemporaryDirectory() as tmp:
            fake = os.path.join(tmp, "model.pt")
            torch.save({"network_a": {}}, fake)
            cfg = bundle_files("aptos")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                with self.assertRaises(InvalidSettings) as cm:
                    ckpt_export(
                        net_id="network_def",
                        filepath=os.path.join(tmp, "model.ts"),
                        ckpt_file=fake,
                        key_in_ckpt="network_a",
                        meta_file=cfg["metadata"],
                        config_file=cfg["train"],
                        bundle_root=tmp,
                        network="resnet5",
                    )
            self.assertIn("Did you mean 'resnet50'?", cm.exception.message)

    def test_booleans_parsed_in_the_config(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = make_dataset("aptos", os.path.join(tmp, "data"), n=12, size=32)
            common = {**TINY, "bundle_root": tmp, "dataset_dir": data, "val_fraction": 0.25}
            wf = initialized(workflow("aptos", ["train"], "train", **{**common, "progress": "false"}))
            self.assertIs(wf.parser.get_parsed_content("progress"), False)
            handlers = wf.parser.get_parsed_content("train#handlers")
            self.assertFalse([h for h in handlers if type(h).__name__ == "ProgressBar"])
            wf = initialized(workflow("aptos", ["train"], "train", **{**common, "progress": "yes", "fov_crop": "1"}))
            self.assertTrue([h for h in wf.parser.get_parsed_content("train#handlers") if "ProgressBar" in str(h)])
            names = [type(t).__name__ for t in wf.parser.get_parsed_content("train#deterministic_transforms")]
            self.assertIn("CropFundusFOVd", names)

    def test_labels_and_batch(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = make_dataset("aptos", os.path.join(tmp, "data"), n=12, size=32)
            common = {**TINY, "bundle_root": tmp, "dataset_dir": data, "val_fraction": 0.25}
            wf = workflow("aptos", ["train"], "train", **{**common, "num_classes": 3})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                with self.assertRaises(RuntimeError) as cm:
                    wf.initialize()
                    wf.run()
            msg = str(cm.exception.__cause__)
            self.assertIn("num_classes=3", msg)
            self.assertIn("--num_classes 5", msg)
            self.assertIn("has label 3", msg)
            wf = workflow("aptos", ["train"], "train", **{**common, "batch_size": 16})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                with self.assertRaises(RuntimeError) as cm:
                    wf.initialize()
                    wf.run()
            msg = str(cm.exception.__cause__)
            self.assertIn("batch_size=16", msg)
            self.assertIn("has 10 image(s)", msg)


class TestImages(unittest.TestCase):
    def test_unreadable_training_image_stops_with_one_line(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = make_dataset("aptos", os.path.join(tmp, "data"), n=16, size=32)
            wf = initialized(workflow("aptos", ["train"], "train", bundle_root=tmp, dataset_dir=data, **RUN))
            victim = wf.parser.get_parsed_content("datalists")["train"][0]["image"]

            def corrupt(engine):  # the file breaks after epoch 1 (e.g. a network share that went away)
                with open(victim, "wb") as f:
                    f.write(b"\x89PNG broken")

            wf.trainer.add_event_handler(Events.EPOCH_COMPLETED(once=1), corrupt)
            with self.assertRaises(SystemExit) as cm:
                run(wf)
            msg = str(cm.exception.code)
            self.assertEqual(len(msg.splitlines()), 1)
            self.assertIn(f"Unreadable image '{victim}': not a readable image", msg)
            self.assertIn("Training stopped in epoch 2", msg)
            self.assertIn("model_last.pt holds epoch 1", msg)
            self.assertEqual(_load(os.path.join(tmp, "models", "model_last.pt"))["trainer"]["iteration"], 2)  # epoch 1

    def test_unreadable_image_within_an_epoch_saves_there(self):
        """Images that break after step 1 of epoch 2: the two-loader loop writes model_last.pt after that step; once
        the images are back, --resume auto finishes the run from there."""
        import shutil

        with tempfile.TemporaryDirectory() as tmp:
            data = make_dataset("aptos", os.path.join(tmp, "data"), n=16, size=32)
            backup = shutil.copytree(os.path.join(data, "train_images"), os.path.join(tmp, "backup"))
            wf = initialized(workflow("aptos", ["train"], "train", bundle_root=tmp, dataset_dir=data, **RUN))
            images = [it["image"] for it in wf.parser.get_parsed_content("datalists")["train"]]
            steps = []

            def corrupt(engine):
                if engine.state.epoch == 2:
                    steps.append(engine.state.iteration)
                    if len(steps) == 1:
                        for path in images:
                            with open(path, "wb") as f:
                                f.write(b"\x89PNG broken")

            wf.trainer.add_event_handler(Events.ITERATION_COMPLETED, corrupt)
            with self.assertRaises(SystemExit) as cm:
                run(wf)
            msg = str(cm.exception.code)
            self.assertIn("Unreadable image", msg)
            self.assertIn("model_last.pt holds epoch 1 and 1 step(s) of epoch 2", msg)
            last = _load(os.path.join(tmp, "models", "model_last.pt"))
            self.assertEqual((last["trainer"]["epochs_completed"], last["trainer"]["iterations_into_epoch"]), (1, 1))
            shutil.rmtree(os.path.join(data, "train_images"))
            shutil.copytree(backup, os.path.join(data, "train_images"))
            again = initialized(
                workflow("aptos", ["train"], "train", bundle_root=tmp, dataset_dir=data, resume="auto", **RUN)
            )
            metrics = record_metrics(again)
            run(again)
            self.assertEqual(sorted(metrics), [2, 3])
            self.assertEqual(_load(os.path.join(tmp, "models", "model_final.pt"))["trainer"]["epochs_completed"], 3)

    def test_unreadable_image_with_workers_no_traceback(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = make_dataset("aptos", os.path.join(tmp, "data"), n=16, size=32)
            bad = os.path.join(data, "train_images", "img005.png")
            open(bad, "wb").close()
            cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", bundle_files("aptos")["train"]]
            cmd += ["--bundle_root", tmp, "--dataset_dir", data]
            for k, v in {**RUN, "num_workers": 2}.items():
                cmd += [f"--{k}", str(v)]
            env = {**os.environ, "PYTHONPATH": str(REPO)}
            proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
            self.assertEqual(proc.returncode, 1, proc.stderr[-3000:])
            self.assertNotIn("Traceback", proc.stdout + proc.stderr)
            self.assertIn(f"Unreadable image '{bad}': empty file (0 bytes).", proc.stderr.strip().splitlines()[-1])

    def test_inference_predicts_readable_and_lists_failures(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = make_dataset("aptos", os.path.join(tmp, "data"), n=12, size=32)
            common = {**TINY, "bundle_root": tmp, "dataset_dir": data, "val_fraction": 0.25, "method": "standard"}
            run(initialized(workflow("aptos", ["train"], "train", **common)))
            images = os.path.join(tmp, "infer")
            make_dataset("aptos", images, n=3, size=40)
            bad = os.path.join(images, "train_images", "zz_fake.png")
            with open(bad, "w") as f:
                f.write("not an image")
            wf = initialized(workflow("aptos", ["train", "inference"], "infer", input_dir=images, **common))
            with self.assertRaises(SystemExit) as cm:
                run(wf)
            msg = str(cm.exception.code)
            self.assertIn("1 of 4 images could not be read", msg)
            self.assertIn("predictions_failed.csv", msg)
            import csv

            with open(os.path.join(tmp, "eval", "predictions.csv")) as f:
                rows = list(csv.reader(f))
            self.assertEqual(len(rows), 4)  # header + the 3 readable images
            self.assertNotIn(bad, [r[0] for r in rows])
            with open(os.path.join(tmp, "eval", "predictions_failed.csv")) as f:
                failed = list(csv.reader(f))
            self.assertEqual(failed[0], ["image", "reason"])
            self.assertEqual(failed[1][0], bad)
            self.assertTrue(failed[1][1].startswith("not a readable image (UnidentifiedImageError"), failed[1][1])
            # all readable: no failure file, exit normally
            os.remove(bad)
            run(initialized(workflow("aptos", ["train", "inference"], "infer", input_dir=images, **common)))
            self.assertFalse(os.path.exists(os.path.join(tmp, "eval", "predictions_failed.csv")))


class TestEvalCheckpoint(unittest.TestCase):
    def test_mismatch_named_in_one_line(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = make_dataset("aptos", os.path.join(tmp, "data"), n=12, size=32)
            common = {**TINY, "bundle_root": tmp, "dataset_dir": data, "val_fraction": 0.25}
            files = ["train", "evaluate"]
            with self.assertRaises(SystemExit) as cm:
                run(initialized(workflow("aptos", files, "eval", **common)))
            self.assertIn("ckpt_path: no checkpoint", str(cm.exception.code))
            run(initialized(workflow("aptos", ["train"], "train", **{**common, "method": "standard"})))
            ckpt = os.path.join(tmp, "models", "model.pt")
            with self.assertRaises(SystemExit) as cm:  # a one-network checkpoint evaluated as QMix
                run(initialized(workflow("aptos", files, "eval", **common)))
            msg = str(cm.exception.code)
            self.assertIn(f"checkpoint '{ckpt}' has no network_b", msg)
            self.assertIn("--method standard", msg)
            with self.assertRaises(SystemExit) as cm:  # another network
                run(
                    initialized(
                        workflow("aptos", files, "eval", **{**common, "method": "standard", "network": "resnet10"})
                    )
                )
            msg = str(cm.exception.code)
            self.assertIn("network_a does not fit the configured network (network='resnet10'", msg)
            self.assertEqual(len(msg.splitlines()), 1)
            ev = run_ok(workflow("aptos", files, "eval", **{**common, "method": "standard"}))
            self.assertIn("val_qwk", ev.evaluator.state.metrics)


def run_ok(wf):
    initialized(wf)
    run(wf)
    return wf


if __name__ == "__main__":
    unittest.main()
