# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Per-sample loss and uncertainty of a frozen network over a loader (the input of :func:`separate`).

Default (QMix as reconstructed): one deterministic eval pass; loss = cross-entropy with the *given* label,
uncertainty = predictive entropy of the same softmax. Options: MC dropout with ``mc_samples`` stochastic passes,
uncertainty = ``"mutual_information"`` (BALD: H[mean p] - mean H[p]) or ``"variance"`` (sum over classes of the
variance of p across passes); the loss always comes from the deterministic pass.

**Feature/head protocol.** With MC dropout, a network that exposes ``forward_features(x)`` and
``forward_head(features)`` methods (the timm convention), or ``features`` and ``head`` callables such that
``head(features(x)) == network(x)``, has its backbone run once per batch in eval mode and only the head re-run
``mc_samples`` times with its dropout layers active, so T passes cost little more than one. Otherwise each MC
pass is a full forward pass with only the dropout layers in train mode (batch norm stays in eval mode).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.utils import look_up_option

__all__ = ["score_samples", "UNCERTAINTY_MEASURES", "feature_head_split"]

UNCERTAINTY_MEASURES = ("entropy", "mutual_information", "variance")


def feature_head_split(network: torch.nn.Module) -> tuple[Callable, Callable] | None:
    """Return ``(features_fn, head_fn)`` if ``network`` follows the feature/head protocol, else ``None``."""
    net = network.module if hasattr(network, "module") and isinstance(network.module, torch.nn.Module) else network
    for f_name, h_name in (("forward_features", "forward_head"), ("features", "head")):
        f, h = getattr(net, f_name, None), getattr(net, h_name, None)
        if callable(f) and callable(h):
            return f, h
    return None


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(1e-12))).sum(dim=1)


def _to_list(x: Any, n: int) -> list:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return x.reshape(n, -1)[:, 0].tolist() if x.numel() == n else list(x.reshape(n, -1).numpy())
    if isinstance(x, np.ndarray):
        return list(x.reshape(n, -1)[:, 0]) if x.size == n else list(x.reshape(n, -1))
    return list(x)


def _image_names(img: Any, n: int) -> list[str] | None:
    meta = getattr(img, "meta", None)
    if not isinstance(meta, dict) or "filename_or_obj" not in meta:
        return None
    names = meta["filename_or_obj"]
    names = [names] if isinstance(names, str) else list(names)
    return [str(v) for v in names] if len(names) == n else None


def _soft_ce(logp: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample CE with integer labels (B,) / (B, 1) or soft/one-hot labels (B, C); returns (ce, hard_label)."""
    if label.ndim == 2 and label.shape[1] == logp.shape[1] and label.shape[1] > 1:
        soft = label.to(logp.dtype)
        return -(soft * logp).sum(dim=1), soft.argmax(dim=1)
    hard = label.reshape(-1).long()
    if hard.shape[0] != logp.shape[0]:
        raise ValueError(f"label: expected {logp.shape[0]} labels for the batch, got shape {tuple(label.shape)}.")
    return F.nll_loss(logp, hard, reduction="none"), hard


def score_samples(
    network: torch.nn.Module,
    loader: Iterable,
    device: str | torch.device | None = None,
    uncertainty: str = "entropy",
    mc_samples: int = 0,
    amp: bool = True,
    image_key: str = "image",
    label_key: str = "label",
    index_key: str = "index",
    extra_keys: Sequence[str] = (),
    reuse_features: bool = True,
    seed: int = 0,
    progress: bool = True,
    desc: str = "scoring",
    distributed: bool | None = None,
) -> dict[str, np.ndarray]:
    """Score every sample of ``loader`` with a frozen ``network``: loss with the given label and uncertainty.

    The network runs in eval mode under ``torch.no_grad()`` (autocast on CUDA when ``amp``); the train/eval flag
    of every module is restored afterwards. Under an initialised ``torch.distributed`` process group each rank
    scores its shard (e.g. via ``DistributedSampler``) and the results are all-gathered, so every rank returns
    the scores of the whole set (duplicates from sampler padding are dropped).

    Args:
        network: classifier returning logits (B, C).
        loader: iterable of dict batches with ``image_key``, ``label_key`` and ``index_key``; should be
            deterministic (test transform, no shuffling needed).
        device: where to run; default the device of the network's first parameter.
        uncertainty: ``"entropy"`` (default, predictive entropy of the deterministic softmax),
            ``"mutual_information"`` or ``"variance"`` (MC dropout, need ``mc_samples >= 2``).
        mc_samples: number T of stochastic passes for the MC measures (ignored for ``"entropy"``).
        amp: use ``torch.autocast`` on CUDA (no effect on CPU).
        image_key: batch key of the images.
        label_key: batch key of the given labels (int (B,) or (B, 1), or soft/one-hot (B, C)).
        index_key: batch key of the sample indices.
        extra_keys: further per-sample batch keys to collect (e.g. ``"noise_group"``, ``"quality"``); a key absent
            from every batch is skipped, one absent from only some batches raises ``KeyError``.
        reuse_features: with MC dropout, use the feature/head protocol (module docstring) when available.
        seed: seed of the dropout masks (drawn inside ``torch.random.fork_rng``; the global RNG is untouched).
        progress: show a tqdm progress bar (rank 0 only).
        desc: progress bar label.
        distributed: all-gather across ranks; default: when a process group with world size > 1 is initialised.

    Returns:
        dict of numpy arrays ordered by ascending index: ``index`` (int64), ``label`` (int64), ``loss`` and
        ``uncertainty`` (float32), ``image`` (object array of file names, only when the images carry MONAI
        ``filename_or_obj`` meta data), and one entry per collected extra key.

    Raises:
        ValueError: for an unknown ``uncertainty`` or too few ``mc_samples``.
        KeyError: when a batch lacks one of the required keys.
        TypeError: when a batch is not a dict.
    """
    uncertainty = look_up_option(uncertainty, UNCERTAINTY_MEASURES)
    mc = uncertainty != "entropy"
    if mc and (not isinstance(mc_samples, int) or mc_samples < 2):
        raise ValueError(f"mc_samples: expected an int >= 2 for uncertainty={uncertainty!r}, got {mc_samples!r}.")
    if device is None:
        p0 = next(iter(network.parameters()), None)
        device = p0.device if p0 is not None else torch.device("cpu")
    device = torch.device(device)
    if distributed is None:
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        distributed = distributed and torch.distributed.get_world_size() > 1
    rank = torch.distributed.get_rank() if distributed else 0

    split = feature_head_split(network) if (mc and reuse_features) else None
    dropouts = [m for m in network.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
    if mc and not dropouts:
        warnings.warn(
            f"score_samples: uncertainty={uncertainty!r} but the network has no dropout layer; all MC passes are "
            "identical and the uncertainty is 0.",
            stacklevel=2,
        )
    modes = {m: m.training for m in network.modules()}
    autocast = torch.autocast(device_type="cuda") if (amp and device.type == "cuda") else nullcontext()
    rng_devices = [device] if device.type == "cuda" else []

    cols: dict[str, list] = {"index": [], "label": [], "loss": [], "uncertainty": [], "image": []}
    extra: dict[str, list] = {k: [] for k in extra_keys}
    seen_extra: dict[str, int] = dict.fromkeys(extra_keys, 0)
    has_names = True
    n_batches = 0
    from tqdm.auto import tqdm

    try:
        network.eval()
        with torch.no_grad(), torch.random.fork_rng(devices=rng_devices):
            torch.manual_seed(seed)  # isolated by fork_rng: only the dropout masks of this pass are seeded
            for batch in tqdm(loader, desc=desc, disable=not progress or rank != 0, leave=False):
                if not isinstance(batch, dict):
                    raise TypeError(f"loader: expected dict batches, got {type(batch).__name__}.")
                for k in (image_key, label_key, index_key):
                    if k not in batch:
                        raise KeyError(f"{k!r}: key missing from the batch (available: {sorted(batch)}).")
                img = batch[image_key]
                x = torch.as_tensor(img).to(device)
                n = x.shape[0]
                with autocast:
                    if split is not None:
                        feats = split[0](x)
                        logits = split[1](feats)
                    else:
                        logits = network(x)
                logp = F.log_softmax(logits.float(), dim=1)
                ce, hard = _soft_ce(logp, torch.as_tensor(batch[label_key]).to(device))
                if not mc:
                    unc = _entropy(logp.exp())
                else:
                    for m in dropouts:
                        m.train()
                    probs = []
                    for _ in range(mc_samples):
                        with autocast:
                            out = split[1](feats) if split is not None else network(x)
                        probs.append(F.softmax(out.float(), dim=1))
                    for m in dropouts:
                        m.eval()
                    ps = torch.stack(probs)  # (T, B, C)
                    if uncertainty == "mutual_information":
                        unc = (_entropy(ps.mean(0)) - torch.stack([_entropy(p) for p in ps]).mean(0)).clamp_min(0)
                    else:
                        unc = ps.var(dim=0, unbiased=False).sum(dim=1)
                cols["index"] += _to_list(batch[index_key], n)
                cols["label"] += hard.cpu().tolist()
                cols["loss"] += ce.cpu().tolist()
                cols["uncertainty"] += unc.cpu().tolist()
                names = _image_names(img, n) if has_names else None
                has_names = has_names and names is not None
                if has_names:
                    cols["image"] += names
                for k in extra_keys:
                    if k in batch:
                        extra[k] += _to_list(batch[k], n)
                        seen_extra[k] += 1
                n_batches += 1
    finally:
        for m, flag in modes.items():
            m.train(flag)

    for k, cnt in seen_extra.items():
        if 0 < cnt < n_batches:
            raise KeyError(f"extra_keys: {k!r} is present in only {cnt} of {n_batches} batches.")
    local: dict[str, Any] = {
        "index": np.asarray(cols["index"], dtype=np.int64),
        "label": np.asarray(cols["label"], dtype=np.int64),
        "loss": np.asarray(cols["loss"], dtype=np.float32),
        "uncertainty": np.asarray(cols["uncertainty"], dtype=np.float32),
    }
    if has_names and n_batches:
        local["image"] = np.asarray(cols["image"], dtype=object)
    for k in extra_keys:
        if seen_extra[k]:
            local[k] = np.asarray(extra[k])
    if distributed:
        parts: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(parts, local)
        common = set.intersection(*(set(p) for p in parts))
        local = {k: np.concatenate([p[k] for p in parts]) for k in local if k in common}
    _, first = np.unique(local["index"], return_index=True)  # sorted by index, duplicates (padding) dropped
    return {k: v[first] for k, v in local.items()}
