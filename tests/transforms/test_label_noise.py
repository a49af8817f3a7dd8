# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Tests of the synthetic label noise: ``corrupt_labels``, ``LabelNoise`` and ``LabelNoised``."""

from __future__ import annotations

import pickle
import random
import unittest

import numpy as np
import torch
from monai.data import DataLoader, Dataset, MetaTensor
from parameterized import parameterized

from monai_qmix.transforms.label_noise import (
    CLASS_PRIORS,
    LabelNoise,
    LabelNoiseD,
    LabelNoised,
    LabelNoiseDict,
    LabelNoiseMode,
    corrupt_labels,
    label_noise_matrix,
    select_noisy_samples,
)
from tests.utils import TEST_NDARRAYS, to_numpy

C = 5
LABELS = np.arange(203) % C  # N = 203: ratios give non-trivial roundings
PERM = np.eye(C)[[1, 2, 3, 4, 0]]  # a zero-diagonal permutation matrix: c -> c + 1 mod C

# (mode, options, every selected sample must change label)
MODES = [
    ("symmetric", {}, True),
    ("symmetric", {"include_true": True}, False),
    ("class_prior", {"prior": "ddr"}, False),
    ("asymmetric", {"prior": "ddr", "exclude_true": True}, True),
    ("class_prior", {}, False),
    ("ordinal", {"max_shift": 1}, True),
    ("ordinal", {"max_shift": 3}, True),
    ("transition", {"matrix": PERM}, True),
    ("transition", {"matrix": np.full((C, C), 1.0 / C)}, False),
]

# (kwargs for corrupt_labels, substrings the ValueError message must contain)
BASE = {"labels": LABELS, "ratio": 0.2, "mode": "symmetric", "num_classes": C}
BAD_INPUTS = [
    [{"ratio": -0.1}, ["ratio", "-0.1"]],
    [{"ratio": 1.5}, ["ratio", "1.5"]],
    [{"ratio": float("nan")}, ["ratio", "nan"]],
    [{"labels": [0, 1, 7]}, ["labels", "7", "num_classes=5"]],
    [{"labels": [0, -1, 2]}, ["labels", "-1"]],
    [{"labels": [0.5, 1.0]}, ["labels", "0.5"]],
    [{"labels": np.zeros((2, 3), dtype=int)}, ["labels", "(2, 3)"]],
    [{"num_classes": 1}, ["num_classes", "1"]],
    [{"mode": "symetric"}, ["mode", "symetric", "symmetric", "ordinal", "transition"]],
    [{"mode": "transition", "matrix": np.full((C, C), 0.3)}, ["matrix", "row-stochastic", "1.5"]],
    [{"mode": "transition", "matrix": np.eye(4)}, ["matrix", "(4, 4)", "(5, 5)"]],
    [{"mode": "transition", "matrix": -np.eye(C) + 2 * PERM}, ["matrix", "non-negative"]],
    [{"mode": "transition"}, ["matrix"]],
    [{"mode": "class_prior", "prior": [0.5, 0.5]}, ["prior", "num_classes=5", "(2,)"]],
    [{"mode": "class_prior", "prior": [0.5, 0.1, 0.1, 0.1, 0.1]}, ["prior", "sum to 1", "0.9"]],
    [{"mode": "class_prior", "prior": "eyepacs"}, ["prior", "eyepacs", "ddr"]],
    [{"mode": "class_prior", "prior": [1, 0, 0, 0, 0], "exclude_true": True}, ["prior", "exclude_true"]],
    [{"mode": "ordinal", "max_shift": 0}, ["max_shift", "0"]],
    [{"include_true": 1}, ["include_true", "1"]],
    [{"max_shift": 2}, ["max_shift", "symmetric", "include_true"]],
    [{"seed": -3}, ["seed", "-3"]],
    [{"candidates": [0, 1, 1]}, ["candidates", "duplicate"]],
    [{"candidates": [0, 500]}, ["candidates", "500"]],
    [{"candidates": np.ones(5, dtype=bool)}, ["candidates", "(203,)", "(5,)"]],
]


class TestCorruptLabels(unittest.TestCase):
    @parameterized.expand(MODES)
    def test_determinism(self, mode, options, _):
        a, fa = corrupt_labels(LABELS, 0.4, mode, C, seed=3, **options)
        b, fb = corrupt_labels(LABELS, 0.4, mode, C, seed=3, **options)
        c, _fc = corrupt_labels(LABELS, 0.4, mode, C, seed=4, **options)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(fa, fb)
        self.assertFalse(np.array_equal(a, c), "a different seed must give different noise")
        self.assertEqual(a.dtype, np.int64)
        self.assertEqual(fa.dtype, bool)
        np.testing.assert_array_equal(fa, a != LABELS)

    @parameterized.expand(MODES)
    def test_exact_selection_count(self, mode, options, always_flips):
        for ratio in (0.0, 0.1, 0.25, 0.5, 1.0):
            noisy, flipped = corrupt_labels(LABELS, ratio, mode, C, seed=1, **options)
            selected = select_noisy_samples(LABELS.size, ratio, seed=1)
            n_sel = round(ratio * LABELS.size)
            self.assertEqual(int(selected.sum()), n_sel)
            # only selected samples may change
            np.testing.assert_array_equal(noisy[~selected], LABELS[~selected])
            self.assertTrue(np.all(selected[flipped]))
            if always_flips:
                self.assertEqual(int(flipped.sum()), n_sel, f"{mode} {options} ratio={ratio}")
            else:
                self.assertLessEqual(int(flipped.sum()), n_sel)
            self.assertTrue(np.all((noisy >= 0) & (noisy < C)))

    def test_symmetric_other_classes_uniform(self):
        labels = np.zeros(4000, dtype=int)
        noisy, flipped = corrupt_labels(labels, 1.0, "symmetric", C, seed=0)
        self.assertTrue(np.all(flipped))
        counts = np.bincount(noisy, minlength=C)
        self.assertEqual(counts[0], 0)
        np.testing.assert_allclose(counts[1:] / 4000, 0.25, atol=0.03)

    def test_symmetric_include_true_rate(self):
        labels = np.arange(5000) % C
        _, flipped = corrupt_labels(labels, 0.5, "symmetric", C, seed=2, include_true=True)
        # 2500 selected, each keeps its class with probability 1/C
        self.assertAlmostEqual(flipped.sum() / 2500, (C - 1) / C, delta=0.03)

    def test_class_prior_follows_prior(self):
        labels = np.arange(5000) % C
        prior = np.asarray(CLASS_PRIORS["ddr"])
        noisy, _ = corrupt_labels(labels, 1.0, "asymmetric", C, seed=5, prior="ddr")
        counts = np.bincount(noisy, minlength=C)
        expected = prior * labels.size
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        self.assertLess(chi2, 25.0, f"chi-square {chi2:.1f} (df=4) for counts {counts.tolist()}")
        # independent of the true class: grade-0 and grade-3 images draw from the same prior
        for c in (0, 3):
            frac = np.bincount(noisy[labels == c], minlength=C) / (labels == c).sum()
            np.testing.assert_allclose(frac, prior, atol=0.04)

    def test_class_prior_exclude_true(self):
        labels = np.arange(5000) % C
        noisy, flipped = corrupt_labels(labels, 1.0, "class_prior", C, seed=5, prior="ddr", exclude_true=True)
        self.assertTrue(np.all(flipped))
        prior = np.asarray(CLASS_PRIORS["ddr"])
        grade1 = noisy[labels == 1]
        expected = prior * (1 - np.eye(C)[1])
        np.testing.assert_allclose(np.bincount(grade1, minlength=C) / grade1.size, expected / expected.sum(), atol=0.05)

    def test_class_prior_empirical(self):
        labels = np.array([0] * 900 + [2] * 100)
        noisy, _ = corrupt_labels(labels, 1.0, "class_prior", C, seed=0)
        counts = np.bincount(noisy, minlength=C)
        self.assertEqual(counts[1] + counts[3] + counts[4], 0, "empirical prior has mass only on 0 and 2")
        self.assertAlmostEqual(counts[2] / 1000, 0.1, delta=0.03)
        np.testing.assert_allclose(label_noise_matrix("class_prior", C, labels=labels)[4], [0.9, 0, 0.1, 0, 0])

    @parameterized.expand([[1], [2], [4]])
    def test_ordinal_range_and_shift(self, k):
        labels = np.arange(1000) % C
        noisy, flipped = corrupt_labels(labels, 1.0, "ordinal", C, seed=7, max_shift=k)
        shift = np.abs(noisy - labels)
        self.assertTrue(np.all((noisy >= 0) & (noisy < C)))
        self.assertTrue(np.all((shift >= 1) & (shift <= k)))
        self.assertTrue(np.all(flipped))
        if k == 1:
            np.testing.assert_array_equal(noisy[labels == 0], 1)
            np.testing.assert_array_equal(noisy[labels == C - 1], C - 2)
            self.assertEqual(set(noisy[labels == 2].tolist()), {1, 3})

    def test_transition_matrix_draws(self):
        noisy, flipped = corrupt_labels(LABELS, 0.3, "transition", C, seed=0, matrix=torch.as_tensor(PERM))
        np.testing.assert_array_equal(noisy[flipped], (LABELS[flipped] + 1) % C)
        # num_classes inferred from the matrix, also accepted as nested lists
        noisy2, _ = corrupt_labels(LABELS, 0.3, "transition", seed=0, matrix=PERM.tolist())
        np.testing.assert_array_equal(noisy, noisy2)

    def test_transition_identity_never_flips(self):
        noisy, flipped = corrupt_labels(LABELS, 1.0, "transition", C, seed=0, matrix=np.eye(C))
        np.testing.assert_array_equal(noisy, LABELS)
        self.assertFalse(flipped.any())

    def test_call_order_independence(self):
        first, _ = corrupt_labels(LABELS, 0.3, "ordinal", C, seed=11, max_shift=2)
        np.random.seed(123)
        random.seed(123)
        torch.manual_seed(123)
        corrupt_labels(LABELS, 0.6, "symmetric", C, seed=11)
        np.random.rand(17)
        corrupt_labels(np.arange(50) % 3, 0.5, "symmetric", 3, seed=99)
        second, _ = corrupt_labels(LABELS, 0.3, "ordinal", C, seed=11, max_shift=2)
        np.testing.assert_array_equal(first, second)

    def test_input_types(self):
        expected, expected_flip = corrupt_labels(LABELS.tolist(), 0.3, "symmetric", C, seed=0)
        for p in TEST_NDARRAYS:
            noisy, flipped = corrupt_labels(p(LABELS), 0.3, "symmetric", C, seed=0)
            self.assertIsInstance(noisy, np.ndarray)
            np.testing.assert_array_equal(noisy, expected)
            np.testing.assert_array_equal(flipped, expected_flip)
        noisy, _ = corrupt_labels(LABELS.astype(np.float32), 0.3, "symmetric", C, seed=0)
        np.testing.assert_array_equal(noisy, expected)

    def test_candidates(self):
        labels = LABELS.copy()
        labels[::4] = 5  # e.g. DDR "ungradable": not a candidate, passed through unchanged
        mask = labels != 5
        a, fa = corrupt_labels(labels, 0.5, "symmetric", C, seed=2, candidates=mask)
        b, fb = corrupt_labels(labels, 0.5, "symmetric", C, seed=2, candidates=np.flatnonzero(mask))
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(fa, fb)
        self.assertEqual(int(fa.sum()), round(0.5 * mask.sum()))
        self.assertFalse(fa[~mask].any())
        np.testing.assert_array_equal(a[~mask], 5)
        # non-candidate out-of-range ids are fine, candidate ones are not
        with self.assertRaisesRegex(ValueError, "labels"):
            corrupt_labels(labels, 0.5, "symmetric", C, seed=2)

    def test_empty(self):
        noisy, flipped = corrupt_labels([], 0.5, "symmetric", C)
        self.assertEqual(noisy.shape, (0,))
        self.assertEqual(flipped.shape, (0,))

    def test_mode_enum_and_alias(self):
        a, _ = corrupt_labels(LABELS, 0.3, LabelNoiseMode.ASYMMETRIC, C, prior="ddr")
        b, _ = corrupt_labels(LABELS, 0.3, "class_prior", C, prior="ddr")
        np.testing.assert_array_equal(a, b)
        for mode, options, _ in MODES:
            mat = label_noise_matrix(mode, C, labels=LABELS, **options)
            np.testing.assert_allclose(mat.sum(axis=1), 1.0)

    @parameterized.expand(BAD_INPUTS)
    def test_bad_inputs(self, overrides, fragments):
        kwargs = {**BASE, **overrides}
        with self.assertRaises(ValueError) as ctx:
            corrupt_labels(**kwargs)
        for fragment in fragments:
            self.assertIn(fragment, str(ctx.exception))


class TestLabelNoise(unittest.TestCase):
    @parameterized.expand(MODES)
    def test_matches_corrupt_labels(self, mode, options, _):
        options = dict(options) if options or mode != "class_prior" else {"prior": "ddr"}
        expected, expected_flip = corrupt_labels(LABELS, 0.35, mode, C, seed=8, **options)
        t = LabelNoise(0.35, mode, C, seed=8, num_samples=LABELS.size, **options)
        got = [t(int(lab), i) for i, lab in enumerate(LABELS)]
        np.testing.assert_array_equal(got, expected)
        # batched, in a shuffled order
        order = np.random.default_rng(0).permutation(LABELS.size)
        noisy, flag = t.corrupt(torch.as_tensor(LABELS[order]), torch.as_tensor(order))
        np.testing.assert_array_equal(noisy.numpy(), expected[order])
        np.testing.assert_array_equal(flag.numpy(), expected_flip[order])

    def test_keeps_label_type(self):
        t = LabelNoise(1.0, "ordinal", C, seed=0, num_samples=10)
        out, flag = t.corrupt(0, 3)
        self.assertIs(type(out), int)
        self.assertEqual((out, flag), (1, True))
        out, flag = t.corrupt(np.int32(4), 3)
        self.assertIs(type(out), np.int32)
        self.assertEqual(out, 3)
        self.assertIs(type(flag), bool)
        for p in TEST_NDARRAYS:
            lab = p(np.array([0], dtype=np.int64))
            out = t(lab, np.array([3]))
            self.assertIs(type(out), type(lab))
            self.assertEqual(tuple(out.shape), (1,))
            self.assertEqual(to_numpy(out).tolist(), [1])
        meta = MetaTensor(torch.tensor(2.0), meta={"filename_or_obj": "x.png"})
        out = t(meta, 3)
        self.assertIsInstance(out, MetaTensor)
        self.assertEqual(out.dtype, torch.float32)
        self.assertEqual(out.meta["filename_or_obj"], "x.png")
        self.assertIn(float(out), (1.0, 3.0))

    def test_bernoulli_without_num_samples(self):
        t = LabelNoise(0.3, "symmetric", C, seed=4)
        labels = np.arange(3000) % C
        idx = np.arange(3000)
        first = t(labels, idx)
        np.testing.assert_array_equal(first, t(labels, idx))
        np.testing.assert_array_equal(first, LabelNoise(0.3, "symmetric", C, seed=4)(labels, idx))
        self.assertAlmostEqual(float(np.mean(first != labels)), 0.3, delta=0.04)
        self.assertFalse(np.array_equal(first, LabelNoise(0.3, "symmetric", C, seed=5)(labels, idx)))
        # single-sample calls agree with the batched call, in any order
        for i in (2999, 17, 0, 1500):
            self.assertEqual(t(int(labels[i]), i), first[i])
        # candidates as indices: the others never change
        tc = LabelNoise(1.0, "symmetric", C, seed=4, candidates=[1, 2])
        self.assertEqual(tc(0, 0), 0)
        self.assertNotEqual(tc(0, 1), 0)

    def test_bad_call_inputs(self):
        t = LabelNoise(0.5, "symmetric", C, seed=0, num_samples=10)
        with self.assertRaisesRegex(ValueError, "index.*10"):
            t(1, 10)
        with self.assertRaisesRegex(ValueError, "index"):
            t([1, 2], [3])
        with self.assertRaisesRegex(ValueError, "label.*7"):
            LabelNoise(1.0, "symmetric", C, num_samples=10)(7, 0)
        with self.assertRaisesRegex(ValueError, "prior"):
            LabelNoise(0.5, "class_prior", C)
        with self.assertRaisesRegex(ValueError, "candidates.*num_samples"):
            LabelNoise(0.5, "symmetric", C, candidates=np.ones(4, dtype=bool))
        with self.assertRaisesRegex(ValueError, "ratio"):
            LabelNoise(2.0, "symmetric", C)
        with self.assertRaisesRegex(ValueError, "num_samples"):
            LabelNoise(0.5, "symmetric", C, num_samples=-1)


class TestLabelNoised(unittest.TestCase):
    def test_aliases(self):
        self.assertIs(LabelNoiseD, LabelNoised)
        self.assertIs(LabelNoiseDict, LabelNoised)

    @parameterized.expand([("ordinal", {"max_shift": 2}), ("class_prior", {"prior": "ddr"}), ("symmetric", {})])
    def test_matches_corrupt_labels_and_repeats(self, mode, options):
        expected, expected_flip = corrupt_labels(LABELS, 0.3, mode, C, seed=6, **options)
        t = LabelNoised(ratio=0.3, mode=mode, num_classes=C, seed=6, num_samples=LABELS.size, **options)
        data = [{"label": int(lab), "index": i, "image": f"img{i}.png"} for i, lab in enumerate(LABELS)]
        epochs = []
        for _ in range(2):
            loader = DataLoader(Dataset(data, transform=t), batch_size=32, shuffle=True, num_workers=0)
            got = np.full(LABELS.size, -1)
            for batch in loader:
                idx = batch["index"].numpy()
                got[idx] = batch["label"].numpy()
                np.testing.assert_array_equal(batch["true_label"].numpy(), LABELS[idx])
                np.testing.assert_array_equal(batch["label_noise_flag"].numpy(), expected_flip[idx])
            epochs.append(got)
        np.testing.assert_array_equal(epochs[0], expected)
        np.testing.assert_array_equal(epochs[1], expected)
        # a copy (as a DataLoader worker gets it) agrees
        clone = pickle.loads(pickle.dumps(t))
        self.assertEqual(clone(data[5])["label"], expected[5])

    def test_custom_keys_and_types(self):
        t = LabelNoised(
            keys="grade",
            ratio=1.0,
            num_classes=C,
            num_samples=4,
            index_key="idx",
            true_label_key="grade_true",
            flag_key="grade_noisy",
        )
        for p in TEST_NDARRAYS:
            out = t({"grade": p(np.array([2])), "idx": 1})
            self.assertIs(type(out["grade"]), type(out["grade_true"]))
            self.assertEqual(to_numpy(out["grade_true"]).tolist(), [2])
            self.assertNotEqual(to_numpy(out["grade"]).tolist(), [2])
            self.assertEqual(to_numpy(out["grade_noisy"]).tolist(), [True])
        out = t({"grade": 3, "idx": 0, "other": "x"})
        self.assertEqual(out["grade_true"], 3)
        self.assertIs(out["grade_noisy"], True)
        self.assertEqual(out["other"], "x")

    def test_errors(self):
        t = LabelNoised(ratio=0.5, num_classes=C, num_samples=4)
        with self.assertRaisesRegex(KeyError, "index"):
            t({"label": 1})
        with self.assertRaisesRegex(KeyError, "label"):
            t({"index": 1})
        self.assertEqual(LabelNoised(ratio=0.5, num_classes=C, allow_missing_keys=True)({"index": 1}), {"index": 1})
        with self.assertRaisesRegex(ValueError, "true_label"):
            t({"label": 1, "index": 0, "true_label": 2})
        out = t({"label": 1, "index": 0, "true_label": 1})  # consistent ground truth is fine
        self.assertEqual(out["true_label"], 1)
        with self.assertRaisesRegex(ValueError, "true_label_key"):
            LabelNoised(keys=["a", "b"], ratio=0.5, num_classes=C)
        with self.assertRaisesRegex(ValueError, "index_key"):
            LabelNoised(keys="index", ratio=0.5, num_classes=C)


if __name__ == "__main__":
    unittest.main()
