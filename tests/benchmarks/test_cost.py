# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Tests of ``benchmarks/cost.py``'s output (not of its timings): the two-loader pass floor, the partition sizes it is
computed from, the ratios, and the forward rows the trainer really ran against the rows the floor assumes."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
import unittest
from pathlib import Path

import torch
from monai.data import get_track_meta, set_track_meta

import monai_qmix.handlers.separation as separation_module
from tests.utils import load_script

REPO = Path(__file__).resolve().parents[2]


cost = load_script(REPO / "benchmarks" / "cost.py", "cost_benchmark")

TWO_LOADER = ("qmix", "dividemix", "warmup_4v")
METHODS = ("standard", *TWO_LOADER, "qmix_single")


class TestFloor(unittest.TestCase):
    def test_two_loader_floor_formula(self):
        """Full batches: 2·N·f + Σ_k B·steps_k·(6f + 2vF); warm-up: Σ_k rows·F; single loop: n'·(6f + 4F)."""
        b, n = 8, 40
        args = argparse.Namespace(batch=b, n=n)
        pc = {f"f_train_b{b}": 1.0, f"F_b{b}": 10.0}
        plan = {
            "A": {"n_x": 30, "n_u": 10, "steps": 3, "rows_x": 24, "rows_u": 24},
            "B": {"n_x": 20, "n_u": 20, "steps": 2, "rows_x": 16, "rows_u": 16},
        }
        floor, rows = cost.floor_seconds("qmix", pc, args, n_used=n, plan=plan)
        self.assertAlmostEqual(floor, 2 * n * 1.0 + b * (3 + 2) * (6 * 1.0 + 4 * 10.0))
        self.assertEqual(rows, {"fwd_nograd": 2.0 * 40 + 4.0 * 40, "fwd_grad": 2.0 * 80})
        floor, _ = cost.floor_seconds("qmix_sv1", pc, args, n_used=n, plan=plan)
        self.assertAlmostEqual(floor, 2 * n * 1.0 + b * (3 + 2) * (6 * 1.0 + 2 * 10.0))
        warm = {k: {"n_x": n, "n_u": 0, "steps": 2, "rows_x": 32, "rows_u": 0} for k in ("A", "B")}
        floor, rows = cost.floor_seconds("warmup_4v", pc, args, n_used=n, plan=warm)
        self.assertAlmostEqual(floor, 64 * 10.0)
        self.assertEqual(rows, {"fwd_nograd": 0.0, "fwd_grad": 64.0})
        floor, _ = cost.floor_seconds("qmix_single", pc, args, n_used=n, plan=None)
        self.assertAlmostEqual(floor, n * (6 * 1.0 + 4 * 10.0))
        with self.assertRaisesRegex(ValueError, "plan"):
            cost.floor_seconds("qmix", pc, args, n_used=n, plan=None)


class TestCostOutput(unittest.TestCase):
    """One toy run of the two-loader methods beside CE and the single loop; checks the output's structure."""

    def setUp(self):
        # main() switches MetaTensor tracking off, sets torch's thread count and wraps two separation functions
        self._state = (get_track_meta(), torch.get_num_threads())
        self._fns = (separation_module.score_samples, separation_module.separate)

    def tearDown(self):
        set_track_meta(self._state[0])
        torch.set_num_threads(self._state[1])
        separation_module.score_samples, separation_module.separate = self._fns

    def test_toy_run_reports_floor_partition_and_ratios(self):
        with tempfile.TemporaryDirectory() as tmp:
            argv = ["--n", "48", "--size", "32", "--batch", "8", "--repeats", "1", "--discard", "0"]
            argv += ["--pass_reps", "1", "--view_samples", "2", "--no_memory", "--device", "cpu", "--out", tmp]
            argv += ["--tag", "toy", "--methods", ",".join(METHODS)]
            with contextlib.redirect_stdout(io.StringIO()):
                cost.main(argv)
            with open(os.path.join(tmp, "toy.json")) as f:
                res = json.load(f)
            with open(os.path.join(tmp, "toy.md")) as f:
                md = f.read()
        self.assertEqual(list(res["methods"]), list(METHODS))
        for k in ("f_train_b8", "F_b8", "F_b32", "f_eval_b16", "f_eval_b32"):
            self.assertIn(k, res["pass_costs_ms_per_sample"])
        for m, r in res["methods"].items():
            for k in ("epoch_s", "floor_s", "floor_per_sample_ms", "epoch_over_floor", "epoch_over_floor_used_batches"):
                self.assertGreater(r[k], 0.0, f"{m}: {k}")
            self.assertTrue(r["rows_match_floor"], f"{m}: forward rows differ from the floor's")
        for m in TWO_LOADER:
            r = res["methods"][m]
            self.assertEqual(r["loop"], "two_loader")
            (plan,) = r["partition_per_round"]
            self.assertEqual(sorted(plan), ["A", "B"])
            for p in plan.values():
                self.assertEqual(sorted(p), ["n_u", "n_x", "rows_u", "rows_x", "steps"])
                self.assertEqual(p["n_x"] + p["n_u"], 48)
                self.assertGreater(p["steps"], 0)
        self.assertEqual(res["methods"]["qmix_single"]["loop"], "single")
        self.assertNotIn("partition_per_round", res["methods"]["qmix_single"])
        self.assertIn("2·N·f + Σ_k [R_x,k·(2f + vF) + R_u,k·(4f + vF)]", md)
        self.assertIn("## Two-loader partitions", md)
        for m in TWO_LOADER:
            self.assertIn(f"| {m} | two_loader |", md)
            self.assertIn(f"| {m} | 1 |", md)


if __name__ == "__main__":
    unittest.main()
