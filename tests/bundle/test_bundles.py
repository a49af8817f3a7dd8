# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Smoke tests of every rendered bundle (the model-zoo pattern) on tiny folders in each dataset's real layout.

Every bundle: ``ConfigWorkflow`` (train and evaluate) with tiny overrides (32 px, ``small_cnn``): ``initialize()``,
``check_properties() == []``, the datalists its reader builds from the tiny folder and one preprocessed sample.
Representative bundles (chosen by what differs: ungradable Mis-L + test split (DDR), 8 unordered classes +
macro-F1 + xlsx (ODIR), single-channel images (DRAC), the three methods (APTOS), the synthetic default) run the
full chain ``run()`` / ``finalize()`` → ``evaluate.json`` → ``inference.json`` on the checkpoint they wrote.
Separately: the rendering check, the fail-fast dataset message, ``verify_metadata`` offline, ``ckpt_export`` to
TorchScript (scripted) and the synthetic bundle's README command in a subprocess.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import unittest
import warnings
from pathlib import Path

import torch
from monai.bundle import ConfigWorkflow
from parameterized import parameterized

from monai_qmix.bundles import BUNDLE_SPECS, SYNTHETIC_COMMAND, check_bundles, render_bundle
from monai_qmix.bundles.scripts import DatasetNotFoundError, build_datalists
from monai_qmix.data import DATASETS
from monai_qmix.networks import QMixNet
from tests.bundle.layouts import make_dataset

REPO = Path(__file__).resolve().parents[2]
BUNDLES = REPO / "bundles"
TINY = {
    "epochs": 1,
    "warmup_epochs": 0,  # warmup_epochs < epochs is required for the two-network methods
    "image_size": 32,
    "batch_size": 4,
    "num_workers": 0,
    "network": "small_cnn",
    "progress": False,
}
#: bundles whose full train -> evaluate -> infer chain runs (the others: initialize + reading + one sample).
CHAIN = {"ddr": 1, "odir": 2, "drac": 1}  # epochs (ODIR: warm-up + one separated epoch with 8 classes)


def reader(name: str) -> str:
    return "aptos" if name == "synthetic" else name


def bundle_files(name: str) -> dict[str, str]:
    root = BUNDLES / f"qmix_{name}" / "configs"
    return {k: str(root / f"{k}.json") for k in ("train", "evaluate", "inference", "multi_gpu_train", "metadata")}


def workflow(name: str, files: list[str], workflow_type: str, **overrides) -> ConfigWorkflow:
    cfg = bundle_files(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # MONAI 1.6's advisory warning on config files
        return ConfigWorkflow(
            config_file=[cfg[f] for f in files],
            meta_file=cfg["metadata"],
            logging_file=str(BUNDLES / f"qmix_{name}" / "configs" / "logging.conf"),
            workflow_type=workflow_type,
            **overrides,
        )


def initialized(wf: ConfigWorkflow) -> ConfigWorkflow:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        wf.initialize()
        missing = wf.check_properties()
    if missing:
        raise AssertionError(f"missing bundle properties: {missing}")
    return wf


def run_workflow(wf: ConfigWorkflow) -> ConfigWorkflow:
    initialized(wf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        wf.run()
        wf.finalize()
    return wf


def check_eval_and_inference(test: unittest.TestCase, name: str, tmp: str, **common) -> None:
    """``evaluate.json`` and ``inference.json`` on the checkpoint of a training run in ``tmp``."""
    ev = run_workflow(workflow(name, ["train", "evaluate"], "eval", **common))
    key = "val_macro_f1" if name == "odir" else "val_qwk"
    test.assertIn(key, ev.evaluator.state.metrics)
    test.assertTrue(os.path.isfile(os.path.join(tmp, "eval", "metrics.csv")))

    images = os.path.join(tmp, "infer")
    make_dataset("aptos", images, n=3, size=40)
    run_workflow(workflow(name, ["train", "inference"], "infer", input_dir=images, **common))
    with open(os.path.join(tmp, "eval", "predictions.csv")) as f:
        rows = list(csv.reader(f))
    classes = DATASETS[reader(name)].classes
    k = len(classes)
    test.assertEqual(len(rows), 4)
    test.assertEqual(rows[0], ["image", *[f"prob_{c}" for c in classes], "pred", "pred_name"])
    test.assertAlmostEqual(sum(float(x) for x in rows[1][1 : k + 1]), 1.0, places=4)
    test.assertIn(int(rows[1][k + 1]), range(k))


class TestRendering(unittest.TestCase):
    def test_committed_bundles_equal_rendering(self):
        bad = check_bundles(BUNDLES)
        self.assertEqual(bad, [], f"run `python -m monai_qmix.bundles render`; stale files: {bad}")

    def test_every_dataset_has_a_bundle(self):
        self.assertEqual(set(BUNDLE_SPECS) - {"synthetic"}, set(DATASETS))
        files = render_bundle("aptos")
        train = json.loads(files["configs/train.json"])
        for key in ("dataset_dir", "output_dir", "image_size", "batch_size", "epochs", "warmup_epochs", "method"):
            self.assertIn(key, train)
        for key in ("network", "omega0", "lambda_c", "tau", "noise_preset"):
            self.assertIn(key, train)
        self.assertEqual((train["image_size"], train["batch_size"], train["epochs"]), (384, 16, 100))
        self.assertEqual((train["warmup_epochs"], train["lr"], train["network"]), (10, 0.001, "resnet50"))
        eyeq = json.loads(render_bundle("eyeq")["configs/train.json"])
        self.assertEqual((eyeq["omega0"], eyeq["lambda_c"]), (0.8, 0.0))

    def test_full_dotted_targets(self):
        def targets(obj):
            if isinstance(obj, dict):
                if "_target_" in obj:
                    yield obj["_target_"]
                for v in obj.values():
                    yield from targets(v)
            elif isinstance(obj, list):
                for v in obj:
                    yield from targets(v)

        for name in BUNDLE_SPECS:
            for rel, text in render_bundle(name).items():
                if rel.endswith(".json") and "schema" not in rel:
                    for t in targets(json.loads(text)):
                        self.assertIn(".", t, f"{name}/{rel}: bare _target_ {t!r}")

    def test_cli_check(self):
        from monai_qmix.bundles.render import main

        with tempfile.TemporaryDirectory() as tmp:
            self.assertEqual(main(["render", "--root", tmp, "--only", "drac"]), 0)
            self.assertEqual(main(["render", "--check", "--root", tmp, "--only", "drac"]), 0)
            Path(tmp, "qmix_drac", "configs", "train.json").write_text("{}")
            self.assertEqual(main(["render", "--check", "--root", tmp, "--only", "drac"]), 1)


class TestDatasetDir(unittest.TestCase):
    @parameterized.expand([("missing",), ("empty",), ("wrong",)])
    def test_clear_message(self, case):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "aptos")
            if case != "missing":
                os.makedirs(path)
            if case == "wrong":
                Path(path, "readme.txt").write_text("not the dataset")
            with self.assertRaises(DatasetNotFoundError) as cm:
                build_datalists("aptos", path)
            msg = str(cm.exception)
            for part in (os.path.abspath(path), "train.csv", "kaggle.com", SYNTHETIC_COMMAND):
                self.assertIn(part, msg)

    def test_fails_at_initialize(self):
        with tempfile.TemporaryDirectory() as tmp:
            wf = workflow("ddr", ["train"], "train", bundle_root=tmp, dataset_dir=os.path.join(tmp, "none"), **TINY)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                with self.assertRaises(RuntimeError) as cm:
                    wf.initialize()
            self.assertIsInstance(cm.exception.__cause__, DatasetNotFoundError)
            self.assertIn("DR_grading", str(cm.exception.__cause__))


class TestEveryBundle(unittest.TestCase):
    @parameterized.expand([(n,) for n in BUNDLE_SPECS])
    def test_initialize_and_read(self, name):
        with tempfile.TemporaryDirectory() as tmp:
            data = make_dataset(name, os.path.join(tmp, "data"), n=12, size=32)
            common = {"bundle_root": tmp, "dataset_dir": data, "val_fraction": 0.25, **TINY}
            k = DATASETS[reader(name)].num_classes
            wf = initialized(workflow(name, ["train"], "train", **common))
            lists = wf.parser.get_parsed_content("datalists")
            train, val = lists["train"], lists["val"]
            self.assertGreater(len(train), 0)
            self.assertGreater(len(val), 0)
            for it in train + val:
                self.assertTrue(os.path.isfile(it["image"]), it["image"])
                self.assertIn(int(it["label"]), range(k))  # ungradable: a random grade (train) or left out (val)
            self.assertEqual([it["index"] for it in train], list(range(len(train))))
            self.assertFalse({it["image"] for it in train} & {it["image"] for it in val})
            self.assertEqual(len(wf.train_dataset), len(train))
            sample = wf.train_dataset[0]  # the reader's file through the training transforms: 4 views, 3 channels
            for view in ("image_w1", "image_w2", "image_s1", "image_s2"):
                self.assertEqual(tuple(sample[view].shape), (3, 32, 32))
            if name == "synthetic":  # per-image standardisation of every view
                self.assertLess(float(sample["image_s1"].mean(dim=(1, 2)).abs().max()), 1e-4)

            ev = initialized(workflow(name, ["train", "evaluate"], "eval", **common))
            items = ev.parser.get_parsed_content("validate#dataset#data")
            self.assertGreater(len(items), 0)
            for it in items:
                self.assertTrue(os.path.isfile(it["image"]), it["image"])
                self.assertIn(int(it["label"]), range(k))
            split = ev.parser.get_parsed_content("eval_split")
            if split is None:
                self.assertEqual([it["image"] for it in items], [it["image"] for it in val])
            else:
                self.assertFalse({it["image"] for it in items} & {it["image"] for it in train})


class TestBundleWorkflows(unittest.TestCase):
    @parameterized.expand(list(CHAIN.items()))
    def test_train_evaluate_infer(self, name, epochs):
        with tempfile.TemporaryDirectory() as tmp:
            data = make_dataset(name, os.path.join(tmp, "data"), n=12, size=32)
            common = {"bundle_root": tmp, "dataset_dir": data, "val_fraction": 0.25, **TINY, "epochs": epochs}
            common["warmup_epochs"] = epochs - 1  # the last epoch separates the samples
            wf = run_workflow(workflow(name, ["train"], "train", **common))
            self.assertEqual(wf.trainer.state.epoch, epochs)
            self.assertEqual(sorted(getattr(wf.trainer.state, "separation", None) or []), ["A", "B"])
            ckpt = torch.load(os.path.join(tmp, "models", "model.pt"), map_location="cpu", weights_only=True)
            self.assertTrue({"network_a", "network_b", "optimizer_a", "trainer", "rng"} <= set(ckpt))
            self.assertTrue(os.path.isfile(os.path.join(tmp, "models", "model_final.pt")))
            with open(os.path.join(tmp, "eval", "training_curves.csv")) as f:  # one row per epoch, loss + val metrics
                rows = list(csv.DictReader(f))
            self.assertEqual([int(r["epoch"]) for r in rows], list(range(1, epochs + 1)))
            self.assertTrue({"train_loss", "lr", "val_qwk"} <= set(rows[0]))
            self.assertTrue(all(math.isfinite(float(r["train_loss"])) for r in rows))
            self.assertTrue(os.path.isfile(os.path.join(tmp, "eval", "training_curves.png")))
            check_eval_and_inference(self, name, tmp, **common)


class TestMethodsAndExport(unittest.TestCase):
    @parameterized.expand([("qmix", 2), ("dividemix", 2), ("standard", 1)])
    def test_methods_with_separation(self, method, epochs):
        with tempfile.TemporaryDirectory() as tmp:
            data = make_dataset("aptos", os.path.join(tmp, "data"), n=16, size=32)
            over = {**TINY, "epochs": epochs, "warmup_epochs": 1, "method": method, "lambda_c": 0.05}
            wf = run_workflow(workflow("aptos", ["train"], "train", bundle_root=tmp, dataset_dir=data, **over))
            sep = getattr(wf.trainer.state, "separation", None)
            if method == "standard":
                self.assertIsNone(wf.trainer.network_b)
            else:
                self.assertEqual(sorted(sep), ["A", "B"])
                self.assertEqual(len(sep["A"].groups), len(wf.train_dataset))
                # co-training diagnostics, one row per epoch (aptos has no known true labels: the given ones)
                with open(os.path.join(tmp, "eval", "diagnostics", "co_training_diagnostics.csv")) as f:
                    rows = list(csv.DictReader(f))
                self.assertEqual([r["epoch"] for r in rows], [str(e + 1) for e in range(epochs)])
                self.assertEqual(rows[-1]["reference"], "given")
                self.assertIn("val_qwk", rows[-1])
                self.assertTrue(os.path.isfile(os.path.join(tmp, "eval", "diagnostics", "group_makeup.csv")))
            self.assertEqual(os.path.isdir(os.path.join(tmp, "eval", "diagnostics")), method != "standard")
            ckpt = torch.load(os.path.join(tmp, "models", "model_final.pt"), map_location="cpu", weights_only=True)
            self.assertEqual("network_b" in ckpt, method != "standard")
            self.assertEqual("separation" in ckpt, method != "standard")
            if method == "qmix":  # export network A to TorchScript (scripted, as the README command) and predict
                from monai.bundle import ckpt_export

                ts = os.path.join(tmp, "models", "model.ts")
                cfg = bundle_files("aptos")
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    ckpt_export(
                        net_id="network_def",
                        filepath=ts,
                        ckpt_file=os.path.join(tmp, "models", "model.pt"),
                        key_in_ckpt="network_a",
                        meta_file=cfg["metadata"],
                        config_file=cfg["train"],
                        bundle_root=tmp,
                        network="small_cnn",
                        dataset_dir=data,
                    )
                net = torch.jit.load(ts, map_location="cpu")
                self.assertIsInstance(net, torch.jit.ScriptModule)
                x = torch.rand(2, 3, 32, 32)
                out = net(x)
                self.assertEqual(tuple(out.shape), (2, 5))
                ref = QMixNet(num_classes=5, backbone="small_cnn")
                best = torch.load(os.path.join(tmp, "models", "model.pt"), map_location="cpu", weights_only=True)
                ref.load_state_dict(best["network_a"])
                with torch.no_grad():
                    torch.testing.assert_close(out, ref.eval()(x), rtol=1e-4, atol=1e-4)


class TestMetadata(unittest.TestCase):
    @parameterized.expand([(n,) for n in BUNDLE_SPECS])
    def test_verify_metadata_offline(self, name):
        from monai.bundle import verify_metadata

        root = BUNDLES / f"qmix_{name}" / "configs"
        verify_metadata(meta_file=str(root / "metadata.json"), filepath=str(root / "schema.json"))
        meta = json.loads((root / "metadata.json").read_text())
        self.assertIn("QMix", " ".join(meta["references"]))
        self.assertEqual(len(meta["label_classes"]), DATASETS[reader(name)].num_classes)


class TestPinnedVersions(unittest.TestCase):
    """metadata.json records the reference environment of ``monai_qmix/bundles/pinned_versions.txt``."""

    def test_metadata_records_the_pins(self):
        from monai_qmix.bundles.template import PINNED_VERSIONS

        for name in BUNDLE_SPECS:
            meta = json.loads((BUNDLES / f"qmix_{name}" / "configs" / "metadata.json").read_text())
            self.assertEqual(meta["monai_version"], PINNED_VERSIONS["monai"])
            self.assertEqual(meta["pytorch_version"], PINNED_VERSIONS["torch"])
            self.assertEqual(meta["numpy_version"], PINNED_VERSIONS["numpy"])
            for k, v in meta["required_packages_version"].items():
                self.assertEqual(v, PINNED_VERSIONS[k], f"qmix_{name}: {k}")

    def test_pins_satisfy_the_requirements(self):
        from importlib.metadata import requires

        from packaging.requirements import Requirement

        from monai_qmix.bundles.template import PINNED_VERSIONS

        checked = 0
        for line in requires("monai_qmix") or []:
            req = Requirement(line)
            if req.marker is None and req.name.lower() in PINNED_VERSIONS:
                self.assertIn(PINNED_VERSIONS[req.name.lower()], req.specifier, f"{req} vs the pinned version")
                checked += 1
        self.assertGreaterEqual(checked, 4)  # monai, pytorch-ignite, fire, scikit-learn, numpy, pillow

    @unittest.skipUnless(sys.version_info[:2] == (3, 11), "the pins apply on Python 3.11, the reference interpreter")
    def test_installed_versions_are_the_pins(self):
        from importlib.metadata import version

        from monai_qmix.bundles.template import PINNED_VERSIONS, PINNED_VERSIONS_FILE

        for name, pinned in PINNED_VERSIONS.items():
            if name == "monai_qmix":
                continue
            installed = version(name).split("+")[0]  # torch 2.13.0+cpu
            self.assertEqual(
                installed,
                pinned,
                f"{name} {installed} is installed, {pinned} is pinned in {PINNED_VERSIONS_FILE}: this environment is "
                "not the reference one (bash scripts/setup_env.sh installs it; or update the pins and re-render).",
            )

    def test_malformed_pin_names_the_line(self):
        from monai_qmix.bundles.template import read_pinned_versions

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp, "pins.txt")
            path.write_text("# comment\nmonai==1.6.1\nnumpy>=2\n")
            with self.assertRaisesRegex(ValueError, r"pins.txt, line 3: got 'numpy>=2'; expected 'name==version'"):
                read_pinned_versions(path)


class TestSyntheticReadmeCommand(unittest.TestCase):
    def test_readme_command(self):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = SYNTHETIC_COMMAND.split() + ["--bundle_root", tmp, "--synthdr_num", "24", "--synthdr_size", "32"]
            cmd += ["--epochs", "2", "--warmup_epochs", "1", "--image_size", "32", "--batch_size", "8"]
            cmd += ["--progress", "False", "--val_fraction", "0.25"]
            cmd[0] = sys.executable
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
            self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
            self.assertEqual(proc.stdout.count("Metrics --"), 2, proc.stdout[-3000:])
            self.assertIn("val_qwk", proc.stdout)
            self.assertTrue(os.path.isfile(os.path.join(tmp, "data", "synthdr", "train.csv")))
            self.assertTrue(os.path.isfile(os.path.join(tmp, "models", "model.pt")))
            # the checkpoint of the README run through evaluate.json and inference.json
            common = {"bundle_root": tmp, "image_size": 32, "batch_size": 8, "val_fraction": 0.25, "num_workers": 0}
            check_eval_and_inference(self, "synthetic", tmp, **common, progress=False)


if __name__ == "__main__":
    unittest.main()
