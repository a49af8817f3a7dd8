# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Tests of the dataset audit: quality score, find_noisy_samples, planted-noise precision at k, CLI and report.

What the planted-noise test measures (honestly): SynthDR images (48 px) whose 2-class label is the eye (left/right,
visible from the optic-disc side), with 20% of the high-quality labels flipped (Mis-H) and 15% of the images
degraded (Mis-L: blur + illumination + spots). Predicted probabilities come from a *quick* out-of-fold model (5-fold
L2 logistic regression on 16x16 thumbnails; SynthDR's DR grades are not learnable by a model that trains within a
unit test's budget). Mis-H is ranked by the audit's ``mis_h_score`` (P(Mis-H) averaged with the normalised loss,
images flagged low quality by the FOV score ranked last), Mis-L by the FOV image-quality score. Over SynthDR (and
noise) seeds 0-11 the Mis-H precision at k (k = 34) was 0.85, 0.97, 0.91, 0.91, 0.82, 0.82, 0.88, 0.88, 0.82, 0.88,
0.88, 0.88 (min 0.82, mean 0.88) and the Mis-L one (k = 30) 0.83-0.97; before the FOV-flagged images were ranked
last in the Mis-H list, degraded images that the model gets wrong took 2-6 of the top 34 places and only 6 of these
12 seeds reached 0.8 (min 0.74). The remaining misses are clean images the quick model gets wrong (5-11 %). The test
uses seed 0.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
import unittest
import warnings
from html.parser import HTMLParser

import numpy as np
import torch
from parameterized import parameterized

from monai_qmix.audit import find_noisy_samples, fundus_quality, precision_at_k, quality_flags
from monai_qmix.audit.cli import main as audit_main
from monai_qmix.transforms.fundus import gaussian_blur
from tests.utils import TEST_NDARRAYS, retina_image

_VOID = {"meta", "img", "br", "hr", "input", "link"}


class _Checker(HTMLParser):
    """Strict-enough HTML check: every non-void tag closed in order; collects text and img sources."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.text: list[str] = []
        self.imgs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.imgs.append(dict(attrs).get("src", ""))
        if tag not in _VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}>, open: {self.stack[-3:]}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


class TestFundusQuality(unittest.TestCase):
    def setUp(self):
        self.img = retina_image(128)

    def test_types_range_and_keys(self):
        for conv in TEST_NDARRAYS:
            q = fundus_quality(conv(self.img))
            self.assertEqual(sorted(q), ["contrast", "fov_fraction", "illumination", "score", "sharpness"])
            for k, v in q.items():
                self.assertIsInstance(v, torch.Tensor)
                self.assertEqual(v.ndim, 0)
                self.assertTrue(0.0 <= float(v) <= 1.0, k)
            self.assertGreater(float(q["score"]), 0.5)

    def test_degradations_lower_their_component(self):
        x = torch.as_tensor(self.img)
        ref = fundus_quality(x)
        blurred = fundus_quality(gaussian_blur(x[None], 3.0)[0])
        self.assertLess(float(blurred["sharpness"]), 0.5 * float(ref["sharpness"]))
        self.assertLess(float(blurred["score"]), float(ref["score"]))
        dark = fundus_quality(x * 0.2)
        self.assertLess(float(dark["illumination"]), float(ref["illumination"]))
        self.assertLess(float(dark["score"]), float(ref["score"]))
        h = torch.linspace(0.2, 1.6, x.shape[-1]).view(1, 1, -1)  # strong left-right illumination gradient
        self.assertLess(float(fundus_quality((x * h).clamp(0, 1))["illumination"]), float(ref["illumination"]))
        flat = fundus_quality(0.5 + 0.25 * (x - x.mean()))  # washed out
        self.assertLess(float(flat["contrast"]), float(ref["contrast"]))

    def test_fov_aware_black_surround_ignored(self):
        x = torch.as_tensor(self.img)
        padded = torch.nn.functional.pad(x, (64, 64, 64, 64))  # much more black surround, same retina
        a, b = fundus_quality(x, working_size=128), fundus_quality(padded, working_size=256)
        self.assertLess(abs(float(a["score"]) - float(b["score"])), 0.08)
        self.assertLess(float(b["fov_fraction"]), float(a["fov_fraction"]))

    def test_batch_equals_single_and_scale(self):
        x = torch.as_tensor(self.img)
        batch = torch.stack([x, gaussian_blur(x[None], 2.0)[0], x * 0.5])
        qb = fundus_quality(batch)
        for i in range(3):
            self.assertAlmostEqual(float(qb["score"][i]), float(fundus_quality(batch[i])["score"]), places=5)
        q255 = fundus_quality(x * 255.0)
        self.assertAlmostEqual(float(q255["score"]), float(fundus_quality(x)["score"]), places=4)

    def test_no_fov_scores_zero_with_warning(self):
        with self.assertWarns(UserWarning):
            q = fundus_quality(torch.zeros(2, 3, 64, 64))
        self.assertTrue(torch.all(q["score"] == 0))

    @parameterized.expand(
        [({"channel": "blue"},), ({"working_size": 8},), ({"margin": 0.5},), ({"sharpness_ref": 0},),
         ({"dark_level": 0.9, "bright_level": 0.5},), ({"weights": {"colour": 1.0}},)]
    )  # fmt: skip
    def test_bad_options(self, kwargs):
        with self.assertRaises(ValueError):
            fundus_quality(self.img, **kwargs)

    def test_bad_shape(self):
        with self.assertRaises(ValueError):
            fundus_quality(np.zeros((1, 64, 64), np.float32))

    def test_quality_flags(self):
        s = np.r_[np.full(50, 0.6) + np.linspace(-0.02, 0.02, 50), [0.1, 0.2]]
        flags, thr = quality_flags(s)
        self.assertEqual(np.flatnonzero(flags).tolist(), [50, 51])
        self.assertTrue(0.05 <= thr <= 0.5)
        flags, thr = quality_flags(s, 0.15)
        self.assertEqual((flags.sum(), thr), (1, 0.15))
        for bad in (0.0, 1.5, "median"):
            with self.assertRaises(ValueError):
                quality_flags(s, bad)


def _toy_probs(n=90, c=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    probs = np.full((n, c), 0.04)
    probs[np.arange(n), labels] = 1 - 0.04 * (c - 1)
    probs[:9] = np.roll(probs[:9], 1, axis=1)  # confidently another grade: mislabelled
    probs[9:18] = 1.0 / c  # maximally uncertain
    probs += rng.uniform(0, 0.01, probs.shape)
    return labels, probs / probs.sum(1, keepdims=True)


class TestFindNoisySamples(unittest.TestCase):
    def test_from_pred_probs(self):
        labels, probs = _toy_probs()
        t = find_noisy_samples(labels, probs)
        self.assertEqual(len(t), 90)
        self.assertTrue(t["is_mislabeled"][:9].all())
        self.assertEqual(int(t["is_mislabeled"][18:].sum()), 0)
        self.assertTrue(t["is_low_quality"][9:18].all())
        np.testing.assert_allclose(t["loss"], -np.log(probs[np.arange(90), labels]), rtol=1e-5)
        np.testing.assert_allclose(t["uncertainty"], -(probs * np.log(probs)).sum(1), rtol=1e-5)
        np.testing.assert_array_equal(t["predicted_label"], probs.argmax(1))
        self.assertEqual(sorted(t.ranked("mis_h")[:9].tolist()), list(range(9)))
        self.assertEqual(precision_at_k(t["p_mis_h"], np.arange(90) < 9), 1.0)
        counts = t.counts_per_grade()
        self.assertEqual(sum(c["n"] for c in counts.values()), 90)
        self.assertEqual(sum(c["mislabeled"] for c in counts.values()), 9)
        with tempfile.TemporaryDirectory() as d:
            rows = list(csv.DictReader(open(t.to_csv(os.path.join(d, "a.csv")))))
        self.assertEqual(len(rows), 90)
        self.assertEqual(rows[0]["is_low_quality"] == "True" or rows[0]["is_mislabeled"] == "True", True)

    def test_low_quality_images_rank_last_for_mis_h(self):
        labels, probs = _toy_probs()
        q = np.full(90, 0.6)
        q[0] = 0.05  # confidently "wrong" (0..8) but flagged low quality by the FOV score
        t = find_noisy_samples(labels, probs, quality_scores=q)
        self.assertTrue(bool(t["low_quality_fov"][0]) and bool(t["is_mislabeled"][0]))
        self.assertEqual(sorted(t.ranked("mis_h")[:8].tolist()), list(range(1, 9)))
        self.assertEqual(int(t.ranked("mis_h")[-1]), 0)
        self.assertLessEqual(float(t["mis_h_score"][0]), 0.5)
        self.assertGreaterEqual(float(t["mis_h_score"][1:].min()), 0.5)
        plain = find_noisy_samples(labels, probs)  # without quality scores: the raw suspicion
        np.testing.assert_allclose(t["mis_h_score"][1:], 0.5 + plain["mis_h_score"][1:] / 2, rtol=1e-5)

    def test_quality_rules(self):
        labels, probs = _toy_probs()
        q = np.full(90, 0.6)
        q[40:45] = 0.05
        for rule, expect in (("fov", set(range(40, 45))), ("model", set(range(9, 18)))):
            t = find_noisy_samples(labels, probs, quality_scores=q, low_quality_rule=rule)
            self.assertEqual(set(np.flatnonzero(t["is_low_quality"]).tolist()), expect)
        t = find_noisy_samples(labels, probs, quality_scores=q, low_quality_rule="either")
        self.assertEqual(int(t["is_low_quality"].sum()), 14)
        t = find_noisy_samples(labels, probs, quality_scores=q)  # default with quality scores: the FOV flag
        self.assertEqual(set(np.flatnonzero(t["is_low_quality"]).tolist()), set(range(40, 45)))
        self.assertEqual(set(np.flatnonzero(t["low_quality_model"]).tolist()), set(range(9, 18)))
        self.assertIn("rank_quality", t.columns)

    def test_network_and_loader_match_pred_probs(self):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 3))
        x = torch.rand(40, 3, 8, 8)
        y = torch.randint(0, 3, (40,))
        loader = [
            {"image": x[i : i + 10], "label": y[i : i + 10], "index": torch.arange(i, i + 10)} for i in (0, 10, 20, 30)
        ]
        with torch.no_grad():
            probs = torch.softmax(net(x), 1).numpy()
        a = find_noisy_samples(network=net, loader=loader)
        b = find_noisy_samples(y.numpy(), probs)
        for k in ("loss", "uncertainty", "p_mis_h", "predicted_label"):
            np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-5)

    def test_errors(self):
        labels, probs = _toy_probs()
        with self.assertRaises(ValueError):
            find_noisy_samples(labels)
        with self.assertRaises(ValueError):
            find_noisy_samples(labels[:10], probs)
        with self.assertRaises(ValueError):
            find_noisy_samples(labels + 5, probs)
        with self.assertRaises(ValueError):
            find_noisy_samples(labels, probs, low_quality_rule="any")
        with self.assertRaises(ValueError):
            find_noisy_samples(labels, probs, quality_scores=np.ones(3))


class TestPlantedSynthDR(unittest.TestCase):
    """SynthDR with planted Mis-H and Mis-L (see the module docstring for what is measured)."""

    @classmethod
    def setUpClass(cls):
        from monai_qmix.data import build_mixed_noise, generate_synthdr, load_datalist

        cls.tmp = tempfile.TemporaryDirectory()
        root = cls.tmp.name
        rows = generate_synthdr(os.path.join(root, "synthdr"), num=200, size=48, seed=0)
        clean = load_datalist("aptos", os.path.join(root, "synthdr"))
        for it, r in zip(clean, rows):
            it["label"] = int(r["eye"] == "right")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cls.train, _ = build_mixed_noise(
                clean, mis_h=0.2, mis_l=0.15, num_classes=2, seed=0, cache_dir=os.path.join(root, "cache"),
                degradation={"blur_kernel_rule": "full_gaussian"},
            )  # fmt: skip
        cls.datalist = os.path.join(root, "synthdr", "datalist.json")
        with open(cls.datalist, "w") as f:
            json.dump(cls.train, f)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_precision_at_k_planted(self):
        from PIL import Image
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import cross_val_predict

        x = torch.stack([torch.from_numpy(np.array(Image.open(it["image"]).convert("RGB"))) for it in self.train])
        x = x.permute(0, 3, 1, 2).float() / 255.0
        y = np.array([it["label"] for it in self.train])
        truth = np.array([it["noise_group"] for it in self.train])
        self.assertEqual(((truth == "mis_h").sum(), (truth == "mis_l").sum()), (34, 30))
        feats = torch.nn.functional.interpolate(x, size=(16, 16), mode="area").flatten(1).numpy()
        feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-6)
        probs = cross_val_predict(LogisticRegression(C=0.03, max_iter=3000), feats, y, cv=5, method="predict_proba")
        table = find_noisy_samples(y, probs, quality_scores=fundus_quality(x))
        p_h = precision_at_k(table["mis_h_score"], truth == "mis_h")
        self.assertEqual(p_h, float((truth[table.ranked("mis_h")[:34]] == "mis_h").mean()))
        p_l = precision_at_k(-table["quality_score"], truth == "mis_l")
        self.assertGreaterEqual(p_h, 0.8, f"Mis-H precision at k by P(Mis-H): {p_h:.3f}")
        self.assertGreaterEqual(p_l, 0.8, f"Mis-L precision at k by the FOV quality score: {p_l:.3f}")

    def test_cli_report(self):
        with open(self.datalist) as f:
            items = json.load(f)[:60]
        root = os.path.dirname(self.datalist)
        bad = os.path.join(root, "corrupt.png")
        with open(bad, "wb") as f:
            f.write(b"not an image")
        items[3]["image"] = os.path.join(root, "gone.png")
        items[5]["image"] = bad
        dl = os.path.join(root, "cli.json")
        with open(dl, "w") as f:
            json.dump(items, f)
        out = os.path.join(self.tmp.name, "audit")
        args = ["--dataset", "json", "--dataset_dir", dl, "--out", out, "--folds", "2", "--epochs", "1"]
        args += ["--image_size", "32", "--no_progress", "--top_k", "8", "--flips", "v"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.assertEqual(audit_main(args), 0)
        for name in ("audit.csv", "report.html", "summary.json", "suspects_mis_h.png", "suspects_mis_l.png"):
            self.assertTrue(os.path.isfile(os.path.join(out, name)), name)
        rows = list(csv.DictReader(open(os.path.join(out, "audit.csv"))))
        self.assertEqual(len(rows), 58)  # one missing, one corrupted: reported, not fatal
        summary = json.load(open(os.path.join(out, "summary.json")))
        self.assertEqual(summary["num_problems"], 2)
        self.assertIn("precision_at_k", summary["metrics"])
        self.assertEqual(sum(c["n"] for c in summary["counts_per_grade"].values()), 58)
        checker = _Checker()
        checker.feed(open(os.path.join(out, "report.html"), encoding="utf-8").read())
        checker.close()
        self.assertEqual(checker.errors, [])
        self.assertEqual(checker.stack, [])
        text = " ".join(checker.text)
        flagged = [r for r in rows if r["is_mislabeled"] == "True" or r["low_quality_model"] == "True"
                   or r["low_quality_fov"] == "True"]  # fmt: skip
        self.assertGreater(len(flagged), 0)
        for r in flagged:
            self.assertIn(r["image"], text)
        self.assertIn("corrupt.png", text)
        self.assertIn("gone.png", text)
        self.assertTrue(checker.imgs and all(s.startswith("data:image/png;base64,") for s in checker.imgs))

    def test_cli_checkpoint(self):
        from monai_qmix.audit import build_audit_network

        ckpt = os.path.join(self.tmp.name, "net.pt")
        torch.save({"network": build_audit_network(2, "tiny").state_dict()}, ckpt)
        out = os.path.join(self.tmp.name, "audit_ckpt")
        args = ["--dataset", "json", "--dataset_dir", self.datalist, "--out", out, "--checkpoint", ckpt]
        args += ["--num_classes", "2", "--image_size", "32", "--no_progress"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.assertEqual(audit_main(args), 0)
        summary = json.load(open(os.path.join(out, "summary.json")))
        self.assertTrue(summary["predictions"].startswith("checkpoint"))
        self.assertEqual(summary["num_samples"], 200)
        with self.assertRaises(ValueError):
            audit_main(args[:-5] + ["--num_classes", "5", "--image_size", "32", "--no_progress"])


if __name__ == "__main__":
    unittest.main()
