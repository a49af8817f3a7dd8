# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Patient-level splitting of datalists: no patient (both eyes, several views) ends up in two splits."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["split_by_patient"]


def _groups(datalist: Sequence[dict[str, Any]], key: str) -> list[str]:
    """Group id per item: its ``key`` value, or a unique per-image id (with a warning) where it is absent."""
    lacking = [i for i, it in enumerate(datalist) if it.get(key) in (None, "")]
    if lacking:
        what = "no item has" if len(lacking) == len(datalist) else f"{len(lacking)} of {len(datalist)} items lack"
        warnings.warn(
            f"split_by_patient: {what} a {key!r} key; those items are split per image, so images of one patient "
            f"may fall in different splits.",
            stacklevel=3,
        )
    return [f"p:{it[key]}" if it.get(key) not in (None, "") else f"i:{i}" for i, it in enumerate(datalist)]


def split_by_patient(
    datalist: Sequence[dict[str, Any]],
    fractions: Sequence[float] | None = None,
    n_folds: int | None = None,
    seed: int = 0,
    stratify: bool = False,
    key: str = "patient",
    reindex: bool = True,
) -> list[list[dict[str, Any]]]:
    """Split a datalist into parts (e.g. train/val/test) or cross-validation folds, keeping each patient in one part.

    Patients are shuffled with ``np.random.default_rng(seed)`` and assigned one by one to the part whose image count
    is furthest below its target (``fraction * N``), so the parts' sizes follow ``fractions`` up to one patient's
    images. With ``stratify=True`` this runs separately per stratum, a patient's stratum being the highest label
    among its images (for DR: the patient's worst eye), so the label distribution is similar across parts.

    Args:
        datalist: items with ``label`` and (ideally) ``patient``; not modified.
        fractions: relative part sizes, e.g. ``(0.8, 0.2)``; positive, normalised to sum 1.
        n_folds: alternatively, the number of equal folds (``>= 2``); fold ``k`` is the validation set of run ``k``
            and the other folds together its training set.
        seed: seed of the generator.
        stratify: stratify by label (see above).
        key: the patient key. Items without it are split per image, with a warning.
        reindex: return copies whose ``index`` is re-numbered ``0..n-1`` within each part (the datalist contract:
            ``index`` is the position in the training datalist), the previous value kept as ``source_index``.
            ``False`` returns the original dicts.

    Returns:
        one list per part (or fold), items in their original order.

    Raises:
        ValueError: neither or both of ``fractions``/``n_folds``, invalid values, or fewer patients than parts.

    Example:
        >>> datalist = [
        ...     {"image": f"{p}_{eye}.png", "label": 0, "index": 2 * p + i, "patient": p}
        ...     for p in range(5)
        ...     for i, eye in enumerate(("left", "right"))
        ... ]
        >>> train, val = split_by_patient(datalist, fractions=(0.8, 0.2), seed=0)
        >>> len(train), len(val), {item["patient"] for item in val}  # both eyes of one patient held out
        (8, 2, {1})
        >>> [(item["index"], item["source_index"]) for item in val]  # re-indexed within the part
        [(0, 2), (1, 3)]
    """
    if (fractions is None) == (n_folds is None):
        raise ValueError(f"give exactly one of fractions and n_folds, got fractions={fractions!r}, n_folds={n_folds!r}")
    if n_folds is not None:
        if int(n_folds) != n_folds or n_folds < 2:
            raise ValueError(f"n_folds must be an integer >= 2, got {n_folds!r}")
        frac = np.full(int(n_folds), 1.0 / n_folds)
    else:
        frac = np.asarray(fractions, dtype=float)
        if frac.ndim != 1 or frac.size < 1 or not np.all(np.isfinite(frac)) or np.any(frac <= 0):
            raise ValueError(f"fractions must be a sequence of positive numbers, got {fractions!r}")
        frac = frac / frac.sum()
    if len(datalist) == 0:
        raise ValueError("datalist is empty, nothing to split")
    groups = _groups(datalist, key)
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    if len(members) < frac.size:
        raise ValueError(f"cannot split {len(members)} patient group(s) into {frac.size} non-empty parts")
    strata: dict[int, list[str]] = {}
    for g in sorted(members):  # sorted: independent of dict order
        s = max(int(datalist[i].get("label", 0)) for i in members[g]) if stratify else 0
        strata.setdefault(s, []).append(g)
    rng = np.random.default_rng(seed)
    part_of: dict[str, int] = {}
    for s in sorted(strata):
        gs = strata[s]
        order = rng.permutation(len(gs))
        target = frac * sum(len(members[g]) for g in gs)
        count = np.zeros(frac.size)
        for j in order:
            k = int(np.argmax(target - count))  # largest deficit; ties -> first part
            part_of[gs[j]] = k
            count[k] += len(members[gs[j]])
    parts: list[list[dict[str, Any]]] = [[] for _ in range(frac.size)]
    for i, g in enumerate(groups):
        parts[part_of[g]].append(datalist[i])
    empty = [k for k, p in enumerate(parts) if not p]
    if empty:
        warnings.warn(f"split_by_patient: part(s) {empty} received no item (too few patients).", stacklevel=2)
    if reindex:
        parts = [[{**it, "index": n, "source_index": it.get("index", n)} for n, it in enumerate(p)] for p in parts]
    return parts
