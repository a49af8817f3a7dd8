# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""``find_noisy_samples``: which labelled images are probably mislabelled, and which are too poor to grade.

cleanlab's ``find_label_issues(labels, pred_probs)`` shape, with QMix's 3-group separation (Hou et al., IEEE TMI
2025): per-sample loss (cross-entropy of the *given* label) and uncertainty (predictive entropy) of
out-of-sample predictions are split by :func:`~monai_qmix.separation.separate` into Correct, Mis-H (high quality,
probably mislabelled) and Mis-L (low quality). A fundus-aware image-quality score
(:func:`~monai_qmix.audit.quality.fundus_quality`) can be given as well and is reported beside the model-based
``P(Mis-L)``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from monai.utils import look_up_option

from monai_qmix.separation import GROUP_NAMES, MIS_H, MIS_L, SeparationResult, minmax_normalise, score_samples, separate

from .oof import predict_probs
from .quality import quality_flags

__all__ = ["LOW_QUALITY_RULES", "AuditTable", "find_noisy_samples", "precision_at_k"]

#: How ``is_low_quality`` combines the model flag (group Mis-L) and the image-quality flag.
LOW_QUALITY_RULES: tuple[str, ...] = ("either", "model", "fov", "both")


def precision_at_k(score: Any, truth: Any, k: int | None = None) -> float:
    """Fraction of true positives among the ``k`` highest scores (default ``k`` = number of positives).

    Args:
        score: (N,) suspicion score, higher = more suspect.
        truth: (N,) bool ground truth.
        k: cut-off; default the number of positives.

    Returns:
        precision at ``k`` (NaN when ``k == 0``).
    """
    s = np.asarray(score, dtype=np.float64).reshape(-1)
    t = np.asarray(truth, dtype=bool).reshape(-1)
    k = int(t.sum()) if k is None else int(k)
    if k <= 0:
        return float("nan")
    top = np.argsort(-s, kind="stable")[:k]
    return float(t[top].mean())


@dataclass
class AuditTable:
    """Per-sample audit results (one row per sample, ordered by ascending ``index``).

    Attributes:
        columns: name → (N,) numpy array. Always: ``index``, ``given_label``, ``predicted_label``, ``p_given``,
            ``loss``, ``uncertainty``, ``p_correct``, ``p_mis_h``, ``p_mis_l``, ``group``, ``is_mislabeled``,
            ``is_low_quality``, ``low_quality_model``, ``mis_h_score`` / ``mis_l_score`` (suspicion: the mean of
            the group posterior and the min-max normalised loss / uncertainty; with quality scores, ``mis_h_score``
            is mapped to ``[0.5, 1]`` for images not flagged ``low_quality_fov`` and to ``[0, 0.5]`` for flagged
            ones, so that Mis-H, "high quality, wrong label", ranks the flagged images last), ``rank_mis_h``,
            ``rank_mis_l``;
            with quality scores also ``quality_score`` (+ components), ``low_quality_fov`` and ``rank_quality``;
            plus any ``extra`` columns.
        separation: the :class:`~monai_qmix.separation.SeparationResult` behind the groups.
        quality_threshold: the image-quality threshold used (NaN without quality scores).
        low_quality_rule: how ``is_low_quality`` was formed (see :data:`LOW_QUALITY_RULES`).
    """

    columns: dict[str, np.ndarray]
    separation: SeparationResult
    quality_threshold: float = float("nan")
    low_quality_rule: str = "model"
    problems: list[dict[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.columns["index"].shape[0])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def to_records(self, order: Sequence[int] | np.ndarray | None = None) -> list[dict[str, Any]]:
        """Rows as a list of dicts (plain Python values), optionally in the given row order."""
        rows = range(len(self)) if order is None else order
        out = []
        for i in rows:
            rec = {}
            for k, v in self.columns.items():
                x = v[int(i)]
                rec[k] = x.item() if isinstance(x, np.generic) else x
            out.append(rec)
        return out

    def suspicion_order(self) -> np.ndarray:
        """Row order: flagged rows first, then by ``max(P(Mis-H), P(Mis-L))`` descending."""
        flagged = self["is_mislabeled"] | self["is_low_quality"]
        susp = np.maximum(self["p_mis_h"], self["p_mis_l"])
        return np.lexsort((-susp, ~flagged))

    def ranked(self, by: str) -> np.ndarray:
        """Row positions ranked by ``"mis_h"`` / ``"mis_l"`` (suspicion score desc) or ``"quality"`` (score asc).

        Raises:
            ValueError: unknown ``by``, or ``"quality"`` without quality scores.
        """
        key = f"rank_{look_up_option(by, ('mis_h', 'mis_l', 'quality'))}"
        if key not in self.columns:
            raise ValueError(f"by: {by!r} needs quality scores, which were not given to find_noisy_samples.")
        return np.argsort(self[key], kind="stable")

    def to_csv(self, path: str | os.PathLike, order: Sequence[int] | np.ndarray | None = None) -> str:
        """Write the table as CSV (default order: :meth:`suspicion_order`); returns the path."""
        order = self.suspicion_order() if order is None else order
        recs = self.to_records(order)
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(self.columns))
            w.writeheader()
            for r in recs:
                w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
        return os.fspath(path)

    def counts_per_grade(self) -> dict[int, dict[str, int]]:
        """``{given grade: {"n", "correct", "mis_h", "mis_l", "mislabeled", "low_quality"}}``."""
        out: dict[int, dict[str, int]] = {}
        for g in np.unique(self["given_label"]):
            sel = self["given_label"] == g
            grp = self["group"][sel]
            out[int(g)] = {
                "n": int(sel.sum()),
                **{name: int((grp == name).sum()) for name in GROUP_NAMES},
                "mislabeled": int(self["is_mislabeled"][sel].sum()),
                "low_quality": int(self["is_low_quality"][sel].sum()),
            }
        return out


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _rank(values: np.ndarray, descending: bool) -> np.ndarray:
    order = np.argsort(-values if descending else values, kind="stable")
    rank = np.empty(values.shape[0], dtype=np.int64)
    rank[order] = np.arange(1, values.shape[0] + 1)
    return rank


def find_noisy_samples(
    labels: Any = None,
    pred_probs: Any = None,
    network: torch.nn.Module | None = None,
    loader: Iterable | None = None,
    quality_scores: Any = None,
    indices: Any = None,
    quality_threshold: float | str = "auto",
    low_quality_rule: str | None = None,
    per_class: bool = False,
    separation_options: Mapping[str, Any] | None = None,
    scoring_options: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> AuditTable:
    """Find the probably-mislabelled (Mis-H) and the low-quality (Mis-L) samples of a labelled dataset.

    Give either ``pred_probs`` (out-of-sample predicted probabilities, e.g. out-of-fold, as in cleanlab) or a
    ``network`` + ``loader``. From probabilities, loss = cross-entropy of the given label and uncertainty = the
    predictive entropy (the QMix scores, as :func:`~monai_qmix.separation.score_samples` computes by default); from a
    network, :func:`~monai_qmix.separation.score_samples` computes them (its MC-dropout options via
    ``scoring_options``) and a second no-grad pass gives the predicted grade. The scores are split with
    :func:`~monai_qmix.separation.separate` (3-component GMM). ``is_mislabeled`` = group Mis-H; ``is_low_quality``
    combines the model flag (group Mis-L) and, when ``quality_scores`` are given, the image-quality flag
    (:func:`~monai_qmix.audit.quality.quality_flags`) by ``low_quality_rule``.

    Args:
        labels: (N,) given labels; optional with a ``network`` + ``loader`` (then read from the batches).
        pred_probs: (N, C) predicted probabilities, rows aligned with ``labels``.
        network: classifier returning logits (used when ``pred_probs`` is None).
        loader: iterable of dict batches with ``image``, ``label``, ``index`` (deterministic transforms).
        quality_scores: optional (N,) combined quality scores in [0, 1], or the dict returned by
            :func:`~monai_qmix.audit.quality.fundus_quality` (its components become columns too), aligned with
            the rows (ascending index).
        indices: (N,) sample indices for ``pred_probs`` rows (default ``0..N-1``).
        quality_threshold: ``"auto"`` or a fixed score in (0, 1), see :func:`~monai_qmix.audit.quality.quality_flags`.
        low_quality_rule: ``"fov"`` (image-quality flag), ``"model"`` (group Mis-L), ``"either"`` or ``"both"``.
            Default: ``"fov"`` when ``quality_scores`` are given, else ``"model"`` (without quality scores only
            ``"model"`` applies). Why ``"fov"``: with quick out-of-fold models that have not learnt the task well,
            the predictive entropy is high almost everywhere and the Mis-L component absorbs many good images
            (``benchmarks/audit_realdata.py --synthdr``: model-flag precision 0.12 vs 0.79 for the FOV flag).
        per_class: one GMM per given label (QMix §IV-B, as reconstructed).
        separation_options: further keyword arguments of :func:`~monai_qmix.separation.separate`.
        scoring_options: further keyword arguments of :func:`~monai_qmix.separation.score_samples`.
        extra: further (N,) columns to carry into the table (e.g. ``image`` paths, true groups).
        device: device for the network passes.
        progress: tqdm progress bars for the network passes.

    Returns:
        :class:`AuditTable`.

    Raises:
        ValueError: neither or inconsistent inputs (shapes, labels out of range, unknown rule).

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> labels = rng.integers(0, 3, 60)
        >>> probs = np.full((60, 3), 0.05); probs[np.arange(60), labels] = 0.9
        >>> probs[:6] = np.roll(probs[:6], 1, axis=1)  # confident, but not the given label: mislabelled
        >>> probs[6:12] = 1 / 3  # uncertain
        >>> t = find_noisy_samples(labels, probs)
        >>> bool(t["is_mislabeled"][:6].all()), t["group"][6:12].tolist().count("mis_l")
        (True, 6)
    """
    if low_quality_rule is None:
        low_quality_rule = "fov" if quality_scores is not None else "model"
    low_quality_rule = look_up_option(low_quality_rule, LOW_QUALITY_RULES)
    if pred_probs is None and (network is None or loader is None):
        raise ValueError("pred_probs: give pred_probs, or both network and loader; got neither.")
    cols: dict[str, np.ndarray] = {}
    if pred_probs is not None:
        probs = _np(pred_probs).astype(np.float64)
        if probs.ndim != 2 or probs.shape[1] < 2:
            raise ValueError(f"pred_probs: expected shape (N, C) with C >= 2, got {probs.shape}.")
        if labels is None:
            raise ValueError("labels: required with pred_probs, got None.")
        y = _np(labels).astype(np.int64).reshape(-1)
        if y.shape[0] != probs.shape[0]:
            raise ValueError(f"labels: {y.shape[0]} labels for {probs.shape[0]} rows of pred_probs.")
        if y.size and (y.min() < 0 or y.max() >= probs.shape[1]):
            raise ValueError(f"labels: expected values in [0, {probs.shape[1]}), got range [{y.min()}, {y.max()}].")
        idx = np.arange(y.shape[0]) if indices is None else _np(indices).astype(np.int64).reshape(-1)
        if idx.shape[0] != y.shape[0]:
            raise ValueError(f"indices: {idx.shape[0]} indices for {y.shape[0]} labels.")
        order = np.argsort(idx, kind="stable")
        idx, y, probs = idx[order], y[order], probs[order]
        p_given = probs[np.arange(y.shape[0]), y]
        loss = -np.log(np.clip(p_given, 1e-12, None))
        unc = -(probs * np.log(np.clip(probs, 1e-12, None))).sum(1)
    else:
        opts = {"progress": progress, **dict(scoring_options or {})}
        scores = score_samples(network, loader, device=device, **opts)
        p_idx, probs = predict_probs(network, loader, device=device)
        idx, y = scores["index"], scores["label"]
        if not np.array_equal(p_idx, idx):
            raise ValueError(
                "loader: the two passes over the loader saw different sample indices; use a deterministic loader."
            )
        if labels is not None and not np.array_equal(_np(labels).astype(np.int64).reshape(-1), y):
            raise ValueError("labels: differ from the labels in the loader's batches.")
        p_given = probs[np.arange(y.shape[0]), y]
        loss, unc = scores["loss"].astype(np.float64), scores["uncertainty"].astype(np.float64)
        if "image" in scores:
            cols["image"] = scores["image"]
    sep = separate(loss, unc, labels=y, indices=idx, per_class=per_class, **dict(separation_options or {}))
    n = y.shape[0]
    cols.update(
        {
            "index": idx,
            "given_label": y,
            "predicted_label": probs.argmax(1).astype(np.int64),
            "p_given": p_given.astype(np.float32),
            "loss": loss.astype(np.float32),
            "uncertainty": unc.astype(np.float32),
            "p_correct": sep.probs[:, 0],
            "p_mis_h": sep.probs[:, MIS_H],
            "p_mis_l": sep.probs[:, MIS_L],
            "group": np.asarray(sep.group_names(sep.groups), dtype=object),
            "is_mislabeled": sep.groups == MIS_H,
        }
    )
    model_low = sep.groups == MIS_L
    thr = float("nan")
    rule = low_quality_rule
    if quality_scores is not None:
        q = dict(quality_scores) if isinstance(quality_scores, Mapping) else {"score": quality_scores}
        if "score" not in q:
            raise ValueError(f"quality_scores: a mapping needs a 'score' entry, got keys {sorted(q)}.")
        for k, v in q.items():
            arr = _np(v).astype(np.float32).reshape(-1)
            if arr.shape[0] != n:
                raise ValueError(f"quality_scores: {k!r} has {arr.shape[0]} values for {n} samples.")
            cols["quality_score" if k == "score" else f"quality_{k}"] = arr
        fov_low, thr = quality_flags(cols["quality_score"], quality_threshold)
        cols["low_quality_fov"] = fov_low
    else:
        rule = "model"
        fov_low = np.zeros(n, dtype=bool)
    cols["low_quality_model"] = model_low
    cols["is_low_quality"] = {
        "either": model_low | fov_low,
        "model": model_low,
        "fov": fov_low,
        "both": model_low & fov_low,
    }[rule]
    # suspicion scores: the GMM posterior (often saturated at 0 or 1) averaged with the raw normalised score, so
    # that the ranking inside a saturated group follows the loss (cleanlab's self-confidence) / the uncertainty
    mis_h = (cols["p_mis_h"] + minmax_normalise(loss)) / 2
    if quality_scores is not None:
        # Mis-H means *high quality* and a wrong label: an image that the FOV score flags as low quality is a re-acquire
        # / exclude case, and its wrong prediction may be the image's fault; it ranks after every unflagged image
        # (score in [0, 0.5] instead of [0.5, 1]). Without this, degraded images that the model gets wrong crowd the
        # top of the Mis-H list (planted SynthDR, seeds 0-11: precision at k >= 0.8 for 6 seeds before, all 12 after)
        mis_h = np.where(fov_low, mis_h / 2, 0.5 + mis_h / 2)
    cols["mis_h_score"] = mis_h.astype(np.float32)
    cols["mis_l_score"] = ((cols["p_mis_l"] + minmax_normalise(unc)) / 2).astype(np.float32)
    cols["rank_mis_h"] = _rank(cols["mis_h_score"].astype(np.float64), True)
    cols["rank_mis_l"] = _rank(cols["mis_l_score"].astype(np.float64), True)
    if "quality_score" in cols:
        cols["rank_quality"] = _rank(cols["quality_score"].astype(np.float64), False)
    for k, v in (extra or {}).items():
        arr = np.asarray(_np(v)).reshape(-1)
        if arr.shape[0] != n:
            raise ValueError(f"extra: column {k!r} has {arr.shape[0]} values for {n} samples.")
        cols[k] = arr
    return AuditTable(columns=cols, separation=sep, quality_threshold=thr, low_quality_rule=rule)
