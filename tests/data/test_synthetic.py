# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Tests of SynthDR: lesion-defined grades, determinism, class balance, APTOS layout, CLI."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

import numpy as np
from parameterized import parameterized
from PIL import Image

from monai_qmix.data.synthetic import NUM_GRADES, generate_synthdr, grade_counts, main, render_fundus, synthdr_id


def _read_csv(folder: str) -> list[dict[str, str]]:
    with open(Path(folder) / "train.csv", newline="") as f:
        return list(csv.DictReader(f))


class TestRenderFundus(unittest.TestCase):
    @parameterized.expand([[g] for g in range(NUM_GRADES)])
    def test_lesions_define_grade(self, grade):
        for k in range(4):
            img, info = render_fundus(grade, 64, [3, grade * 10 + k])
            self.assertEqual(img.shape, (64, 64, 3))
            self.assertEqual(img.dtype, np.uint8)
            self.assertLess(img[0, 0].max(), 30)  # black corner outside the field of view
            self.assertGreater(img[32, 32].max(), 40)  # lit fundus in the centre
            les = info["lesions"]
            self.assertEqual(info["grade"], grade)
            if grade == 0:
                self.assertEqual(sum(les.values()), 0)
                self.assertFalse(info["venous_beading"])
            if grade == 1:
                self.assertGreater(les["ma"], 0)
                self.assertEqual(les["haem"] + les["exudate"] + les["cws"] + les["nv"] + les["preretinal"], 0)
            if grade == 2:
                self.assertGreater(les["haem"] + les["exudate"] + les["cws"], 0)
                self.assertLessEqual(les["haem"], 6)
                self.assertEqual(les["nv"] + les["preretinal"], 0)
                self.assertFalse(info["venous_beading"] or info["many_haemorrhages"])
            if grade == 3:
                self.assertTrue(info["venous_beading"] or info["many_haemorrhages"])
                self.assertEqual(les["nv"] + les["preretinal"], 0)
            if grade == 4:
                self.assertGreater(les["nv"] + les["preretinal"], 0)

    def test_deterministic_and_seed_dependent(self):
        a, ia = render_fundus(3, 48, [0, 5])
        b, ib = render_fundus(3, 48, np.random.default_rng([0, 5]))
        c, _ = render_fundus(3, 48, [0, 6])
        np.testing.assert_array_equal(a, b)
        self.assertEqual(ia, ib)
        self.assertFalse(np.array_equal(a, c))

    def test_retina_base(self):
        img, info = render_fundus(2, 48, [1, 1], retina_prob=1.0)
        self.assertEqual(info["base"], "retina")
        self.assertEqual(img.shape, (48, 48, 3))

    @parameterized.expand([[{"grade": 5}], [{"grade": -1}], [{"grade": 1.5}], [{"size": 16}], [{"retina_prob": 2.0}]])
    def test_errors(self, kwargs):
        args = {"grade": 1, "size": 64, "rng": 0, **kwargs}
        with self.assertRaises(ValueError):
            render_fundus(**args)


class TestGradeCounts(unittest.TestCase):
    @parameterized.expand(
        [
            [10, None, [2, 2, 2, 2, 2]],
            [7, None, [2, 2, 1, 1, 1]],
            [100, [0.5, 0.05, 0.35, 0.02, 0.08], [50, 5, 35, 2, 8]],
            [10, [1, 0, 0, 0, 1], [5, 0, 0, 0, 5]],
        ]
    )
    def test_exact(self, num, probs, expected):
        np.testing.assert_array_equal(grade_counts(num, probs), expected)

    @parameterized.expand([[0, None], [10, [1, 1]], [10, [-1, 1, 1, 1, 1]], [10, [0, 0, 0, 0, 0]]])
    def test_errors(self, num, probs):
        with self.assertRaises(ValueError):
            grade_counts(num, probs)


class TestGenerateSynthDR(unittest.TestCase):
    def test_aptos_layout_balance_determinism(self):
        with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
            rows = generate_synthdr(d1, 10, size=48, seed=7)
            generate_synthdr(d2, 10, size=48, seed=7, workers=2)  # output independent of the worker count
            table = _read_csv(d1)
            self.assertEqual(list(table[0]), ["id_code", "diagnosis"])
            self.assertEqual([r["id_code"] for r in table], [synthdr_id(7, i) for i in range(10)])
            self.assertEqual(np.bincount([int(r["diagnosis"]) for r in table], minlength=5).tolist(), [2] * 5)
            self.assertEqual([int(r["diagnosis"]) for r in table], [r["diagnosis"] for r in rows])
            self.assertEqual(table, _read_csv(d2))
            for r in table:
                a = np.asarray(Image.open(Path(d1) / "train_images" / f"{r['id_code']}.png"))
                b = np.asarray(Image.open(Path(d2) / "train_images" / f"{r['id_code']}.png"))
                self.assertEqual(a.shape, (48, 48, 3))
                np.testing.assert_array_equal(a, b)
            meta = json.loads((Path(d1) / "synthdr.json").read_text())
            self.assertEqual(meta["class_counts"], [2] * 5)
            self.assertEqual(len(meta["images"]), 10)
            with self.assertRaises(FileExistsError):
                generate_synthdr(d1, 10, size=48, seed=7)

    def test_reader_and_class_probs(self):
        from monai_qmix.data.readers import load_datalist

        with tempfile.TemporaryDirectory() as d:
            generate_synthdr(d, 8, size=40, seed=1, class_probs=[0, 0, 1, 0, 1])
            items = load_datalist("aptos", d)
            self.assertEqual(len(items), 8)
            self.assertEqual(sorted(it["label"] for it in items), [2] * 4 + [4] * 4)
            self.assertTrue(all(Path(it["image"]).is_file() for it in items))

    def test_cli(self):
        with tempfile.TemporaryDirectory() as d:
            out = str(Path(d) / "synth")
            rc = main(["--out", out, "--num", "5", "--size", "40", "--seed", "3", "--quiet", "--workers", "1",
                       "--class_probs", "1,1,1,1,1"])  # fmt: skip
            self.assertEqual(rc, 0)
            self.assertEqual(len(_read_csv(out)), 5)
            self.assertEqual(len(list((Path(out) / "train_images").glob("*.png"))), 5)

    @parameterized.expand([[{"size": 8}], [{"workers": 0}], [{"retina_prob": -0.1}], [{"class_probs": [1, 2]}]])
    def test_errors(self, kwargs):
        with tempfile.TemporaryDirectory() as d:
            with self.assertRaises(ValueError):
                generate_synthdr(d, **{"num": 3, **kwargs})


class TestInterrupt(unittest.TestCase):
    def test_ctrl_c_stops_workers_and_writes_no_csv(self):
        """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) with 2 workers: the generator stops
        at once (workers ignore SIGINT and are terminated), no train.csv is written, no worker is left."""
        repo = str(Path(__file__).resolve().parents[2])
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "sd")
            code = (
                "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
                "from monai_qmix.data.synthetic import main; "
                f"raise SystemExit(main(['--out', {out!r}, '--num', '3000', '--size', '96', '--workers', '2', "
                "'--quiet']))"
            )
            env = {**os.environ, "PYTHONPATH": repo}
            proc = subprocess.Popen(
                [sys.executable, "-c", code], env=env, start_new_session=True, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            images = Path(out, "train_images")
            deadline = time.time() + 120
            while (not images.is_dir() or len(os.listdir(images)) < 10) and time.time() < deadline:
                time.sleep(0.1)
            os.killpg(proc.pid, signal.SIGINT)
            try:
                _, err = proc.communicate(timeout=60)
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
            self.assertNotEqual(proc.returncode, 0)
            self.assertIn("KeyboardInterrupt", err)
            self.assertFalse(Path(out, "train.csv").exists())
            self.assertLess(len(os.listdir(images)), 3000)
            gone = False
            for _ in range(50):  # the whole group (parent and workers) is gone (reaped within a few seconds)
                try:
                    os.killpg(proc.pid, 0)
                except ProcessLookupError:
                    gone = True
                    break
                time.sleep(0.1)
            self.assertTrue(gone, "a SynthDR worker outlived the interrupted generator")


if __name__ == "__main__":
    unittest.main()
