# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Grading metrics: quadratic-weighted kappa (the QMix paper's metric), accuracy, macro-F1, recall, OvR AUC.

Two layers:

* pure functions on numpy-compatible input (:func:`grading_report`, :func:`quadratic_weighted_kappa`, …), usable
  in scripts and notebooks;
* Ignite metrics (:class:`QuadraticWeightedKappa`, :class:`GradingAccuracy`, :class:`MacroF1`,
  :class:`PerClassRecall`, :class:`OneVsRestAUC`) that drop into a MONAI engine as ``key_val_metric`` /
  ``additional_metrics``. They subclass :class:`ignite.metrics.EpochMetric`, so predictions of all ranks are
  all-gathered before the value is computed (DDP-safe) and the value is that of the whole epoch, not a batch mean.

Accepted inputs (both layers):

* predictions: per-class scores ``(N, C)`` (probabilities, logits or one-hot) or hard class indices ``(N,)``;
  the predicted class of a score row is its argmax. :func:`one_vs_rest_auc` needs scores; rows that are not
  probability vectors (a value outside [0, 1] or a row sum off 1 by more than 1e-3) are taken for logits and
  soft-maxed first.
* labels: class indices ``(N,)`` / ``(N, 1)`` or one-hot ``(N, C)`` (argmax is taken).

In a MONAI engine the default ``output_transform`` is ``from_engine(["pred", "label"])``: it reads the decollated
per-item dicts (``decollate=True``, the default) or the batch dict (``decollate=False``), so the metrics work with
``SupervisedEvaluator`` and no ``postprocessing``.

Degenerate cases (documented, never silent):

* no sample: ``ValueError``;
* QWK whose chance-expected disagreement is zero (all labels and all predictions are the same single class, or
  ``num_classes == 1``): ``0.0`` and a warning (sklearn returns NaN); kappa measures agreement beyond chance and
  none is measurable;
* recall of a class absent from ``y_true``: NaN (undefined), with a warning;
* macro-F1: averaged over the classes present in ``y_true`` or predicted (F1 of a class absent from both is 0/0),
  which equals ``sklearn.metrics.f1_score(average="macro")``;
* OvR AUC: averaged over the classes present in ``y_true`` (a class needs positives and negatives); absent classes
  are skipped with a warning; fewer than two classes present gives NaN with a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine
from ignite.exceptions import NotComputableError
from ignite.metrics import EpochMetric
from ignite.metrics.metric import reinit__is_reduced
from monai.handlers import from_engine
from monai.utils import convert_to_tensor, evenly_divisible_all_gather
from sklearn.metrics import roc_auc_score

__all__ = [
    "GradingAccuracy",
    "MacroF1",
    "OneVsRestAUC",
    "PerClassRecall",
    "QuadraticWeightedKappa",
    "accuracy",
    "confusion_matrix",
    "grading_metric_set",
    "grading_report",
    "macro_f1",
    "one_vs_rest_auc",
    "per_class_recall",
    "quadratic_weighted_kappa",
]

_PROB_ATOL = 1e-3


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().float().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return np.asarray(x)


def _labels(y: Any, name: str) -> np.ndarray:
    """Class indices ``(N,)`` from indices ``(N,)``/``(N, 1)`` or one-hot ``(N, C)``; validated."""
    arr = _to_numpy(y)
    if arr.ndim == 2:
        arr = arr[:, 0] if arr.shape[1] == 1 else arr.argmax(axis=1)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected shape (N,), (N, 1) or one-hot (N, C), got {tuple(_to_numpy(y).shape)}.")
    if arr.size == 0:
        raise ValueError(f"{name}: empty; grading metrics need at least one sample.")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name}: class indices must be finite integer values, got {arr[:5]}...")
    elif arr.dtype.kind not in "iub":
        raise ValueError(f"{name}: expected integer class indices, got dtype {arr.dtype}.")
    arr = arr.astype(np.int64)
    if arr.min() < 0:
        raise ValueError(f"{name}: class indices must be >= 0, got {int(arr.min())}.")
    return arr


def _split_prediction(prob_or_pred: Any) -> tuple[np.ndarray | None, np.ndarray]:
    """``(scores or None, predicted class indices)`` from scores ``(N, C)`` or indices ``(N,)``/``(N, 1)``."""
    arr = _to_numpy(prob_or_pred)
    if arr.ndim == 2 and arr.shape[1] > 1:
        scores = arr.astype(np.float64)
        if not np.all(np.isfinite(scores)):
            raise ValueError("prob_or_pred: scores contain NaN or inf.")
        return scores, scores.argmax(axis=1)
    return None, _labels(arr, "prob_or_pred")


def _resolve_num_classes(num_classes: int | None, y_true: np.ndarray, y_pred: np.ndarray, width: int | None) -> int:
    needed = int(max(y_true.max(), y_pred.max())) + 1
    if num_classes is None:
        if width is not None and needed > width:
            raise ValueError(f"y_true: class index {needed - 1} is outside the {width} score columns of prob_or_pred.")
        return width if width is not None else needed
    k = int(num_classes)
    if k < 1:
        raise ValueError(f"num_classes: must be >= 1, got {num_classes!r}.")
    if width is not None and width != k:
        raise ValueError(f"num_classes: {k} does not match the {width} score columns of prob_or_pred.")
    if needed > k:
        raise ValueError(f"num_classes: {k}, but a label or prediction is {needed - 1} (expected 0..{k - 1}).")
    return k


def _prepare(y_true: Any, prob_or_pred: Any, num_classes: int | None) -> tuple[np.ndarray, np.ndarray, Any, int]:
    yt = _labels(y_true, "y_true")
    scores, yp = _split_prediction(prob_or_pred)
    if yp.shape[0] != yt.shape[0]:
        raise ValueError(f"prob_or_pred: {yp.shape[0]} predictions for {yt.shape[0]} labels in y_true.")
    k = _resolve_num_classes(num_classes, yt, yp, None if scores is None else scores.shape[1])
    return yt, yp, scores, k


def confusion_matrix(y_true: Any, prob_or_pred: Any, num_classes: int | None = None) -> np.ndarray:
    """Confusion matrix ``(K, K)`` (rows = true class, columns = predicted class), int64.

    Args:
        y_true: class indices ``(N,)`` or one-hot ``(N, K)``.
        prob_or_pred: scores ``(N, K)`` (argmax is taken) or class indices ``(N,)``.
        num_classes: ``K``; inferred from the score width or the largest class index when ``None``.

    Raises:
        ValueError: empty input, mismatched lengths, non-integer or out-of-range class indices.
    """
    yt, yp, _, k = _prepare(y_true, prob_or_pred, num_classes)
    return np.bincount(yt * k + yp, minlength=k * k).reshape(k, k).astype(np.int64)


def _kappa_from_confusion(cm: np.ndarray) -> float:
    k = cm.shape[0]
    n = cm.sum()
    idx = np.arange(k, dtype=np.float64)
    weights = (idx[:, None] - idx[None, :]) ** 2
    expected = np.outer(cm.sum(axis=1), cm.sum(axis=0)) / n
    denom = float((weights * expected).sum())
    if denom == 0.0:
        warnings.warn(
            "quadratic_weighted_kappa: no disagreement is expected by chance (every label and every prediction is "
            "the same single class); kappa is undefined, returning 0.0.",
            stacklevel=3,
        )
        return 0.0
    return float(1.0 - (weights * cm).sum() / denom)


def quadratic_weighted_kappa(y_true: Any, prob_or_pred: Any, num_classes: int | None = None) -> float:
    """Quadratic-weighted Cohen's kappa over the classes ``0..K-1`` (the ordinal distance of DR grades counts).

    Equals ``sklearn.metrics.cohen_kappa_score(y_true, y_pred, labels=range(K), weights="quadratic")``; passing all
    ``K`` labels matters when a grade is missing, since the weights depend on grade distances.

    Args:
        y_true: class indices ``(N,)`` or one-hot ``(N, K)``.
        prob_or_pred: scores ``(N, K)`` or class indices ``(N,)``.
        num_classes: ``K`` (inferred when ``None``).

    Returns:
        Kappa in [-1, 1]; ``0.0`` with a warning when undefined (see the module docstring), never NaN.

    Raises:
        ValueError: see :func:`confusion_matrix`.

    Example:
        >>> quadratic_weighted_kappa([0, 1, 2, 3], [0, 1, 2, 2])
        0.875
    """
    return _kappa_from_confusion(confusion_matrix(y_true, prob_or_pred, num_classes))


def accuracy(y_true: Any, prob_or_pred: Any, num_classes: int | None = None) -> float:
    """Fraction of samples whose predicted class equals the label (argmax of score rows); ``num_classes`` validates."""
    yt, yp, _, _ = _prepare(y_true, prob_or_pred, num_classes)
    return float(np.mean(yt == yp))


def _f1_per_class(cm: np.ndarray) -> np.ndarray:
    tp = np.diag(cm).astype(np.float64)
    denom = 2 * tp + (cm.sum(axis=0) - tp) + (cm.sum(axis=1) - tp)  # 2TP + FP + FN
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), np.nan)


def macro_f1(y_true: Any, prob_or_pred: Any, num_classes: int | None = None) -> float:
    """Macro-averaged F1 over the classes present in ``y_true`` or in the predictions.

    A class absent from both has F1 = 0/0 and is left out, which matches ``sklearn.metrics.f1_score(y_true,
    y_pred, average="macro")``; a class predicted but absent from ``y_true`` (or the reverse) counts with F1 = 0.
    """
    f1 = _f1_per_class(confusion_matrix(y_true, prob_or_pred, num_classes))
    return float(np.nanmean(f1))


def per_class_recall(y_true: Any, prob_or_pred: Any, num_classes: int | None = None) -> list[float]:
    """Recall (sensitivity) of each class ``0..K-1``; NaN, with a warning, for a class absent from ``y_true``."""
    cm = confusion_matrix(y_true, prob_or_pred, num_classes)
    support = cm.sum(axis=1)
    if np.any(support == 0):
        warnings.warn(
            f"per_class_recall: classes {np.flatnonzero(support == 0).tolist()} are absent from y_true; their recall "
            "is undefined (NaN).",
            stacklevel=2,
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)
    return [float(r) for r in recall]


def _as_probabilities(scores: np.ndarray) -> np.ndarray:
    """Scores as probabilities: rows that already are probability vectors are kept, otherwise softmax (logits)."""
    is_prob = (
        np.all(scores >= -_PROB_ATOL)
        and np.all(scores <= 1 + _PROB_ATOL)
        and np.allclose(scores.sum(axis=1), 1.0, atol=_PROB_ATOL)
    )
    if is_prob:
        return scores
    shifted = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def one_vs_rest_auc(y_true: Any, scores: Any, num_classes: int | None = None) -> float:
    """Macro one-vs-rest ROC AUC from per-class scores.

    For each class ``c`` present in ``y_true`` the binary AUC of ``scores[:, c]`` for ``y_true == c`` is computed;
    the mean over these classes is returned. Classes absent from ``y_true`` have no positive and are skipped with
    a warning. With all classes present this equals ``sklearn.metrics.roc_auc_score(y_true, probs,
    multi_class="ovr", average="macro")``. Logit rows are soft-maxed first (see the module docstring).

    Args:
        y_true: class indices ``(N,)`` or one-hot ``(N, K)``.
        scores: per-class scores ``(N, K)``.
        num_classes: ``K``; must equal the number of score columns when given.

    Returns:
        The macro AUC; NaN with a warning when fewer than two classes occur in ``y_true``.

    Raises:
        ValueError: hard class predictions instead of scores, or the errors of :func:`confusion_matrix`.
    """
    yt, _, probs, _ = _prepare(y_true, scores, num_classes)
    if probs is None:
        raise ValueError("scores: one_vs_rest_auc needs per-class scores (N, K), got hard class predictions.")
    probs = _as_probabilities(probs)
    present = np.unique(yt)
    if present.size < 2:
        warnings.warn(
            f"one_vs_rest_auc: only class {present.tolist()} occurs in y_true; AUC is undefined, returning NaN.",
            stacklevel=2,
        )
        return float("nan")
    absent = sorted(set(range(probs.shape[1])) - set(present.tolist()))
    if absent:
        warnings.warn(
            f"one_vs_rest_auc: classes {absent} are absent from y_true and are skipped in the macro average.",
            stacklevel=2,
        )
    return float(np.mean([roc_auc_score(yt == c, probs[:, c]) for c in present]))


def grading_report(y_true: Any, prob_or_pred: Any, num_classes: int | None = None) -> dict[str, Any]:
    """All grading metrics at once.

    Args:
        y_true: class indices ``(N,)`` or one-hot ``(N, K)`` (numpy, torch or list).
        prob_or_pred: per-class scores ``(N, K)`` (probabilities or logits) or hard class indices ``(N,)``.
        num_classes: ``K`` (inferred from the score width or the largest class index when ``None``).

    Returns:
        dict with ``qwk``, ``accuracy``, ``macro_f1`` (floats), ``per_class_recall`` (list of ``K`` floats, NaN
        for classes absent from ``y_true``), ``auc_ovr`` (float; NaN when hard predictions are given or fewer
        than two classes occur), ``confusion`` (``K × K`` nested list, rows = true class) and ``n``.

    Raises:
        ValueError: empty input, mismatched lengths, invalid class indices or ``num_classes``.

    Example:
        >>> r = grading_report([0, 1, 2, 2], [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.1, 0.6, 0.3]])
        >>> r["accuracy"], r["per_class_recall"]
        (0.75, [1.0, 1.0, 0.5])
    """
    yt, yp, scores, k = _prepare(y_true, prob_or_pred, num_classes)
    if scores is None:
        warnings.warn("grading_report: hard predictions given, auc_ovr needs scores; it is NaN.", stacklevel=2)
        auc = float("nan")
    else:
        auc = one_vs_rest_auc(yt, scores, k)
    return {
        "qwk": quadratic_weighted_kappa(yt, yp, k),
        "accuracy": float(np.mean(yt == yp)),
        "macro_f1": macro_f1(yt, yp, k),
        "per_class_recall": per_class_recall(yt, yp, k),
        "auc_ovr": auc,
        "confusion": confusion_matrix(yt, yp, k).tolist(),
        "n": int(yt.shape[0]),
    }


# ---------------------------------------------------------------------------------------------- Ignite metrics


def _as_batch(x: Any, name: str) -> torch.Tensor:
    """One tensor ``(N, ...)`` from a batch tensor/array or a list of per-item values (MONAI decollated output)."""
    if isinstance(x, (list, tuple)):
        if len(x) == 0:
            raise ValueError(f"{name}: empty list of items.")
        return torch.stack([convert_to_tensor(i, track_meta=False).detach().reshape(-1) for i in x])
    t = convert_to_tensor(x, track_meta=False)
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name}: expected a tensor, array or list of items, got {type(x).__name__}.")
    return t.detach().reshape(1) if t.ndim == 0 else t.detach()


class _GradingEpochMetric(EpochMetric):
    """Base: collects ``(pred, label)`` over the epoch (all-gathered under DDP) and applies ``_value``.

    Args:
        num_classes: number of classes ``K`` (inferred from the score width or largest index when ``None``).
        output_transform: maps ``engine.state.output`` to ``(pred, label)``; the default (``None``) is
            ``from_engine(["pred", "label"])``, which reads MONAI's ``"pred"`` and ``"label"`` keys from the
            decollated list of dicts or from the batch dict.
        device: where the collected tensors are kept.
    """

    def __init__(
        self,
        num_classes: int | None = None,
        output_transform: Callable | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        if num_classes is not None and int(num_classes) < 1:
            raise ValueError(f"num_classes: must be >= 1 or None, got {num_classes!r}.")
        self.num_classes = None if num_classes is None else int(num_classes)
        super().__init__(
            self._compute_fn,
            output_transform=from_engine(["pred", "label"]) if output_transform is None else output_transform,
            check_compute_fn=False,
            device=device,
            skip_unrolling=True,
        )

    @reinit__is_reduced
    def update(self, output: Sequence[Any]) -> None:
        """Add a batch: ``(pred, label)`` as tensors/arrays or as lists of per-item values."""
        if not isinstance(output, Sequence) or len(output) != 2:
            raise ValueError(f"{type(self).__name__}: output_transform must return (pred, label), got {output!r:.80}.")
        y_pred, y = _as_batch(output[0], "pred"), _as_batch(output[1], "label")
        if y_pred.ndim == 2 and y_pred.shape[1] == 1:
            y_pred = y_pred[:, 0]
        if y.ndim == 2:
            y = y[:, 0] if y.shape[1] == 1 else y.argmax(dim=1)  # one-hot label
        if y_pred.ndim not in (1, 2) or y.ndim != 1 or y_pred.shape[0] != y.shape[0]:
            raise ValueError(
                f"{type(self).__name__}: pred {tuple(y_pred.shape)} / label {tuple(y.shape)} must be (N, C) or (N,) "
                "scores/indices and (N,) indices or (N, C) one-hot with the same N."
            )
        if y.is_floating_point():
            if not torch.equal(y, y.round()):
                raise ValueError(f"{type(self).__name__}: label must hold integer class indices, got {y[:3]}.")
        super().update((y_pred.float(), y.long()))

    def compute(self) -> Any:
        """The metric over every sample of the epoch (all ranks' samples under DDP).

        Unlike ``EpochMetric.compute`` (value on rank 0, then broadcast), every rank computes the value from the
        all-gathered tensors (ranks may hold different numbers of samples); the computation is cheap and
        deterministic, and the non-scalar :class:`PerClassRecall` needs no broadcast.

        Raises:
            NotComputableError: no sample was seen.
        """
        if len(self._predictions) < 1:
            raise NotComputableError(f"{type(self).__name__} must have at least one example before it can be computed.")
        if self._result is None:
            y_pred, y = torch.cat(self._predictions, dim=0), torch.cat(self._targets, dim=0)
            if idist.get_world_size() > 1:
                # ranks may hold different numbers of samples (DistributedSampler(even_divisible=False)), which
                # ignite's all_gather cannot take: gather with padding and trim
                y_pred = evenly_divisible_all_gather(y_pred, concat=True)
                y = evenly_divisible_all_gather(y, concat=True)
            self._result = self.compute_fn(y_pred, y)
        return self._result

    def _compute_fn(self, y_pred: torch.Tensor, y: torch.Tensor) -> Any:
        return self._value(y.cpu().numpy(), y_pred.cpu().numpy())

    def _value(self, y_true: np.ndarray, prob_or_pred: np.ndarray) -> Any:
        raise NotImplementedError


class QuadraticWeightedKappa(_GradingEpochMetric):
    """Quadratic-weighted Cohen's kappa of the epoch (:func:`quadratic_weighted_kappa`), the QMix key metric.

    ``pred`` may be probabilities, logits, one-hot or class indices; ``label`` class indices or one-hot.

    Args:
        num_classes: number of classes ``K`` (inferred from the score width or largest index when ``None``; give
            it when predictions are class indices and a top grade may be missing from an epoch).
        output_transform: maps ``engine.state.output`` to ``(pred, label)``; the default (``None``) is
            ``from_engine(["pred", "label"])`` (decollated list of dicts or batch dict).
        device: where the collected tensors are kept.

    Example:
        >>> from monai.engines import SupervisedEvaluator
        >>> # SupervisedEvaluator(..., key_val_metric={"val_qwk": QuadraticWeightedKappa()})
    """

    def _value(self, y_true: np.ndarray, prob_or_pred: np.ndarray) -> float:
        return quadratic_weighted_kappa(y_true, prob_or_pred, self.num_classes)


class GradingAccuracy(_GradingEpochMetric):
    """Accuracy of the epoch with the same input handling as the other grading metrics (one-hot labels, logits).

    Args: ``num_classes``, ``output_transform``, ``device`` as in :class:`QuadraticWeightedKappa`.
    """

    def _value(self, y_true: np.ndarray, prob_or_pred: np.ndarray) -> float:
        return accuracy(y_true, prob_or_pred, self.num_classes)


class MacroF1(_GradingEpochMetric):
    """Macro-F1 of the epoch (:func:`macro_f1`).

    Args: ``num_classes``, ``output_transform``, ``device`` as in :class:`QuadraticWeightedKappa`.
    """

    def _value(self, y_true: np.ndarray, prob_or_pred: np.ndarray) -> float:
        return macro_f1(y_true, prob_or_pred, self.num_classes)


class PerClassRecall(_GradingEpochMetric):
    """Per-class recall of the epoch (NaN for absent classes; :func:`per_class_recall`).

    :meth:`compute` returns a float tensor ``(K,)``. Attached to an engine under ``name``, it stores one scalar per
    class, ``engine.state.metrics[f"{name}_{c}"]`` (``c`` = 0 ... K-1), and nothing under ``name`` itself: every
    MONAI logging handler (``StatsHandler``, ``TensorBoardStatsHandler``, ``MLFlowHandler``, ``MetricsSaver``) takes
    scalars, and ``MLFlowHandler`` fails on a tensor. Use it in ``additional_metrics``, not as the key metric.

    Args: ``num_classes``, ``output_transform``, ``device`` as in :class:`QuadraticWeightedKappa`.
    """

    def _value(self, y_true: np.ndarray, prob_or_pred: np.ndarray) -> torch.Tensor:
        return torch.tensor(per_class_recall(y_true, prob_or_pred, self.num_classes), dtype=torch.float64)

    def completed(self, engine: Engine, name: str) -> None:
        """Store the recall of class ``c`` as the scalar metric ``f"{name}_{c}"``."""
        for c, value in enumerate(self.compute().tolist()):
            engine.state.metrics[f"{name}_{c}"] = value


class OneVsRestAUC(_GradingEpochMetric):
    """Macro one-vs-rest AUC of the epoch (:func:`one_vs_rest_auc`); needs per-class scores as ``pred``.

    Args: ``num_classes``, ``output_transform``, ``device`` as in :class:`QuadraticWeightedKappa`.
    """

    def _value(self, y_true: np.ndarray, prob_or_pred: np.ndarray) -> float:
        return one_vs_rest_auc(y_true, prob_or_pred, self.num_classes)


def grading_metric_set(
    num_classes: int | None = None, prefix: str = "val_", key: str = "qwk"
) -> tuple[dict[str, EpochMetric], dict[str, EpochMetric]]:
    """Fresh instances of all grading metrics, split into MONAI's ``key_val_metric`` and ``additional_metrics``.

    Args:
        num_classes: passed to every metric.
        prefix: prepended to the metric names (``val_qwk``, ``val_accuracy``, ``val_macro_f1``,
            ``val_per_class_recall``, ``val_auc_ovr``).
        key: which one is the key metric (any scalar one: ``qwk``, ``accuracy``, ``macro_f1``, ``auc_ovr``).

    Returns:
        ``(key_val_metric, additional_metrics)`` dicts.

    Raises:
        ValueError: unknown or non-scalar ``key``.

    Example:
        >>> key_metric, extra = grading_metric_set(num_classes=5)
        >>> sorted(key_metric), sorted(extra)
        (['val_qwk'], ['val_accuracy', 'val_auc_ovr', 'val_macro_f1', 'val_per_class_recall'])

    Args: ``num_classes``, ``output_transform``, ``device`` as in :class:`QuadraticWeightedKappa`.
    """
    classes: dict[str, type[_GradingEpochMetric]] = {
        "qwk": QuadraticWeightedKappa,
        "accuracy": GradingAccuracy,
        "macro_f1": MacroF1,
        "per_class_recall": PerClassRecall,
        "auc_ovr": OneVsRestAUC,
    }
    if key not in classes or key == "per_class_recall":
        raise ValueError(
            f"key: {key!r} is not a scalar grading metric; expected one of qwk, accuracy, macro_f1, auc_ovr."
        )
    metrics = {f"{prefix}{name}": cls(num_classes=num_classes) for name, cls in classes.items()}
    key_name = f"{prefix}{key}"
    return {key_name: metrics.pop(key_name)}, metrics
