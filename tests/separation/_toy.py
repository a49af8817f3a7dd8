# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Tiny networks and datasets shared by the separation and handler tests."""

from __future__ import annotations

import numpy as np
import torch

N_CLASSES = 3


class ToyNet(torch.nn.Module):
    """Conv backbone + dropout head, following the ``features``/``head`` protocol of ``score_samples``."""

    def __init__(self, n_classes: int = N_CLASSES, p: float = 0.3, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.backbone = torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2)
        )
        self.fc = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(p), torch.nn.Linear(16, n_classes))
        with torch.no_grad():
            for prm in self.parameters():
                prm.copy_(torch.randn(prm.shape, generator=g) * 0.5)
        self.n_backbone_calls = 0

    def features(self, x: torch.Tensor) -> torch.Tensor:
        self.n_backbone_calls += 1
        return self.backbone(x)

    def head(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class PlainNet(ToyNet):
    """Same network without the feature/head protocol (MC passes are full forward passes)."""

    features = None  # type: ignore[assignment]
    head = None  # type: ignore[assignment]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.n_backbone_calls += 1
        return self.fc(self.backbone(x))


def toy_items(n: int = 24, size: int = 8, seed: int = 0, with_group: bool = False) -> list[dict]:
    """Datalist-like dict items with tensor images, labels, indices and (optionally) a true group name."""
    rng = np.random.default_rng(seed)
    names = ("correct", "mis_h", "mis_l")
    items = []
    for i in range(n):
        item = {
            "image": torch.as_tensor(rng.normal(size=(3, size, size)), dtype=torch.float32),
            "label": int(rng.integers(N_CLASSES)),
            "index": i,
        }
        if with_group:
            item["noise_group"] = names[i % 3]
        items.append(item)
    return items
