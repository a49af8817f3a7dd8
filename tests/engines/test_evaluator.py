# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Tests of the test-time ensemble (inferer, evaluator) with the grading metrics in a real SupervisedEvaluator."""

from __future__ import annotations

import unittest
import warnings

import numpy as np
import torch
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedEvaluator
from parameterized import parameterized
from torch import nn

from monai_qmix.engines.evaluator import EnsembleInferer, QMixEvaluator, ensemble_probabilities
from monai_qmix.handlers.grading_metrics import QuadraticWeightedKappa, grading_metric_set, grading_report
from monai_qmix.networks.qmix_net import QMixNet
from tests.utils import assert_allclose

NUM_CLASSES = 3


def _tiny_net(seed: int, head_dropout: float = 0.0) -> QMixNet:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        net = QMixNet(num_classes=NUM_CLASSES, backbone=backbone, feature_dim=4, head_dropout=head_dropout)
        with torch.no_grad():
            net.classifier.weight.mul_(20.0)  # spread the logits so the predictions vary between images
    return net


def _data(n: int = 12, size: int = 16) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, size, size, generator=g) * torch.rand(n, 3, 1, 1, generator=g)
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    return [{"image": images[i], "label": labels[i]} for i in range(n)]


def _softmax_of(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    net.eval()
    with torch.no_grad():
        return torch.softmax(net(x), dim=1)


class TestEnsembleProbabilities(unittest.TestCase):
    def test_mean_of_softmaxes_and_logit_mode(self):
        a, b = torch.randn(5, 4), torch.randn(5, 4)
        assert_allclose(ensemble_probabilities([a, b]), (a.softmax(1) + b.softmax(1)) / 2, rtol=1e-6)
        assert_allclose(ensemble_probabilities([a, b], combine="logit"), ((a + b) / 2).softmax(1), rtol=1e-6)
        assert_allclose(ensemble_probabilities([a]), a.softmax(1), rtol=1e-6)
        self.assertEqual(ensemble_probabilities([a.half(), b.half()]).dtype, torch.float32)

    @parameterized.expand(
        [
            [[], "prob", "logits: need at least one"],
            [[torch.zeros(2, 3), torch.zeros(2, 4)], "prob", "same shape"],
            [[torch.zeros(3)], "prob", r"\(B, C, ...\)"],
            [[torch.zeros(2, 3)], "mean", "combine: 'mean' is not a valid option"],
        ]
    )
    def test_invalid(self, logits, combine, msg):
        with self.assertRaisesRegex(ValueError, msg):
            ensemble_probabilities(logits, combine)


class TestEnsembleInferer(unittest.TestCase):
    def setUp(self):
        self.net_a, self.net_b = _tiny_net(1, head_dropout=0.5), _tiny_net(2, head_dropout=0.5)
        self.x = torch.stack([d["image"] for d in _data(6)])

    def test_modes_eval_and_restore(self):
        self.net_a.train(), self.net_b.train()
        inferer = EnsembleInferer(self.net_b)
        out = inferer(self.x, self.net_a)
        self.assertTrue(self.net_a.training and self.net_b.training)  # previous mode restored
        self.assertFalse(out.requires_grad)
        pa, pb = _softmax_of(self.net_a, self.x), _softmax_of(self.net_b, self.x)
        assert_allclose(out, (pa + pb) / 2, rtol=1e-6, atol=1e-7)  # eval mode: dropout off, deterministic
        assert_allclose(out.sum(1), torch.ones(6), rtol=1e-6)
        inferer.mode = "net_a"
        assert_allclose(inferer(self.x, self.net_a), pa, rtol=1e-6)
        inferer.mode = "net_b"
        assert_allclose(inferer(self.x, self.net_a), pb, rtol=1e-6)
        assert_allclose(EnsembleInferer(mode="net_a")(self.x, self.net_a), pa, rtol=1e-6)

    def test_validation_names_parameter(self):
        with self.assertRaisesRegex(ValueError, r"mode: 'both' is not a valid option.*net_a"):
            EnsembleInferer(self.net_b, mode="both")
        with self.assertRaisesRegex(ValueError, r"network_b: required for mode='ensemble'"):
            EnsembleInferer()
        inferer = EnsembleInferer(mode="net_a")
        with self.assertRaisesRegex(ValueError, r"network_b: required for mode='net_b'"):
            inferer.mode = "net_b"
        with self.assertRaisesRegex(ValueError, "combine"):
            EnsembleInferer(self.net_b, combine="vote")
        with self.assertRaisesRegex(TypeError, "network_b"):
            EnsembleInferer(network_b=3)
        with self.assertRaisesRegex(ValueError, r"ensemble_mode: 'avg' is not a valid option"):
            QMixEvaluator("cpu", [], self.net_a, self.net_b, ensemble_mode="avg")


class TestEvaluatorWithGradingMetrics(unittest.TestCase):
    def setUp(self):
        self.net_a, self.net_b = _tiny_net(3), _tiny_net(4)
        self.data = _data(12)
        self.x = torch.stack([d["image"] for d in self.data])
        self.y = torch.stack([d["label"] for d in self.data])
        self.loader = DataLoader(Dataset(self.data), batch_size=5, shuffle=False, num_workers=0)

    def _expected(self, probs: torch.Tensor) -> dict:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return grading_report(self.y, probs, NUM_CLASSES)

    def _check(self, metrics: dict, probs: torch.Tensor) -> None:
        expected = self._expected(probs)
        self.assertAlmostEqual(metrics["val_qwk"], expected["qwk"], places=5)
        self.assertAlmostEqual(metrics["val_accuracy"], expected["accuracy"], places=6)
        self.assertAlmostEqual(metrics["val_macro_f1"], expected["macro_f1"], places=5)
        self.assertAlmostEqual(metrics["val_auc_ovr"], expected["auc_ovr"], places=5)
        recall = [metrics[f"val_per_class_recall_{c}"] for c in range(NUM_CLASSES)]  # one scalar per class
        assert_allclose(recall, expected["per_class_recall"], rtol=1e-6)

    @parameterized.expand([[True], [False]])
    def test_supervised_evaluator_with_ensemble_inferer(self, decollate):
        key, extra = grading_metric_set(num_classes=NUM_CLASSES)
        evaluator = SupervisedEvaluator(
            device=torch.device("cpu"),
            val_data_loader=self.loader,
            network=self.net_a,
            inferer=EnsembleInferer(self.net_b),
            key_val_metric=key,
            additional_metrics=extra,
            decollate=decollate,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            evaluator.run()
        probs = (_softmax_of(self.net_a, self.x) + _softmax_of(self.net_b, self.x)) / 2
        self.assertGreater(len(set(probs.argmax(1).tolist())), 1, "test data should give varied predictions")
        self._check(evaluator.state.metrics, probs)
        self.assertEqual(evaluator.state.best_metric, evaluator.state.metrics["val_qwk"])

    def test_qmix_evaluator_modes(self):
        key, extra = grading_metric_set(num_classes=NUM_CLASSES)
        evaluator = QMixEvaluator(
            "cpu", self.loader, self.net_a, self.net_b, key_val_metric=key, additional_metrics=extra
        )
        self.assertIs(evaluator.network_b, self.net_b)
        self.assertEqual(evaluator.ensemble_mode, "ensemble")
        for mode, net in (("net_b", self.net_b), ("net_a", self.net_a)):
            evaluator.ensemble_mode = mode
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                evaluator.run()
            self._check(evaluator.state.metrics, _softmax_of(net, self.x))
        with self.assertRaisesRegex(ValueError, "ensemble_mode"):
            evaluator.ensemble_mode = "nope"

    def test_key_metric_alone(self):
        evaluator = QMixEvaluator(
            "cpu", self.loader, self.net_a, self.net_b, key_val_metric={"val_qwk": QuadraticWeightedKappa()}
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            evaluator.run()
        probs = (_softmax_of(self.net_a, self.x) + _softmax_of(self.net_b, self.x)) / 2
        self.assertAlmostEqual(evaluator.state.metrics["val_qwk"], self._expected(probs)["qwk"], places=5)
        self.assertTrue(np.isfinite(evaluator.state.best_metric))

    @unittest.skipUnless(torch.cuda.is_available(), "AMP evaluation needs CUDA")
    def test_amp_on_cuda(self):
        net_a, net_b = self.net_a.cuda(), self.net_b.cuda()
        values = []
        for amp in (False, True):
            key, _ = grading_metric_set(num_classes=NUM_CLASSES)
            evaluator = QMixEvaluator("cuda", self.loader, net_a, net_b, amp=amp, key_val_metric=key)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                evaluator.run()
            values.append(evaluator.state.metrics["val_qwk"])
        self.assertAlmostEqual(values[0], values[1], places=2)


if __name__ == "__main__":
    unittest.main()
