# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Tests of the dataset preparation (FOV crop, square, resize, PNG, datalist JSON, resumable, failures)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import unittest

import numpy as np
from PIL import Image

from monai_qmix.data.prepare import crop_to_fov, main, prepare_datalist
from monai_qmix.data.readers import load_datalist
from tests.utils import retina_image

RETINA = (retina_image(48).transpose(1, 2, 0) * 255).astype(np.uint8)


def fundus_jpeg(path: str, left: int, width: int = 80) -> None:
    """The 48 px retina photo on a wider black (not exactly 0) canvas, as a JPEG."""
    canvas = np.full((56, width, 3), 6, dtype=np.uint8)
    canvas[4:52, left : left + 48] = RETINA
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(canvas).save(path, quality=95)


class TestPrepare(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.data = os.path.join(self.tmp.name, "data")
        self.out = os.path.join(self.tmp.name, "out")
        for i, left in enumerate((4, 16, 28)):
            fundus_jpeg(os.path.join(self.data, "img", f"{i}.jpg"), left)
        with open(os.path.join(self.data, "img", "bad.jpg"), "wb") as f:
            f.write(b"\xff\xd8\xff\xe0 not a jpeg")
        rows = "".join(f"img/{n}.jpg,{g},1\n" for n, g in (("0", 0), ("bad", 1), ("1", 2), ("2", 4)))
        with open(os.path.join(self.data, "labels.csv"), "w") as f:
            f.write("image,label,quality\n" + rows)

    def tearDown(self):
        self.tmp.cleanup()

    def test_crop_to_fov(self):
        canvas = np.full((60, 100, 3), 5, dtype=np.uint8)
        canvas[6:54, 40:88] = RETINA
        out, found = crop_to_fov(canvas, 32)
        self.assertTrue(found)
        self.assertEqual(out.shape, (32, 32, 3))
        self.assertGreater(out[12:20, 12:20].mean(), 40)  # centre is retina
        self.assertLess(out[:2, :2].mean(), 15)  # corner outside the round FOV stays dark
        self.assertGreater(out[14:18, 1:3].mean(), 20)  # the FOV touches the left and right edges: cropped, not padded
        self.assertGreater(out[14:18, -3:-1].mean(), 20)
        black, found = crop_to_fov(np.zeros((40, 50, 3), dtype=np.uint8), 16)
        self.assertFalse(found)
        self.assertEqual(black.shape, (16, 16, 3))

    def test_prepare_resumable_and_failures(self):
        items = load_datalist("csv", self.data)
        with self.assertWarnsRegex(UserWarning, r"1 of 4 images could not be read.*bad\.jpg"):
            prepared, failures = prepare_datalist(items, self.out, size=32, root=self.data, progress=False)
        self.assertEqual([f["id"] for f in failures], ["img/bad.jpg"])
        self.assertIn("bad.jpg", json.load(open(os.path.join(self.out, "failures_train.json")))[0]["image"])
        self.assertEqual([it["index"] for it in prepared], [0, 1, 2])
        self.assertEqual([it["label"] for it in prepared], [0, 2, 4])
        for it in prepared:
            self.assertEqual(Image.open(it["image"]).size, (32, 32))
            self.assertTrue(it["image"].endswith(".png"))
            self.assertTrue(it["original_image"].endswith(".jpg"))
        self.assertEqual(prepared[0]["image"], os.path.join(self.out, "images", "img", "0.png"))
        self.assertEqual(load_datalist("json", self.out), prepared)  # the prepared copy reads back identically
        # resumable: existing outputs are skipped, a deleted one is re-made
        stamps = {it["image"]: os.stat(it["image"]).st_mtime_ns for it in prepared}
        os.remove(prepared[1]["image"])
        with self.assertWarns(UserWarning):
            again, _ = prepare_datalist(items, self.out, size=32, root=self.data, progress=False, workers=2)
        self.assertTrue(os.path.isfile(prepared[1]["image"]))
        self.assertEqual(os.stat(prepared[0]["image"]).st_mtime_ns, stamps[prepared[0]["image"]])
        self.assertEqual(again, prepared)
        self.assertFalse([f for f in os.listdir(os.path.dirname(prepared[0]["image"])) if ".tmp" in f])

    def test_cli(self):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), self.assertWarns(UserWarning):
            argv = ["--dataset", "csv", "--dataset_dir", self.data, "--out", self.out, "--size", "24"]
            self.assertEqual(main([*argv, "--no_progress", "--option", "num_classes=5"]), 0)
        self.assertIn("prepared 3 of 4 images", buf.getvalue())
        data = json.load(open(os.path.join(self.out, "datalist.json")))
        self.assertEqual(data["prepare"]["train"]["size"], 24)
        self.assertEqual(data["prepare"]["train"]["options"], {"num_classes": 5})
        self.assertEqual(data["train"][0]["image"], os.path.join("images", "img", "0.png"))

    def test_errors(self):
        items = load_datalist("csv", self.data)
        with self.assertRaisesRegex(ValueError, "size"):
            prepare_datalist(items, self.out, size=8)
        with self.assertRaisesRegex(ValueError, "workers"):
            prepare_datalist(items, self.out, workers=-1)
        with self.assertRaisesRegex(ValueError, "empty"):
            prepare_datalist([], self.out)


if __name__ == "__main__":
    unittest.main()
