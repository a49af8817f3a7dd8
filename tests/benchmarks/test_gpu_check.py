# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""``benchmarks/gpu_check.py`` on the CPU at toy size: the script's own code paths (not a GPU measurement)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import tempfile
import unittest
from pathlib import Path

import torch
from monai.data import get_track_meta, set_track_meta

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
gc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gc)


class TestGpuCheck(unittest.TestCase):
    def setUp(self):
        self._track_meta = get_track_meta()

    def tearDown(self):
        set_track_meta(self._track_meta)

    def test_finds_the_cuda_only_tests(self):
        ids = gc.cuda_test_ids()
        self.assertGreaterEqual(len(ids), 7)
        self.assertIn("tests/transforms/test_fundus.py::TestFovMask::test_cuda", ids)
        for node in ids:
            path = REPO / node.split("::")[0]
            self.assertTrue(path.is_file(), node)
            self.assertIn(f"def {node.split('::')[-1]}(", path.read_text())

    def test_cpu_dry_run_writes_the_report(self):
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
            argv = ["--device", "cpu", "--size", "32", "--steps", "4", "--cost_n", "32", "--backbones", "small_cnn",
                    "--threads", "1", "--workers", "0", "--out", tmp]  # fmt: skip
            self.assertEqual(gc.main(argv), 0)
            with open(os.path.join(tmp, "gpu_check.json")) as f:
                res = json.load(f)
            self.assertIn("NOT a GPU check", res["device"])
            self.assertFalse(res["steps"]["cuda_tests"]["run"])
            amp = res["steps"]["amp"]["small_cnn"]
            self.assertTrue(amp["losses_finite"])
            self.assertGreaterEqual(amp["iterations"], 6)  # warm-up (2 passes of 2 steps) + a QMix epoch
            cost = res["steps"]["cost"]["small_cnn"]
            self.assertTrue(cost["ok"])
            self.assertGreater(cost["qmix_epoch_over_floor"], 0)
            self.assertTrue(os.path.isfile(os.path.join(tmp, "gpu_check.md")))

    @unittest.skipIf(torch.cuda.is_available(), "checks the refusal on a machine without CUDA")
    def test_cuda_requested_without_cuda_is_refused(self):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), self.assertRaises(SystemExit):
            gc.parse_args([])
        self.assertIn("no CUDA device", err.getvalue())


if __name__ == "__main__":
    unittest.main()
