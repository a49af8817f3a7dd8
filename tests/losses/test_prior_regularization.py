# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Tests of PriorRegularizationLoss and estimate_class_prior."""

from __future__ import annotations

import math
import unittest

import numpy as np
import torch
from parameterized import parameterized

from monai_qmix.losses import PriorRegularizationLoss, estimate_class_prior
from tests.utils import TEST_NDARRAYS, assert_allclose


class TestPriorRegularizationLoss(unittest.TestCase):
    def test_hand_value_uniform(self):
        probs = torch.tensor([[0.5, 0.5], [1.0, 0.0]])  # mean = [0.75, 0.25]
        expected = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
        for prior in (None, "uniform", [0.5, 0.5]):
            out = PriorRegularizationLoss(prior=prior, softmax=False)(probs)
            self.assertAlmostEqual(out.item(), expected, places=6)

    def test_class_prior_and_zero_entries(self):
        probs = torch.tensor([[0.2, 0.3, 0.5], [0.4, 0.5, 0.1]])  # mean = [0.3, 0.4, 0.3]
        prior = [0.6, 0.4, 0.0]
        expected = 0.6 * math.log(0.6 / 0.3) + 0.4 * math.log(0.4 / 0.4)
        for convert in TEST_NDARRAYS:
            loss = PriorRegularizationLoss(prior=convert(np.array(prior)), softmax=False)
            self.assertAlmostEqual(loss(probs).item(), expected, places=6)

    def test_logits_match_probabilities(self):
        logits = torch.randn(5, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        prior = [0.1, 0.2, 0.3, 0.4]
        a = PriorRegularizationLoss(prior)(logits)
        b = PriorRegularizationLoss(prior, softmax=False)(torch.softmax(logits, 1))
        assert_allclose(a, b, rtol=1e-12)
        self.assertGreater(a.item(), 0.0)

    def test_reductions_and_permutation(self):
        logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        none = PriorRegularizationLoss([0.5, 0.3, 0.2], reduction="none")(logits)
        self.assertEqual(tuple(none.shape), (3,))
        for reduction in ("mean", "sum"):
            assert_allclose(PriorRegularizationLoss([0.5, 0.3, 0.2], reduction=reduction)(logits), none.sum())
        perm = torch.randperm(6, generator=torch.Generator().manual_seed(2))
        loss = PriorRegularizationLoss([0.5, 0.3, 0.2])
        assert_allclose(loss(logits), loss(logits[perm]), rtol=1e-12)

    def test_collapsed_prediction_is_finite(self):
        probs = torch.tensor([[1.0, 0.0, 0.0]] * 3)
        out = PriorRegularizationLoss(softmax=False, eps=1e-8)(probs)
        self.assertTrue(torch.isfinite(out))
        self.assertGreater(out.item(), 5.0)

    def test_gradcheck(self):
        logits = torch.randn(4, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        loss = PriorRegularizationLoss([0.7, 0.2, 0.1])
        self.assertTrue(torch.autograd.gradcheck(loss, (logits.requires_grad_(True),)))

    def test_bfloat16_autocast_cpu(self):
        head = torch.nn.Linear(8, 5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = PriorRegularizationLoss()(head(torch.randn(4, 8)) * 100)
        self.assertTrue(torch.isfinite(out))
        out.backward()
        self.assertTrue(torch.all(torch.isfinite(head.weight.grad)))

    @unittest.skipUnless(torch.cuda.is_available(), "float16 autocast check needs CUDA")
    def test_float16_autocast_cuda(self):
        head = torch.nn.Linear(8, 5).cuda()
        with torch.autocast("cuda", dtype=torch.float16):
            out = PriorRegularizationLoss()(head(torch.randn(4, 8, device="cuda")) * 100)
        self.assertTrue(torch.isfinite(out))

    @parameterized.expand(
        [
            ["prior", {"prior": "class_prior"}],
            ["prior", {"prior": [0.5, 0.6]}],
            ["prior", {"prior": [1.2, -0.2]}],
            ["prior", {"prior": [[0.5, 0.5]]}],
            ["prior", {"prior": [float("nan"), 1.0]}],
            ["eps", {"eps": 0.0}],
        ]
    )
    def test_bad_init(self, name, kwargs):
        with self.assertRaisesRegex(ValueError, name):
            PriorRegularizationLoss(**kwargs)

    @parameterized.expand([["input", torch.zeros(3)], ["input", torch.zeros(0, 3)], ["prior", torch.zeros(2, 4)]])
    def test_bad_inputs(self, name, x):
        with self.assertRaisesRegex(ValueError, name):
            PriorRegularizationLoss(prior=[0.2, 0.3, 0.5])(x)


class TestEstimateClassPrior(unittest.TestCase):
    def test_values(self):
        for convert in TEST_NDARRAYS:
            assert_allclose(estimate_class_prior(convert(np.array([0, 0, 1, 3])), 4), [0.5, 0.25, 0.0, 0.25])
        assert_allclose(estimate_class_prior([0, 0], 2, smoothing=1.0), [0.75, 0.25])

    @parameterized.expand([["labels", [0, 4], 3], ["num_classes", [0], 0], ["labels", [], 3], ["labels", [-1], 2]])
    def test_errors(self, name, labels, num_classes):
        with self.assertRaisesRegex(ValueError, name):
            estimate_class_prior(labels, num_classes)


if __name__ == "__main__":
    unittest.main()
