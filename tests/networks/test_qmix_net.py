# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Tests of QMixNet and local pretrained loading."""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

import torch
from parameterized import parameterized
from torch import nn

from monai_qmix.networks import QMixNet, load_pretrained


class _TVBottleneck(nn.Module):
    """torchvision's ResNet Bottleneck, written out independently (names and maths as in torchvision)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class _TVResNet50(nn.Module):
    """torchvision.models.resnet50 layout (the file users download as resnet50-*.pth)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.inplanes = 64
        self.layer1 = self._layer(64, 3)
        self.layer2 = self._layer(128, 4, 2)
        self.layer3 = self._layer(256, 6, 2)
        self.layer4 = self._layer(512, 3, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, 1000)

    def _layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        down = nn.Sequential(
            nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False), nn.BatchNorm2d(planes * 4)
        )
        layers = [_TVBottleneck(self.inplanes, planes, stride, down)]
        self.inplanes = planes * 4
        layers += [_TVBottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


class TestQMixNet(unittest.TestCase):
    @parameterized.expand([["resnet10"], ["densenet121"], ["efficientnet-b0"], ["small_cnn"]])
    def test_shapes(self, backbone: str) -> None:
        net = QMixNet(num_classes=3, backbone=backbone, projector_dim=16).eval()
        x = torch.rand(2, 3, 32, 32)
        out = net.forward_all(x)
        self.assertEqual(tuple(out["logits"].shape), (2, 3))
        self.assertEqual(tuple(out["projection"].shape), (2, 16))
        torch.testing.assert_close(out["projection"].norm(dim=1), torch.ones(2))
        torch.testing.assert_close(net(x), out["logits"])
        torch.testing.assert_close(net.head(net.forward_features(x)), out["logits"])

    def test_scriptable(self) -> None:
        net = QMixNet(num_classes=4, backbone="small_cnn", head_dropout=0.1).eval()
        scripted = torch.jit.script(net)
        x = torch.rand(2, 3, 32, 32)
        torch.testing.assert_close(scripted(x), net(x))

    def test_custom_backbone_and_dropout(self) -> None:
        backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        net = QMixNet(num_classes=5, backbone=backbone, feature_dim=4, head_dropout=0.5)
        self.assertTrue(net.has_dropout)
        feats = net.forward_features(torch.rand(3, 3, 16, 16))
        net.train()
        torch.manual_seed(0)
        a = net.head(feats)
        b = net.head(feats)
        self.assertFalse(torch.allclose(a, b), "dropout must make train-mode head passes differ")
        net.eval()
        torch.testing.assert_close(net.head(feats), net.head(feats))
        backward = net.forward_all(torch.rand(2, 3, 16, 16))["logits"].sum()
        backward.backward()
        self.assertIsNotNone(backbone[0].weight.grad)

    def test_mc_dropout_scoring_reuses_backbone(self) -> None:
        from monai_qmix.separation import score_samples
        from monai_qmix.separation.scoring import feature_head_split

        backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        net = QMixNet(num_classes=3, backbone=backbone, feature_dim=4, head_dropout=0.5)
        self.assertIsNotNone(feature_head_split(net), "QMixNet must follow the scorer's feature/head protocol")
        calls = []
        backbone.register_forward_hook(lambda *_: calls.append(1))
        batch = {"image": torch.rand(6, 3, 12, 12), "label": torch.tensor([0, 1, 2, 0, 1, 2]), "index": torch.arange(6)}
        out = score_samples(net, [batch], uncertainty="mutual_information", mc_samples=5, progress=False)
        self.assertEqual(len(calls), 1, "MC dropout must run the backbone once and only the head T times")
        self.assertEqual(out["uncertainty"].shape, (6,))
        self.assertTrue(net.training, "train mode must be restored")

    def test_bad_arguments(self) -> None:
        for kwargs, word in (
            ({"num_classes": 1}, "num_classes"),
            ({"head_dropout": 1.0}, "head_dropout"),
            ({"projector_dim": 0}, "projector_dim"),
            ({"backbone": nn.Identity()}, "feature_dim"),
            ({"backbone": "resnet51"}, "resnet51"),
        ):
            with self.assertRaises(ValueError) as ctx:
                QMixNet(**kwargs)
            self.assertIn(word, str(ctx.exception))

    def test_torchvision_resnet50_state_dict_loads(self) -> None:
        torch.manual_seed(0)
        reference = _TVResNet50().eval()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "resnet50-imagenet.pth"
            torch.save(reference.state_dict(), path)
            net = QMixNet(num_classes=5, backbone="resnet50", pretrained_path=path).eval()
            missing, unexpected = load_pretrained(net.backbone, path, strict=True)
        self.assertEqual((missing, unexpected), ([], []))
        x = torch.rand(1, 3, 64, 64)
        with torch.no_grad():
            torch.testing.assert_close(net.forward_features(x), reference.features(x), rtol=1e-4, atol=1e-5)

    def test_pretrained_errors(self) -> None:
        with self.assertRaises(FileNotFoundError) as ctx:
            QMixNet(backbone="resnet10", pretrained_path="/nonexistent/weights.pth")
        self.assertIn("pretrained_path", str(ctx.exception))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "other.pt"
            torch.save({"foo.weight": torch.zeros(3)}, path)
            with self.assertRaises(ValueError) as ctx:
                QMixNet(backbone="resnet10", pretrained_path=path)
            self.assertIn("no key", str(ctx.exception))
            torch.save({"model": {"conv1.weight": torch.zeros(1, 1, 1, 1)}}, path)
            with self.assertRaises(ValueError) as ctx:
                QMixNet(backbone="resnet10", pretrained_path=path)
            self.assertIn("shape mismatch", str(ctx.exception))


if __name__ == "__main__":
    unittest.main()
