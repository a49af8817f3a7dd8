# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Per-sample records of a separation: a CSV table and the loss × uncertainty scatter of the QMix figure (b)."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .metrics import align_groups
from .result import GROUP_NAMES, SeparationResult

__all__ = ["write_separation_csv", "plot_separation", "CSV_COLUMNS"]

#: Columns of :func:`write_separation_csv` (``true_group`` only when ground truth is given).
CSV_COLUMNS = (
    "index",
    "image",
    "label",
    "loss",
    "uncertainty",
    "loss_norm",
    "uncertainty_norm",
    "p_correct",
    "p_mis_h",
    "p_mis_l",
    "group",
    "true_group",
)
_COLOURS = ("tab:green", "tab:orange", "tab:red")


def write_separation_csv(
    result: SeparationResult,
    path: str | os.PathLike,
    images: Sequence[Any] | None = None,
    noise_group: Any = None,
) -> str:
    """Write one row per sample (columns :data:`CSV_COLUMNS`; groups as names).

    Args:
        result: the separation result.
        path: output CSV file (parent folders are created).
        images: per-sample image names aligned with ``result.indices`` (empty column when ``None``).
        noise_group: true groups (see :func:`~monai_qmix.separation.metrics.align_groups`); the ``true_group``
            column is written only when given.

    Returns:
        the path written.

    Raises:
        ValueError: when ``images`` does not have one entry per sample.
    """
    n = len(result)
    if images is not None and len(images) != n:
        raise ValueError(f"images: expected {n} names (one per sample), got {len(images)}.")
    truth = None if noise_group is None else align_groups(result, noise_group)
    cols = CSV_COLUMNS if truth is not None else CSV_COLUMNS[:-1]
    labels = result.labels if result.labels is not None else np.full(n, -1)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for i in range(n):
            row = [
                int(result.indices[i]),
                "" if images is None else str(images[i]),
                int(labels[i]),
                f"{result.loss[i]:.6g}",
                f"{result.uncertainty[i]:.6g}",
                f"{result.loss_norm[i]:.6g}",
                f"{result.uncertainty_norm[i]:.6g}",
                *(f"{p:.6g}" for p in result.probs[i]),
                GROUP_NAMES[int(result.groups[i])],
            ]
            if truth is not None:
                row.append(GROUP_NAMES[int(truth[i])] if truth[i] >= 0 else "")
            w.writerow(row)
    return path


def plot_separation(
    result: SeparationResult,
    path: str | os.PathLike,
    title: str | None = None,
    max_points: int = 20000,
    seed: int = 0,
) -> str:
    """Scatter of normalised loss (x) × normalised uncertainty (y) coloured by group, with marginal histograms.

    Uses matplotlib's object API with the Agg canvas (the global backend is not changed).

    Args:
        result: the separation result.
        path: output PNG file (parent folders are created).
        title: figure title.
        max_points: at most this many points are drawn (seeded random subset); histograms use all samples.
        seed: seed of the subset.

    Returns:
        the path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 6), dpi=100)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 2, width_ratios=(4, 1), height_ratios=(1, 4), wspace=0.05, hspace=0.05)
    ax = fig.add_subplot(grid[1, 0])
    ax_x = fig.add_subplot(grid[0, 0], sharex=ax)
    ax_y = fig.add_subplot(grid[1, 1], sharey=ax)
    x, y, g = result.loss_norm, result.uncertainty_norm, result.groups
    sel = np.arange(len(result))
    if sel.shape[0] > max_points:
        sel = np.sort(np.random.default_rng(seed).choice(sel.shape[0], size=max_points, replace=False))
    bins = np.linspace(0.0, 1.0, 41)
    for c, name in enumerate(GROUP_NAMES):
        m = g == c
        if not m.any():
            continue
        ms = m[sel]
        label = f"{name} ({int(m.sum())})"
        ax.scatter(x[sel][ms], y[sel][ms], s=4, alpha=0.5, color=_COLOURS[c], label=label, linewidths=0)
        ax_x.hist(x[m], bins=bins, color=_COLOURS[c], alpha=0.5)
        ax_y.hist(y[m], bins=bins, color=_COLOURS[c], alpha=0.5, orientation="horizontal")
    ax.set_xlabel("normalised loss")
    ax.set_ylabel("normalised uncertainty")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(loc="lower right", fontsize=8, markerscale=3)
    ax_x.tick_params(labelbottom=False)
    ax_y.tick_params(labelleft=False)
    if title:
        ax_x.set_title(title)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    return path
