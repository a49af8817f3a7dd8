# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Tests of the fundus field-of-view preprocessing (mask, crop, Ben Graham's local contrast)."""

from __future__ import annotations

import functools
import unittest

import numpy as np
import torch
from monai.data import MetaTensor
from parameterized import parameterized

from monai_qmix.transforms.fundus import (
    CropFundusFOV,
    CropFundusFOVD,
    CropFundusFOVd,
    CropFundusFOVDict,
    FundusFOVMask,
    FundusFOVMaskD,
    FundusFOVMaskd,
    FundusFOVMaskDict,
    FundusLocalContrast,
    FundusLocalContrastD,
    FundusLocalContrastd,
    FundusLocalContrastDict,
    fov_bbox,
    fov_mask,
    gaussian_blur,
)
from tests.utils import TEST_NDARRAYS, assert_allclose, to_numpy
from tests.utils import retina_image as _retina_image

_COLOUR = torch.tensor([0.75, 0.4, 0.2])


@functools.lru_cache(maxsize=4)
def _cached_retina(size: int) -> np.ndarray:
    return _retina_image(size)


def retina_image(size: int = 64) -> np.ndarray:
    """``tests.utils.retina_image`` (the real CC0 fundus photo), cached: resizing the 1411 px photo is slow."""
    return _cached_retina(size).copy()


def disc_image(
    h: int = 64, w: int = 64, cy: int = 32, cx: int = 32, r: int = 24, bg: float = 0.0, noise: float = 0.0, seed=0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic fundus: an orange disc with a vessel-like dark stripe on a background ``bg`` (+ uniform noise)."""
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    disc = ((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r
    img = torch.full((3, h, w), bg)
    img[:, disc] = _COLOUR[:, None]
    img[:, disc & ((xx - cx).abs() <= 1)] *= 0.6  # a "vessel"
    if noise > 0:
        g = torch.Generator().manual_seed(seed)
        img = img + (~disc) * (torch.rand(3, h, w, generator=g) * 2 * noise - noise)
    return img, disc


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.bool(), b.bool()
    return float((a & b).sum()) / float((a | b).sum())


class TestFovMask(unittest.TestCase):
    def test_retina_covers_disc_not_corners(self):
        for conv in TEST_NDARRAYS:
            mask = FundusFOVMask()(conv(retina_image(64)))
            self.assertEqual(tuple(mask.shape), (1, 64, 64))
            m = torch.as_tensor(to_numpy(mask)).bool()[0]
            for corner in (m[:4, :4], m[:4, -4:], m[-4:, :4], m[-4:, -4:]):
                self.assertFalse(bool(corner.any()))
            self.assertTrue(bool(m[16:48, 16:48].all()))
            self.assertTrue(0.65 < float(m.float().mean()) < 0.9)

    @parameterized.expand([["clean", 0.0, 0.0], ["grey_noisy_bg", 0.03, 0.02], ["dark_noisy_bg", 0.06, 0.03]])
    def test_synthetic_disc(self, _name, bg, noise):
        img, disc = disc_image(bg=bg, noise=noise)
        mask = fov_mask(img)
        self.assertEqual(mask.dtype, torch.bool)
        self.assertGreater(iou(mask[0], disc), 0.97)

    def test_jpeg_like_noise_and_offset(self):
        img, disc = disc_image(h=96, w=96, cy=48, cx=48, r=40, bg=0.03, noise=0.02, seed=3)
        # 8x8 block offsets on the background mimic JPEG blocking
        blocks = torch.rand(1, 12, 12, generator=torch.Generator().manual_seed(1)) * 0.03
        img = img + (~disc) * blocks.repeat_interleave(8, 1).repeat_interleave(8, 2)
        self.assertGreater(iou(fov_mask(img)[0], disc), 0.97)

    def test_0_255_input(self):
        img, _ = disc_image(bg=0.03, noise=0.02)
        torch.testing.assert_close(fov_mask(img * 255.0), fov_mask(img))
        ret = torch.as_tensor(retina_image(64))
        as_uint8 = fov_mask((ret * 255).round().to(torch.uint8))  # integer input, rounding may move 1-2 edge pixels
        self.assertLessEqual(int((as_uint8 != fov_mask(ret)).sum()), 3)

    def test_batch_equals_single(self):
        imgs = [torch.as_tensor(retina_image(64)), disc_image(bg=0.03, noise=0.02)[0], disc_image(cx=20, r=15)[0]]
        batch = fov_mask(torch.stack(imgs))
        self.assertEqual(tuple(batch.shape), (3, 1, 64, 64))
        for i, img in enumerate(imgs):
            torch.testing.assert_close(batch[i], fov_mask(img))

    def test_largest_component_and_holes(self):
        img, disc = disc_image()
        img[:, 1:5, 1:12] = 1.0  # bright "text overlay" in a corner
        img[:, 28:36, 28:36] = 0.0  # black hole inside the FOV
        mask = fov_mask(img)[0]
        self.assertFalse(bool(mask[1:5, 1:12].any()))
        self.assertTrue(bool(mask[28:36, 28:36].all()))
        self.assertGreater(iou(mask, disc), 0.97)

    def test_erode_and_threshold(self):
        img, disc = disc_image(bg=0.03, noise=0.02)
        full, eroded = fov_mask(img), fov_mask(img, erode=3)
        self.assertTrue(bool((eroded <= full).all()))
        self.assertLess(int(eroded.sum()), int(full.sum()))
        # strictly inside: every eroded pixel is at least 3 px away from the disc border
        self.assertTrue(bool(disc[3:-3, 3:-3][eroded[0, 3:-3, 3:-3]].all()))
        self.assertGreater(iou(fov_mask(img, threshold=0.5)[0], disc), 0.97)

    def test_degenerate_images(self):
        self.assertFalse(bool(fov_mask(torch.zeros(3, 32, 32)).any()))
        self.assertTrue(bool(fov_mask(torch.full((3, 32, 32), 0.5)).all()))

    def test_bbox(self):
        img, _ = disc_image(h=64, w=96, cy=30, cx=60, r=20)
        y0, y1, x0, x1 = fov_bbox(fov_mask(img))
        self.assertTrue(abs(y0 - 10) <= 1 and abs(y1 - 51) <= 1 and abs(x0 - 40) <= 1 and abs(x1 - 81) <= 1)
        self.assertEqual(fov_bbox(np.pad(np.ones((1, 2, 3)), ((0, 0), (4, 5), (6, 7)))), (4, 6, 6, 9))
        with self.assertRaisesRegex(ValueError, "empty"):
            fov_bbox(torch.zeros(1, 8, 8, dtype=torch.bool))

    def test_transform_types_and_meta(self):
        img = retina_image(64)
        meta_in = MetaTensor(torch.as_tensor(img), meta={"filename_or_obj": "eye.png"})
        out = FundusFOVMask()(meta_in)
        self.assertIsInstance(out, MetaTensor)
        self.assertEqual(out.meta["filename_or_obj"], "eye.png")
        self.assertEqual(out.dtype, torch.float32)
        self.assertEqual(set(np.unique(to_numpy(out)).tolist()), {0.0, 1.0})
        self.assertIsInstance(FundusFOVMask()(img), np.ndarray)
        self.assertEqual(FundusFOVMask(dtype=torch.bool)(torch.as_tensor(img)).dtype, torch.bool)

    def test_dict(self):
        self.assertIs(FundusFOVMaskD, FundusFOVMaskd)
        self.assertIs(FundusFOVMaskDict, FundusFOVMaskd)
        img = torch.as_tensor(retina_image(64))
        d = FundusFOVMaskd(keys="image")({"image": img, "label": 2})
        assert_allclose(d["image_fov"], fov_mask(img).float())
        self.assertIs(d["image"], img)
        d = FundusFOVMaskd(keys=["a", "b"], mask_key=["ma", "mb"], erode=2)({"a": img, "b": img})
        assert_allclose(d["mb"], fov_mask(img, erode=2).float())
        with self.assertRaisesRegex(ValueError, "mask_key"):
            FundusFOVMaskd(keys=["a", "b"], mask_key="m")

    @parameterized.expand(
        [
            ["one_channel", (1, 32, 32), "3 channels, got 1"],
            ["four_channels", (4, 32, 32), "3 channels, got 4"],
            ["tiny", (3, 8, 32), "at least 16"],
            ["two_dims", (32, 32), "shape"],
        ]
    )
    def test_bad_input(self, _name, shape, msg):
        with self.assertRaisesRegex(ValueError, msg):
            fov_mask(torch.rand(shape))
        with self.assertRaisesRegex(ValueError, msg):
            FundusFOVMask()(np.random.default_rng(0).random(shape, dtype=np.float32))

    def test_bad_args(self):
        img = torch.as_tensor(retina_image(32))
        with self.assertRaisesRegex(ValueError, "threshold.*1.5"):
            fov_mask(img, threshold=1.5)
        with self.assertRaisesRegex(ValueError, "erode.*-1"):
            FundusFOVMask(erode=-1)

    @unittest.skipUnless(torch.cuda.is_available(), "needs CUDA")
    def test_cuda(self):
        img = torch.stack([torch.as_tensor(retina_image(64)), disc_image(bg=0.03, noise=0.02)[0]])
        mask = fov_mask(img.cuda())
        self.assertEqual(mask.device.type, "cuda")
        torch.testing.assert_close(mask.cpu(), fov_mask(img))


class TestCropFundusFOV(unittest.TestCase):
    def test_off_centre_disc_on_wide_canvas(self):
        img, disc = disc_image(h=64, w=128, cy=30, cx=90, r=20, bg=0.03, noise=0.02)
        for conv in TEST_NDARRAYS:
            out = CropFundusFOV()(conv(img))
            self.assertIsInstance(out, type(conv(img)))
            out = torch.as_tensor(to_numpy(out))
            self.assertEqual(out.shape[1], out.shape[2])
            self.assertTrue(39 <= out.shape[1] <= 43)
            # the disc is inside the crop: nearly all of its (red) intensity is kept
            self.assertGreater(float(out[0].sum()), 0.98 * float(img[0][disc].sum()))

    def test_pad_to_square_with_background(self):
        img, _ = disc_image(h=64, w=96, cy=32, cx=48, r=40, bg=0.05)  # disc truncated top and bottom
        out = CropFundusFOV()(img)
        self.assertEqual(tuple(out.shape), (3, 81, 81))  # columns 8..88 of the disc, 64 rows padded to 81
        assert_allclose(out[:, :8, 40], torch.full((3, 8), 0.05), atol=1e-6)  # padded rows = background
        out0 = CropFundusFOV(pad_value=0.0)(img)
        assert_allclose(out0[:, :8, 40], torch.zeros(3, 8))
        rect = CropFundusFOV(square=False)(img)
        self.assertEqual(tuple(rect.shape), (3, 64, 81))

    def test_metatensor_meta_dtype_and_replay(self):
        img, _ = disc_image(h=64, w=128, cy=30, cx=90, r=20)
        meta_in = MetaTensor(img.double(), meta={"filename_or_obj": "eye.png"})
        cropper = CropFundusFOV(margin=2)
        out = cropper(meta_in)
        self.assertIsInstance(out, MetaTensor)
        self.assertEqual(out.dtype, torch.float64)
        self.assertEqual(out.meta["filename_or_obj"], "eye.png")
        geometry = out.meta["fov_crop"]
        self.assertEqual(geometry["spatial_shape"], [64, 128])
        self.assertEqual(list(cropper.compute_box(img)), geometry["box"])
        self.assertGreaterEqual(len(out.applied_operations), 1)
        assert_allclose(out.affine[:2, 3], torch.tensor(geometry["box"][::2], dtype=torch.float64))
        # replaying the box on a copy gives the same crop
        assert_allclose(cropper(img.double(), box=geometry["box"]), out)

    def test_not_found_fallback(self):
        black = torch.zeros(3, 32, 48)
        with self.assertWarnsRegex(UserWarning, "no field of view"):
            out = CropFundusFOV()(black)
        self.assertIs(out, black)

    def test_bad_input(self):
        with self.assertRaisesRegex(ValueError, "3 channels, got 4"):
            CropFundusFOV()(torch.rand(4, 32, 32))
        with self.assertRaisesRegex(ValueError, "margin.*-2"):
            CropFundusFOV(margin=-2)
        with self.assertRaisesRegex(ValueError, "box"):
            CropFundusFOV()(torch.as_tensor(retina_image(32)), box=(0, 40, 0, 10))

    def test_dict(self):
        self.assertIs(CropFundusFOVD, CropFundusFOVd)
        self.assertIs(CropFundusFOVDict, CropFundusFOVd)
        img, disc = disc_image(h=64, w=128, cy=30, cx=90, r=20, bg=0.03, noise=0.02)
        seg = disc[None].float()
        d = CropFundusFOVd(keys=["image", "seg"])({"image": MetaTensor(img), "seg": seg, "label": 1})
        self.assertEqual(d["image"].shape[1:], d["seg"].shape[1:])
        self.assertEqual(d["seg"].shape[0], 1)
        self.assertEqual(float(d["seg"].sum()), float(seg.sum()))  # every disc pixel kept, padding is 0
        geometry = d["image_fov_crop"]
        self.assertEqual(geometry, d["image"].meta["fov_crop"])
        y0, y1, x0, x1 = geometry["box"]
        assert_allclose(d["image"][:, geometry["pad"][0] : geometry["pad"][0] + y1 - y0], img[:, y0:y1, x0:x1])
        self.assertEqual(d["label"], 1)
        with self.assertRaisesRegex(ValueError, "spatial shape"):
            CropFundusFOVd(keys=["image", "seg"])({"image": img, "seg": torch.zeros(1, 8, 8)})
        with self.assertRaises(KeyError):
            CropFundusFOVd(keys="image", source_key="missing")({"image": img})
        with self.assertWarnsRegex(UserWarning, "no field of view"):
            out = CropFundusFOVd(keys="image")({"image": torch.zeros(3, 32, 32)})
        self.assertEqual(tuple(out["image"].shape), (3, 32, 32))


class TestFundusLocalContrast(unittest.TestCase):
    def test_range_background_and_types(self):
        img = retina_image(64)
        for conv in TEST_NDARRAYS:
            x = conv(img)
            out = FundusLocalContrast()(x)
            self.assertIsInstance(out, type(x))
            self.assertEqual(tuple(out.shape), (3, 64, 64))
            o = torch.as_tensor(to_numpy(out))
            self.assertEqual(o.dtype, torch.float32)
            self.assertGreaterEqual(float(o.min()), 0.0)
            self.assertLessEqual(float(o.max()), 1.0)
            outside = ~fov_mask(torch.as_tensor(img))[0]
            assert_allclose(o[:, outside], torch.full_like(o[:, outside], 0.5))
            inside = o[:, ~outside]
            self.assertLess(abs(float(inside.mean()) - 0.5), 0.08)  # local average removed: grey on average
            self.assertGreater(float(inside.std()), 0.02)  # vessels kept as local contrast

    def test_flat_disc_becomes_grey_and_black_background(self):
        img, disc = disc_image()
        img[:, disc] = _COLOUR[:, None]  # no vessel: constant FOV
        out = FundusLocalContrast(background=0.0)(img)
        assert_allclose(out[:, disc], torch.full((3, int(disc.sum())), 0.5), atol=1e-3)  # masked blur: no rim
        assert_allclose(out[:, ~disc], torch.zeros(3, int((~disc).sum())))

    def test_formula_without_mask_effects(self):
        img = torch.as_tensor(retina_image(64))
        mask = torch.ones(1, 64, 64)
        out = FundusLocalContrast(sigma=3.0, masked_blur=False)(img, mask=mask)
        expected = (4 * img - 4 * gaussian_blur(img[None], 3.0)[0] + 0.5).clamp(0, 1)
        assert_allclose(out, expected, atol=1e-5)

    def test_0_255_dtype_and_batch(self):
        img = torch.as_tensor(retina_image(64))
        ref = FundusLocalContrast()(img)
        out255 = FundusLocalContrast()((img * 255).double())
        self.assertEqual(out255.dtype, torch.float64)
        assert_allclose(out255 / 255.0, ref, atol=1e-4)
        batch = torch.stack([img, disc_image(bg=0.03, noise=0.02)[0]])
        out_b = FundusLocalContrast()(batch)
        for i in range(2):
            assert_allclose(out_b[i], FundusLocalContrast()(batch[i]), atol=1e-6)

    def test_gaussian_blur(self):
        x = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(0))
        assert_allclose(gaussian_blur(torch.full((1, 3, 48, 48), 0.7), 7.0), torch.full((1, 3, 48, 48), 0.7), atol=1e-5)
        k = torch.exp(-0.5 * (torch.arange(-21, 22.0) / 7.0) ** 2)
        k = k / k.sum()
        ref = torch.nn.functional.pad(x, (21, 21, 21, 21), mode="replicate")
        ref = torch.nn.functional.conv2d(ref, k.view(1, 1, -1, 1).repeat(3, 1, 1, 1), groups=3)
        ref = torch.nn.functional.conv2d(ref, k.view(1, 1, 1, -1).repeat(3, 1, 1, 1), groups=3)
        self.assertLess(float((gaussian_blur(x, 7.0) - ref).abs().max()), 0.015)  # downsampled path ~ exact blur
        with self.assertRaisesRegex(ValueError, "sigma"):
            gaussian_blur(x, 0.0)

    def test_dict_with_mask_key(self):
        self.assertIs(FundusLocalContrastD, FundusLocalContrastd)
        self.assertIs(FundusLocalContrastDict, FundusLocalContrastd)
        img = MetaTensor(torch.as_tensor(retina_image(64)), meta={"filename_or_obj": "eye.png"})
        d = FundusFOVMaskd(keys="image")({"image": img})
        d = FundusLocalContrastd(keys="image", mask_key="image_fov", background=0.0)(d)
        self.assertIsInstance(d["image"], MetaTensor)
        self.assertEqual(d["image"].meta["filename_or_obj"], "eye.png")
        assert_allclose(d["image"], FundusLocalContrast(background=0.0)(img))

    def test_bad_input(self):
        with self.assertRaisesRegex(ValueError, "3 channels, got 1"):
            FundusLocalContrast()(torch.rand(1, 32, 32))
        with self.assertRaisesRegex(ValueError, "sigma.*-1"):
            FundusLocalContrast(sigma=-1)
        with self.assertRaisesRegex(ValueError, "mask"):
            FundusLocalContrast()(torch.as_tensor(retina_image(32)), mask=torch.ones(1, 16, 16))


if __name__ == "__main__":
    unittest.main()
