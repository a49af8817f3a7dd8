# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Tests of SeparationWeightedLoss (QMix's sample reweighting behind a ``loss(pred, label)`` signature)."""

from __future__ import annotations

import doctest
import unittest
import warnings

import numpy as np
import torch
from parameterized import parameterized

import monai_qmix.losses.separation_weighted as module
from monai_qmix.losses import (
    OmegaSchedule,
    SampleReweighingLoss,
    SeparationWeightedLoss,
    co_guess,
    co_refine,
    pseudo_label,
)
from monai_qmix.separation import SeparationResult
from tests.utils import TEST_NDARRAYS, assert_allclose


def partition(groups, probs=None, indices=None) -> SeparationResult:
    """A SeparationResult with the given hard groups (posteriors one-hot unless given), indices 10, 11, ..."""
    g = np.asarray(groups, dtype=np.int64)
    n = len(g)
    p = np.eye(3, dtype=np.float32)[g] if probs is None else np.asarray(probs, dtype=np.float32)
    idx = np.arange(10, 10 + n, dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)
    z = np.zeros(n, dtype=np.float32)
    return SeparationResult(indices=idx, probs=p, groups=g, loss=z, uncertainty=z, loss_norm=z, uncertainty_norm=z)


def batch(b=6, c=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, c, generator=g, dtype=torch.float64, requires_grad=True)
    return logits, torch.randint(0, c, (b,), generator=g)


class TestSeparationWeightedLoss(unittest.TestCase):
    @parameterized.expand([("mean",), ("sum",), ("none",)])
    def test_cross_entropy_before_separation(self, reduction):
        logits, labels = batch()
        loss = SeparationWeightedLoss(reduction=reduction)
        loss.set_batch(torch.arange(6), None, epoch=1)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a warm-up batch is announced: no warning
            out = loss(logits, labels)
        ref = torch.nn.CrossEntropyLoss(reduction=reduction)(logits, labels)
        assert_allclose(out, ref, rtol=1e-6)
        self.assertEqual(loss.last_groups.tolist(), [0] * 6)
        self.assertEqual((loss.num_calls, loss.num_separated_calls), (1, 0))

    def test_groups_and_targets_by_index(self):
        logits, labels = batch()
        probs_post = np.array(
            [[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.2, 0.1, 0.7], [0.6, 0.3, 0.1], [0.3, 0.6, 0.1], [0.1, 0.2, 0.7]]
        )
        result = partition([0, 1, 2, 0, 1, 2], probs_post)
        order = [15, 10, 12, 11, 14, 13]  # a shuffled batch: groups follow the index, not the position
        loss = SeparationWeightedLoss(lambda_m=0.5, omega=0.3, temperature=0.5)
        for convert in TEST_NDARRAYS[:2]:
            loss.set_batch(convert(order), result, epoch=3)
            out = loss(logits, labels)
            pos = np.asarray(order) - 10
            groups = torch.as_tensor(result.groups[pos])
            post = torch.as_tensor(probs_post[pos], dtype=torch.float32)
            p = torch.softmax(logits.detach().float(), dim=1)
            targets = torch.stack(
                [
                    co_refine(labels, post[:, 0], p, 0.5)[i]
                    if g == 0
                    else (co_guess(p, p, 0.5)[i] if g == 1 else pseudo_label(labels, p, post, temperature=0.5)[i])
                    for i, g in enumerate(groups.tolist())
                ]
            )
            ref = SampleReweighingLoss(lambda_m=0.5, omega=0.3, normalization="batch")(logits, targets, groups)
            assert_allclose(out, ref, rtol=1e-5)
            self.assertEqual(loss.last_groups.tolist(), groups.tolist())
        self.assertEqual(loss.num_separated_calls, 2)
        self.assertEqual(
            {k: int(loss.last_terms[f"n_{k}"]) for k in ("correct", "mis_h", "mis_l")},
            dict.fromkeys(("correct", "mis_h", "mis_l"), 2),
        )
        out.backward()
        self.assertIsNotNone(logits.grad)  # gradient flows through the prediction, not through the targets

    def test_refine_correct_off_keeps_labels(self):
        logits, labels = batch(b=3)
        loss = SeparationWeightedLoss(refine_correct=False)
        loss.set_batch([10, 11, 12], partition([0, 0, 0]))
        assert_allclose(loss(logits, labels), torch.nn.functional.cross_entropy(logits, labels), rtol=1e-6)

    def test_scheduled_omega_uses_epoch(self):
        logits, labels = batch(b=4)
        sched = OmegaSchedule(omega0=0.8, max_epochs=10, warmup_epochs=2, schedule="linear")
        loss = SeparationWeightedLoss(omega=sched)
        loss.set_batch([10, 11, 12, 13], partition([2, 2, 0, 1]), epoch=6)
        loss(logits, labels)
        self.assertAlmostEqual(float(loss.last_terms["omega"]), sched(6), places=6)
        loss.set_batch([10, 11, 12, 13], partition([2, 2, 0, 1]))  # no epoch for a schedule
        with self.assertRaisesRegex(ValueError, "epoch"):
            loss(logits, labels)

    def test_without_set_batch_warns_once_and_falls_back(self):
        logits, labels = batch()
        loss = SeparationWeightedLoss()
        with self.assertWarnsRegex(UserWarning, "SeparationLossHandler"):
            out = loss(logits, labels)
        assert_allclose(out, torch.nn.functional.cross_entropy(logits, labels), rtol=1e-6)
        loss.set_batch(torch.arange(6), None)
        loss(logits, labels)  # consumes the batch
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loss(logits, labels)  # not set again: falls back, warned only the first time
        self.assertEqual([w for w in caught if "set_batch" in str(w.message)], [])

    def test_errors(self):
        logits, labels = batch()
        loss = SeparationWeightedLoss()
        loss.set_batch(torch.arange(5), None)
        with self.assertRaisesRegex(ValueError, "5 sample indices but the loss got 6"):
            loss(logits, labels)
        loss.set_batch([10, 11, 12, 13, 14, 99], partition([0] * 6))
        with self.assertRaisesRegex(KeyError, "99"):
            loss(logits, labels)
        with self.assertRaisesRegex(ValueError, "index"):
            loss.set_batch([0.5, 1.5], None)
        with self.assertRaisesRegex(TypeError, "separation"):
            loss.set_batch([0, 1], {"A": 1})
        with self.assertRaisesRegex(ValueError, "input"):
            loss(torch.zeros(6), labels)
        loss.set_batch(torch.arange(6), None)
        with self.assertRaisesRegex(ValueError, "target"):
            loss(logits, torch.zeros(6, 2))

    @parameterized.expand(
        [
            ({"mis_l_rule": "nope"}, "mis_l_rule"),
            ({"temperature": 0}, "temperature"),
            ({"omega": -1}, "omega"),
            ({"lambda_m": -1}, "lambda_m"),
            ({"normalization": "x"}, "normalization"),
            ({"mis_h_loss": "x"}, "mis_h_loss"),
            ({"reduction": "x"}, "LossReduction"),
        ]
    )
    def test_bad_options(self, kwargs, name):
        with self.assertRaisesRegex(ValueError, name):
            SeparationWeightedLoss(**kwargs)

    def test_docstring_example(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        self.assertGreater(result.attempted, 0)
        self.assertEqual(result.failed, 0)


if __name__ == "__main__":
    unittest.main()
