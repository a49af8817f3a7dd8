# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Tests of the mixed-noise training-set builder: exact counts, groups, noise-file round trip, presets, errors."""

from __future__ import annotations

import io
import tempfile
import unittest
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
from parameterized import parameterized
from PIL import Image

from monai_qmix.data.mixed_noise import (
    MIXED_NOISE_PRESETS,
    NOISE_GROUPS,
    apply_noise_file,
    build_mixed_noise,
    format_noise_table,
    load_noise_file,
    mixed_noise_preset,
    noise_table,
    save_noise_file,
)
from tests.utils import retina_image


def clean_list(n_high: int = 200, n_low: int = 40, low_label: int = -1) -> list[dict]:
    """A DDR-like clean datalist: ``n_high`` gradable images (grades cycling 0-4), ``n_low`` ungradable ones."""
    items = [{"image": f"/x/h{i}.png", "label": i % 5, "quality": 1, "id": f"h{i}"} for i in range(n_high)]
    items += [{"image": f"/x/l{i}.png", "label": low_label, "quality": 0, "id": f"l{i}"} for i in range(n_low)]
    return [dict(d, index=i) for i, d in enumerate(items)]


def count(items: list[dict]) -> dict[str, int]:
    return {g: sum(d["noise_group"] == g for d in items) for g in NOISE_GROUPS}


class TestBuildMixedNoise(unittest.TestCase):
    @parameterized.expand(
        [
            # n_high, n_low, mis_h, mis_l, options, expected (correct, mis_h, mis_l), total
            [200, 40, 0.4, None, {"include_true": False}, (120, 80, 40), 240],
            [200, 40, 0.0, None, {}, (200, 0, 40), 240],
            [16, 4, 0.5, 0.5, {"include_true": False}, (5, 5, 10), 20],  # 4 natural + 6 synthetic (needs cache)
        ]
    )
    def test_exact_counts_and_groups(self, n_high, n_low, mis_h, mis_l, options, expected, total):
        with tempfile.TemporaryDirectory() as d:
            src = clean_list(n_high, n_low)
            if mis_l == 0.5:  # synthetic Mis-L needs real images
                src = _with_images(src, d)
            out, noise = build_mixed_noise(src, mis_h, mis_l, "symmetric", options, cache_dir=d, seed=1)
            self.assertEqual(len(out), total)
            self.assertEqual(tuple(count(out).values()), expected)
            self.assertEqual([it["index"] for it in out], list(range(total)))
            self.assertEqual(noise["counts"]["total"], total)
            for it in out:
                g = it["noise_group"]
                if g == "mis_h":
                    self.assertNotEqual(it["label"], it["true_label"])
                    self.assertEqual(it["quality"], 1)
                elif g == "correct":
                    self.assertEqual(it["label"], it["true_label"])
                    self.assertEqual(it["quality"], 1)
                else:
                    self.assertEqual(it["quality"], 0)
                self.assertIn(it["label"], range(5))
                self.assertEqual(src[it["source_index"]]["id"], it["id"])

    def test_include_true_selects_exact_but_flips_fewer(self):
        out, _ = build_mixed_noise(clean_list(), 0.5, None, "symmetric", {"include_true": True}, seed=0)
        n = count(out)["mis_h"]
        self.assertLess(n, 100)  # 100 selected, about 1/5 redraw their own grade
        self.assertGreater(n, 60)

    def test_mis_l_subset_of_natural(self):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            out, noise = build_mixed_noise(clean_list(), 0.2, 0.1, seed=0)
        self.assertTrue(any("left out" in str(x.message) for x in w))
        # n_l = round(0.1 * 200 / 0.9) = 22 natural images, N = 222
        self.assertEqual(len(out), 222)
        self.assertEqual(count(out)["mis_l"], 22)
        self.assertEqual(noise["counts"]["mis_l_synthetic"], 0)
        self.assertEqual(count(out)["mis_h"], 40)  # round(0.2 * 200) selected, strict flips by default

    def test_natural_labels(self):
        out, _ = build_mixed_noise(clean_list(n_low=500), 0.0, None, natural_label="class_prior", natural_prior="ddr")
        low = np.array([it["label"] for it in out if it["noise_group"] == "mis_l"])
        self.assertTrue(all(it["true_label"] == -1 for it in out if it["noise_group"] == "mis_l"))
        frac = np.bincount(low, minlength=5) / low.size
        np.testing.assert_allclose(frac, [0.5, 0.05, 0.35, 0.02, 0.08], atol=0.06)
        keep, _ = build_mixed_noise(clean_list(n_low=10, low_label=3), 0.0, None, natural_label="keep")
        self.assertTrue(all(it["label"] == 3 == it["true_label"] for it in keep if it["noise_group"] == "mis_l"))

    def test_deterministic(self):
        a, na = build_mixed_noise(clean_list(), 0.3, None, seed=4)
        b, nb = build_mixed_noise(clean_list(), 0.3, None, seed=4)
        c, _ = build_mixed_noise(clean_list(), 0.3, None, seed=5)
        self.assertEqual(a, b)
        self.assertEqual(na, nb)
        self.assertNotEqual([x["label"] for x in a], [x["label"] for x in c])

    def test_unknown_quality(self):
        src = [dict(d, quality=-1) for d in clean_list(50, 0)]
        out, _ = build_mixed_noise(src, 0.2)
        self.assertEqual(count(out), {"correct": 40, "mis_h": 10, "mis_l": 0})
        self.assertTrue(all(it["quality"] == 1 for it in out))
        with self.assertRaises(ValueError):
            build_mixed_noise(src, 0.2, unknown_quality="error")


def _with_images(src: list[dict], folder: str) -> list[dict]:
    img = (retina_image(32).transpose(1, 2, 0) * 255).astype(np.uint8)
    Image.fromarray(img).save(Path(folder) / "base.png")
    return [dict(d, image=str(Path(folder) / "base.png"), id=d["id"]) for d in src]


class TestSyntheticMisL(unittest.TestCase):
    def test_degraded_written_once_and_reproducible(self):
        with tempfile.TemporaryDirectory() as d, tempfile.TemporaryDirectory() as cache2:
            src = _with_images(clean_list(20, 0), d)
            cache = Path(d) / "cache"
            out, noise = build_mixed_noise(src, 0.0, 0.25, cache_dir=cache, seed=2)
            deg = [it for it in out if it["noise_group"] == "mis_l"]
            self.assertEqual(len(deg), 5)
            self.assertEqual(noise["counts"]["mis_l_synthetic"], 5)
            for it in deg:
                self.assertTrue(Path(it["image"]).is_file())
                self.assertNotEqual(it["image"], it["source_image"])
                self.assertEqual(it["label"], it["true_label"])  # synthetic_label="keep"
            # every item has the same keys (the list batches with the default collate)
            self.assertEqual(len({tuple(sorted(it)) for it in out}), 1)
            for it in out:
                if it["noise_group"] != "mis_l":
                    self.assertEqual((it["source_image"], it["degradation_seed"]), (it["image"], -1))
            from torch.utils.data import default_collate

            self.assertEqual(len(default_collate(out)["image"]), len(out))
            a = np.asarray(Image.open(deg[0]["image"]))
            self.assertEqual(a.shape, (32, 32, 3))
            self.assertFalse(np.array_equal(a, np.asarray(Image.open(deg[0]["source_image"]))))
            mtime = Path(deg[0]["image"]).stat().st_mtime_ns
            again = apply_noise_file(src, noise, cache_dir=cache)  # reused, not rewritten
            self.assertEqual(Path(again[deg[0]["index"]]["image"]).stat().st_mtime_ns, mtime)
            other = apply_noise_file(src, noise, cache_dir=cache2)  # regenerated identically elsewhere
            for x, y in zip(deg, [o for o in other if o["noise_group"] == "mis_l"]):
                np.testing.assert_array_equal(np.asarray(Image.open(x["image"])), np.asarray(Image.open(y["image"])))
            with self.assertRaises(ValueError):
                apply_noise_file(src, noise)  # no cache_dir


class TestNoiseFile(unittest.TestCase):
    def test_round_trip(self):
        src = clean_list()
        out, noise = build_mixed_noise(src, 0.5, None, "class_prior", {"prior": "ddr"}, seed=3)
        with tempfile.TemporaryDirectory() as d:
            path = save_noise_file(noise, Path(d) / "sub" / "noise.json")
            loaded = load_noise_file(path)
            self.assertEqual(apply_noise_file(src, loaded), out)
            self.assertEqual(loaded["spec"]["label_options"], {"prior": "ddr"})
            # a different clean datalist is refused
            with self.assertRaisesRegex(ValueError, "items"):
                apply_noise_file(src[:-1], loaded)
            with self.assertRaisesRegex(ValueError, "item 0"):
                apply_noise_file(src[::-1], loaded)
            bad = Path(d) / "bad.json"
            bad.write_text('{"format": "other"}')
            with self.assertRaises(ValueError):
                load_noise_file(bad)
            with self.assertRaises(FileNotFoundError):
                load_noise_file(Path(d) / "missing.json")


class TestPresets(unittest.TestCase):
    def test_names(self):
        self.assertEqual(
            sorted(MIXED_NOISE_PRESETS),
            sorted(
                [f"ddr_sym_L{a}_H{b}" for a, b in ((15, 20), (15, 50), (15, 80), (45, 20), (75, 20))]
                + [f"ddr_asym_L{a}_H{b}" for a, b in ((15, 30), (15, 50), (35, 20), (55, 20))]
            ),
        )
        p = mixed_noise_preset("ddr_sym_L15_H50")
        self.assertEqual((p["mis_l"], p["mis_h"], p["label_mode"]), (0.15, 0.5, "symmetric"))
        self.assertEqual(p["label_options"], {"include_true": True})
        p["mis_h"] = 0.9  # a copy: the table is not changed
        self.assertEqual(MIXED_NOISE_PRESETS["ddr_sym_L15_H50"]["mis_h"], 0.5)
        q = mixed_noise_preset("ddr_asym_L35_H20")
        self.assertEqual(
            (q["label_mode"], q["label_options"], q["natural_prior"]), ("class_prior", {"prior": "ddr"}, "ddr")
        )
        with self.assertRaises(ValueError):
            mixed_noise_preset("ddr_sym_L10_H10")

    def test_preset_builds(self):
        # 85 gradable + 15 ungradable: mis_l=0.15 uses all natural images exactly
        src = clean_list(85, 15)
        out, noise = build_mixed_noise(src, **mixed_noise_preset("ddr_asym_L15_H30"), seed=0)
        self.assertEqual(len(out), 100)
        self.assertEqual(count(out)["mis_l"], 15)
        self.assertLessEqual(count(out)["mis_h"], round(0.3 * 85))
        self.assertAlmostEqual(noise["counts"]["mis_l_fraction"], 0.15)


class TestNoiseTable(unittest.TestCase):
    def test_table(self):
        out, _ = build_mixed_noise(clean_list(), 0.4, None, seed=0)
        t = noise_table(out)
        self.assertEqual(t["total"][-1], 240)
        self.assertEqual(sum(t[g][-1] for g in NOISE_GROUPS), 240)
        self.assertEqual([t["total"][k] for k in range(5)], [sum(t[g][k] for g in NOISE_GROUPS) for k in range(5)])
        tt = noise_table(out, by="true_label", num_classes=5)
        self.assertEqual(tt["mis_l"][5], 40)  # ungradable: unknown true grade
        self.assertEqual(tt["correct"][:5], [t["correct"][k] for k in range(5)])
        text = format_noise_table(out)
        self.assertIn("mis_h", text)
        self.assertEqual(len(text.splitlines()), 5)
        with self.assertRaises(KeyError):
            noise_table(clean_list())
        with self.assertRaises(ValueError):
            noise_table(out, by="grade")


class TestCLI(unittest.TestCase):
    def test_on_synthdr(self):
        from monai_qmix.data.mixed_noise import main
        from monai_qmix.data.synthetic import generate_synthdr

        with tempfile.TemporaryDirectory() as d:
            generate_synthdr(Path(d) / "sdr", 10, size=32, seed=0)
            out = Path(d) / "noise.json"
            with redirect_stdout(io.StringIO()) as buf:
                rc = main(["--dataset", "aptos", "--dataset_dir", str(Path(d) / "sdr"), "--mis_h", "0.4",
                           "--seed", "1", "--out", str(out)])  # fmt: skip
            self.assertEqual(rc, 0)
            self.assertIn("mis_h", buf.getvalue())
            noise = load_noise_file(out)
            self.assertEqual(noise["counts"]["total"], 10)
            self.assertEqual(noise["counts"]["mis_h"], 4)


class TestErrors(unittest.TestCase):
    @parameterized.expand(
        [
            [{"mis_h": 1.5}],
            [{"mis_h": True}],
            [{"mis_l": 1.0}],
            [{"mis_l": -0.1}],
            [{"seed": -1}],
            [{"num_classes": 1}],
            [{"natural_label": "random"}],
            [{"natural_label": "keep"}],  # ungradable images have no grade to keep
            [{"mis_l": 0.5}],  # synthetic Mis-L without cache_dir
            [{"mis_l": 0.9}],  # needs more degraded images than exist
            [{"label_mode": "nope"}],
            [{"natural_label": "class_prior", "natural_prior": [0.5, 0.5]}],
        ]
    )
    def test_value_errors(self, kwargs):
        with self.assertRaises(ValueError):
            build_mixed_noise(clean_list(20, 10), **{"mis_h": 0.2, **kwargs})

    def test_bad_datalists(self):
        with self.assertRaises(ValueError):
            build_mixed_noise([], 0.1)
        with self.assertRaises(KeyError):
            build_mixed_noise([{"image": "a.png", "label": 1}], 0.1)
        with self.assertRaisesRegex(ValueError, "high-quality"):
            build_mixed_noise([{"image": "a.png", "label": -1, "quality": 1}], 0.1)
        with self.assertRaisesRegex(ValueError, "quality"):
            build_mixed_noise([{"image": "a.png", "label": 1, "quality": 2}], 0.1)


if __name__ == "__main__":
    unittest.main()
