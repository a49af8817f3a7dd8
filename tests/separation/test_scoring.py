# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Tests of ``score_samples``: loss/uncertainty values, index keying, modes restored, MC dropout."""

from __future__ import annotations

import unittest

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import DataLoader as MonaiDataLoader
from monai.data import MetaTensor
from parameterized import parameterized
from torch.utils.data import DataLoader

from monai_qmix.separation import feature_head_split, score_samples
from tests.separation._toy import PlainNet, ToyNet, toy_items
from tests.utils import assert_allclose


class TestScoreSamples(unittest.TestCase):
    def setUp(self):
        self.items = toy_items(24)
        self.net = ToyNet()

    def test_entropy_and_ce(self):
        loader = DataLoader(self.items, batch_size=5, shuffle=True, generator=torch.Generator().manual_seed(1))
        self.net.train()
        self.net.fc[1].eval()  # a mixed per-module state must be restored exactly
        out = score_samples(self.net, loader, progress=False)
        self.assertTrue(self.net.training and self.net.backbone[1].training and not self.net.fc[1].training)
        np.testing.assert_array_equal(out["index"], np.arange(24))  # sorted by index despite shuffling
        self.net.eval()
        with torch.no_grad():
            x = torch.stack([it["image"] for it in self.items])
            y = torch.tensor([it["label"] for it in self.items])
            logp = F.log_softmax(self.net(x), 1)
        assert_allclose(out["loss"], F.nll_loss(logp, y, reduction="none"), rtol=1e-4, atol=1e-6)
        assert_allclose(out["uncertainty"], -(logp.exp() * logp).sum(1), rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(out["label"], y.numpy())
        self.assertEqual(out["loss"].dtype, np.float32)
        self.assertNotIn("image", out)

    def test_soft_labels_keys_and_extras(self):
        items = [
            {"img": it["image"], "y": F.one_hot(torch.tensor(it["label"]), 3).float(), "id": it["index"] + 100, "q": 1}
            for it in self.items
        ]
        out = score_samples(
            self.net,
            DataLoader(items, batch_size=8),
            image_key="img",
            label_key="y",
            index_key="id",
            extra_keys=("q", "absent"),
            progress=False,
        )
        ref = score_samples(self.net, DataLoader(self.items, batch_size=8), progress=False)
        assert_allclose(out["loss"], ref["loss"], rtol=1e-5)
        np.testing.assert_array_equal(out["index"], np.arange(100, 124))
        np.testing.assert_array_equal(out["q"], np.ones(24))
        self.assertNotIn("absent", out)

    def test_meta_filenames(self):
        items = [
            dict(it, image=MetaTensor(it["image"], meta={"filename_or_obj": f"img{i}.png"}))
            for i, it in enumerate(self.items)
        ]
        out = score_samples(self.net, MonaiDataLoader(items, batch_size=7), progress=True)
        self.assertEqual(out["image"].tolist(), [f"img{i}.png" for i in range(24)])

    @parameterized.expand([["mutual_information"], ["variance"]])
    def test_mc_dropout(self, measure):
        loader = DataLoader(self.items, batch_size=12)
        self.net.eval()
        ref = score_samples(self.net, loader, progress=False)
        out = score_samples(self.net, loader, uncertainty=measure, mc_samples=4, progress=False)
        assert_allclose(out["loss"], ref["loss"], rtol=1e-5)  # loss from the deterministic pass
        self.assertTrue((out["uncertainty"] > 0).any() and (out["uncertainty"] >= 0).all())
        again = score_samples(self.net, loader, uncertainty=measure, mc_samples=4, progress=False)
        assert_allclose(out["uncertainty"], again["uncertainty"])  # seeded dropout masks
        self.assertFalse(any(m.training for m in self.net.modules()))  # eval mode restored

    def test_feature_reuse(self):
        loader = DataLoader(self.items, batch_size=12)  # 2 batches
        self.assertIsNotNone(feature_head_split(self.net))
        self.net.n_backbone_calls = 0
        split = score_samples(self.net, loader, uncertainty="mutual_information", mc_samples=5, progress=False)
        self.assertEqual(self.net.n_backbone_calls, 2)  # backbone once per batch
        plain = PlainNet()
        running_mean = plain.backbone[1].running_mean.clone()
        self.assertIsNone(feature_head_split(plain))
        full = score_samples(plain, loader, uncertainty="mutual_information", mc_samples=5, progress=False)
        self.assertEqual(plain.n_backbone_calls, 2 * 6)  # deterministic + 5 MC full passes per batch
        assert_allclose(plain.backbone[1].running_mean, running_mean)  # batch norm never in train mode
        assert_allclose(split["loss"], full["loss"], rtol=1e-5)

    def test_no_dropout_warns(self):
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 64, 3))
        with self.assertWarnsRegex(UserWarning, "no dropout"):
            out = score_samples(
                net, DataLoader(self.items, batch_size=8), uncertainty="variance", mc_samples=2, progress=False
            )
        assert_allclose(out["uncertainty"], np.zeros(24), atol=1e-7)

    def test_errors(self):
        loader = DataLoader(self.items, batch_size=8)
        with self.assertRaisesRegex(ValueError, "mc_samples"):
            score_samples(self.net, loader, uncertainty="variance", mc_samples=1)
        with self.assertRaisesRegex(ValueError, "dropout_rate"):
            score_samples(self.net, loader, uncertainty="dropout_rate")
        with self.assertRaisesRegex(KeyError, "'idx'"):
            score_samples(self.net, loader, index_key="idx", progress=False)
        with self.assertRaisesRegex(TypeError, "dict batches"):
            score_samples(self.net, [(torch.zeros(1, 3, 8, 8), torch.zeros(1))], progress=False)
        self.assertTrue(self.net.training)  # train mode restored even after an exception

    @unittest.skipUnless(torch.cuda.is_available(), "CUDA-only check of the autocast path")
    def test_cuda_amp_matches_cpu(self):
        loader = DataLoader(self.items, batch_size=8)
        cpu = score_samples(self.net, loader, progress=False)
        gpu = score_samples(self.net.cuda(), loader, amp=True, progress=False)
        assert_allclose(gpu["loss"], cpu["loss"], rtol=5e-2, atol=5e-2)
        self.assertEqual(next(self.net.parameters()).device.type, "cuda")

    def test_partial_extra_key(self):
        items = [dict(it, q=1) if it["index"] < 8 else it for it in self.items]
        with self.assertRaisesRegex(KeyError, "only 1 of 3"):
            score_samples(self.net, DataLoader(items, batch_size=8), extra_keys=("q",), progress=False)


if __name__ == "__main__":
    unittest.main()
