# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Quick out-of-fold (OOF) models for the dataset audit: no image is scored by a model that saw its label.

The datalist is split into ``k`` folds (by patient when the items name one, see
:func:`~monai_qmix.data.split_by_patient`); for each fold a small :class:`~monai_qmix.networks.QMixNet` is trained
with plain cross-entropy on the other folds and predicts the held-out fold. This is the cleanlab recipe (out-of-fold
predicted probabilities) with a deliberately short schedule: the audit needs a model that has learnt the easy,
consistent patterns, not one that has fitted the noisy labels of its training folds.

Images are passed in as an in-memory uint8 tensor ``(N, 3, S, S)`` (see :func:`~monai_qmix.audit.loading.load_images`),
so a fold costs no image decoding; the training augmentation is random flips drawn from a seeded ``torch.Generator``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from monai_qmix.networks import QMixNet

__all__ = ["AUDIT_BACKBONES", "TinyBackbone", "build_audit_network", "train_classifier", "predict_probs", "oof_probs"]

#: ``"tiny"`` (a 4-layer CNN, seconds on a CPU) or any :class:`~monai_qmix.networks.qmix_net.Backbone` name.
AUDIT_BACKBONES: tuple[str, ...] = ("tiny", "resnet10", "resnet18", "resnet34", "resnet50", "densenet121")


class TinyBackbone(nn.Module):
    """Four stride-2 3x3 conv + batch-norm + ReLU blocks and a 2x2 average pooling (a few 10k parameters).

    The 2x2 pooling (instead of global pooling) keeps the coarse layout of the fundus (optic disc side, macula).

    Args:
        in_channels: input channels.
        width: channels of the first block (doubled in each of the next blocks, capped at ``8 * width``).
    """

    def __init__(self, in_channels: int = 3, width: int = 16) -> None:
        super().__init__()
        chans = [in_channels, width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(a, b, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.out_features = 4 * chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``(B, 32 * width)``."""
        return self.features(x)


def build_audit_network(num_classes: int, backbone: str = "tiny", width: int = 16) -> QMixNet:
    """A :class:`~monai_qmix.networks.QMixNet` for the audit (``backbone="tiny"``: :class:`TinyBackbone`).

    Raises:
        ValueError: unknown ``backbone``.
    """
    if backbone not in AUDIT_BACKBONES:
        raise ValueError(f"backbone: expected one of {AUDIT_BACKBONES}, got {backbone!r}.")
    if backbone == "tiny":
        bb = TinyBackbone(3, int(width))
        return QMixNet(num_classes=num_classes, backbone=bb, feature_dim=bb.out_features, projector_dim=8)
    return QMixNet(num_classes=num_classes, backbone=backbone)


def _to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 (0-255) or float (0-1) images → float in [0, 1]."""
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def train_classifier(
    network: nn.Module,
    images: torch.Tensor,
    labels: Sequence[int] | np.ndarray,
    epochs: int = 10,
    batch_size: int = 32,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    device: str | torch.device = "cpu",
    flips: str = "hv",
    progress: bool = False,
    desc: str = "train",
) -> nn.Module:
    """Train ``network`` with plain cross-entropy (AdamW, cosine learning rate, random flips).

    Args:
        network: classifier returning logits.
        images: ``(N, 3, H, W)`` uint8 (0-255) or float (0-1) tensor.
        labels: (N,) integer labels.
        epochs: passes over the data.
        batch_size: mini-batch size.
        lr: peak learning rate.
        weight_decay: AdamW weight decay.
        seed: seed of the shuffling and flip draws (a local ``torch.Generator``; the global RNG is untouched).
        device: training device.
        flips: random flips used as augmentation: ``"h"`` horizontal, ``"v"`` vertical, ``"hv"`` both, ``""`` none
            (a horizontal flip turns a left eye into a right one: drop ``"h"`` when the label depends on laterality).
        progress: show a tqdm bar over the epochs.
        desc: bar label.

    Returns:
        the trained network (in eval mode).

    Raises:
        ValueError: length mismatch, or ``epochs``/``batch_size`` < 1.
    """
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if y.shape[0] != images.shape[0]:
        raise ValueError(f"labels: expected {images.shape[0]} labels (one per image), got {y.shape[0]}.")
    if not set(flips) <= {"h", "v"}:
        raise ValueError(f"flips: expected a combination of 'h' and 'v' (e.g. 'hv', 'v', ''), got {flips!r}.")
    if int(epochs) < 1 or int(batch_size) < 1:
        raise ValueError(f"epochs, batch_size: expected ints >= 1, got {epochs!r}, {batch_size!r}.")
    from tqdm.auto import tqdm

    device = torch.device(device)
    network.to(device).train()
    gen = torch.Generator().manual_seed(int(seed))
    opt = torch.optim.AdamW(network.parameters(), lr=float(lr), weight_decay=float(weight_decay))
    n = images.shape[0]
    steps = int(epochs) * max(1, -(-n // int(batch_size)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=float(lr), total_steps=steps, pct_start=0.2)
    for _ in tqdm(range(int(epochs)), desc=desc, disable=not progress, leave=False):
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n, int(batch_size)):
            sel = perm[start : start + int(batch_size)]
            if sel.numel() < 2:  # batch norm needs two samples
                continue
            x = _to_float(images[sel])
            flip_h = torch.rand(sel.numel(), generator=gen) < 0.5
            flip_v = torch.rand(sel.numel(), generator=gen) < 0.5
            if "h" in flips:
                x = torch.where(flip_h.view(-1, 1, 1, 1), x.flip(-1), x)
            if "v" in flips:
                x = torch.where(flip_v.view(-1, 1, 1, 1), x.flip(-2), x)
            loss = F.cross_entropy(network(x.to(device)), y[sel].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return network.eval()


@torch.no_grad()
def predict_probs(
    network: nn.Module,
    images: Any,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    image_key: str = "image",
    index_key: str = "index",
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities of a frozen network (eval mode, no grad; train/eval flags restored).

    Args:
        network: classifier returning logits.
        images: an image tensor ``(N, 3, H, W)`` (uint8 0-255 or float 0-1), or an iterable of dict batches with
            ``image_key`` and ``index_key`` (a MONAI ``DataLoader``).
        batch_size: batch size for a tensor input.
        device: default: the device of the network's first parameter.
        image_key: batch key of the images (loader input).
        index_key: batch key of the sample indices (loader input).

    Returns:
        ``(indices, probs)``: (N,) int64 and (N, C) float32, ordered by ascending index (``0..N-1`` for a tensor).

    Raises:
        KeyError: a batch lacks ``image_key`` or ``index_key``.
    """
    if device is None:
        p0 = next(iter(network.parameters()), None)
        device = p0.device if p0 is not None else torch.device("cpu")
    modes = {m: m.training for m in network.modules()}
    network.eval()
    idx: list[np.ndarray] = []
    out: list[np.ndarray] = []
    try:
        if isinstance(images, torch.Tensor):
            for s in range(0, images.shape[0], int(batch_size)):
                x = _to_float(images[s : s + int(batch_size)]).to(device)
                out.append(F.softmax(network(x).float(), 1).cpu().numpy())
            idx.append(np.arange(images.shape[0]))
        else:
            for batch in images:
                for k in (image_key, index_key):
                    if k not in batch:
                        raise KeyError(f"{k!r}: key missing from the batch (available: {sorted(batch)}).")
                x = torch.as_tensor(batch[image_key]).to(device).float()
                out.append(F.softmax(network(x).float(), 1).cpu().numpy())
                idx.append(np.asarray(torch.as_tensor(batch[index_key]).cpu()).reshape(-1))
    finally:
        for m, flag in modes.items():
            m.train(flag)
    indices = np.concatenate(idx).astype(np.int64) if idx else np.zeros(0, np.int64)
    probs = np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)
    order = np.argsort(indices, kind="stable")
    return indices[order], probs[order]


def oof_probs(
    images: torch.Tensor,
    labels: Sequence[int] | np.ndarray,
    num_classes: int,
    folds: int = 5,
    epochs: int = 10,
    backbone: str = "tiny",
    width: int = 16,
    batch_size: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
    groups: Sequence[Any] | None = None,
    flips: str = "hv",
    progress: bool = False,
) -> np.ndarray:
    """Out-of-fold predicted probabilities: ``k`` quick models, each predicting the fold it did not train on.

    Args:
        images: ``(N, 3, H, W)`` uint8 or float tensor.
        labels: (N,) given labels in ``0..num_classes-1``.
        num_classes: number of classes.
        folds: number of folds ``k >= 2``.
        epochs: training epochs per fold.
        backbone: one of :data:`AUDIT_BACKBONES`.
        width: width of the ``"tiny"`` backbone.
        batch_size: mini-batch size.
        lr: peak learning rate.
        seed: seed of the folds, the initialisations and the training draws.
        device: training device.
        groups: optional (N,) group key (e.g. patient) kept within one fold; default: images split individually,
            stratified by label.
        flips: training flips (see :func:`train_classifier`).
        progress: tqdm progress bars.

    Returns:
        (N, num_classes) float32 probabilities, row ``i`` from the model that did not see sample ``i``.

    Raises:
        ValueError: ``folds < 2``, more folds than samples, or labels out of range.
    """
    from monai_qmix.data import split_by_patient

    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    n = y.shape[0]
    if int(folds) < 2 or int(folds) > n:
        raise ValueError(f"folds: expected an int in [2, {n}] (number of samples), got {folds!r}.")
    if n and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels: expected values in [0, {num_classes}), got range [{y.min()}, {y.max()}].")
    items = [{"label": int(y[i]), "index": i} for i in range(n)]
    key = "patient"
    if groups is not None:
        for it, g in zip(items, groups):
            it["patient"] = str(g)
    else:
        key = "index"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # per-image split (no patient key) is intended here
        parts = split_by_patient(items, n_folds=int(folds), seed=int(seed), stratify=True, key=key, reindex=False)
    probs = np.zeros((n, num_classes), dtype=np.float32)
    for k, part in enumerate(parts):
        held = np.array(sorted(it["index"] for it in part), dtype=np.int64)
        train = np.setdiff1d(np.arange(n), held)
        gen = torch.Generator().manual_seed(int(seed) * 1000 + k)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))  # isolated: init weights only
            net = build_audit_network(num_classes, backbone, width)
        train_classifier(
            net, images[torch.from_numpy(train)], y[train], epochs=epochs, batch_size=batch_size, lr=lr,
            seed=int(seed) * 1000 + k, device=device, flips=flips, progress=progress, desc=f"fold {k + 1}/{len(parts)}",
        )  # fmt: skip
        _, p = predict_probs(net, images[torch.from_numpy(held)], device=device)
        probs[held] = p
    return probs
