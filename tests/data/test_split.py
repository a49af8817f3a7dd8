# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Tests of the patient-level split helper."""

from __future__ import annotations

import unittest
import warnings
from collections import Counter

from parameterized import parameterized

from monai_qmix.data.split import split_by_patient


def datalist(n_patients: int = 60, per_patient: int = 2) -> list[dict]:
    """Two eyes per patient, labels 0..4 (patient p's worst eye has grade p % 5)."""
    items = []
    for p in range(n_patients):
        for e in range(per_patient):
            label = p % 5 if e == 0 else max(0, p % 5 - 1)
            items.append({"image": f"/x/{p}_{e}.png", "label": label, "index": len(items), "patient": str(p)})
    return items


class TestSplitByPatient(unittest.TestCase):
    @parameterized.expand([[{"fractions": (0.7, 0.15, 0.15)}], [{"fractions": (4, 1)}], [{"n_folds": 5}]])
    def test_disjoint_complete_deterministic(self, kwargs):
        data = datalist()
        parts = split_by_patient(data, seed=3, **kwargs)
        patients = [{it["patient"] for it in p} for p in parts]
        for i in range(len(parts)):
            for j in range(i + 1, len(parts)):
                self.assertFalse(patients[i] & patients[j], f"parts {i} and {j} share patients")
        self.assertEqual(sorted(it["image"] for p in parts for it in p), sorted(it["image"] for it in data))
        self.assertEqual(parts, split_by_patient(data, seed=3, **kwargs))
        self.assertNotEqual(parts, split_by_patient(data, seed=4, **kwargs))
        frac = kwargs.get("fractions", [1] * kwargs.get("n_folds", 1))
        for p, f in zip(parts, frac):
            self.assertAlmostEqual(len(p) / len(data), f / sum(frac), delta=2 / len(data))  # within one patient
            self.assertEqual([it["index"] for it in p], list(range(len(p))))
            self.assertEqual([it["source_index"] for it in p], sorted(it["source_index"] for it in p))

    def test_stratified(self):
        data = datalist(100)
        train, val = split_by_patient(data, fractions=(0.8, 0.2), seed=0, stratify=True)
        worst = Counter(max(it["label"] for it in val if it["patient"] == p) for p in {it["patient"] for it in val})
        self.assertEqual(sorted(worst), [0, 1, 2, 3, 4])
        self.assertTrue(all(c == 4 for c in worst.values()), worst)  # 20 patients per stratum -> 4 each
        self.assertFalse({it["patient"] for it in train} & {it["patient"] for it in val})

    def test_no_patient_falls_back_per_image(self):
        data = [{"image": f"/x/{i}.png", "label": i % 2, "index": i} for i in range(10)]
        with self.assertWarnsRegex(UserWarning, "no item has a 'patient' key"):
            a, b = split_by_patient(data, fractions=(0.7, 0.3), seed=0)
        self.assertEqual((len(a), len(b)), (7, 3))
        data[0]["patient"] = "p"
        with self.assertWarnsRegex(UserWarning, "9 of 10 items lack"):
            split_by_patient(data, fractions=(0.5, 0.5), seed=0)

    def test_reindex_false_returns_originals(self):
        data = datalist(10)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            parts = split_by_patient(data, n_folds=2, seed=0, reindex=False)
        self.assertTrue(all(any(it is d for d in data) for p in parts for it in p))

    @parameterized.expand(
        [
            [{}, "exactly one"],
            [{"fractions": (0.5, 0.5), "n_folds": 2}, "exactly one"],
            [{"fractions": (0.5, -0.1)}, "positive"],
            [{"n_folds": 1}, "n_folds"],
            [{"fractions": (1, 1, 1, 1)}, "3 patient group"],
        ]
    )
    def test_errors(self, kwargs, msg):
        with self.assertRaisesRegex(ValueError, msg):
            split_by_patient(datalist(3), **kwargs)

    def test_empty(self):
        with self.assertRaisesRegex(ValueError, "empty"):
            split_by_patient([], n_folds=2)


if __name__ == "__main__":
    unittest.main()
