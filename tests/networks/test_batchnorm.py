# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Tests of batch-norm recalibration: the function, the handler and ``QMixTrainer(bn_recalibration_loader=...)``."""

from __future__ import annotations

import copy
import unittest

import torch
from ignite.engine import Engine, Events
from monai.data import DataLoader, Dataset
from torch import nn

from monai_qmix.handlers import BatchNormRecalibrationHandler
from monai_qmix.networks import batchnorm_layers, recalibrate_batchnorm


def batches(seed: int = 0, n: int = 3, b: int = 8, shift: float = 2.0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"image": torch.randn(b, 3, 6, 6, generator=g) * 3.0 + shift} for _ in range(n)]


def bn_net() -> nn.Module:
    return nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten())


class TestRecalibrateBatchnorm(unittest.TestCase):
    def test_exact_statistics_and_nothing_else_changes(self):
        net = bn_net().eval()
        with torch.no_grad():  # garbage statistics, as after training on other images
            for m in batchnorm_layers(net):
                m.running_mean.fill_(-5.0)
                m.running_var.fill_(9.0)
        weights = copy.deepcopy(net.state_dict())
        data = batches()
        self.assertEqual(recalibrate_batchnorm(net, data), 24)
        x = torch.cat([d["image"] for d in data])
        bn0 = net[0]
        torch.testing.assert_close(bn0.running_mean, x.mean(dim=(0, 2, 3)))
        # cumulative average of the per-batch unbiased variances (equal batch sizes)
        per_batch = torch.stack([d["image"].transpose(0, 1).reshape(3, -1).var(dim=1) for d in data])
        torch.testing.assert_close(bn0.running_var, per_batch.mean(0))
        self.assertFalse(net.training)  # mode restored
        self.assertEqual(bn0.momentum, 0.1)  # momentum restored
        for k, v in net.state_dict().items():  # weights untouched
            if "running" not in k and "num_batches" not in k:
                torch.testing.assert_close(v, weights[k])

    def test_eval_outputs_match_the_data(self):
        net = bn_net()
        data = batches(shift=10.0)
        recalibrate_batchnorm(net, data)
        net.eval()
        with torch.no_grad():
            out = net[0](torch.cat([d["image"] for d in data]))
        self.assertLess(float(out.mean().abs()), 1e-4)  # standardised by the statistics of the same images
        self.assertAlmostEqual(float(out.std()), 1.0, delta=0.05)

    def test_no_batchnorm_reads_nothing(self):
        def never():
            raise AssertionError("the loader must not be read")
            yield  # pragma: no cover

        self.assertEqual(recalibrate_batchnorm(nn.Conv2d(3, 3, 1), never()), 0)

    def test_errors_and_statistics_kept_on_failure(self):
        net = bn_net()
        before = net[0].running_mean.clone()
        with self.assertRaisesRegex(ValueError, "image_key 'img'"):
            recalibrate_batchnorm(net, batches(), image_key="img")
        with self.assertRaisesRegex(ValueError, "no batch of at least 2"):
            recalibrate_batchnorm(net, [{"image": torch.rand(1, 3, 6, 6)}])
        torch.testing.assert_close(net[0].running_mean, before)
        with self.assertRaisesRegex(ValueError, "num_batches"):
            recalibrate_batchnorm(net, batches(), num_batches=0)

    def test_num_batches_and_tuple_batches(self):
        net = bn_net()
        data = [(d["image"], 0) for d in batches()]
        self.assertEqual(recalibrate_batchnorm(net, data, num_batches=2), 16)
        x = torch.cat([d[0] for d in data[:2]])
        torch.testing.assert_close(net[0].running_mean, x.mean(dim=(0, 2, 3)))

    def test_wrapped_network(self):
        net = bn_net()
        self.assertEqual(recalibrate_batchnorm(nn.DataParallel(net), batches()), 24)
        self.assertEqual(int(net[0].num_batches_tracked), 3)


class TestHandler(unittest.TestCase):
    def test_runs_every_interval_epochs(self):
        net = bn_net()
        calls = []
        engine = Engine(lambda e, b: calls.append(1))
        engine.network = net
        handler = BatchNormRecalibrationHandler(batches(), interval=2)
        handler.attach(engine)
        seen = []
        engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: seen.append(int(net[0].num_batches_tracked)))
        engine.run([0, 1], max_epochs=3)
        self.assertEqual(seen, [0, 3, 3])  # recalibrated after epoch 2 only (3 batches)
        self.assertEqual(handler.last_count, 24)

    def test_bad_interval_and_missing_network(self):
        with self.assertRaisesRegex(ValueError, "interval"):
            BatchNormRecalibrationHandler(batches(), interval=0)
        engine = Engine(lambda e, b: None)
        BatchNormRecalibrationHandler(batches()).attach(engine)
        with self.assertRaisesRegex(ValueError, "networks"):
            engine.run([0], max_epochs=1)


class TestTrainerOption(unittest.TestCase):
    def test_trainer_recalibrates_before_user_handlers(self):
        from monai_qmix.engines.trainer import QMixTrainer
        from monai_qmix.networks import QMixNet

        torch.manual_seed(0)
        backbone = nn.Sequential(
            nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        net = QMixNet(num_classes=2, backbone=backbone, feature_dim=4, projector_dim=4, projector_hidden=4)
        items = [{"image": torch.randn(3, 8, 8) * 2 + 1, "label": i % 2, "index": i} for i in range(16)]
        train = DataLoader(Dataset(items, transform=lambda d: {**d, "image_s1": d["image"] * 3.0 - 4.0}), batch_size=8)
        plain = DataLoader(Dataset(items), batch_size=8)
        trainer = QMixTrainer(
            device="cpu", max_epochs=2, train_data_loader=train, network=net,
            optimizer=torch.optim.SGD(net.parameters(), lr=0.01), method="standard", bn_recalibration_loader=plain,
        )  # fmt: skip
        seen = []
        trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: seen.append(net.backbone[1].running_mean.clone()))
        trainer.run()
        expected = copy.deepcopy(net)
        recalibrate_batchnorm(expected, plain)
        torch.testing.assert_close(seen[-1], expected.backbone[1].running_mean)
        self.assertIsInstance(trainer.bn_recalibration, BatchNormRecalibrationHandler)
        self.assertEqual(trainer.bn_recalibration.last_count, 16)


if __name__ == "__main__":
    unittest.main()
