# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Quality of a separation against known groups (synthetic noise, or datasets with quality labels).

The two AUCs are those the official QMix ``dataset.py`` logs every epoch: ``AUC_clean`` scores ``P(correct)``
against "label correct and high quality" (true group Correct) and ``AUC_good`` scores ``P(correct) + P(mis_h)``
against "high quality" (true group Correct or Mis-H).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from .result import CORRECT, GROUP_NAMES, MIS_H, MIS_L, SeparationResult, group_codes

__all__ = ["separation_metrics", "align_groups"]


def align_groups(result: SeparationResult, noise_group: Any) -> np.ndarray:
    """Return the true group codes aligned with ``result.indices`` (``-1`` where unknown).

    Args:
        result: a separation result.
        noise_group: either a mapping ``{index: group}`` or a sequence/array/tensor of groups. A sequence of
            length ``len(result)`` is aligned with ``result.indices`` (i.e. ordered by ascending index); a longer
            one is looked up by index (position = sample index). Groups are names or codes (see
            :func:`~monai_qmix.separation.result.group_codes`).

    Raises:
        ValueError: when a sequence is shorter than needed or a group is not recognised.
    """
    if isinstance(noise_group, Mapping):
        keys = list(noise_group.keys())
        codes = group_codes([noise_group[k] for k in keys])
        lut = dict(zip((int(k) for k in keys), codes))
        return np.array([lut.get(int(i), -1) for i in result.indices], dtype=np.int64)
    codes = group_codes(noise_group)
    if codes.shape[0] == len(result):
        return codes
    if len(result) and codes.shape[0] > int(result.indices.max()):
        return codes[result.indices]
    raise ValueError(
        f"noise_group: has {codes.shape[0]} entries; expected {len(result)} (aligned with result.indices) "
        f"or at least max(index) + 1 = {int(result.indices.max()) + 1 if len(result) else 0} (looked up by index)."
    )


def _auc(truth: np.ndarray, score: np.ndarray, name: str) -> float:
    if truth.size == 0 or truth.all() or not truth.any():
        warnings.warn(f"separation_metrics: {name} undefined (only one class in the ground truth); NaN.", stacklevel=3)
        return float("nan")
    if np.ptp(score) == 0:
        return 0.5
    return float(roc_auc_score(truth, score))


def separation_metrics(result: SeparationResult, noise_group: Any) -> dict[str, Any]:
    """Separation quality against the true groups.

    Samples whose true group is unknown (``-1``/``None``) are ignored. In ``"dividemix"`` mode ``AUC_good`` is
    NaN (the 2-group split does not model image quality).

    Args:
        result: output of :func:`~monai_qmix.separation.separate`.
        noise_group: true groups (names ``"correct"/"mis_h"/"mis_l"`` or codes 0/1/2), see :func:`align_groups`.

    Returns:
        dict with ``auc_clean``, ``auc_good`` (floats, NaN when undefined), ``precision`` and ``recall``
        (``{group name: float}``, NaN when undefined), ``confusion`` (3×3 int64 array, rows = true group,
        columns = predicted group, order correct/mis_h/mis_l), ``accuracy`` and ``n`` (number of samples
        with a known group).
    """
    truth = align_groups(result, noise_group)
    known = truth >= 0
    t, p, pr = truth[known], result.groups[known], result.probs[known].astype(np.float64)
    out: dict[str, Any] = {"n": int(known.sum())}
    out["auc_clean"] = _auc(t == CORRECT, pr[:, CORRECT], "AUC_clean")
    if result.mode == "dividemix":
        out["auc_good"] = float("nan")
    else:
        out["auc_good"] = _auc(t != MIS_L, pr[:, CORRECT] + pr[:, MIS_H], "AUC_good")
    conf = np.zeros((3, 3), dtype=np.int64)
    np.add.at(conf, (t, p), 1)
    out["confusion"] = conf
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.diag(conf) / conf.sum(axis=0)
        rec = np.diag(conf) / conf.sum(axis=1)
    out["precision"] = {name: float(prec[c]) for c, name in enumerate(GROUP_NAMES)}
    out["recall"] = {name: float(rec[c]) for c, name in enumerate(GROUP_NAMES)}
    out["accuracy"] = float(np.trace(conf) / max(conf.sum(), 1)) if conf.sum() else float("nan")
    return out
