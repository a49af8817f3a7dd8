# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Tests of ``benchmarks/robustness.py``'s options (not of its numbers): how synthetic Mis-L images are labelled and
degraded, the checks on ``--degradation``, and one tiny end-to-end run that writes every output."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import sys
import tempfile
import unittest
from pathlib import Path

import torch
from monai.data import get_track_meta, set_track_meta

from monai_qmix.networks import build_backbone

REPO = Path(__file__).resolve().parents[2]


def _load_benchmark():
    if str(REPO / "benchmarks") not in sys.path:  # as when run as a script: its sibling cost.py is importable
        sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("robustness_benchmark", REPO / "benchmarks" / "robustness.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


rb = _load_benchmark()


class _RestoresTrackMeta(unittest.TestCase):
    """``robustness.main`` switches MONAI's MetaTensor tracking off process-wide; put it back for other tests."""

    def setUp(self):
        self._track_meta = get_track_meta()

    def tearDown(self):
        set_track_meta(self._track_meta)


class TestNoiseOptions(unittest.TestCase):
    def test_natural_label_is_the_default_for_synthetic_mis_l(self):
        args = rb.parse_args(["--data", "synthdr"])
        kw = rb.noise_kwargs(args, "ddr_sym_L15_H50")
        self.assertEqual(kw["synthetic_label"], "uniform")  # the sym presets label natural Mis-L uniformly
        self.assertEqual(kw["degradation"], {"blur_kernel_rule": "full_gaussian"})
        kw = rb.noise_kwargs(args, "ddr_asym_L15_H30")
        self.assertEqual(kw["synthetic_label"], "class_prior")

    def test_keep_and_official_blur_on_request(self):
        args = rb.parse_args(["--synthetic_label", "keep", "--degradation", '{"blur_kernel_rule": "official"}'])
        kw = rb.noise_kwargs(args, "ddr_sym_L15_H50")
        self.assertEqual(kw["synthetic_label"], "keep")
        self.assertEqual(kw["degradation"], {"blur_kernel_rule": "official"})

    def test_bad_degradation_names_the_option(self):
        for bad, needle in (('{"severity": 3}', "severity"), ('{"sigma": 2}', "sigma"), ("[1, 2]", "JSON dict")):
            err = io.StringIO()
            with self.subTest(bad=bad), contextlib.redirect_stderr(err), self.assertRaises(SystemExit):
                rb.parse_args(["--degradation", bad])
            self.assertIn("--degradation", err.getvalue())
            self.assertIn(needle, err.getvalue())


class TestPaperScaleAndOptions(unittest.TestCase):
    def test_paper_scale_defaults_and_overrides(self):
        with contextlib.redirect_stdout(io.StringIO()):
            args = rb.parse_args(["--paper_scale", "--epochs", "20"])
        for key, value in rb.PAPER_SCALE.items():
            self.assertEqual(getattr(args, key), 20 if key == "epochs" else value, key)
        plain = rb.parse_args([])
        self.assertEqual((plain.image_size, plain.backbone, plain.gmm_n_init), (64, "resnet10", 5))

    def test_bad_options_name_the_option(self):
        with tempfile.TemporaryDirectory() as tmp:
            cases = (
                (["--gmm_n_init", "0"], "--gmm_n_init"),
                (["--pretrained_path", os.path.join(tmp, "missing.pth")], "missing.pth"),
                (["--backbone", "tiny", "--pretrained_path", __file__], "named --backbone"),
            )
            for argv, needle in cases:
                err = io.StringIO()
                with self.subTest(argv=argv), contextlib.redirect_stderr(err), self.assertRaises(SystemExit):
                    rb.parse_args(argv)
                self.assertIn(needle, err.getvalue())


class TestTargetsAndSeparationOptions(unittest.TestCase):
    @staticmethod
    def _recs(**qwk):  # method -> (best, last) test QWK of one seed
        return {
            m: [{"best": {"test": {"qwk": b}}, "last": {"test": {"qwk": la}}, "epochs": []}]
            for m, (b, la) in qwk.items()
        }

    def test_clean_runs_get_the_clean_label_regime_check_only(self):
        block = {"noise_counts_text": "correct 600, mis_h 0, mis_l 0"}
        self.assertTrue(rb.is_clean(block))
        self.assertFalse(rb.is_clean({"noise_counts": {"correct": 304, "mis_h": 206, "mis_l": 90}}))
        recs = self._recs(standard=(0.786, 0.788))
        (line,) = rb.targets(recs, "synthdr", clean=True)
        self.assertIn("CE best test QWK 0.786", line)
        self.assertTrue(line.endswith("MISSED"))
        self.assertTrue(rb.targets(self._recs(standard=(0.81, 0.8)), "synthdr", clean=True)[0].endswith("met"))
        self.assertIn("no goal", rb.targets(recs, "csv", clean=True)[0])
        noisy = rb.targets(self._recs(standard=(0.712, 0.532), qmix=(0.71, 0.684)), "synthdr")
        self.assertTrue(noisy[0].startswith("regime: CE best 0.712"))
        self.assertIn("QMix last QWK 0.684 ≥ standard 0.532 + 0.10: met", noisy)

    def test_mapping_rule_and_per_class_options(self):
        args = rb.parse_args(["--mapping_rule", "loss_first", "--gmm_per_class"])
        self.assertEqual((args.mapping_rule, args.gmm_per_class), ("loss_first", True))
        plain = rb.parse_args([])
        self.assertEqual((plain.mapping_rule, plain.gmm_per_class), ("uncertainty_first", False))
        err = io.StringIO()
        with contextlib.redirect_stderr(err), self.assertRaises(SystemExit):
            rb.parse_args(["--mapping_rule", "by_loss"])
        self.assertIn("--mapping_rule", err.getvalue())


class TestTinyRun(_RestoresTrackMeta):
    def test_named_backbone_with_local_pretrained_weights(self):
        """The path of benchmark (c) (a MONAI backbone + local weights), at toy size on the CPU."""
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
            backbone, _ = build_backbone("resnet10")
            weights = os.path.join(tmp, "resnet10.pth")
            torch.save(backbone.state_dict(), weights)
            argv = ["--num", "40", "--image_size", "32", "--backbone", "resnet10", "--pretrained_path", weights,
                    "--input_norm", "fundus", "--epochs", "2", "--warmup_epochs", "1", "--methods", "qmix",
                    "--gmm_n_init", "2", "--threads", "1", "--bootstrap", "0", "--out", tmp,
                    "--cache_dir", os.path.join(tmp, "c"), "--tag", "r"]  # fmt: skip
            self.assertEqual(rb.main(argv), 0)
            with open(os.path.join(tmp, "r.json")) as f:
                res = json.load(f)
            self.assertEqual(res["config"]["pretrained_path"], weights)
            self.assertEqual(res["config"]["gmm_n_init"], 2)
            self.assertIn("CPUs", res["hardware"])
            rec = res["presets"]["ddr_sym_L15_H50"]["methods"]["qmix"][0]
            self.assertEqual(len(rec["epochs"]), 2)
            self.assertIsNotNone(rec["epochs"][1]["separation"].get("A"))
            own = rb.make_net(rb.parse_args(argv)).backbone.state_dict()  # the network starts from the file
            for k, v in backbone.state_dict().items():
                torch.testing.assert_close(own[k], v)

    def test_outputs_and_uniform_labels(self):
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
            argv = ["--num", "60", "--image_size", "32", "--backbone", "tiny", "--width", "4", "--epochs", "2",
                    "--warmup_epochs", "1", "--methods", "standard,qmix", "--threads", "1", "--bootstrap", "0",
                    "--splits", "0.6,0.2,0.2", "--out", tmp, "--cache_dir", os.path.join(tmp, "c"),
                    "--tag", "t", "--omega0", "0.2", "--lambda_c", "0.05", "--mapping_rule", "loss_first",
                    "--gmm_per_class"]  # fmt: skip
            self.assertEqual(rb.main(argv), 0)
            with open(os.path.join(tmp, "t.json")) as f:
                res = json.load(f)
            block = res["presets"]["ddr_sym_L15_H50"]
            self.assertEqual(block["noise_spec"]["synthetic_label"], "uniform")
            for name in ("t.md", "t_ddr_sym_L15_H50_qwk.png", "t_ddr_sym_L15_H50_mis_l.png"):
                self.assertTrue(os.path.isfile(os.path.join(tmp, name)), name)
            self.assertEqual(block["mis_l_png"], "t_ddr_sym_L15_H50_mis_l.png")
            self.assertEqual(len(block["methods"]["qmix"][0]["epochs"]), 2)
            hp = block["methods"]["qmix"][0]["hyper_parameters"]
            self.assertEqual((hp["omega0"], hp["lambda_c"]), (0.2, 0.05))  # the overrides reach the trainer
            self.assertEqual((hp["mapping_rule"], hp["gmm_per_class"]), ("loss_first", True))
            self.assertIsNotNone(block["methods"]["qmix"][0]["epochs"][1]["separation"].get("A"))
            # co-training diagnostics of the SSL epoch: target accuracies against the true labels, per-class recall
            diag = block["methods"]["qmix"][0]["epochs"][1]["diagnostics"]
            self.assertEqual(diag["reference"], "true")
            n_rows = sum(diag[f"n_{kind}_A"] for kind in ("refined", "guessed", "pseudo"))
            self.assertGreater(n_rows, 0)
            self.assertTrue(0.0 <= diag["agreement"] <= 1.0)
            self.assertNotIn("diagnostics", block["methods"]["standard"][0]["epochs"][1])
            makeup = block["methods"]["qmix"][0]["group_makeup"]
            n_a = sum(
                r[g] for r in makeup if r["epoch"] == 2 and r["network"] == "A" for g in ("correct", "mis_h", "mis_l")
            )
            self.assertEqual(n_a, block["n_train"])
            self.assertEqual(len(block["methods"]["standard"][0]["last"]["test"]["per_class_recall"]), 5)
            with open(os.path.join(tmp, "t.md")) as f:
                md = f.read()
            self.assertIn("| qmix | ", md.split("Co-training diagnostics at the last epoch")[1])
            # the degraded images with their labels are what the noise file says: every Mis-L image was degraded
            sets = rb.make_sets(rb.parse_args(argv), "ddr_sym_L15_H50", 0)
            mis_l = [it for it in sets["train"] if it["noise_group"] == "mis_l"]
            self.assertGreater(len(mis_l), 0)
            self.assertTrue(all(it["image"] != it["source_image"] for it in mis_l))
            self.assertTrue(all(it["quality"] == 0 for it in mis_l))
            self.assertTrue(any(it["label"] != it["true_label"] for it in mis_l))  # redrawn, not kept

    def test_oracle_partition_presets_and_omega_schedule(self):
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
            argv = ["--num", "40", "--image_size", "32", "--backbone", "tiny", "--width", "4", "--epochs", "2",
                    "--warmup_epochs", "1", "--methods", "dividemix,qmix", "--threads", "1", "--bootstrap", "0",
                    "--out", tmp, "--cache_dir", os.path.join(tmp, "c"), "--tag", "o", "--oracle_partition",
                    "--omega_schedule", "constant"]  # fmt: skip
            self.assertEqual(rb.main(argv), 0)
            with open(os.path.join(tmp, "o.json")) as f:
                res = json.load(f)
            methods = res["presets"]["ddr_sym_L15_H50"]["methods"]
            hp_q, hp_d = methods["qmix"][0]["hyper_parameters"], methods["dividemix"][0]["hyper_parameters"]
            self.assertEqual(
                (hp_q["omega_schedule"], hp_q["loop"], hp_q["oracle_partition"]), ("constant", "two_loader", True)
            )
            self.assertEqual(
                (hp_d["dividemix_preset"], hp_d["lambda_u"], hp_d["mixup_alpha"]), ("dividemix_realworld", 0.0, 0.5)
            )
            for m in ("qmix", "dividemix"):  # the oracle partition is the truth: a perfect clean / noisy ranking
                self.assertEqual(methods[m][0]["epochs"][1]["separation"]["A"]["auc_clean"], 1.0)
        plain = rb.parse_args([])
        self.assertEqual(
            (plain.omega_schedule, plain.dividemix_preset, plain.loop), ("linear", "dividemix_realworld", "two_loader")
        )
        self.assertFalse(plain.oracle_partition)

    def test_former_setting_on_request(self):
        """``--loop single --omega_schedule constant --dividemix_preset none``: the setting of the stored results."""
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
            argv = ["--num", "40", "--image_size", "32", "--backbone", "tiny", "--width", "4", "--epochs", "2",
                    "--warmup_epochs", "1", "--methods", "dividemix", "--threads", "1", "--bootstrap", "0",
                    "--out", tmp, "--cache_dir", os.path.join(tmp, "c"), "--tag", "f", "--loop", "single",
                    "--dividemix_preset", "none"]  # fmt: skip
            self.assertEqual(rb.main(argv), 0)
            with open(os.path.join(tmp, "f.json")) as f:
                rec = json.load(f)["presets"]["ddr_sym_L15_H50"]["methods"]["dividemix"][0]
        self.assertEqual(rec["hyper_parameters"], {"dividemix_preset": "none", "loop": "single"})
        self.assertEqual(len(rec["epochs"]), 2)


class TestMerge(_RestoresTrackMeta):
    def test_merge_two_seeds(self):
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
            common = ["--num", "40", "--image_size", "32", "--backbone", "tiny", "--width", "4", "--epochs", "2",
                      "--warmup_epochs", "1", "--methods", "standard", "--threads", "1", "--bootstrap", "0",
                      "--out", tmp, "--cache_dir", os.path.join(tmp, "c")]  # fmt: skip
            for seed in (0, 1):
                self.assertEqual(rb.main([*common, "--seeds", str(seed), "--tag", f"s{seed}"]), 0)
            paths = [os.path.join(tmp, f"s{seed}.json") for seed in (0, 1)]
            self.assertEqual(rb.main(["--merge", *paths, "--out", tmp, "--tag", "both"]), 0)
            with open(os.path.join(tmp, "both.json")) as f:
                res = json.load(f)
            self.assertEqual(res["config"]["seeds"], [0, 1])
            recs = res["presets"]["ddr_sym_L15_H50"]["methods"]["standard"]
            self.assertEqual([r["seed"] for r in recs], [0, 1])
            with open(os.path.join(tmp, "both.md")) as f:
                md = f.read()
            self.assertIn("| standard | 1 |", md)  # the per-seed table
            self.assertTrue(os.path.isfile(os.path.join(tmp, "both_ddr_sym_L15_H50_qwk.png")))
            # the same seed twice, and runs with different options, are refused with the reason
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                self.assertEqual(rb.main(["--merge", paths[0], paths[0], "--out", tmp, "--tag", "x"]), 2)
            self.assertIn("seed 0 appears twice", err.getvalue())
            with open(paths[1]) as f:
                other = json.load(f)
            other["config"]["image_size"] = 48
            with open(os.path.join(tmp, "other.json"), "w") as f:
                json.dump(other, f)
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                self.assertEqual(rb.main(["--merge", paths[0], os.path.join(tmp, "other.json"), "--out", tmp]), 2)
            self.assertIn("image_size: 32 vs 48", err.getvalue())


if __name__ == "__main__":
    unittest.main()
