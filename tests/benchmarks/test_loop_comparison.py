# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""``benchmarks/loop_comparison.py`` on two tiny robustness runs (two-loader loop vs oracle partition)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import unittest

from tests.benchmarks.test_robustness_cli import REPO, _RestoresTrackMeta, rb
from tests.utils import load_script

lc = load_script(REPO / "benchmarks" / "loop_comparison.py", "loop_comparison")
TINY = ["--num", "40", "--image_size", "32", "--backbone", "tiny", "--width", "4", "--epochs", "2",
        "--warmup_epochs", "1", "--methods", "standard,qmix", "--threads", "1", "--bootstrap", "0"]  # fmt: skip


class TestLoopComparison(_RestoresTrackMeta):
    def test_tables_and_plots(self):
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
            cache = ["--cache_dir", os.path.join(tmp, "c"), "--out", tmp]
            self.assertEqual(rb.main([*TINY, *cache, "--tag", "new"]), 0)
            self.assertEqual(rb.main([*TINY, *cache, "--tag", "oracle", "--oracle_partition"]), 0)
            new, oracle = os.path.join(tmp, "new.json"), os.path.join(tmp, "oracle.json")
            self.assertEqual(lc.main(["--variant", f"new={new}", "--variant", f"oracle={oracle}", "--out", tmp]), 0)
            with open(os.path.join(tmp, "loop_comparison.md")) as f:
                md = f.read()
            with open(os.path.join(tmp, "loop_comparison.json")) as f:
                rows = json.load(f)["rows"]
            with open(new) as f:
                rec = json.load(f)["presets"]["ddr_sym_L15_H50"]["methods"]["qmix"][0]
            for png in ("loop_comparison_qwk.png", "loop_comparison_targets.png"):
                self.assertTrue(os.path.isfile(os.path.join(tmp, png)))
                self.assertIn(f"]({png})", md)
            self.assertEqual(
                [(r["variant"], r["method"]) for r in rows],
                [("new", "standard"), ("new", "qmix"), ("oracle", "standard"), ("oracle", "qmix")],
            )
            q = rows[1]
            self.assertEqual(q["qwk_last"], [rec["last"]["test"]["qwk"]])
            diag = rec["epochs"][-1]["diagnostics"]
            self.assertEqual(q["agreement"], [diag["agreement"]])
            self.assertIn(f"| new | qmix | 0 | {rec['last']['test']['qwk']:.3f} |", md)
            self.assertEqual(rows[3]["agreement"], [1.0])  # the oracle gives both networks the same partition
            # runs of another setting are refused
            other = os.path.join(tmp, "other.json")
            with open(new) as f:
                res = json.load(f)
            res["config"]["epochs"] = 3
            with open(other, "w") as f:
                json.dump(res, f)
            with self.assertRaisesRegex(SystemExit, "epochs"):
                lc.main(["--variant", f"new={new}", "--variant", f"x={other}", "--out", tmp])
            with self.assertRaisesRegex(SystemExit, "NAME=run1.json"):
                lc.main(["--variant", new, "--out", tmp])


if __name__ == "__main__":
    unittest.main()
