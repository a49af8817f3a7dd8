# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Tests of the grading metrics (pure functions against sklearn, and the Ignite metrics on a tiny engine)."""

from __future__ import annotations

import math
import unittest
import warnings

import numpy as np
import torch
from ignite.engine import Engine
from ignite.exceptions import NotComputableError
from parameterized import parameterized
from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score, recall_score, roc_auc_score

from monai_qmix.handlers.grading_metrics import (
    GradingAccuracy,
    MacroF1,
    OneVsRestAUC,
    PerClassRecall,
    QuadraticWeightedKappa,
    accuracy,
    confusion_matrix,
    grading_metric_set,
    grading_report,
    macro_f1,
    one_vs_rest_auc,
    per_class_recall,
    quadratic_weighted_kappa,
)
from tests.utils import TEST_NDARRAYS, assert_allclose


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _random_case(seed: int, n: int = 40, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    y[:k] = np.arange(k)  # every class present
    logits = rng.normal(size=(n, k)) + 2.0 * np.eye(k)[y] * rng.random((n, 1))  # informative but imperfect
    return y, logits


# [y_true, y_pred, num_classes]: hand examples, incl. a missing middle grade (the weights need labels=range(K))
HAND_CASES = [
    [[0, 1, 2, 3], [0, 1, 2, 2], 4],
    [[0, 0, 1, 1, 2, 2], [0, 1, 1, 2, 2, 0], 3],
    [[0, 1, 4, 4, 0, 1], [0, 4, 4, 1, 1, 0], 5],  # grades 2 and 3 absent
    [[2, 2, 2, 2], [0, 1, 2, 3], 4],  # one true class: kappa 0 (not degenerate)
    [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], 5],  # full disagreement: negative kappa
]


class TestGradingFunctions(unittest.TestCase):
    @parameterized.expand(HAND_CASES)
    def test_hand_examples_vs_sklearn(self, y_true, y_pred, k):
        labels = list(range(k))
        for to_type in TEST_NDARRAYS:
            yt, yp = to_type(np.asarray(y_true)), to_type(np.asarray(y_pred))
            self.assertAlmostEqual(
                quadratic_weighted_kappa(yt, yp, k),
                cohen_kappa_score(y_true, y_pred, labels=labels, weights="quadratic"),
                places=12,
            )
            self.assertAlmostEqual(accuracy(yt, yp), accuracy_score(y_true, y_pred), places=12)
            self.assertAlmostEqual(macro_f1(yt, yp, k), f1_score(y_true, y_pred, average="macro"), places=12)
        cm = confusion_matrix(y_true, y_pred, k)
        self.assertEqual(cm.shape, (k, k))
        self.assertEqual(int(cm.sum()), len(y_true))

    def test_hand_value(self):
        # 4 samples, one off-by-one error on the top grade: 1 - sum(w*O)/sum(w*E) = 1 - (1/9)/(8/9) = 0.875
        self.assertAlmostEqual(quadratic_weighted_kappa([0, 1, 2, 3], [0, 1, 2, 2]), 0.875, places=12)

    @parameterized.expand([[0], [1], [2]])
    def test_random_scores_vs_sklearn(self, seed):
        y, logits = _random_case(seed)
        probs = _softmax(logits)
        pred = probs.argmax(1)
        self.assertAlmostEqual(
            quadratic_weighted_kappa(y, probs), cohen_kappa_score(y, pred, weights="quadratic"), places=12
        )
        self.assertAlmostEqual(quadratic_weighted_kappa(y, logits), quadratic_weighted_kappa(y, pred, 5), places=12)
        self.assertAlmostEqual(macro_f1(y, probs), f1_score(y, pred, average="macro"), places=12)
        assert_allclose(per_class_recall(y, probs), recall_score(y, pred, average=None, labels=range(5)))
        expected_auc = roc_auc_score(y, probs, multi_class="ovr", average="macro")
        self.assertAlmostEqual(one_vs_rest_auc(y, probs), expected_auc, places=12)
        self.assertAlmostEqual(one_vs_rest_auc(y, logits), expected_auc, places=12)  # logits are soft-maxed
        report = grading_report(torch.as_tensor(y), torch.as_tensor(probs), num_classes=5)
        self.assertEqual(set(report), {"qwk", "accuracy", "macro_f1", "per_class_recall", "auc_ovr", "confusion", "n"})
        self.assertAlmostEqual(report["accuracy"], accuracy_score(y, pred), places=12)
        self.assertAlmostEqual(report["auc_ovr"], expected_auc, places=12)
        self.assertEqual(report["n"], len(y))

    def test_one_hot_labels_equal_indices(self):
        y, logits = _random_case(3, k=4)
        one_hot = np.eye(4)[y]
        self.assertEqual(grading_report(one_hot, logits)["qwk"], grading_report(y, logits)["qwk"])
        self.assertEqual(one_vs_rest_auc(one_hot, logits), one_vs_rest_auc(y, logits))

    def test_macro_f1_counts_predicted_absent_class(self):
        y_true, y_pred = [0, 0, 1, 1], [0, 2, 1, 1]  # class 2 predicted, never true: F1 = 0 counts
        self.assertAlmostEqual(macro_f1(y_true, y_pred, 4), f1_score(y_true, y_pred, average="macro"), places=12)
        self.assertAlmostEqual(macro_f1(y_true, y_pred, 4), (2 / 3 + 1.0 + 0.0) / 3, places=12)

    def test_degenerate_single_class_is_zero_not_nan(self):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            value = quadratic_weighted_kappa([1, 1, 1], [1, 1, 1], 3)
        self.assertEqual(value, 0.0)
        self.assertTrue(any("undefined" in str(x.message) for x in w))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.assertTrue(math.isnan(cohen_kappa_score([1, 1, 1], [1, 1, 1], weights="quadratic")))
            report = grading_report([1, 1, 1], np.eye(3)[[1, 1, 1]])
        self.assertEqual(report["qwk"], 0.0)
        self.assertTrue(math.isnan(report["auc_ovr"]))
        self.assertTrue(math.isnan(report["per_class_recall"][0]))
        self.assertEqual(report["per_class_recall"][1], 1.0)

    def test_auc_skips_absent_class(self):
        y, logits = _random_case(4, k=4)
        keep = y != 2
        y, probs = y[keep], _softmax(logits[keep])
        expected = np.mean([roc_auc_score(y == c, probs[:, c]) for c in (0, 1, 3)])
        with self.assertWarnsRegex(UserWarning, r"absent from y_true"):
            self.assertAlmostEqual(one_vs_rest_auc(y, probs), expected, places=12)
        with self.assertWarnsRegex(UserWarning, r"absent from y_true"):
            self.assertTrue(math.isnan(per_class_recall(y, probs)[2]))

    def test_hard_predictions_give_nan_auc(self):
        with self.assertWarnsRegex(UserWarning, "auc_ovr"):
            report = grading_report([0, 1, 2], [0, 1, 1])
        self.assertTrue(math.isnan(report["auc_ovr"]))
        with self.assertRaisesRegex(ValueError, "scores"):
            one_vs_rest_auc([0, 1, 2], [0, 1, 1])

    @parameterized.expand(
        [
            ["empty", [], [], None, "y_true: empty"],
            ["length", [0, 1, 2], [0, 1], None, "prob_or_pred: 2 predictions for 3"],
            ["negative", [0, -1], [0, 1], None, "y_true: class indices must be >= 0"],
            ["non_integer", [0.0, 1.5], [0, 1], None, "y_true: class indices must be finite integer"],
            ["range", [0, 3], [0, 1], 3, "num_classes: 3, but a label or prediction is 3"],
            ["width", [0, 1], np.eye(3)[[0, 1]], 4, "num_classes: 4 does not match the 3 score columns"],
            ["label_beyond_scores", [0, 3], np.eye(3)[[0, 1]], None, "y_true: class index 3 is outside the 3 score"],
            ["nan_scores", [0, 1], [[np.nan, 1.0], [0.0, 1.0]], None, "prob_or_pred: scores contain NaN"],
        ]
    )
    def test_invalid_input(self, _, y_true, pred, k, msg):
        with self.assertRaisesRegex(ValueError, msg):
            grading_report(y_true, pred, k)

    def test_metric_set(self):
        key, extra = grading_metric_set(num_classes=5, prefix="test_", key="macro_f1")
        self.assertEqual(list(key), ["test_macro_f1"])
        self.assertIsInstance(key["test_macro_f1"], MacroF1)
        self.assertEqual(sorted(extra), ["test_accuracy", "test_auc_ovr", "test_per_class_recall", "test_qwk"])
        self.assertTrue(all(m.num_classes == 5 for m in extra.values()))
        with self.assertRaisesRegex(ValueError, "key: 'per_class_recall'"):
            grading_metric_set(key="per_class_recall")


def _run_engine(outputs: list, metrics: dict) -> dict:
    """Run an Ignite engine whose step returns the given outputs and return its metrics."""
    engine = Engine(lambda e, b: b)
    for name, metric in metrics.items():
        metric.attach(engine, name)
    engine.run(outputs, max_epochs=1)
    return engine.state.metrics


class TestGradingIgniteMetrics(unittest.TestCase):
    def setUp(self):
        y, logits = _random_case(7, n=24, k=4)
        self.y, self.logits = y, logits
        self.expected = grading_report(y, logits, 4)

    def _metrics(self, **kwargs) -> dict:
        return {
            "qwk": QuadraticWeightedKappa(**kwargs),
            "acc": GradingAccuracy(**kwargs),
            "f1": MacroF1(**kwargs),
            "recall": PerClassRecall(**kwargs),
            "auc": OneVsRestAUC(**kwargs),
        }

    def _check(self, got: dict, auc: bool = True) -> None:
        self.assertAlmostEqual(got["qwk"], self.expected["qwk"], places=6)
        self.assertAlmostEqual(got["acc"], self.expected["accuracy"], places=6)
        self.assertAlmostEqual(got["f1"], self.expected["macro_f1"], places=6)
        self.assertNotIn("recall", got)  # one scalar per class instead (loggable by every MONAI handler)
        assert_allclose([got[f"recall_{c}"] for c in range(4)], self.expected["per_class_recall"], rtol=1e-6)
        if auc:
            self.assertAlmostEqual(got["auc"], self.expected["auc_ovr"], places=6)

    def test_batch_dicts(self):
        # decollate=False form: one dict per iteration with batch tensors (logits as pred)
        batches = [
            {"pred": torch.as_tensor(self.logits[i : i + 8]), "label": torch.as_tensor(self.y[i : i + 8])}
            for i in range(0, 24, 8)
        ]
        self._check(_run_engine(batches, self._metrics()))

    def test_decollated_items(self):
        # MONAI decollated form: a list of per-item dicts; probability pred, 0-d or one-hot labels
        probs = _softmax(self.logits)
        for one_hot in (False, True):
            items = [
                {
                    "pred": torch.as_tensor(p, dtype=torch.float32),
                    "label": torch.eye(4)[int(t)] if one_hot else torch.tensor(int(t)),
                }
                for p, t in zip(probs, self.y)
            ]
            self._check(_run_engine([items[i : i + 5] for i in range(0, 24, 5)], self._metrics(num_classes=4)))

    def test_class_index_predictions(self):
        pred = self.logits.argmax(1)
        items = [[{"pred": torch.tensor([float(p)]), "label": torch.tensor([int(t)])} for p, t in zip(pred, self.y)]]
        metrics = self._metrics(num_classes=4)
        metrics.pop("auc")
        self._check(_run_engine(items, metrics), auc=False)
        with self.assertRaisesRegex(ValueError, "scores"):
            _run_engine(items, {"auc": OneVsRestAUC()})

    def test_errors(self):
        with self.assertRaises(NotComputableError):
            QuadraticWeightedKappa().compute()
        with self.assertRaisesRegex(ValueError, "num_classes"):
            QuadraticWeightedKappa(num_classes=0)
        with self.assertRaisesRegex(ValueError, "num_classes: 3 does not match the 4 score columns"):
            _run_engine(
                [{"pred": torch.as_tensor(self.logits), "label": torch.as_tensor(self.y)}], self._metrics(num_classes=3)
            )
        with self.assertRaisesRegex(ValueError, "integer class indices"):
            m = QuadraticWeightedKappa()
            m.update((torch.rand(2, 3), torch.tensor([0.5, 1.0])))


if __name__ == "__main__":
    unittest.main()


def _uneven_rank(rank: int, port: int, preds: list, labels: list, queue) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        metric = QuadraticWeightedKappa(num_classes=5)
        metric.reset()
        metric.update((torch.as_tensor(preds[rank]), torch.as_tensor(labels[rank])))
        queue.put((rank, float(metric.compute())))
    finally:
        torch.distributed.destroy_process_group()


class TestGradingMetricsDistributed(unittest.TestCase):
    def test_uneven_shards(self) -> None:
        """Two gloo ranks with 7 and 5 samples (``DistributedSampler(even_divisible=False)``): every rank gets the
        metric of all 12 samples."""
        import socket

        import torch.multiprocessing as mp

        y, p = _random_case(3, n=12)
        preds, labels = [p[:7], p[7:]], [y[:7], y[7:]]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        procs = [ctx.Process(target=_uneven_rank, args=(r, port, preds, labels, queue)) for r in range(2)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(120)
            self.assertEqual(proc.exitcode, 0)
        values = dict(queue.get(timeout=10) for _ in range(2))
        expected = quadratic_weighted_kappa(y, p, num_classes=5)
        self.assertAlmostEqual(values[0], expected, places=6)
        self.assertAlmostEqual(values[1], expected, places=6)
