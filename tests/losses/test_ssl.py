# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Tests of the SSL target helpers: sharpen, co_refine, co_guess, pseudo_label, mixup, linear_rampup."""

from __future__ import annotations

import unittest

import numpy as np
import torch
from parameterized import parameterized

from monai_qmix.losses import co_guess, co_refine, linear_rampup, mean_prediction, mixup, pseudo_label, sharpen
from tests.utils import TEST_NDARRAYS, assert_allclose

P = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], dtype=torch.float64)


def np_sharpen(p, t):
    q = np.asarray(p, dtype=np.float64) ** (1.0 / t)
    return q / q.sum(axis=-1, keepdims=True)


class TestSharpen(unittest.TestCase):
    @parameterized.expand([[0.5], [1.0], [0.1], [2.0]])
    def test_reference(self, t):
        assert_allclose(sharpen(P, t), np_sharpen(P.numpy(), t), rtol=1e-10)

    def test_input_types_and_tiny_values(self):
        for convert in TEST_NDARRAYS:
            assert_allclose(sharpen(convert(P.numpy()), 0.5), np_sharpen(P.numpy(), 0.5), rtol=1e-10)
        out = sharpen(torch.tensor([[1e-30, 1e-31, 0.0]]), 0.05)  # p^20 underflows in linear space
        self.assertTrue(torch.all(torch.isfinite(out)))
        assert_allclose(out.sum(), 1.0, rtol=1e-6)
        self.assertGreater(out[0, 0].item(), 0.99)
        self.assertTrue(torch.isfinite(sharpen(P.bfloat16(), 0.5)).all())

    @parameterized.expand([[0.0], [-1.0], [float("inf")]])
    def test_bad_temperature(self, t):
        with self.assertRaisesRegex(ValueError, "temperature"):
            sharpen(P, t)


class TestCoRefineGuess(unittest.TestCase):
    def test_co_refine_hand_value(self):
        views = torch.stack([P, torch.flip(P, dims=[1])])  # two weak views
        mean = 0.5 * (P + torch.flip(P, dims=[1]))
        w = torch.tensor([0.7, 0.2], dtype=torch.float64)
        y = torch.tensor([0, 2])
        refined = w[:, None] * torch.eye(3, dtype=torch.float64)[y] + (1 - w[:, None]) * mean
        for convert in TEST_NDARRAYS:
            assert_allclose(co_refine(convert(y.numpy()), w, views, None), refined, rtol=1e-12)
        assert_allclose(co_refine(y, w, [P, torch.flip(P, dims=[1])], 0.5), np_sharpen(refined.numpy(), 0.5))
        assert_allclose(co_refine(torch.eye(3)[y], w, views, None), refined, rtol=1e-6)

    def test_co_guess_hand_value(self):
        pa, pb = P, torch.flip(P, dims=[1])
        assert_allclose(co_guess(pa, pb, None), 0.5 * (pa + pb), rtol=1e-12)
        views_a, views_b = torch.stack([pa, pb]), torch.stack([pb, pb])
        expected = np_sharpen(((pa + pb + pb + pb) / 4).numpy(), 0.5)
        assert_allclose(co_guess(views_a, views_b, 0.5), expected, rtol=1e-10)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "labels"):
            co_refine(torch.tensor([0, 5]), torch.ones(2), P)
        with self.assertRaisesRegex(ValueError, "weight"):
            co_refine(torch.tensor([0, 1]), torch.ones(3), P)
        with self.assertRaisesRegex(ValueError, "probs_a"):
            co_guess(P, P[:1])
        with self.assertRaisesRegex(ValueError, "probs"):
            mean_prediction(torch.zeros(3))
        with self.assertRaisesRegex(ValueError, "probs"):
            mean_prediction([P, P[:1]])


class TestPseudoLabel(unittest.TestCase):
    POST = torch.tensor([[0.1, 0.2, 0.7], [0.5, 0.1, 0.4]], dtype=torch.float64)
    Y = torch.tensor([1, 0])

    def onehot(self):
        return torch.eye(3, dtype=torch.float64)[self.Y]

    def test_rules(self):
        y, post = self.onehot(), self.POST
        w_l, w_cl, w_c = post[:, 2:], post[:, :1] + post[:, 2:], post[:, :1]
        expected = {
            "posterior_refine": np_sharpen((w_l * y + (1 - w_l) * P).numpy(), 0.5),
            "joint_refine": np_sharpen((w_cl * y + (1 - w_cl) * P).numpy(), 0.5),
            "label_smoothing": (w_c * y + (1 - w_c) / 3).numpy(),
            "prediction": np_sharpen(P.numpy(), 0.5),
            "label": y.numpy(),
        }
        for rule, value in expected.items():
            assert_allclose(pseudo_label(self.Y, P, post, rule=rule, temperature=0.5), value, rtol=1e-10)
        assert_allclose(pseudo_label(self.Y, P, post), expected["posterior_refine"], rtol=1e-10)  # default rule

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "rule"):
            pseudo_label(self.Y, P, self.POST, rule="magic")
        with self.assertRaisesRegex(ValueError, "posterior"):
            pseudo_label(self.Y, P, self.POST[:, :2])


class TestMixup(unittest.TestCase):
    def test_seeded_and_lambda_prime(self):
        x = torch.arange(24, dtype=torch.float32).reshape(6, 4)
        y = torch.eye(6)
        out1 = mixup(x, y, alpha=0.5, generator=torch.Generator().manual_seed(3))
        out2 = mixup(x, y, alpha=0.5, generator=torch.Generator().manual_seed(3))
        assert_allclose(out1[0], out2[0])
        self.assertEqual(out1[2], out2[2])
        xm, ym, lam, perm = out1
        self.assertGreaterEqual(lam, 0.5)
        self.assertLessEqual(lam, 1.0)
        self.assertEqual(sorted(perm.tolist()), list(range(6)))
        assert_allclose(xm, lam * x + (1 - lam) * x[perm], rtol=1e-6)
        assert_allclose(ym, lam * y + (1 - lam) * y[perm], rtol=1e-6)
        assert_allclose(ym.sum(1), torch.ones(6), rtol=1e-6)

    def test_fixed_lambda_and_off(self):
        x, y = torch.randn(4, 3, 2, 2), torch.eye(4)
        _, _, lam, _ = mixup(x, y, generator=torch.Generator().manual_seed(0), lam=0.2)
        self.assertAlmostEqual(lam, 0.8)
        xo, yo, lam_off, perm = mixup(x, y, enabled=False)
        self.assertIs(xo, x)
        self.assertIs(yo, y)
        self.assertEqual((lam_off, perm.tolist()), (1.0, [0, 1, 2, 3]))
        lams = [mixup(x, y, alpha=4.0, generator=torch.Generator().manual_seed(s))[2] for s in range(5)]
        self.assertGreater(len(set(lams)), 1)

    def test_errors(self):
        x = torch.zeros(4, 2)
        with self.assertRaisesRegex(ValueError, "alpha"):
            mixup(x, torch.eye(4), alpha=0.0)
        with self.assertRaisesRegex(ValueError, "lam"):
            mixup(x, torch.eye(4), lam=1.5)
        with self.assertRaisesRegex(ValueError, "targets"):
            mixup(x, torch.eye(3))


class TestLinearRampup(unittest.TestCase):
    @parameterized.expand([[5, 0.0], [10, 0.0], [18, 12.5], [26, 25.0], [100, 25.0]])
    def test_values(self, current, expected):
        self.assertAlmostEqual(linear_rampup(current, 16, start=10, max_value=25.0), expected)

    def test_zero_length_and_errors(self):
        self.assertEqual(linear_rampup(3, 0, start=3), 1.0)
        self.assertEqual(linear_rampup(2, 0, start=3), 0.0)
        with self.assertRaisesRegex(ValueError, "rampup_length"):
            linear_rampup(1, -1)


if __name__ == "__main__":
    unittest.main()
