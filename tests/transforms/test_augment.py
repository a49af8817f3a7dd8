# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Tests of the QMix weak/strong fundus augmentations and the multi-view transform."""

from __future__ import annotations

import unittest

import numpy as np
import torch
from monai.data import MetaTensor
from parameterized import parameterized

from monai_qmix.transforms.augment import (
    MultiViewd,
    RandColorJitter,
    RandColorJitterd,
    RandGrayscale,
    RandGrayscaled,
    fundus_strong_augment,
    fundus_test_transform,
    fundus_views,
    fundus_weak_augment,
)
from tests.utils import TEST_NDARRAYS, assert_allclose, retina_image, to_numpy

IMG = retina_image(32)


class TestRandGrayscale(unittest.TestCase):
    @parameterized.expand([[conv] for conv in TEST_NDARRAYS])
    def test_values_and_types(self, conv) -> None:
        img = conv(IMG)
        out = RandGrayscale(prob=1.0)(img)
        self.assertIsInstance(out, type(img))
        expected = 0.299 * IMG[0] + 0.587 * IMG[1] + 0.114 * IMG[2]
        for c in range(3):
            assert_allclose(to_numpy(out)[c], expected, rtol=1e-5, atol=1e-6)
        assert_allclose(RandGrayscale(prob=0.0)(img), IMG)

    def test_probability_and_seed(self) -> None:
        t = RandGrayscale(prob=0.2).set_random_state(0)
        hits = [
            bool(np.allclose(to_numpy(t(IMG))[0], to_numpy(t.__call__(IMG, randomize=False))[1])) for _ in range(200)
        ]
        self.assertTrue(0.1 < np.mean(hits) < 0.3)

    def test_dict_and_bad_input(self) -> None:
        d = RandGrayscaled(["a", "b"], prob=1.0)({"a": IMG, "b": IMG})
        assert_allclose(d["a"], d["b"])
        with self.assertRaisesRegex(ValueError, "RGB"):
            RandGrayscale(1.0)(np.zeros((1, 4, 4), np.float32))


class TestRandColorJitter(unittest.TestCase):
    @parameterized.expand([[conv] for conv in TEST_NDARRAYS])
    def test_range_type_and_meta(self, conv) -> None:
        img = conv(IMG)
        out = RandColorJitter(0.4, 0.4, 0.4).set_random_state(1)(img)
        self.assertIsInstance(out, type(img))
        self.assertEqual(tuple(out.shape), IMG.shape)
        o = to_numpy(out)
        self.assertGreaterEqual(o.min(), 0.0)
        self.assertLessEqual(o.max(), 1.0)
        self.assertFalse(np.allclose(o, IMG))

    def test_identity_and_brightness(self) -> None:
        assert_allclose(RandColorJitter(0, 0, 0)(IMG), IMG, atol=1e-6)
        t = RandColorJitter(0.4, 0, 0, clip=False).set_random_state(3)
        out = to_numpy(t(IMG))
        assert_allclose(out, IMG * t.factors[0], rtol=1e-5, atol=1e-6)
        self.assertTrue(0.6 <= t.factors[0] <= 1.4)

    def test_dict_same_draw_and_validation(self) -> None:
        d = RandColorJitterd(["a", "b"]).set_random_state(0)({"a": IMG, "b": IMG})
        assert_allclose(d["a"], d["b"])
        with self.assertRaisesRegex(ValueError, "contrast"):
            RandColorJitter(contrast=-1)


class TestMultiViewd(unittest.TestCase):
    def test_views_independent_and_seeded(self) -> None:
        data = {"image": MetaTensor(torch.as_tensor(IMG)), "label": 1}
        out1 = fundus_views("image").set_random_state(7)(data)
        out2 = fundus_views("image").set_random_state(7)(data)
        self.assertEqual(sorted(out1), ["image_s1", "image_s2", "image_w1", "image_w2", "label"])
        for k in ("image_w1", "image_w2", "image_s1", "image_s2"):
            self.assertEqual(tuple(out1[k].shape), (3, 32, 32))
            assert_allclose(out1[k], out2[k])
        self.assertFalse(np.allclose(to_numpy(out1["image_w1"]), to_numpy(out1["image_w2"])))
        self.assertFalse(np.allclose(to_numpy(out1["image_s1"]), to_numpy(out1["image_s2"])))
        assert_allclose(data["image"], IMG)  # the source is not modified
        out3 = fundus_views("image").set_random_state(8)(data)
        self.assertFalse(np.allclose(to_numpy(out1["image_s1"]), to_numpy(out3["image_s1"])))

    def test_options_and_validation(self) -> None:
        out = fundus_views("image", n_weak=1, n_strong=1, spatial_size=16, keep_source=True)({"image": IMG})
        self.assertEqual(sorted(out), ["image", "image_s1", "image_w1"])
        self.assertEqual(tuple(out["image_s1"].shape), (3, 16, 16))
        with self.assertRaisesRegex(ValueError, "keys"):
            MultiViewd(["a", "b"], {"x": RandGrayscale()})
        with self.assertRaisesRegex(ValueError, "source key"):
            MultiViewd("a", {"a": RandGrayscale()})
        with self.assertRaisesRegex(ValueError, "n_weak"):
            fundus_views(n_weak=0, n_strong=0)

    def test_active_views(self) -> None:
        mv = fundus_views("image", keep_source=True).set_random_state(0)
        self.assertIs(mv.set_active_views(["image_s1"]), mv)
        out = mv({"image": IMG, "label": 2})
        self.assertEqual(sorted(out), ["image", "image_s1", "label"])  # skipped views are neither made nor returned
        mv.set_active_views(("image_w2", "image_s1"))
        self.assertEqual(sorted(mv({"image": IMG})), ["image", "image_s1", "image_w2"])
        mv.set_active_views(None)
        self.assertEqual(sorted(mv({"image": IMG})), ["image", "image_s1", "image_s2", "image_w1", "image_w2"])
        for bad in (["image_s3"], []):
            with self.assertRaisesRegex(ValueError, "keys"):
                mv.set_active_views(bad)

    def test_weak_strong_test_transforms(self) -> None:
        weak = fundus_weak_augment().set_random_state(0)(IMG)
        self.assertAlmostEqual(float(to_numpy(weak).mean()), float(IMG.mean()), delta=0.1)  # geometry only
        strong = fundus_strong_augment(normalize=True).set_random_state(0)(IMG)
        self.assertEqual(tuple(strong.shape), IMG.shape)
        test = to_numpy(fundus_test_transform(normalize=True)(IMG.copy()))  # NormalizeIntensity works in place
        assert_allclose(test[0], (IMG[0] - 0.426) / 0.277, rtol=1e-4, atol=1e-5)


if __name__ == "__main__":
    unittest.main()
