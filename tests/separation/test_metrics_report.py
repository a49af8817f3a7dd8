# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Tests of ``separation_metrics``, ``group_codes`` and the CSV / PNG records."""

from __future__ import annotations

import csv
import os
import tempfile
import unittest

import numpy as np
import torch
from parameterized import parameterized

from monai_qmix.separation import (
    GROUP_NAMES,
    SeparationResult,
    group_codes,
    plot_separation,
    separation_metrics,
    write_separation_csv,
)


def hand_result(mode: str = "qmix") -> SeparationResult:
    """Six samples with hand-set posteriors: predicted groups 0, 0, 1, 1, 2, 2."""
    probs = np.array(
        [[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.4, 0.5, 0.1], [0.1, 0.1, 0.8], [0.3, 0.2, 0.5]],
        dtype=np.float32,
    )
    if mode == "dividemix":
        probs = np.stack([probs[:, 0], 1 - probs[:, 0], np.zeros(6)], 1).astype(np.float32)
    z = np.linspace(0, 1, 6, dtype=np.float32)
    return SeparationResult(
        indices=np.arange(10, 16),
        probs=probs,
        groups=np.array([0, 0, 1, 1, 2, 2]),
        loss=z,
        uncertainty=z,
        loss_norm=z,
        uncertainty_norm=z,
        mode=mode,
        labels=np.array([0, 1, 2, 0, 1, 2]),
    )


TRUTH_CODES = [0, 1, 1, 1, 2, 0]


class TestSeparationMetrics(unittest.TestCase):
    @parameterized.expand(
        [
            [TRUTH_CODES],
            [["correct", "mis_h", "Mis-H", "noisy", "mis_l", "clean"]],
            [torch.tensor(TRUTH_CODES)],
            [{10 + i: g for i, g in enumerate(TRUTH_CODES)}],
            [[-1] * 10 + TRUTH_CODES],  # looked up by index (position = sample index)
        ]
    )
    def test_values(self, truth):
        m = separation_metrics(hand_result(), truth)
        self.assertEqual(m["n"], 6)
        # AUC_clean: P(correct) [.9,.6,.2,.4,.1,.3] vs truth==correct at positions 0 and 5 -> 6/8 pairs ordered
        self.assertAlmostEqual(m["auc_clean"], 0.75)
        # AUC_good: P(correct)+P(mis_h) vs truth != mis_l (only position 4 is mis_l, lowest score) -> 1.0
        self.assertAlmostEqual(m["auc_good"], 1.0)
        conf = np.array([[1, 0, 1], [1, 2, 0], [0, 0, 1]])
        np.testing.assert_array_equal(m["confusion"], conf)
        self.assertAlmostEqual(m["precision"]["correct"], 0.5)
        self.assertAlmostEqual(m["recall"]["mis_h"], 2 / 3)
        self.assertAlmostEqual(m["accuracy"], 4 / 6)

    def test_unknown_and_undefined(self):
        with self.assertWarnsRegex(UserWarning, "AUC_clean undefined"):
            m = separation_metrics(hand_result(), [None, "unknown", 1, 1, 2, -1])
        self.assertEqual(m["n"], 3)
        self.assertTrue(np.isnan(m["auc_clean"]) and np.isnan(m["precision"]["correct"]))
        dm = separation_metrics(hand_result("dividemix"), TRUTH_CODES)
        self.assertTrue(np.isnan(dm["auc_good"]))
        self.assertAlmostEqual(dm["auc_clean"], 0.75)

    def test_invalid(self):
        with self.assertRaisesRegex(ValueError, "unknown group 'wrong'"):
            group_codes(["wrong"])
        with self.assertRaisesRegex(ValueError, "code 7"):
            group_codes([7])
        with self.assertRaisesRegex(ValueError, "noise_group: has 3 entries"):
            separation_metrics(hand_result(), [0, 1, 2])
        np.testing.assert_array_equal(group_codes(["1", np.nan, "bad", "MIS_L"]), [1, -1, 2, 2])


class TestRecords(unittest.TestCase):
    def test_csv_and_png(self):
        res = hand_result()
        with tempfile.TemporaryDirectory() as tmp:
            path = write_separation_csv(
                res, os.path.join(tmp, "sub", "sep.csv"), images=[f"i{i}" for i in range(6)], noise_group=TRUTH_CODES
            )
            with open(path) as f:
                rows = list(csv.DictReader(f))
            self.assertEqual(len(rows), 6)
            self.assertEqual(rows[4]["group"], "mis_l")
            self.assertEqual(rows[5]["true_group"], "correct")
            self.assertEqual((rows[0]["index"], rows[0]["image"], rows[1]["label"]), ("10", "i0", "1"))
            self.assertAlmostEqual(float(rows[0]["p_correct"]), 0.9, places=5)
            plain = write_separation_csv(res, os.path.join(tmp, "plain.csv"))
            with open(plain) as f:
                header = f.readline().strip().split(",")
            self.assertNotIn("true_group", header)
            with self.assertRaisesRegex(ValueError, "images"):
                write_separation_csv(res, os.path.join(tmp, "x.csv"), images=["a"])
            png = plot_separation(res, os.path.join(tmp, "sep.png"), title="t", max_points=4)
            with open(png, "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
            self.assertGreater(os.path.getsize(png), 5000)
        self.assertEqual(GROUP_NAMES, ("correct", "mis_h", "mis_l"))


if __name__ == "__main__":
    unittest.main()
