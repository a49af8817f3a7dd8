# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Tests of the fundus quality degradations (monai_qmix.transforms.degradation)."""

from __future__ import annotations

import json
import unittest

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from parameterized import parameterized

from monai_qmix.transforms.degradation import (
    DEGRADATION_META_KEY,
    DEGRADATION_TYPES,
    RandFundusBlur,
    RandFundusBlurd,
    RandFundusDegradation,
    RandFundusDegradationd,
    RandFundusIllumination,
    RandFundusIlluminationd,
    RandFundusSpot,
    _separable_blur,
    parse_degradation_type,
)
from monai_qmix.transforms.fundus import fov_mask
from tests.utils import TEST_NDARRAYS, assert_allclose, retina_image, to_numpy

IMG = torch.as_tensor(retina_image(64))
FOV = fov_mask(IMG)  # (1, 64, 64) bool
INNER = fov_mask(IMG, erode=4)[0]  # strictly inside the FOV, away from its border edge

ALL_TRANSFORMS = [
    ("illumination", lambda: RandFundusIllumination()),
    ("spot", lambda: RandFundusSpot()),
    ("blur", lambda: RandFundusBlur(blur_kernel_rule="full_gaussian")),
    ("combined", lambda: RandFundusDegradation("111", blur_kernel_rule="full_gaussian")),
]


def laplacian_var(img: torch.Tensor, region: torch.Tensor) -> float:
    gray = img.mean(dim=0, keepdim=True)[None]
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    lap = F.conv2d(gray, k, padding=1)[0, 0]
    return float(lap[region].var())


class TestParseType(unittest.TestCase):
    @parameterized.expand(
        [
            ("001", "001"),
            ("111", "111"),
            ("illumination", "001"),
            ("spot", "010"),
            ("blur", "100"),
            ("illumination+blur", "101"),
            ("Spot+Blur", "110"),
            ("all", "111"),
        ]
    )
    def test_codes_and_names(self, spec, code):
        self.assertEqual(parse_degradation_type(spec), code)

    @parameterized.expand([("000",), ("012",), ("noise",), ("1111",), ("",)])
    def test_bad_codes(self, spec):
        with self.assertRaisesRegex(ValueError, "de_type"):
            parse_degradation_type(spec)


class TestRandFundusDegradation(unittest.TestCase):
    @parameterized.expand(ALL_TRANSFORMS)
    def test_determinism(self, _, make):
        a = make().set_random_state(3)(IMG, fov=FOV)
        b = make().set_random_state(3)(IMG, fov=FOV)
        c = make().set_random_state(4)(IMG, fov=FOV)
        assert_allclose(a, b, rtol=0, atol=0)
        self.assertGreater(float((torch.as_tensor(a) - torch.as_tensor(c)).abs().max()), 1e-3)

    @parameterized.expand(ALL_TRANSFORMS)
    def test_types_kept_and_background_unchanged(self, _, make):
        for p in TEST_NDARRAYS:
            for dtype in (np.float32, np.float64):
                img = p(IMG.numpy().astype(dtype))
                out = make().set_random_state(0)(img)  # FOV estimated internally
                self.assertIsInstance(out, MetaTensor)
                self.assertEqual(out.shape, (3, 64, 64))
                self.assertEqual(out.dtype, torch.float64 if dtype == np.float64 else torch.float32)
                outside = ~FOV.expand(3, -1, -1).numpy()
                np.testing.assert_array_equal(to_numpy(out)[outside], to_numpy(img)[outside])
                self.assertIn(DEGRADATION_META_KEY, out.meta)
                self.assertGreater(float(np.abs(to_numpy(out) - to_numpy(img))[~outside].max()), 1e-3)

    def test_meta_preserved_and_uint8(self):
        img = MetaTensor(IMG.clone(), meta={"filename_or_obj": "eye.png"})
        out = RandFundusDegradation().set_random_state(0)(img, fov=FOV)
        self.assertEqual(out.meta["filename_or_obj"], "eye.png")
        img8 = (IMG * 255).round().to(torch.uint8)
        out8 = RandFundusDegradation().set_random_state(0)(img8, fov=FOV)
        self.assertEqual(out8.dtype, torch.uint8)
        outside = ~FOV.expand(3, -1, -1)
        self.assertTrue(torch.equal(out8.as_tensor()[outside], img8[outside]))
        # same degradation as the float path, up to the 8-bit quantisation
        self.assertLess(float((out8.float() / 255 - out.as_tensor()).abs().max()), 0.02)

    def test_blur_lowers_laplacian_variance(self):
        before = laplacian_var(IMG, INNER)
        for t in (
            RandFundusBlur(blur_kernel_rule="full_gaussian"),
            RandFundusBlur(reference_size=64),  # official kernel rule at the native size of the image
        ):
            out = torch.as_tensor(t.set_random_state(0)(IMG, fov=FOV))
            self.assertLess(laplacian_var(out, INNER), 0.8 * before)

    def test_hole_darkens_a_region(self):
        t = RandFundusIllumination(color=False, halo=False).set_random_state(0)
        diff = (torch.as_tensor(t(IMG, fov=FOV)) - IMG).mean(dim=0)
        self.assertLess(float(diff.min()), -0.1)  # a strong local darkening...
        self.assertLessEqual(float(diff.max()), 1e-6)  # ...and nothing brighter
        cy, cx = t.last_params["hole"]["center"]
        self.assertLess(float(diff[int(cy * 64), int(cx * 64)]), -0.1)  # darkest around the drawn centre

    def test_spots_add_bright_blobs(self):
        t = RandFundusSpot().set_random_state(0)
        out = torch.as_tensor(t(IMG, fov=FOV))
        diff = (out - IMG).mean(dim=0)
        self.assertGreaterEqual(float(diff.min()), -1e-6)
        self.assertGreater(float(diff.max()), 0.05)
        spots = t.last_params["spot"]["spots"]
        self.assertTrue(5 <= len(spots) <= 10)
        inside = [s for s in spots if FOV[0, int(s["center"][0] * 64), int(s["center"][1] * 64)]]
        for s in inside:  # each spot brightens its centre
            self.assertGreater(float(diff[int(s["center"][0] * 64), int(s["center"][1] * 64)]), 0.01)
        bright = diff > 0.01
        self.assertLess(float(bright[FOV[0]].float().mean()), 0.5)  # blobs, not a global shift

    def test_illumination_color_shifts_mean_and_contrast(self):
        dark = RandFundusIllumination(halo=False, hole=False, brightness=(0.7, 0.7), contrast=(0.6, 0.6))
        out = torch.as_tensor(dark.set_random_state(0)(IMG, fov=FOV))
        region = INNER.expand(3, -1, -1)
        self.assertLess(float(out[region].mean()), float(IMG[region].mean()) - 0.05)
        self.assertLess(float(out[region].std()), 0.8 * float(IMG[region].std()))
        halo = RandFundusIllumination(color=False, hole=False).set_random_state(0)
        diff = (torch.as_tensor(halo(IMG, fov=FOV)) - IMG).mean(dim=0)
        self.assertGreater(float(diff[FOV[0]].max()), 0.02)  # the halo adds light at the rim
        self.assertGreaterEqual(float(diff.min()), -1e-6)

    def test_severity(self):
        out0 = RandFundusDegradation(severity=0.0).set_random_state(0)(IMG, fov=FOV)
        assert_allclose(out0, IMG, atol=1e-6)
        deltas = []
        for s in ("mild", "moderate", "severe"):
            out = torch.as_tensor(RandFundusDegradation("illumination", severity=s).set_random_state(0)(IMG, fov=FOV))
            deltas.append(float((out - IMG).abs().mean()))
        self.assertTrue(deltas[0] < deltas[1] < deltas[2], deltas)

    def test_prob_zero_and_type_choice(self):
        t = RandFundusDegradation(prob=0.0).set_random_state(0)
        out = t(IMG, fov=FOV)
        assert_allclose(out, IMG, rtol=0, atol=0)
        self.assertEqual(t.last_params, {"applied": False})
        t = RandFundusDegradation(de_type=DEGRADATION_TYPES).set_random_state(0)
        drawn = set()
        for _ in range(30):
            t.randomize()
            drawn.add(t.last_params["type"])
        self.assertGreater(len(drawn), 4)

    def test_batch_equals_single(self):
        batch = torch.stack([IMG, IMG.flip(-1), IMG * 0.8, IMG.flip(-2)])
        for kwargs in (
            {"de_type": "111", "blur_kernel_rule": "full_gaussian"},
            {"de_type": DEGRADATION_TYPES, "prob": 0.6},
        ):
            out = RandFundusDegradation(**kwargs).set_random_state(7)(batch)
            self.assertEqual(out.shape, batch.shape)
            single = RandFundusDegradation(**kwargs).set_random_state(7)
            expected = torch.stack([torch.as_tensor(single(im)) for im in batch])
            assert_allclose(out, expected, atol=1e-5)
            self.assertIsInstance(json.loads(out.meta[DEGRADATION_META_KEY]), list)

    def test_replay(self):
        t = RandFundusDegradation(blur_kernel_rule="full_gaussian").set_random_state(1)
        out = t(IMG, fov=FOV)
        params = out.meta[DEGRADATION_META_KEY]  # a JSON string (collates into batches)
        self.assertEqual(json.loads(params), json.loads(json.dumps(t.last_params)))
        with self.assertRaisesRegex(ValueError, "not a JSON record"):
            t.apply(IMG, "{oops", fov=FOV)
        replayed = RandFundusDegradation().set_random_state(99).apply(IMG, params, fov=FOV)
        assert_allclose(replayed, out, rtol=0, atol=0)
        # the parameters are size independent: replay at another size degrades the same way
        big = torch.as_tensor(retina_image(128))
        self.assertEqual(t.apply(big, params).shape, (3, 128, 128))
        # batch replay and randomize=False
        batch = torch.stack([IMG, IMG.flip(-1)])
        out_b = t(batch)
        assert_allclose(t.apply(batch, t.last_params), out_b, rtol=0, atol=0)
        assert_allclose(t(batch, randomize=False), out_b, rtol=0, atol=0)

    def test_dict(self):
        data = {"image": IMG.clone(), "copy": IMG.clone(), "fov": FOV}
        t = RandFundusDegradationd(keys=("image", "copy"), fov_key="fov", de_type="101")
        self.assertIs(t.set_random_state(0), t)
        out = t(data)
        assert_allclose(out["image"], out["copy"], rtol=0, atol=0)
        self.assertEqual(json.loads(out["image"].meta[DEGRADATION_META_KEY])["type"], "101")
        self.assertEqual(t.last_params["type"], "101")
        ref = RandFundusDegradation(de_type="101").set_random_state(0)(IMG, fov=FOV)
        assert_allclose(out["image"], ref, rtol=0, atol=0)
        for cls in (RandFundusIlluminationd, RandFundusBlurd):
            self.assertEqual(cls(keys="image").set_random_state(0)(data)["image"].shape, (3, 64, 64))
        with self.assertRaisesRegex(KeyError, "fov_key"):
            RandFundusDegradationd(keys="image", fov_key="mask")(data)

    @parameterized.expand(
        [
            ("one channel", torch.rand(1, 64, 64), "3, H, W"),
            ("four channels", torch.rand(4, 64, 64), "3, H, W"),
            ("non-square", torch.rand(3, 64, 48), "square"),
            ("tiny", torch.rand(3, 16, 16), "at least"),
            ("0-255 float", IMG * 255, r"\[0, 1\]"),
        ]
    )
    def test_bad_images(self, _, img, msg):
        with self.assertRaisesRegex(ValueError, msg):
            RandFundusDegradation()(img)

    @parameterized.expand(
        [
            ({"de_type": "000"}, "de_type"),
            ({"de_type": "foo"}, "de_type"),
            ({"de_type": []}, "de_type"),
            ({"severity": 1.5}, "severity"),
            ({"severity": "extreme"}, "extreme"),
            ({"prob": 2.0}, "prob"),
            ({"illumination": ("color", "glare")}, "illumination"),
            ({"halo_presets": (3,)}, "halo_presets"),
            ({"brightness": (1.2, 0.7)}, "brightness"),
            ({"num_spots": (0, 3)}, "num_spots"),
            ({"blur_kernel_rule": "box"}, "box"),
        ]
    )
    def test_bad_options(self, kwargs, msg):
        with self.assertRaisesRegex(ValueError, msg):
            RandFundusDegradation(**kwargs)

    def test_bad_params_and_fov(self):
        t = RandFundusDegradation().set_random_state(0)
        t(IMG, fov=FOV)
        with self.assertRaisesRegex(ValueError, "params"):
            t.apply(torch.stack([IMG, IMG]), t.last_params)
        with self.assertRaisesRegex(ValueError, "fov"):
            t(IMG, fov=torch.ones(1, 32, 32, dtype=torch.bool))
        with self.assertRaisesRegex(ValueError, "at least one"):
            RandFundusIllumination(color=False, halo=False, hole=False)

    def test_blur_paths_agree(self):
        # the CPU path (shifted multiply-adds) and the CUDA path (grouped convolution) compute the same blur
        x = torch.rand(3, 2, 40, 40, generator=torch.Generator().manual_seed(0))
        wy, wx = torch.tensor([1.0, 4.5, 31.0]), torch.tensor([3.0, 7.0, 50.0])
        sy, sx = torch.tensor([1.0, 2.0, 9.0]), torch.tensor([0.5, 3.0, 20.0])
        a = _separable_blur(x, wy, wx, sy, sx, use_conv=False)
        b = _separable_blur(x, wy, wx, sy, sx, use_conv=True)
        assert_allclose(a, b, atol=1e-5)
        self.assertEqual(a.shape, x.shape)
        self.assertTrue(bool((a.flatten(1).var(dim=1) < x.flatten(1).var(dim=1)).all()))  # smoother
        assert_allclose(a.mean(), x.mean(), atol=0.02)  # normalised kernels keep the mean

    def test_fov_mask_forms(self):
        t = RandFundusSpot().set_random_state(0)
        ref = t(IMG, fov=FOV)
        for fov in (FOV[0].numpy(), FOV.float(), FOV[None]):
            assert_allclose(t(IMG, fov=fov, randomize=False), ref, rtol=0, atol=0)
        batch = torch.stack([IMG, IMG])
        out = t(batch, fov=FOV)  # one mask broadcast over the batch
        self.assertEqual(out.shape, (2, 3, 64, 64))

    @unittest.skipUnless(torch.cuda.is_available(), "needs CUDA")
    def test_cuda_matches_cpu(self):
        batch = torch.stack([IMG, IMG.flip(-1)])
        fov = FOV.expand(2, 1, -1, -1)
        cpu = RandFundusDegradation(blur_kernel_rule="full_gaussian").set_random_state(0)(batch, fov=fov)
        gpu = RandFundusDegradation(blur_kernel_rule="full_gaussian").set_random_state(0)(batch.cuda(), fov=fov.cuda())
        self.assertEqual(gpu.device.type, "cuda")
        assert_allclose(gpu.cpu(), cpu, atol=1e-4)


if __name__ == "__main__":
    unittest.main()


class TestDegradationCollate(unittest.TestCase):
    def test_dataloader_batches_mixed_records(self):
        """Images degraded with different types, or not at all (prob < 1), batch with MONAI's collate: the record
        is a JSON string per image."""
        from monai.data import DataLoader, Dataset

        data = [{"image": MetaTensor(IMG.clone(), meta={"filename_or_obj": f"{i}.png"})} for i in range(6)]
        t = RandFundusDegradationd(keys="image", de_type=DEGRADATION_TYPES, prob=0.5).set_random_state(3)
        batch = next(iter(DataLoader(Dataset(data, transform=t), batch_size=6, num_workers=0)))
        self.assertEqual(batch["image"].shape, (6, 3, 64, 64))
        records = [json.loads(r) for r in batch["image"].meta[DEGRADATION_META_KEY]]
        self.assertEqual(len(records), 6)
        applied = [r["applied"] for r in records]
        self.assertTrue(any(applied) and not all(applied), applied)  # both kinds in one batch
