# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Unusable images: ``check_image``, ``prepare --check``, ``LoadFundusImaged`` and 16-bit scaling."""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import struct
import tempfile
import unittest
import zlib

import numpy as np
from parameterized import parameterized
from PIL import Image

from monai_qmix.data import LoadFundusImaged, UnreadableImageError, check_image, to_rgb
from monai_qmix.data.prepare import main as prepare_main
from tests.data.test_readers import make_aptos

#: file name -> expected start of the reason (``None``: usable).
CASES = {
    "ok.png": None,
    "grey16.png": None,
    "empty.png": "empty file (0 bytes)",
    "fake.jpg": "not a readable image (UnidentifiedImageError",
    "truncated.png": "not a readable image",
    "cmyk.jpg": "unsupported mode 'CMYK'",
    "float.tiff": "unsupported bit depth: 32-bit float",
    "int32.tiff": "unsupported bit depth: 32-bit integer",
}


def write_cases(folder: str) -> dict[str, str]:
    rng = np.random.default_rng(0)
    os.makedirs(folder, exist_ok=True)
    p = {name: os.path.join(folder, name) for name in CASES}
    Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(p["ok.png"])
    Image.fromarray((np.arange(24 * 24).reshape(24, 24) * 100).astype(np.uint16)).save(p["grey16.png"])
    open(p["empty.png"], "wb").close()
    with open(p["fake.jpg"], "w") as f:
        f.write("<html>not an image</html>")
    data = open(p["ok.png"], "rb").read()
    with open(p["truncated.png"], "wb") as f:
        f.write(data[: len(data) // 2])
    Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).convert("CMYK").save(p["cmyk.jpg"])
    Image.fromarray(rng.random((24, 24)).astype(np.float32)).save(p["float.tiff"])
    Image.fromarray(rng.integers(0, 2**20, (24, 24)).astype(np.int32)).save(p["int32.tiff"])
    return p


def write_png16_rgb(path: str, arr: np.ndarray) -> str:
    """A 16-bit-per-channel RGB PNG (PIL cannot write one)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))
    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(
            b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
        )
    return path


class TestCheckImage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.paths = write_cases(cls.tmp.name)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    @parameterized.expand(list(CASES.items()))
    def test_reason(self, name, expected):
        reason = check_image(self.paths[name])
        if expected is None:
            self.assertIsNone(reason)
        else:
            self.assertTrue(reason.startswith(expected), reason)
            self.assertNotIn("\n", reason)

    def test_missing(self):
        self.assertEqual(check_image(os.path.join(self.tmp.name, "nope.png")), "missing file")

    def test_16bit_scaled_by_depth(self):
        with Image.open(self.paths["grey16.png"]) as im:
            self.assertTrue(im.mode.startswith("I"))
            raw = np.asarray(im).astype(np.float64)
            rgb = np.asarray(to_rgb(im))
        self.assertEqual(rgb.dtype, np.uint8)
        self.assertEqual(rgb.shape, (24, 24, 3))
        np.testing.assert_array_equal(rgb[..., 0], np.rint(raw * 255 / 65535).astype(np.uint8))
        self.assertLess(int(rgb.max()), 255)  # not clipped: the largest value 57500 maps to 224
        self.assertEqual(int(rgb.max()), round(575 * 100 * 255 / 65535))

    def test_16bit_rgb_scaled_by_depth(self):
        arr = np.zeros((8, 8, 3), dtype=np.uint16)
        arr[..., 0], arr[..., 1], arr[..., 2] = 65535, 32768, 256
        with tempfile.TemporaryDirectory() as tmp:
            path = write_png16_rgb(os.path.join(tmp, "rgb16.png"), arr)
            self.assertIsNone(check_image(path))
            img = LoadFundusImaged("image")({"image": path})["image"]
        self.assertEqual([float(v) for v in img[0, 0]], [255.0, 128.0, 1.0])  # value / 256: the high byte

    def test_load_marks_or_raises(self):
        mark = LoadFundusImaged("image")
        ok = mark({"image": self.paths["ok.png"]})
        self.assertEqual(ok["load_error"], "")
        self.assertEqual(tuple(ok["image"].shape), (24, 24, 3))
        bad = mark({"image": self.paths["empty.png"]})
        self.assertEqual(bad["load_error"], "empty file (0 bytes)")
        self.assertEqual(bad["image"].meta["filename_or_obj"], self.paths["empty.png"])
        self.assertEqual(float(bad["image"].abs().sum()), 0.0)
        with self.assertRaises(UnreadableImageError) as cm:
            LoadFundusImaged("image", on_error="raise")({"image": self.paths["fake.jpg"]})
        self.assertIn(f"unreadable image '{self.paths['fake.jpg']}': not a readable image", str(cm.exception))
        again = pickle.loads(pickle.dumps(cm.exception))  # crosses DataLoader worker processes
        self.assertEqual((again.path, again.reason), (cm.exception.path, cm.exception.reason))

    def test_prepare_check_folder(self):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = prepare_main(["--check", "--dataset_dir", self.tmp.name, "--no_progress"])
        self.assertEqual(rc, 1)
        lines = out.getvalue().strip().splitlines()
        listed = {ln.split("\t")[0]: ln.split("\t")[1] for ln in lines[:-1]}
        self.assertEqual(set(listed), {self.paths[n] for n, e in CASES.items() if e is not None})
        for name, expected in CASES.items():
            if expected is not None:
                self.assertTrue(listed[self.paths[name]].startswith(expected))
        self.assertIn(f"checked {len(CASES)} images", lines[-1])
        self.assertIn(f"{sum(e is not None for e in CASES.values())} unusable", lines[-1])

    def test_prepare_check_dataset(self):
        with tempfile.TemporaryDirectory() as tmp:
            root = make_aptos(tmp, [("a1", 0), ("b2", 3), ("c3", 4)])
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                self.assertEqual(prepare_main(["--check", "--dataset", "aptos", "--dataset_dir", root]), 0)
            self.assertIn("checked 3 images", out.getvalue())
            open(os.path.join(root, "train_images", "b2.png"), "wb").close()
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                self.assertEqual(prepare_main(["--check", "--dataset", "aptos", "--dataset_dir", root]), 1)
            self.assertIn(f"{os.path.join(root, 'train_images', 'b2.png')}\tempty file (0 bytes)", out.getvalue())


if __name__ == "__main__":
    unittest.main()
