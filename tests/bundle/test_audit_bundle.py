# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""``configs/audit.json`` of the rendered bundles, run with ``ConfigWorkflow`` on tiny data (32 px, 2 folds, 1 epoch).

* synthetic: SynthDR is generated on the first run (as by ``train.json``), every image gets one ``audit.csv`` row;
* DDR (real layout, with an ungradable grade-5 image): the ungradable item is reported, not audited; then the
  bundle's own ``models/model.pt`` (``train.json``, 1 tiny epoch) is audited with ``checkpoint``: the audit's
  P(given label) equals network A's softmax on the bundle's validation preprocessing.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
import unittest
import warnings
from pathlib import Path

import torch
from monai.bundle import ConfigWorkflow

from monai_qmix.networks import QMixNet
from tests.bundle.layouts import make_dataset

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
TINY_AUDIT = {"folds": 2, "epochs": 1, "image_size": 32, "backbone": "tiny", "progress": False, "top_k": 8}
OUTPUTS = ("audit.csv", "report.html", "summary.json", "suspects_mis_h.png", "suspects_mis_l.png")


def run_config(name: str, config: str, **overrides) -> ConfigWorkflow:
    root = BUNDLES / f"qmix_{name}" / "configs"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI's advisory warning on config files; tiny-data warnings
        wf = ConfigWorkflow(
            config_file=str(root / f"{config}.json"),
            meta_file=str(root / "metadata.json"),
            logging_file=str(root / "logging.conf"),
            workflow_type=None,
            **overrides,
        )
        wf.initialize()
        wf.run()
        wf.finalize()
    return wf


def read_outputs(test: unittest.TestCase, out: str) -> tuple[list[dict[str, str]], dict]:
    for f in OUTPUTS:
        test.assertTrue(os.path.isfile(os.path.join(out, f)), f)
    with open(os.path.join(out, "audit.csv")) as f:
        rows = list(csv.DictReader(f))
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    return rows, summary


class TestAuditBundle(unittest.TestCase):
    def test_synthetic_generates_and_audits(self):
        with tempfile.TemporaryDirectory() as tmp:
            run_config("synthetic", "audit", bundle_root=tmp, synthdr_num=20, synthdr_size=32, **TINY_AUDIT)
            data = os.path.join(tmp, "data", "synthdr")
            self.assertTrue(os.path.isfile(os.path.join(data, "train.csv")))
            rows, summary = read_outputs(self, os.path.join(tmp, "audit"))
            self.assertEqual(len(rows), 20)  # one row per image
            self.assertEqual(len({r["image"] for r in rows}), 20)
            self.assertTrue(all(r["image"].startswith(data) for r in rows))
            self.assertEqual(summary["num_samples"], 20)
            self.assertTrue(summary["predictions"].startswith("2-fold out-of-fold tiny models"))
            html = Path(tmp, "audit", "report.html").read_text(encoding="utf-8")
            self.assertTrue(html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>"))
            flagged = [r["image"] for r in rows if "True" in (r["is_mislabeled"], r["is_low_quality"])]
            self.assertGreater(len(flagged), 0)
            for image in flagged:
                self.assertIn(image, html)

    def test_ddr_out_of_fold_and_bundle_checkpoint(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = make_dataset("ddr", os.path.join(tmp, "data"), n=10, size=32)
            run_config("ddr", "audit", bundle_root=tmp, dataset_dir=data, **TINY_AUDIT)
            rows, summary = read_outputs(self, os.path.join(tmp, "audit"))
            self.assertEqual(len(rows), 10)  # the grade-5 (ungradable) image is reported, not audited
            self.assertIn("without a grade", " ".join(p["problem"] for p in summary["problems"]))
            self.assertEqual({int(r["given_label"]) for r in rows}, set(range(5)))

            # the bundle's own checkpoint (train.json, one tiny epoch) through audit.json
            tiny_train = {"epochs": 1, "image_size": 32, "batch_size": 4, "num_workers": 0, "network": "small_cnn",
                          "method": "standard"}  # fmt: skip
            train = run_config("ddr", "train", bundle_root=tmp, dataset_dir=data, val_fraction=0.25, progress=False,
                               **tiny_train)  # fmt: skip
            ckpt = os.path.join(tmp, "models", "model.pt")
            self.assertTrue(os.path.isfile(ckpt))
            out = os.path.join(tmp, "audit_ckpt")
            over = {**TINY_AUDIT, "image_size": 32}
            run_config("ddr", "audit", bundle_root=tmp, dataset_dir=data, checkpoint=ckpt, network="small_cnn",
                       output_dir=out, **over)  # fmt: skip
            rows, summary = read_outputs(self, out)
            self.assertEqual(len(rows), 10)
            self.assertEqual(summary["predictions"], f"checkpoint {ckpt}")

            # expected: network A on the bundle's own validation preprocessing (32 px files: no resampling)
            net = QMixNet(num_classes=5, backbone="small_cnn")
            net.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True)["network_a"])
            prep = train.parser.get_parsed_content("validate#preprocessing")
            with torch.no_grad():
                for r in rows:
                    x = torch.as_tensor(prep({"image": r["image"]})["image"])[None]
                    p = torch.softmax(net.eval()(x), 1)[0]
                    self.assertAlmostEqual(float(r["p_given"]), float(p[int(r["given_label"])]), places=4)
                    self.assertEqual(int(r["predicted_label"]), int(p.argmax()))

    def test_rendered_keys(self):
        for name in ("synthetic", "aptos", "odir"):
            cfg = json.loads((BUNDLES / f"qmix_{name}" / "configs" / "audit.json").read_text())
            for key in ("dataset_dir", "output_dir", "checkpoint", "folds", "epochs", "image_size", "backbone", "seed",
                        "reader_options", "progress", "network", "normalization"):  # fmt: skip
                self.assertIn(key, cfg)
            self.assertIsNone(cfg["checkpoint"])
            self.assertEqual(cfg["reader"], "aptos" if name == "synthetic" else name)
            self.assertEqual("synthdr" in cfg, name == "synthetic")
            train = json.loads((BUNDLES / f"qmix_{name}" / "configs" / "train.json").read_text())
            for key in ("network", "normalization", "norm_mean", "norm_std", "num_classes", "seed", "num_threads"):
                self.assertEqual(cfg[key], train[key], key)
            self.assertIn(str(train["image_size"]), cfg["image_size"])  # the training size with a checkpoint


if __name__ == "__main__":
    unittest.main()
