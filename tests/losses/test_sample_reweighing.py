# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Tests of SampleReweighingLoss (L_C + Ω(t)·L_M-L + λ_m·L_M-H)."""

from __future__ import annotations

import math
import unittest

import numpy as np
import torch
from parameterized import parameterized

from monai_qmix.losses import OmegaSchedule, SampleReweighingLoss
from tests.utils import TEST_NDARRAYS, assert_allclose

LN2 = math.log(2.0)


def reference(logits, targets, groups, omega, lambda_m, mis_h="mse", weight=None):
    """Loop transcription of the method notes' Eq. 7-10 (per-group means, absent group -> 0)."""
    logits, targets = np.asarray(logits, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    weight = np.ones(len(groups)) if weight is None else np.asarray(weight, dtype=np.float64)
    terms = {0: [], 1: [], 2: []}
    for x, y, g, w in zip(logits, targets, groups, weight):
        p = np.exp(x - x.max())
        p /= p.sum()
        ce = -float(np.sum(y * np.log(p)))
        term = float(np.sum((p - y) ** 2)) if (g == 1 and mis_h == "mse") else ce
        terms[int(g)].append(w * term)
    mean = {k: (sum(v) / len(v) if v else 0.0) for k, v in terms.items()}
    return mean[0] + omega * mean[2] + lambda_m * mean[1]


def random_batch(b=9, c=4, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, c, generator=g, dtype=dtype) * 2
    targets = torch.softmax(torch.randn(b, c, generator=g, dtype=dtype) * 3, dim=1)
    groups = torch.tensor([0, 1, 2] * (b // 3) + [0] * (b % 3))
    return logits, targets, groups


class TestSampleReweighingLoss(unittest.TestCase):
    def test_hand_values(self):
        logits = torch.zeros(4, 2)  # p = [0.5, 0.5]
        targets = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
        groups = torch.tensor([0, 0, 1, 2])
        loss = SampleReweighingLoss(lambda_m=2.0, omega=0.5)
        # L_C = ln2, L_M-H = (0.5^2 + 0.5^2) = 0.5, L_M-L = ln2
        self.assertAlmostEqual(loss(logits, targets, groups).item(), LN2 + 2.0 * 0.5 + 0.5 * LN2, places=6)
        terms = loss.last_terms
        self.assertAlmostEqual(terms["correct"].item(), LN2, places=6)
        self.assertAlmostEqual(terms["mis_h"].item(), 0.5, places=6)
        self.assertAlmostEqual(terms["mis_l"].item(), LN2, places=6)
        self.assertEqual([terms[k].item() for k in ("n_correct", "n_mis_h", "n_mis_l")], [2, 1, 1])
        self.assertAlmostEqual(terms["omega"].item(), 0.5, places=7)
        ce = SampleReweighingLoss(lambda_m=2.0, mis_h_loss="ce", omega=0.5)(logits, targets, groups)
        self.assertAlmostEqual(ce.item(), LN2 + 2.0 * LN2 + 0.5 * LN2, places=6)

    @parameterized.expand([[0.0, 1.0, "mse"], [0.3, 1.0, "mse"], [0.8, 0.5, "ce"], [0.1, 25.0, "mse"]])
    def test_matches_reference(self, omega, lambda_m, mis_h):
        logits, targets, groups = random_batch(seed=int(omega * 10))
        weight = torch.linspace(0.2, 1.5, logits.shape[0], dtype=torch.float64)
        loss = SampleReweighingLoss(lambda_m=lambda_m, mis_h_loss=mis_h, omega=omega)
        for w in (None, weight):
            expected = reference(logits, targets, groups, omega, lambda_m, mis_h, w)
            self.assertAlmostEqual(loss(logits, targets, groups, weight=w).item(), expected, places=10)

    def test_input_types_for_targets_and_groups(self):
        logits, targets, groups = random_batch(seed=1)
        loss = SampleReweighingLoss()
        expected = loss(logits, targets, groups)
        for convert in TEST_NDARRAYS:
            assert_allclose(loss(logits, convert(targets.numpy()), convert(groups.numpy())), expected, rtol=1e-12)

    def test_class_index_targets(self):
        logits, _, groups = random_batch(seed=2)
        idx = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0])
        loss = SampleReweighingLoss()
        assert_allclose(loss(logits, idx, groups), loss(logits, torch.eye(4, dtype=logits.dtype)[idx], groups))

    @parameterized.expand([[[0, 0, 0]], [[1, 1, 1]], [[2, 2, 2]], [[0, 2, 0]], [[]]])
    def test_absent_groups_contribute_zero(self, groups):
        b = len(groups)
        logits = torch.randn(b, 3, generator=torch.Generator().manual_seed(3), requires_grad=True)
        targets = torch.full((b, 3), 1 / 3)
        loss = SampleReweighingLoss(lambda_m=1.0, omega=0.3)
        out = loss(logits, targets, torch.tensor(groups, dtype=torch.long))
        self.assertTrue(torch.isfinite(out))
        for k, name in enumerate(("correct", "mis_h", "mis_l")):
            if k not in groups:
                self.assertEqual(loss.last_terms[name].item(), 0.0)
        out.backward()
        self.assertTrue(torch.all(torch.isfinite(logits.grad)))
        expected = reference(logits.detach(), targets, groups, 0.3, 1.0)
        self.assertAlmostEqual(out.item(), expected, places=5)

    def test_reductions(self):
        logits, targets, groups = random_batch(seed=4)
        kwargs = {"lambda_m": 2.0, "omega": 0.25}
        none = SampleReweighingLoss(**kwargs, reduction="none")(logits, targets, groups)
        self.assertEqual(tuple(none.shape), (9,))
        # "none" = coefficient of the sample's group times its term
        per_sample = SampleReweighingLoss(lambda_m=1.0, omega=1.0, reduction="none")(logits, targets, groups)
        coef = torch.tensor([1.0, 2.0, 0.25], dtype=torch.float64)[groups]
        assert_allclose(none, coef * per_sample, rtol=1e-12)
        total = SampleReweighingLoss(**kwargs, reduction="sum")(logits, targets, groups)
        assert_allclose(total, none.sum(), rtol=1e-12)
        mean = SampleReweighingLoss(**kwargs)(logits, targets, groups)
        group_means = sum(none[groups == k].mean() for k in range(3))  # per-group means, as in the paper
        assert_allclose(mean, group_means, rtol=1e-12)

    def test_batch_normalization(self):
        # regression: groups sharing one loader; a group small in the batch must not get a per-sample weight up to B
        # times larger (it collapsed QMixTrainer onto the classes of an unbalanced Correct group)
        logits, targets, groups = random_batch(seed=7)
        kwargs = {"lambda_m": 2.0, "omega": 0.25}
        none = SampleReweighingLoss(**kwargs, reduction="none")(logits, targets, groups)
        batch = SampleReweighingLoss(**kwargs, normalization="batch")
        assert_allclose(batch(logits, targets, groups), none.mean(), rtol=1e-12)
        group = SampleReweighingLoss(**kwargs)
        group(logits, targets, groups)
        for k in ("correct", "mis_h", "mis_l", "n_correct"):  # logged group means do not depend on the normalisation
            assert_allclose(batch.last_terms[k], group.last_terms[k], rtol=1e-12)
        # gradient per sample: coef_g / B in "batch" mode, coef_g / n_g in "group" mode
        one_correct = torch.tensor([0, 2, 2, 2, 2, 2, 2, 2])
        x = torch.zeros(8, 3, dtype=torch.float64, requires_grad=True)
        y = torch.eye(3, dtype=torch.float64)[torch.zeros(8, dtype=torch.long)]
        for norm, w0 in (("batch", 1 / 8), ("group", 1.0)):
            x.grad = None
            SampleReweighingLoss(omega=1.0, normalization=norm)(x, y, one_correct).backward()
            g = x.grad.abs().sum(dim=1)
            self.assertAlmostEqual((g[0] / g[1]).item(), w0 / (1 / 8 if norm == "batch" else 1 / 7), places=10)
        with self.assertRaisesRegex(ValueError, "normalization"):
            SampleReweighingLoss(normalization="nope")

    def test_loader_normalization_hand_values(self):
        # two-loader loop: L_x = mean over the labelled rows (Correct ∪ Mis-L) of c_i·w_i·CE_i (c = 1 / Ω),
        # L_u = mean over the unlabelled rows and the classes of (p - q)^2 (DivideMix's torch.mean)
        logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0], [1.0, -1.0, 0.0], [0.0, 0.0, 3.0], [-1.0, 2.0, 0.0]])
        targets = torch.tensor(
            [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.2, 0.3, 0.5], [0.6, 0.2, 0.2], [0.0, 0.0, 1.0]], dtype=torch.float32
        )
        groups = torch.tensor([0, 2, 1, 1, 0])
        weight = torch.tensor([1.0, 0.5, 1.0, 2.0, 1.0])
        omega, lam = 0.4, 3.0
        loss = SampleReweighingLoss(lambda_m=lam, omega=omega, mis_h_loss="mse_mean", normalization="loader")
        total = loss(logits, targets, groups, weight=weight)
        log_p = torch.log_softmax(logits.double(), 1)
        ce = -(targets.double() * log_p).sum(1)
        lx = (ce[0] + omega * 0.5 * ce[1] + ce[4]) / 3  # three labelled rows
        sq = (log_p.exp() - targets.double()) ** 2
        lu = (1.0 * sq[2].sum() + 2.0 * sq[3].sum()) / (2 * 3)  # two unlabelled rows x three classes
        self.assertAlmostEqual(total.item(), (lx + lam * lu).item(), places=5)
        self.assertAlmostEqual(loss.last_terms["lx"].item(), lx.item(), places=5)
        self.assertAlmostEqual(loss.last_terms["lu"].item(), lu.item(), places=5)
        # the labelled and unlabelled terms do not depend on how many rows the other loader holds
        more_u = SampleReweighingLoss(lambda_m=lam, omega=omega, mis_h_loss="mse_mean", normalization="loader")
        more_u(torch.cat([logits, logits[2:4]]), torch.cat([targets, targets[2:4]]), torch.cat([groups, groups[2:4]]),
               weight=torch.cat([weight, weight[2:4]]))  # fmt: skip
        self.assertAlmostEqual(more_u.last_terms["lx"].item(), lx.item(), places=5)
        self.assertAlmostEqual(more_u.last_terms["lu"].item(), lu.item(), places=5)
        # mse_mean is mse / C
        mse = SampleReweighingLoss(mis_h_loss="mse", normalization="loader")
        mse(logits, targets, groups)
        mean = SampleReweighingLoss(mis_h_loss="mse_mean", normalization="loader")
        mean(logits, targets, groups)
        self.assertAlmostEqual(mse.last_terms["mis_h"].item() / 3, mean.last_terms["mis_h"].item(), places=6)

    def test_batch_permutation_invariance(self):
        logits, targets, groups = random_batch(seed=5)
        perm = torch.randperm(9, generator=torch.Generator().manual_seed(1))
        for reduction in ("mean", "sum"):
            loss = SampleReweighingLoss(omega=0.3, reduction=reduction)
            assert_allclose(loss(logits, targets, groups), loss(logits[perm], targets[perm], groups[perm]), rtol=1e-12)
        none = SampleReweighingLoss(reduction="none")
        assert_allclose(none(logits, targets, groups)[perm], none(logits[perm], targets[perm], groups[perm]))

    def test_omega_schedule_and_explicit_omega(self):
        logits, targets, groups = random_batch(seed=6)
        schedule = OmegaSchedule(0.3, max_epochs=20, warmup_epochs=10, schedule="linear")
        loss = SampleReweighingLoss(omega=schedule)
        self.assertAlmostEqual(loss.resolve_omega(epoch=15), 0.15, places=12)
        assert_allclose(loss(logits, targets, groups, epoch=15), loss(logits, targets, groups, omega=0.15))
        self.assertAlmostEqual(loss.last_terms["omega"].item(), 0.15, places=12)
        self.assertAlmostEqual(loss(logits, targets, groups, epoch=20).item(), reference(logits, targets, groups, 0, 1))
        with self.assertRaisesRegex(ValueError, "epoch"):
            loss(logits, targets, groups)
        with self.assertRaisesRegex(ValueError, "epoch"):
            loss(logits, targets, groups, epoch=3, omega=0.1)
        with self.assertRaisesRegex(ValueError, "omega"):
            loss(logits, targets, groups, omega=-0.1)

    def test_weight_multiplies_terms(self):
        logits, targets, groups = random_batch(seed=7)
        loss = SampleReweighingLoss()
        half = loss(logits, targets, groups, weight=torch.full((9,), 0.5, dtype=torch.float64))
        assert_allclose(half, 0.5 * loss(logits, targets, groups), rtol=1e-12)

    def test_gradcheck(self):
        logits, targets, groups = random_batch(b=6, c=3, seed=8)
        for mis_h in ("mse", "ce"):
            loss = SampleReweighingLoss(lambda_m=1.5, mis_h_loss=mis_h, omega=0.4)
            x = logits.clone().requires_grad_(True)
            self.assertTrue(torch.autograd.gradcheck(lambda z, f=loss: f(z, targets, groups), (x,)))

    def test_bfloat16_autocast_cpu(self):
        g = torch.Generator().manual_seed(9)
        feats = torch.randn(9, 8, generator=g)
        head = torch.nn.Linear(8, 4)
        targets = torch.softmax(torch.randn(9, 4, generator=g), dim=1)
        groups = torch.tensor([0, 1, 2] * 3)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = head(feats) * 50  # large logits stress log_softmax
            out = SampleReweighingLoss()(logits, targets, groups)
        self.assertTrue(torch.isfinite(out))
        out.backward()
        self.assertTrue(torch.all(torch.isfinite(head.weight.grad)))

    @unittest.skipUnless(torch.cuda.is_available(), "float16 autocast check needs CUDA")
    def test_float16_autocast_cuda(self):
        head = torch.nn.Linear(8, 4).cuda()
        with torch.autocast("cuda", dtype=torch.float16):
            logits = head(torch.randn(9, 8, device="cuda")) * 50
            out = SampleReweighingLoss()(logits, torch.full((9, 4), 0.25, device="cuda"), torch.arange(9) % 3)
        self.assertTrue(torch.isfinite(out))

    @parameterized.expand(
        [
            ["lambda_m", {"lambda_m": -1.0}],
            ["mis_h_loss", {"mis_h_loss": "l1"}],
            ["omega", {"omega": -0.1}],
            ["omega", {"omega": float("inf")}],
        ]
    )
    def test_bad_init(self, name, kwargs):
        with self.assertRaisesRegex(ValueError, name):
            SampleReweighingLoss(**kwargs)

    def test_bad_reduction(self):
        with self.assertRaises(ValueError):
            SampleReweighingLoss(reduction="avg")

    @parameterized.expand(
        [
            ["input", torch.zeros(4), torch.zeros(4, 2), [0, 1, 2, 0], None],
            ["target", torch.zeros(4, 2), torch.zeros(4, 3), [0, 1, 2, 0], None],
            ["target", torch.zeros(4, 2), torch.tensor([0, 1, 2, 0]), [0, 1, 2, 0], None],
            ["groups", torch.zeros(4, 2), torch.zeros(4, 2), [0, 1, 2], None],
            ["groups", torch.zeros(4, 2), torch.zeros(4, 2), [0, 1, 3, 0], None],
            ["groups", torch.zeros(4, 2), torch.zeros(4, 2), [0, -1, 2, 0], None],
            ["weight", torch.zeros(4, 2), torch.zeros(4, 2), [0, 1, 2, 0], torch.ones(3)],
            ["weight", torch.zeros(4, 2), torch.zeros(4, 2), [0, 1, 2, 0], -torch.ones(4)],
        ]
    )
    def test_bad_inputs(self, name, logits, targets, groups, weight):
        with self.assertRaisesRegex(ValueError, name):
            SampleReweighingLoss()(logits, targets, groups, weight=weight)


if __name__ == "__main__":
    unittest.main()
