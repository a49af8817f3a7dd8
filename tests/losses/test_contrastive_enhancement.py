# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Tests of ContrastiveEnhancementLoss (SupCon with Mis-L as an extra class)."""

from __future__ import annotations

import math
import unittest

import numpy as np
import torch
from parameterized import parameterized

from monai_qmix.losses import ContrastiveEnhancementLoss
from tests.utils import TEST_NDARRAYS, assert_allclose

LABELS = [0, 0, 1, 1, 2, 2, 0, 1]
LOW_QUALITY = [False] * 6 + [True] * 2


def reference_supcon(z: np.ndarray, labels: list[int], low_quality: list[bool], tau: float) -> float:
    """Straight transcription of the method notes' formula, with Mis-L mapped to class C = max(label) + 1."""
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n_classes = max(labels) + 1
    ext = [n_classes if lq else y for y, lq in zip(labels, low_quality)]
    n = len(ext)
    anchor_losses = []
    for i in range(n):
        positives = [p for p in range(n) if p != i and ext[p] == ext[i]]
        if not positives:
            continue
        den = sum(math.exp(float(z[i] @ z[a]) / tau) for a in range(n) if a != i)
        terms = [math.log(math.exp(float(z[i] @ z[p]) / tau) / den) for p in positives]
        anchor_losses.append(-sum(terms) / len(positives))
    return sum(anchor_losses) / len(anchor_losses) if anchor_losses else 0.0


def unit_vectors(n: int, d: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    return x / x.norm(dim=1, keepdim=True)


class TestContrastiveEnhancementLoss(unittest.TestCase):
    @parameterized.expand([[0], [1], [2]])
    def test_acceptance_matches_supcon_formula(self, seed):
        z = unit_vectors(8, 16, seed, dtype=torch.float32)
        for convert in TEST_NDARRAYS:  # labels / flags as numpy, torch or MetaTensor
            out = ContrastiveEnhancementLoss(temperature=0.07)(z, convert(LABELS), convert(LOW_QUALITY))
            expected = reference_supcon(z.double().numpy(), LABELS, LOW_QUALITY, 0.07)
            self.assertAlmostEqual(out.item(), expected, delta=1e-5 * max(1.0, abs(expected)))

    def test_hand_value_two_orthogonal_pairs(self):
        # z0 = z1 = e0, z2 = z3 = e1, tau = 1: each anchor: -log(e / (e + 2)) = log(1 + 2/e)
        z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
        out = ContrastiveEnhancementLoss(temperature=1.0)(z, [0, 0, 1, 1])
        self.assertAlmostEqual(out.item(), math.log(1 + 2 / math.e), places=6)

    def test_two_views_equal_flattened_reference(self):
        z = unit_vectors(6, 8, 3).reshape(3, 2, 8)
        labels, lq = [0, 1, 0], [False, False, True]
        out = ContrastiveEnhancementLoss(temperature=0.5)(z, labels, lq)
        flat_labels = [y for y in labels for _ in range(2)]
        flat_lq = [f for f in lq for _ in range(2)]
        expected = reference_supcon(z.reshape(6, 8).numpy(), flat_labels, flat_lq, 0.5)
        self.assertAlmostEqual(out.item(), expected, places=6)
        self.assertEqual(tuple(ContrastiveEnhancementLoss(0.5, reduction="none")(z, labels, lq).shape), (3, 2))

    def test_mis_l_forms_extra_class(self):
        # the Mis-L flag overrides the class label: samples 6 and 7 are positives of each other, not of class 0/1
        z = unit_vectors(8, 16, 5)
        with_flag = ContrastiveEnhancementLoss(0.1)(z, LABELS, LOW_QUALITY)
        as_class = ContrastiveEnhancementLoss(0.1)(z, LABELS[:6] + [9, 9], None)
        assert_allclose(with_flag, as_class, rtol=1e-10)

    def test_negatives_mode_skips_mis_l_anchors(self):
        z = unit_vectors(8, 16, 6)
        out = ContrastiveEnhancementLoss(0.1, mis_l_mode="negatives", reduction="none")(z, LABELS, LOW_QUALITY)
        self.assertTrue(torch.all(out[6:] == 0))
        expected = reference_supcon(z.numpy(), LABELS[:6] + [7, 8], [False] * 8, 0.1)  # unique ids = no positives
        mean = ContrastiveEnhancementLoss(0.1, mis_l_mode="negatives")(z, LABELS, LOW_QUALITY)
        self.assertAlmostEqual(mean.item(), expected, places=8)

    def test_relabelling_invariance(self):
        z = unit_vectors(8, 16, 7)
        loss = ContrastiveEnhancementLoss(0.07)
        relabel = {0: 5, 1: 0, 2: 3}
        out1 = loss(z, LABELS, LOW_QUALITY)
        out2 = loss(z, [relabel[y] for y in LABELS], LOW_QUALITY)
        assert_allclose(out1, out2, rtol=1e-12)

    def test_batch_permutation_invariance(self):
        z = unit_vectors(8, 16, 8)
        perm = torch.randperm(8, generator=torch.Generator().manual_seed(0))
        loss = ContrastiveEnhancementLoss(0.07)
        labels, lq = torch.tensor(LABELS), torch.tensor(LOW_QUALITY)
        assert_allclose(loss(z, labels, lq), loss(z[perm], labels[perm], lq[perm]), rtol=1e-12)
        none = ContrastiveEnhancementLoss(0.07, reduction="none")
        assert_allclose(none(z, labels, lq)[perm], none(z[perm], labels[perm], lq[perm]), rtol=1e-12)

    def test_normalises_features(self):
        z = unit_vectors(8, 16, 9)
        loss = ContrastiveEnhancementLoss(0.2)
        assert_allclose(loss(z, LABELS, LOW_QUALITY), loss(3.5 * z, LABELS, LOW_QUALITY), rtol=1e-12)

    @parameterized.expand([[[0, 1, 2, 3], None], [[0], None], [[0, 1], [True, False]]])
    def test_no_positive_pair_gives_zero(self, labels, lq):
        z = unit_vectors(len(labels), 4, 10).requires_grad_(True)
        out = ContrastiveEnhancementLoss(0.07)(z, labels, lq)
        self.assertEqual(out.item(), 0.0)
        out.backward()
        self.assertTrue(torch.all(torch.isfinite(z.grad)))

    def test_anchor_without_positive_is_skipped(self):
        z = unit_vectors(5, 8, 11)
        labels = [0, 0, 1, 1, 2]  # sample 4 has no positive
        none = ContrastiveEnhancementLoss(0.3, reduction="none")(z, labels)
        self.assertEqual(none[4].item(), 0.0)
        mean = ContrastiveEnhancementLoss(0.3)(z, labels)
        self.assertAlmostEqual(mean.item(), none[:4].mean().item(), places=10)
        self.assertAlmostEqual(mean.item(), reference_supcon(z.numpy(), labels, [False] * 5, 0.3), places=10)

    def test_reductions(self):
        z = unit_vectors(8, 16, 12)
        none = ContrastiveEnhancementLoss(0.07, reduction="none")(z, LABELS, LOW_QUALITY)
        self.assertEqual(tuple(none.shape), (8,))
        total = ContrastiveEnhancementLoss(0.07, reduction="sum")(z, LABELS, LOW_QUALITY)
        mean = ContrastiveEnhancementLoss(0.07, reduction="mean")(z, LABELS, LOW_QUALITY)
        assert_allclose(total, none.sum(), rtol=1e-12)
        assert_allclose(mean, none.mean(), rtol=1e-12)  # every anchor has a positive here

    def test_gradcheck(self):
        z = unit_vectors(6, 5, 13).requires_grad_(True)
        loss = ContrastiveEnhancementLoss(0.5)
        self.assertTrue(torch.autograd.gradcheck(lambda x: loss(x, [0, 0, 1, 1, 0, 2], [0, 0, 0, 0, 1, 1]), (z,)))
        z3 = unit_vectors(6, 4, 14).reshape(3, 2, 4).requires_grad_(True)
        self.assertTrue(torch.autograd.gradcheck(lambda x: loss(x, [0, 1, 0], [0, 0, 1]), (z3,)))

    def test_bfloat16_autocast_cpu(self):
        feats = torch.randn(8, 16, generator=torch.Generator().manual_seed(1))
        proj = torch.nn.Linear(16, 8)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            emb = proj(feats)
            out = ContrastiveEnhancementLoss(0.07)(emb, LABELS, LOW_QUALITY)
        self.assertTrue(torch.isfinite(out))
        out.backward()
        self.assertTrue(torch.all(torch.isfinite(proj.weight.grad)))
        out_bf16 = ContrastiveEnhancementLoss(0.07)(feats.bfloat16(), LABELS, LOW_QUALITY)
        self.assertTrue(torch.isfinite(out_bf16))
        # autocast is switched off inside the loss: same value as float32 on the same (bf16) embeddings
        self.assertEqual(emb.dtype, torch.bfloat16)
        expected = ContrastiveEnhancementLoss(0.07)(emb.detach().float(), LABELS, LOW_QUALITY)
        self.assertAlmostEqual(out.item(), expected.item(), places=5)

    @unittest.skipUnless(torch.cuda.is_available(), "float16 autocast check needs CUDA")
    def test_float16_autocast_cuda(self):
        feats = torch.randn(8, 16, device="cuda")
        proj = torch.nn.Linear(16, 8).cuda()
        with torch.autocast("cuda", dtype=torch.float16):
            out = ContrastiveEnhancementLoss(0.07)(proj(feats), LABELS, LOW_QUALITY)
        self.assertTrue(torch.isfinite(out))

    @parameterized.expand(
        [
            ["temperature", {"temperature": 0.0}],
            ["temperature", {"temperature": -1.0}],
            ["temperature", {"temperature": float("nan")}],
            ["mis_l_mode", {"mis_l_mode": "ignore"}],
        ]
    )
    def test_bad_init(self, name, kwargs):
        with self.assertRaisesRegex(ValueError, name):
            ContrastiveEnhancementLoss(**kwargs)

    def test_bad_reduction(self):
        with self.assertRaises(ValueError):
            ContrastiveEnhancementLoss(reduction="max")

    @parameterized.expand(
        [
            ["features", torch.zeros(8), LABELS, LOW_QUALITY],
            ["features", torch.zeros(8, 2, 2, 2), LABELS, LOW_QUALITY],
            ["features", torch.zeros(8, 4, dtype=torch.long), LABELS, LOW_QUALITY],
            ["labels", torch.zeros(8, 4), LABELS[:7], LOW_QUALITY],
            ["labels", torch.zeros(8, 4), [-1] + LABELS[1:], LOW_QUALITY],
            ["labels", torch.zeros(8, 4), [0.5] + LABELS[1:], LOW_QUALITY],
            ["low_quality", torch.zeros(8, 4), LABELS, LOW_QUALITY[:7]],
            ["low_quality", torch.zeros(8, 4), LABELS, [2] + [0] * 7],
        ]
    )
    def test_bad_inputs(self, name, feats, labels, lq):
        with self.assertRaisesRegex(ValueError, name):
            ContrastiveEnhancementLoss()(feats, labels, lq)


if __name__ == "__main__":
    unittest.main()
