# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""End-to-end tests of ``bundles/addons``: a plain MONAI workflow, alone and with ``qmix_addon.json`` merged on top.

One tiny SynthDR folder (APTOS layout, 40 images of 32 px) is shared by all tests. Every run uses a tiny DenseNet
(``DenseNet121`` with 8 initial features, growth 4, two one-layer blocks), 2 epochs, ``num_workers`` 0, and one
warm-up epoch, so the separation runs in epoch 2. The README's command runs in a subprocess, and the README's Python
snippet is executed from the README text itself.
"""

from __future__ import annotations

import csv
import json
import os
import pydoc
import re
import shlex
import subprocess
import sys
import tempfile
import unittest
import warnings
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigWorkflow
from monai.networks.nets import DenseNet121

from monai_qmix.data.synthetic import generate_synthdr
from monai_qmix.handlers import SampleSeparationHandler
from monai_qmix.handlers.separation_loss import SeparationLossHandler
from monai_qmix.losses import SeparationWeightedLoss
from monai_qmix.transforms import LabelNoised, RandFundusDegradationd

REPO = Path(__file__).resolve().parents[2]
ADDONS = REPO / "bundles" / "addons"
PLAIN = ADDONS / "plain_classification" / "configs"
TRAIN, ADDON, README = PLAIN / "train.json", ADDONS / "qmix_addon.json", ADDONS / "README.md"
NUM_IMAGES, BATCH = 40, 8
NUM_TRAIN = NUM_IMAGES - 8  # val_fraction 0.2
TINY_NET = {"network_def#init_features": 8, "network_def#growth_rate": 4, "network_def#block_config": [1, 1]}
TINY = {"image_size": 32, "epochs": 2, "batch_size": BATCH, "num_workers": 0, **TINY_NET}
TINY_QMIX = {"qmix#warmup_epochs": 1, "qmix#progress": False, "qmix#save_plots": False}

_TMP: tempfile.TemporaryDirectory | None = None
DATA = ""


def setUpModule():  # noqa: N802 (unittest API)
    global _TMP, DATA
    _TMP = tempfile.TemporaryDirectory()
    DATA = os.path.join(_TMP.name, "synthdr")
    generate_synthdr(DATA, num=NUM_IMAGES, size=32, seed=0)


def tearDownModule():  # noqa: N802
    if _TMP is not None:
        _TMP.cleanup()


def run_workflow(files: list[Path], bundle_root: str, **overrides) -> ConfigWorkflow:
    """``ConfigWorkflow``: initialize, ``check_properties() == []``, run and finalize."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # MONAI 1.6's advisory warning on config files
        wf = ConfigWorkflow(
            config_file=[str(f) for f in files],
            meta_file=str(PLAIN / "metadata.json"),
            logging_file=str(PLAIN / "logging.conf"),
            workflow_type="train",
            bundle_root=bundle_root,
            dataset_dir=DATA,
            **TINY,
            **overrides,
        )
        wf.initialize()
        missing = wf.check_properties()
        if missing:
            raise AssertionError(f"missing bundle properties: {missing}")
        wf.run()
        wf.finalize()
    return wf


def readme_command() -> list[str]:
    """The README's command that merges the add-on (the one line naming ``qmix_addon.json``)."""
    lines = [ln.strip() for ln in README.read_text().splitlines()]
    cmds = [ln for ln in lines if ln.startswith("python -m monai.bundle run") and "qmix_addon.json" in ln]
    if len(cmds) != 1:
        raise AssertionError(f"expected one add-on command in {README}, found {cmds}")
    return shlex.split(cmds[0])


def readme_snippet() -> str:
    """The Python block that follows the ``<!-- addons-python-snippet -->`` marker in the README."""
    m = re.search(r"<!-- addons-python-snippet -->\s*```python\n(.*?)```", README.read_text(), re.S)
    if m is None:
        raise AssertionError(f"no Python snippet after the marker in {README}")
    return m.group(1)


def tiny_densenet() -> torch.nn.Module:
    kw = {k.split("#")[1]: v for k, v in TINY_NET.items()}
    return DenseNet121(spatial_dims=2, in_channels=3, out_channels=5, **kw)


class TestAddonFiles(unittest.TestCase):
    def test_plain_config_has_no_qmix(self):
        self.assertNotIn("qmix", TRAIN.read_text().lower())  # no import, no target, no expression
        self.assertEqual(json.loads(TRAIN.read_text())["imports"], ["$import csv", "$import os", "$import pathlib"])

    def test_override_keys(self):
        addon, plain = json.loads(ADDON.read_text()), json.loads(TRAIN.read_text())
        self.assertEqual(addon["+imports"], ["$import monai_qmix"])
        for key in addon:  # only "+" merges, "#"-path replacements and the new "qmix" block
            self.assertTrue(key.startswith("+") or "#" in key or key == "qmix", key)
        for key in [k.lstrip("+") for k in addon if k != "qmix"]:  # every overridden id exists in the plain config
            node = plain
            for part in key.split("#"):
                node = node[int(part)] if isinstance(node, list) else node[part]
        targets = [h["_target_"] for h in addon["+train#handlers"]]
        targets += [v["_target_"] for v in addon["qmix"].values() if isinstance(v, dict) and "_target_" in v]
        for t in targets:
            if t.startswith("monai_qmix"):
                self.assertIsNotNone(pydoc.locate(t), t)


class TestPlainWorkflow(unittest.TestCase):
    def test_plain_train_json_runs_alone(self):
        with tempfile.TemporaryDirectory() as tmp:
            wf = run_workflow([TRAIN], tmp)
            self.assertEqual(wf.trainer.state.epoch, 2)
            self.assertIsInstance(wf.trainer.loss_function, torch.nn.CrossEntropyLoss)
            self.assertFalse(hasattr(wf.trainer.state, "separation"))
            self.assertEqual(len(wf.train_dataset), NUM_TRAIN)
            self.assertIn("val_accuracy", wf.parser.get_parsed_content("validate#evaluator").state.metrics)
            self.assertTrue(os.path.isfile(os.path.join(tmp, "models", "model.pt")))


class TestAddonWorkflow(unittest.TestCase):
    def test_merged_config_runs(self):
        with tempfile.TemporaryDirectory() as tmp:
            wf = run_workflow([TRAIN, ADDON], tmp, **TINY_QMIX)
            trainer = wf.trainer
            self.assertEqual(trainer.state.epoch, 2)
            # (a) the noise transforms are in the training pipeline, the items carry their index
            kinds = [type(t) for t in wf.parser.get_parsed_content("train#preprocessing").transforms]
            self.assertIn(LabelNoised, kinds)
            self.assertIn(RandFundusDegradationd, kinds)
            data = wf.parser.get_parsed_content("train#dataset#data")
            self.assertEqual([d["index"] for d in data], list(range(NUM_TRAIN)))
            noise = wf.parser.get_parsed_content("qmix#label_noise")
            flags = [noise(d)["label_noise_flag"] for d in data]
            self.assertGreater(sum(flags), 0)
            # (b) the separation handler ran in epoch 2 over every training sample
            handlers = [type(h) for h in wf.parser.get_parsed_content("train#handlers")]
            self.assertIn(SampleSeparationHandler, handlers)
            self.assertIn(SeparationLossHandler, handlers)
            sep = trainer.state.separation["A"]
            np.testing.assert_array_equal(sep.indices, np.arange(NUM_TRAIN))
            self.assertEqual(sum(sep.counts().values()), NUM_TRAIN)
            self.assertEqual(trainer.state.separation_epoch, {"A": 2})
            self.assertIn("auc_clean", trainer.state.separation_metrics["A"])  # truth: label_noise_flag
            with open(os.path.join(tmp, "models", "separation_A_epoch002.csv")) as f:
                self.assertEqual(len(list(csv.DictReader(f))), NUM_TRAIN)
            # (c) the trainer used the separation-weighted loss, with the split in every batch of epoch 2
            loss = trainer.loss_function
            self.assertIsInstance(loss, SeparationWeightedLoss)
            self.assertIs(loss, wf.parser.get_parsed_content("qmix#loss"))
            per_epoch = -(-NUM_TRAIN // BATCH)
            self.assertEqual((loss.num_calls, loss.num_separated_calls), (2 * per_epoch, per_epoch))
            self.assertTrue(os.path.isfile(os.path.join(tmp, "models", "model.pt")))


class TestReadme(unittest.TestCase):
    def test_readme_command(self):
        cmd = readme_command()
        self.assertEqual(cmd[:5], ["python", "-m", "monai.bundle", "run", "--config_file"])
        self.assertEqual(cmd[5], f"['{TRAIN.relative_to(REPO)}','{ADDON.relative_to(REPO)}']")
        with tempfile.TemporaryDirectory() as tmp:
            cmd[0] = sys.executable
            for k, v in {"bundle_root": tmp, "dataset_dir": DATA, **TINY, **TINY_QMIX}.items():
                cmd += [f"--{k}", json.dumps(v) if isinstance(v, list) else str(v)]
            env = {**os.environ, "OMP_NUM_THREADS": "1"}  # 2 torch threads on 2 shared cores: 20x slower steps
            proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
            self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
            self.assertIn("Separation A epoch 2: correct=", proc.stdout)
            self.assertEqual(proc.stdout.count("Metrics -- val_accuracy"), 2, proc.stdout[-3000:])
            self.assertTrue(os.path.isfile(os.path.join(tmp, "models", "separation_A_epoch002.csv")))
            self.assertTrue(os.path.isfile(os.path.join(tmp, "models", "model.pt")))

    def test_readme_python_snippet(self):
        namespace: dict = {}
        exec(compile(readme_snippet(), str(README), "exec"), namespace)
        with tempfile.TemporaryDirectory() as tmp:
            trainer = namespace["train_with_qmix"](
                DATA, tmp, image_size=32, batch_size=BATCH, epochs=2, warmup_epochs=1, num_workers=0,
                network=tiny_densenet(),
            )  # fmt: skip
            self.assertEqual(trainer.state.epoch, 2)
            self.assertIsInstance(trainer.loss_function, SeparationWeightedLoss)
            self.assertGreater(trainer.loss_function.num_separated_calls, 0)
            self.assertEqual(sum(trainer.state.separation["A"].counts().values()), NUM_TRAIN)
            self.assertTrue(os.path.isfile(os.path.join(tmp, "separation_A_epoch002.csv")))
            self.assertTrue(os.path.isfile(os.path.join(tmp, "model.pt")))


if __name__ == "__main__":
    unittest.main()
