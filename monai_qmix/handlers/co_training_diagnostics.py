# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Per-epoch co-training diagnostics: why a QMix / DivideMix run drifts.

Every SSL step of :class:`~monai_qmix.engines.QMixTrainer` publishes the targets it trains on
(``CoTrainingEvents.TARGETS_COMPLETED``, ``engine.state.targets``). :class:`CoTrainingDiagnosticsHandler` collects
them over the epoch and writes, at ``EPOCH_COMPLETED``, one CSV row per epoch with

* the accuracy of the **co-refined** (Correct rows), **co-guessed** (Mis-H rows) and **pseudo-label** (Mis-L rows)
  targets of each network: the arg-max of the target against the true label when it is known (``true_labels``,
  e.g. the ``true_label`` of a noise file or of SynthDR) and against the given label otherwise; a row whose true
  label is unknown (``-1``, e.g. an ungradable image) is counted in ``n_unknown`` and left out of the accuracy;
* the agreement of the two partitions (share of samples in the same group) and the overlap (Jaccard index) of their
  Correct sets, and the group sizes;
* any scalar metric of an ``evaluator`` (e.g. ``val_qwk`` and the per-class recalls ``val_per_class_recall_<c>``
  of :func:`~monai_qmix.handlers.grading_metric_set`), so per-class recall sits next to QWK;

and a long-format CSV of the **group make-up per given grade** (for each network's partition, how many samples of
each given grade are Correct / Mis-H / Mis-L).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import EventEnum, Events

from monai_qmix.handlers.training_log import read_csv_rows, restored_rows, scalar_metrics, write_csv_rows
from monai_qmix.separation.result import CORRECT, GROUP_NAMES, MIS_H, MIS_L

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["TARGET_KINDS", "CoTrainingDiagnosticsHandler", "CoTrainingEvents", "target_accuracy_summary"]

_NETS = ("A", "B")
#: the target of a row by its group: Correct -> co-refinement, Mis-H -> co-guessing, Mis-L -> pseudo-label.
TARGET_KINDS = {CORRECT: "refined", MIS_H: "guessed", MIS_L: "pseudo"}


class CoTrainingEvents(EventEnum):
    """Custom events of :class:`~monai_qmix.engines.QMixTrainer`'s SSL steps.

    ``TARGETS_COMPLETED`` fires once per network and step after its targets are computed (before the forward with
    gradient); ``engine.state.targets`` then holds, on the CPU, ``network`` (``"A"`` / ``"B"``), ``index``,
    ``label`` (given), ``group`` (of the partition the network trains on) and ``target`` (arg-max class of the
    soft target, before MixMatch) of every row of the step (one row per sample, not per view).
    """

    TARGETS_COMPLETED = "targets_completed"


def _as_label_lookup(true_labels: Sequence[int] | Mapping[int, int] | np.ndarray | None) -> dict[int, int] | None:
    if true_labels is None:
        return None
    if isinstance(true_labels, Mapping):
        items = list(true_labels.items())
    else:
        items = list(enumerate(np.asarray(true_labels).reshape(-1).tolist()))
    out = {}
    for i, y in items:
        if isinstance(y, bool) or not float(y).is_integer():
            raise ValueError(f"true_labels[{i}] must be an integer class (-1 = unknown), got {y!r}.")
        if int(y) < -1:
            raise ValueError(f"true_labels[{i}] must be >= -1 (-1 = unknown), got {y!r}.")
        out[int(i)] = int(y)
    return out


class CoTrainingDiagnosticsHandler:
    """Write the co-training diagnostics of every epoch (see the module docstring) to CSV and ``engine.state``.

    Args:
        true_labels: true class per sample index (a sequence indexed by the ``index`` key, or a mapping
            index → class; ``-1`` = unknown). ``None``: targets are compared with the given labels.
        output_dir: folder of the CSV files (rank 0 writes); ``None``: keep the rows in memory only
            (``history``, ``makeup_history``).
        filename: per-epoch CSV, one row per epoch.
        makeup_filename: group make-up CSV (``epoch, network, grade, correct, mis_h, mis_l``).
        evaluator: an engine whose scalar ``state.metrics`` are copied into the row (attach this handler after the
            ``ValidationHandler`` so that they are of the same epoch; ``metrics_epoch`` says which epoch they are
            from when validation runs every few epochs).
        name: logger name; default the engine's logger.

    Raises:
        ValueError: a ``true_labels`` entry that is not an integer >= -1.

    The latest row is also on ``engine.state.co_training_diagnostics`` (a dict). Warm-up epochs have no targets
    and no partition: their target and partition columns are empty (NaN).

    Example (a bundle's ``train#handlers``, after the ``ValidationHandler``)::

        {"_target_": "monai_qmix.handlers.CoTrainingDiagnosticsHandler", "output_dir": "$@bundle_root + '/eval'",
         "evaluator": "@validate#evaluator"}
    """

    def __init__(
        self,
        true_labels: Sequence[int] | Mapping[int, int] | np.ndarray | None = None,
        output_dir: str | os.PathLike | None = None,
        filename: str = "co_training_diagnostics.csv",
        makeup_filename: str = "group_makeup.csv",
        evaluator: Engine | None = None,
        name: str | None = None,
    ) -> None:
        self.true_labels = _as_label_lookup(true_labels)
        self.output_dir = None if output_dir is None else os.fspath(output_dir)
        self.filename = filename
        self.makeup_filename = makeup_filename
        self.evaluator = evaluator
        self.logger = logging.getLogger(name) if name else None
        self.history: list[dict[str, Any]] = []
        self.makeup_history: list[dict[str, Any]] = []
        self._restored = False
        self._counts = torch.zeros(len(_NETS), len(TARGET_KINDS), 4, dtype=torch.float64)  # n, hit, agree, unknown

    # ------------------------------------------------------------------ wiring
    def attach(self, engine: Engine) -> None:
        """Reset at ``EPOCH_STARTED``, collect at ``TARGETS_COMPLETED``, write at ``EPOCH_COMPLETED``."""
        if self.logger is None:
            self.logger = engine.logger
        if CoTrainingEvents.TARGETS_COMPLETED not in getattr(engine, "_allowed_events", []):
            engine.register_events(*CoTrainingEvents)
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
        engine.add_event_handler(CoTrainingEvents.TARGETS_COMPLETED, self.collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def _started(self, engine: Engine) -> None:
        self._restored = False

    def reset(self, engine: Engine | None = None) -> None:
        """Forget the targets collected so far (start of an epoch).

        At the first epoch of a resumed run the rows of the completed epochs are read back from the CSVs, so the
        files keep the whole run. After a resume *within* an epoch, that epoch's row counts the steps after the
        resume only (the counts of the steps before it are not in the checkpoint).
        """
        self._counts.zero_()
        if engine is not None and not self._restored:
            done = int(engine.state.epoch) - 1
            if self.output_dir is not None and idist.get_rank() == 0:
                self.history = restored_rows(read_csv_rows(os.path.join(self.output_dir, self.filename)), done)
                makeup = read_csv_rows(os.path.join(self.output_dir, self.makeup_filename))
                self.makeup_history = restored_rows(makeup, done)
            self._restored = True

    def _reference(self, index: np.ndarray, given: np.ndarray) -> np.ndarray:
        if self.true_labels is None:
            return given
        try:
            return np.asarray([self.true_labels[int(i)] for i in index], dtype=np.int64)
        except KeyError as e:
            raise KeyError(
                f"CoTrainingDiagnosticsHandler: sample index {e.args[0]} has no entry in true_labels "
                f"({len(self.true_labels)} entries); true_labels must cover every training index."
            ) from None

    def collect(self, engine: Engine) -> None:
        """Add the rows of ``engine.state.targets`` to the epoch's counts."""
        t = engine.state.targets
        i = _NETS.index(t["network"])
        index = np.asarray(t["index"]).reshape(-1)
        given = np.asarray(t["label"]).reshape(-1)
        group = np.asarray(t["group"]).reshape(-1)
        target = np.asarray(t["target"]).reshape(-1)
        ref = self._reference(index, given)
        for j, g in enumerate(TARGET_KINDS):
            sel = group == g
            if not sel.any():
                continue
            known = sel & (ref >= 0)
            self._counts[i, j, 0] += float(known.sum())
            self._counts[i, j, 1] += float((target[known] == ref[known]).sum())
            self._counts[i, j, 2] += float((target[sel] == given[sel]).sum())
            self._counts[i, j, 3] += float((sel & (ref < 0)).sum())

    # ------------------------------------------------------------------ epoch summary
    def _reduced_counts(self) -> torch.Tensor:
        counts = self._counts.clone()
        return idist.all_reduce(counts) if idist.get_world_size() > 1 else counts  # ignite moves it for nccl

    @staticmethod
    def _partitions(engine: Engine) -> dict[str, Any] | None:
        parts = getattr(engine, "partitions", None)
        sep = getattr(engine.state, "separation", None)
        if parts is None or not isinstance(sep, Mapping) or not all(k in sep for k in _NETS):
            return None
        if int(engine.state.epoch) <= int(getattr(engine, "warmup_epochs", 0)):
            return None
        return parts(engine)

    def __call__(self, engine: Engine) -> None:
        """Summarise the epoch: one row in ``history`` / the CSV, the group make-up rows."""
        epoch = int(engine.state.epoch)
        counts = self._reduced_counts()
        row: dict[str, Any] = {"epoch": epoch, "reference": "given" if self.true_labels is None else "true"}
        for i, k in enumerate(_NETS):
            for j, kind in enumerate(TARGET_KINDS.values()):
                n, hit, agree, unknown = counts[i, j].tolist()
                row[f"n_{kind}_{k}"] = int(n + unknown)
                row[f"acc_{kind}_{k}"] = hit / n if n > 0 else math.nan
                row[f"given_{kind}_{k}"] = agree / (n + unknown) if n + unknown > 0 else math.nan
                row[f"n_unknown_{kind}_{k}"] = int(unknown)
        parts = self._partitions(engine)
        makeup: list[dict[str, Any]] = []
        if parts is not None:
            a, b = parts["A"], parts["B"]
            gb = b.groups_for(a.indices)
            row["agreement"] = float(np.mean(a.groups == gb))
            ca, cb = a.groups == CORRECT, gb == CORRECT
            union = int((ca | cb).sum())
            row["correct_overlap"] = float((ca & cb).sum() / union) if union else math.nan
            for k, part in parts.items():
                for g, name in enumerate(GROUP_NAMES):
                    row[f"{name}_{k}"] = int((part.groups == g).sum())
                if part.labels is not None:
                    for grade in np.unique(part.labels).tolist():
                        sel = part.labels == grade
                        makeup.append(
                            {"epoch": epoch, "network": k, "grade": int(grade)}
                            | {name: int((part.groups[sel] == g).sum()) for g, name in enumerate(GROUP_NAMES)}
                        )
        else:
            row["agreement"] = row["correct_overlap"] = math.nan
        if self.evaluator is not None:
            row["metrics_epoch"] = getattr(self.evaluator.state, "epoch", None)
            row.update(scalar_metrics(self.evaluator))
        self.history.append(row)
        self.makeup_history.extend(makeup)
        engine.state.co_training_diagnostics = row
        self._write()
        if self.logger is not None and parts is not None:
            self.logger.info(
                f"Epoch {epoch}: target accuracy of network A vs {row['reference']} labels: "
                f"{target_accuracy_summary(row)}; "
                f"partition agreement {row['agreement']:.3f}, Correct overlap {row['correct_overlap']:.3f}"
            )

    def _write(self) -> None:
        if self.output_dir is None or idist.get_rank() > 0:
            return
        blank = [{k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()} for r in self.history]
        write_csv_rows(os.path.join(self.output_dir, self.filename), blank)  # NaN (no targets yet): an empty cell
        if self.makeup_history:
            write_csv_rows(os.path.join(self.output_dir, self.makeup_filename), self.makeup_history)


def target_accuracy_summary(row: Mapping[str, Any], network: str = "A") -> str:
    """One line with the target accuracies of ``network`` in a diagnostics row (``""`` when it has none)."""
    parts = [
        f"{kind} {row[f'acc_{kind}_{network}']:.3f} (n {row[f'n_{kind}_{network}']})"
        for kind in TARGET_KINDS.values()
        if row.get(f"n_{kind}_{network}", 0) and not math.isnan(row.get(f"acc_{kind}_{network}", math.nan))
    ]
    return ", ".join(parts)
