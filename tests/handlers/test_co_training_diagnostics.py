# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Tests of ``CoTrainingDiagnosticsHandler``: target accuracies, partition agreement, group make-up, CSV."""

from __future__ import annotations

import csv
import math
import os
import tempfile
import unittest
from types import SimpleNamespace

import numpy as np
import torch
from monai.data import set_track_meta
from monai.utils import set_determinism
from parameterized import parameterized

from monai_qmix.handlers import CoTrainingDiagnosticsHandler, CoTrainingEvents, FixedPartitionHandler
from tests.engines.test_trainer import CLASSES, N, build, make_items, mixed_result

TRUE = [i % CLASSES for i in range(N)]  # make_items: the ring radius codes class i % CLASSES


def fixed(shift_a: int, shift_b: int) -> FixedPartitionHandler:
    return FixedPartitionHandler(lambda k, e: mixed_result(shift_a if k == "A" else shift_b), warmup_epochs=1)


class TestCoTrainingDiagnostics(unittest.TestCase):
    def setUp(self) -> None:
        set_track_meta(False)

    def tearDown(self) -> None:
        set_track_meta(True)
        set_determinism(None)

    @parameterized.expand([["qmix", "two_loader"], ["qmix", "single"], ["dividemix", "two_loader"]])
    def test_accuracies_match_a_hand_count(self, method: str, loop: str) -> None:
        trainer = build(method, max_epochs=3, separation_handler=fixed(0, 1), lambda_c=0.0, loop=loop)
        handler = CoTrainingDiagnosticsHandler(true_labels=TRUE)
        handler.attach(trainer)
        seen: list[dict] = []
        trainer.add_event_handler(
            CoTrainingEvents.TARGETS_COMPLETED,
            lambda e: seen.append({"epoch": e.state.epoch, **{k: np.asarray(v) for k, v in e.state.targets.items()
                                                           if k != "network"}, "network": e.state.targets["network"]}),
        )  # fmt: skip
        trainer.run()
        self.assertEqual([r["epoch"] for r in handler.history], [1, 2, 3])
        warm = handler.history[0]
        self.assertTrue(math.isnan(warm["acc_refined_A"]) and warm["n_refined_A"] == 0)  # warm-up: no targets
        self.assertTrue(math.isnan(warm["agreement"]))
        given = np.asarray([it["label"] for it in make_items()])
        for row in handler.history[1:]:
            for k in ("A", "B"):
                rows = [r for r in seen if r["epoch"] == row["epoch"] and r["network"] == k]
                self.assertTrue(rows)
                idx = np.concatenate([r["index"] for r in rows])
                grp = np.concatenate([r["group"] for r in rows])
                tgt = np.concatenate([r["target"] for r in rows])
                lab = np.concatenate([r["label"] for r in rows])
                np.testing.assert_array_equal(lab, given[idx])
                partition = mixed_result(1 if k == "A" else 0)  # A trains on B's partition (co-divide)
                expect_groups = partition.groups[idx]
                if method == "dividemix":
                    expect_groups = np.where(expect_groups == 0, 0, 1)
                np.testing.assert_array_equal(grp, expect_groups)
                for g, kind in enumerate(("refined", "guessed", "pseudo")):
                    sel = grp == g
                    self.assertEqual(row[f"n_{kind}_{k}"], int(sel.sum()))
                    if sel.any():
                        self.assertAlmostEqual(
                            row[f"acc_{kind}_{k}"], float(np.mean(tgt[sel] == np.asarray(TRUE)[idx[sel]]))
                        )
                        self.assertAlmostEqual(row[f"given_{kind}_{k}"], float(np.mean(tgt[sel] == lab[sel])))
                    else:
                        self.assertTrue(math.isnan(row[f"acc_{kind}_{k}"]))
                if method == "dividemix":
                    self.assertEqual(row[f"n_pseudo_{k}"], 0)
            # partitions of A (shift 1) and B (shift 0) never agree
            self.assertEqual(row["agreement"], 0.0)
            self.assertEqual(row["correct_overlap"], 0.0)

    def test_observer_changes_nothing_and_writes_csv(self) -> None:
        def run(with_handler: bool, out: str | None = None) -> tuple[list[torch.Tensor], CoTrainingDiagnosticsHandler]:
            trainer = build("qmix", max_epochs=3, separation_handler=fixed(0, 0), lambda_c=0.05)
            evaluator = SimpleNamespace(state=SimpleNamespace(metrics={"val_qwk": 0.5, "val_per_class_recall_0": 1.0}))
            handler = CoTrainingDiagnosticsHandler(output_dir=out, evaluator=evaluator)
            if with_handler:
                handler.attach(trainer)
            trainer.run()
            return [p.detach().clone() for net in trainer.networks for p in net.state_dict().values()], handler

        plain, _ = run(False)
        with tempfile.TemporaryDirectory() as d:
            observed, handler = run(True, d)
            with open(os.path.join(d, "co_training_diagnostics.csv")) as f:
                rows = list(csv.DictReader(f))
            with open(os.path.join(d, "group_makeup.csv")) as f:
                makeup = list(csv.DictReader(f))
        for a, b in zip(plain, observed):
            torch.testing.assert_close(a, b, rtol=0, atol=0)  # a pure observer: same training bit for bit
        self.assertEqual([int(r["epoch"]) for r in rows], [1, 2, 3])
        self.assertEqual(rows[0]["acc_refined_A"], "")  # warm-up: empty, not a made-up number
        self.assertEqual(rows[2]["reference"], "given")
        self.assertEqual(float(rows[2]["agreement"]), 1.0)  # the same partition for A and B
        self.assertEqual(float(rows[2]["correct_overlap"]), 1.0)
        self.assertEqual(float(rows[2]["val_qwk"]), 0.5)
        self.assertIn("val_per_class_recall_0", rows[2])
        # group make-up: every sample once per network and epoch, counts per given grade
        part = mixed_result(0)
        for epoch in ("2", "3"):
            for k in ("A", "B"):
                sub = [r for r in makeup if r["epoch"] == epoch and r["network"] == k]
                self.assertEqual(sum(int(r[g]) for r in sub for g in ("correct", "mis_h", "mis_l")), N)
                for r in sub:
                    sel = part.labels == int(r["grade"])
                    self.assertEqual(int(r["mis_l"]), int((part.groups[sel] == 2).sum()))
        self.assertEqual(len(handler.makeup_history), len(makeup))

    def test_unknown_true_labels_are_left_out(self) -> None:
        truth = [-1 if i % 4 == 0 else i % CLASSES for i in range(N)]
        trainer = build("qmix", max_epochs=2, separation_handler=fixed(0, 1), lambda_c=0.0)
        handler = CoTrainingDiagnosticsHandler(true_labels=dict(enumerate(truth)))
        handler.attach(trainer)
        trainer.run()
        row = handler.history[-1]
        unknown = sum(row[f"n_unknown_{kind}_A"] for kind in ("refined", "guessed", "pseudo"))
        self.assertGreater(unknown, 0)
        self.assertEqual(trainer.state.co_training_diagnostics, row)

    def test_bad_true_labels(self) -> None:
        with self.assertRaisesRegex(ValueError, r"true_labels\[1\].*-1 = unknown"):
            CoTrainingDiagnosticsHandler(true_labels=[0, 1.5])
        with self.assertRaisesRegex(ValueError, r"true_labels\[0\] must be >= -1"):
            CoTrainingDiagnosticsHandler(true_labels=[-3])
        trainer = build("qmix", max_epochs=2, separation_handler=fixed(0, 1), lambda_c=0.0)
        CoTrainingDiagnosticsHandler(true_labels=TRUE[:4]).attach(trainer)
        with self.assertRaisesRegex(KeyError, "no entry in true_labels"):
            trainer.run()

    def test_known_true_labels_of_a_datalist(self) -> None:
        from monai_qmix.bundles.scripts import known_true_labels

        self.assertIsNone(known_true_labels([{"index": 0, "true_label": -1}, {"index": 1}]))
        self.assertEqual(known_true_labels([{"index": 3, "true_label": 2}, {"index": 5}]), {3: 2, 5: -1})


if __name__ == "__main__":
    unittest.main()
