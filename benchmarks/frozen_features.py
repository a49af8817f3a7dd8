# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Frozen-backbone mode of the robustness benchmark: cached augmented-view features + small trainable heads.

A pretrained backbone is run **once** (eval mode, no gradient) over a fixed number ``K`` of weak and ``K`` strong
augmented views of every training image and over the un-augmented images of every split; the pooled features are
cached on disk. Training then only fits the heads (:func:`feature_head`, wrapped in :class:`QMixNet`) with the
unchanged :class:`~monai_qmix.engines.QMixTrainer`: every epoch each sample draws two of its ``K`` cached weak views
and two of its ``K`` strong views (:class:`PickCachedViewsd`, seeded), so one seed of CE, DivideMix and QMix over
100 epochs takes minutes on a CPU instead of days.

What it cannot show: anything about fine-tuning the backbone (its features are those of ImageNet), the cost of
augmenting on the fly, or batch-norm effects inside the backbone. Conclusions must be confirmed end to end
(``--frozen_features 0``).

The cache file name is a digest of everything the features depend on: the images' bytes, the view transform's
identity (``view_id``), ``K``, the seed, the backbone name and its weights, and the input normalisation. Any change
gives another file, so a stale cache is never read.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import MapTransform, Randomizable
from torch import nn

__all__ = ["PickCachedViewsd", "cache_key", "extract_view_features", "feature_head", "load_or_extract"]


def cache_key(images: torch.Tensor, **parts: Any) -> str:
    """A digest of the images' bytes and of every named part (view id, K, seed, backbone, weights, norm)."""
    h = hashlib.sha256()
    x = images.contiguous().cpu()
    h.update(str((tuple(x.shape), str(x.dtype))).encode())
    h.update(x.numpy().tobytes())
    for k in sorted(parts):
        h.update(f"|{k}={parts[k]!r}".encode())
    return h.hexdigest()[:20]


def _plain(x: Any) -> torch.Tensor:
    """A plain tensor (MONAI transforms return ``MetaTensor`` while meta tracking is on; the cache holds tensors)."""
    return torch.as_tensor(x).as_subclass(torch.Tensor)


@torch.no_grad()
def _features(backbone: nn.Module, x: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    out = []
    for i in range(0, x.shape[0], batch_size):
        f = backbone(x[i : i + batch_size].to(device))
        out.append(_plain(f.flatten(1) if f.ndim > 2 else f).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


@torch.no_grad()
def extract_view_features(
    backbone: nn.Module,
    images: torch.Tensor,
    to_unit: Callable[[torch.Tensor], torch.Tensor],
    normalise: Callable[[torch.Tensor], torch.Tensor],
    weak: Callable[[torch.Tensor], Any] | None = None,
    strong: Callable[[torch.Tensor], Any] | None = None,
    num_views: int = 0,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, torch.Tensor]:
    """Backbone features of the clean images and (when ``num_views > 0``) of ``K`` weak and ``K`` strong views.

    Args:
        backbone: maps ``(B, C, H, W)`` to ``(B, D)``; run in eval mode.
        images: ``(N, C, H, W)`` images (e.g. uint8).
        to_unit: maps one image of ``images`` to a float image in [0, 1] (the un-augmented view).
        normalise: the backbone's input normalisation, applied to a batch after the augmentations.
        weak: array transform of one unit image (a seeded MONAI transform: its ``R`` decides the draws).
        strong: likewise for the strong views.
        num_views: ``K``; 0 computes the clean features only.
        batch_size: images per backbone pass.
        device: device of the backbone.
        progress: print one line per view round.

    Returns:
        ``{"clean": (N, D)}`` plus ``"weak"`` and ``"strong"`` of shape ``(N, K, D)`` when ``num_views > 0``.
    """
    device = torch.device(device)
    was_training = backbone.training
    backbone.eval()
    unit = torch.stack([to_unit(img) for img in images]) if len(images) else images.float()
    out = {"clean": _features(backbone, normalise(unit), batch_size, device)}
    for name, tf in (("weak", weak), ("strong", strong)):
        if num_views <= 0:
            break
        if tf is None:
            raise ValueError(f"{name}: a transform is required when num_views={num_views} > 0.")
        views = []
        for k in range(num_views):
            t = time.perf_counter()
            aug = torch.stack([_plain(tf(img)).float() for img in unit])
            views.append(_features(backbone, normalise(aug), batch_size, device))
            if progress:
                print(f"    {name} view {k + 1}/{num_views}: {len(unit)} images in {time.perf_counter() - t:.1f} s",
                      flush=True)  # fmt: skip
        out[name] = torch.stack(views, dim=1)
    backbone.train(was_training)
    return out


def load_or_extract(path: str, extract: Callable[[], dict[str, torch.Tensor]]) -> tuple[dict[str, torch.Tensor], bool]:
    """Read cached features from ``path`` or compute them with ``extract()`` and write them atomically.

    Returns:
        The features and whether they came from the cache.
    """
    if os.path.isfile(path):
        return torch.load(path, map_location="cpu", weights_only=True), True
    feats = {k: _plain(v).contiguous() for k, v in extract().items()}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(feats, tmp)
    os.replace(tmp, path)
    return feats, False


class PickCachedViewsd(MapTransform, Randomizable):
    """Put two of a sample's ``K`` cached weak-view features and two strong-view features into the batch keys.

    The item holds its ``index`` (row of the cache); the transform writes ``<key>_w1``, ``<key>_w2``, ``<key>_s1``,
    ``<key>_s2`` (distinct views of each kind when ``K >= 2``) and ``<key>`` (the clean feature). Draws come from
    ``self.R`` (``set_random_state`` seeds them).

    Args:
        weak: ``(N, K, D)`` weak-view features.
        strong: ``(N, K, D)`` strong-view features.
        clean: ``(N, D)`` un-augmented features.
        key: the output key stem (``"image"``, as the trainer expects).
        n_weak: weak views per sample.
        n_strong: strong views per sample.
    """

    def __init__(
        self,
        weak: torch.Tensor,
        strong: torch.Tensor,
        clean: torch.Tensor,
        key: str = "image",
        n_weak: int = 2,
        n_strong: int = 2,
    ) -> None:
        MapTransform.__init__(self, key, allow_missing_keys=True)
        if weak.ndim != 3 or strong.ndim != 3 or weak.shape[0] != clean.shape[0] or strong.shape[0] != clean.shape[0]:
            raise ValueError(
                f"weak/strong must be (N, K, D) and clean (N, D) with the same N, got {tuple(weak.shape)}, "
                f"{tuple(strong.shape)}, {tuple(clean.shape)}."
            )
        self.weak, self.strong, self.clean, self.key = weak, strong, clean, key
        self.n_weak, self.n_strong = int(n_weak), int(n_strong)

    def _pick(self, k: int, n: int) -> np.ndarray:
        return self.R.choice(k, size=n, replace=k < n)

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        i = int(d["index"])
        for w, j in enumerate(self._pick(self.weak.shape[1], self.n_weak)):
            d[f"{self.key}_w{w + 1}"] = self.weak[i, j]
        for s, j in enumerate(self._pick(self.strong.shape[1], self.n_strong)):
            d[f"{self.key}_s{s + 1}"] = self.strong[i, j]
        d[self.key] = self.clean[i]
        return d


class _Standardise(nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        # ReLU6 features that are (nearly) constant on the reference would be blown up by their tiny std on other
        # views: floor every std at a tenth of the median std
        floor = max(1e-3, 0.1 * float(std.float().median()))
        self.register_buffer("mean", mean.float().clone())
        self.register_buffer("std", std.float().clamp_min(floor).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def feature_head(reference: torch.Tensor, hidden: int = 512, dropout: float = 0.0) -> tuple[nn.Module, int]:
    """The trainable part in frozen mode: fixed standardisation (statistics of ``reference``) → Linear → ReLU.

    The standard deviations are floored at a tenth of their median, so that units that are almost constant on
    ``reference`` (common for ReLU6 features) do not dominate the input on other views.

    ``QMixNet(backbone=head, feature_dim=hidden)`` adds the classifier and the projector, so the head plus the
    classifier is a 2-layer MLP that can memorise noisy labels (the regime the paper's CE baseline is in).

    Args:
        reference: ``(N, D)`` features whose mean / std standardise the input (the clean training features).
        hidden: width of the hidden layer (the "feature" the classifier and projector see).
        dropout: dropout after the hidden layer.
    """
    if reference.ndim != 2 or reference.shape[0] < 2:
        raise ValueError(f"reference: expected (N >= 2, D) features, got {tuple(reference.shape)}.")
    layers: list[nn.Module] = [_Standardise(reference.mean(0), reference.std(0)), nn.Linear(reference.shape[1], hidden)]
    layers.append(nn.ReLU(inplace=True))
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers), int(hidden)


def split_features(feats: dict[str, torch.Tensor], sizes: Sequence[int]) -> list[torch.Tensor]:
    """Split a concatenated ``clean`` feature block into per-split blocks of the given sizes."""
    return list(torch.split(feats["clean"], list(sizes)))
