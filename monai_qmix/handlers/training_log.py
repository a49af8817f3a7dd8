# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""What a user sees while a bundle trains: a progress bar with the running loss, and the training curves.

* :class:`TrainingProgressBar`: Ignite's ``ProgressBar`` with the iteration loss in its postfix (MONAI's
  ``StatsHandler`` stops logging iterations while a bar is shown, so without it the loss is never visible).
* :class:`TrainingCurveHandler`: after every epoch, the mean training loss, the learning rate and the validator's
  metrics and, after warm-up, the partition sizes, as ``<output_dir>/training_curves.csv`` and
  ``training_curves.png`` (written atomically; a resumed run continues the file of the epochs it restored).
* :func:`warnings_once`: each warning of a run shown once (its first occurrence), then one line per warning saying
  how often it repeated.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import os
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from monai.utils import optional_import

from monai_qmix.handlers.checkpoint import atomic_write
from monai_qmix.separation import GROUP_NAMES, SeparationResult

Events, _ = optional_import("ignite.engine", name="Events")
ProgressBar, _ = optional_import("ignite.handlers", name="ProgressBar")

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = [
    "TrainingProgressBar",
    "TrainingCurveHandler",
    "loss_value",
    "partition_sizes",
    "scalar_metrics",
    "warnings_once",
    "write_csv_rows",
]

#: a column of :func:`partition_sizes`: ``<network>_<group>``
_PARTITION_COLUMN = re.compile(rf"^(\w+?)_({'|'.join(GROUP_NAMES)})$")


def scalar_metrics(engine: Engine | None, names: Sequence[str] | None = None) -> dict[str, float]:
    """The scalar entries of ``engine.state.metrics`` as floats (one-element tensors included; others skipped).

    Args:
        engine: an evaluator, or ``None`` / one that has not run (then ``{}``).
        names: the metrics to take, in this order; default all, sorted by name.
    """
    if engine is None or engine.state is None:
        return {}
    metrics = getattr(engine.state, "metrics", None) or {}
    out = {}
    for name in names if names is not None else sorted(metrics):
        v = metrics.get(name)
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            v = v.item()
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[name] = float(v)
    return out


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    return cols


def write_csv_rows(path: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write ``rows`` (dicts) as a CSV with the union of their keys as columns (first-seen order), atomically."""
    cols = _columns(rows)
    text = io.StringIO(newline="")
    w = csv.DictWriter(text, fieldnames=cols, restval="")
    w.writeheader()
    w.writerows(rows)
    atomic_write(path, lambda f: f.write(text.getvalue().encode("utf-8")))


def read_csv_rows(path: str) -> list[dict[str, Any]]:
    """The rows of a CSV written by :func:`write_csv_rows` (values as strings; ``[]`` when there is no file)."""
    if not os.path.isfile(path):
        return []
    with open(path, newline="") as f:
        return [dict(r) for r in csv.DictReader(f)]


def restored_rows(rows: Sequence[Mapping[str, Any]], completed: int) -> list[dict[str, Any]]:
    """The rows of epochs ``<= completed`` (a run resumed after epoch ``completed`` keeps them; ``0``: none)."""
    return [dict(r) for r in rows if completed > 0 and int(r["epoch"]) <= completed]


def partition_sizes(engine: Engine) -> dict[str, int]:
    """Group sizes of the partitions in ``engine.state.separation`` (``{"A": SeparationResult, ...}``, set by
    :class:`~monai_qmix.handlers.SampleSeparationHandler` after warm-up), as ``{"A_correct": n, "A_mis_h": n,
    "A_mis_l": n, ...}``; empty before the first separation."""
    out: dict[str, int] = {}
    separation = getattr(engine.state, "separation", None)
    if not isinstance(separation, dict):
        return out
    for key, result in sorted(separation.items()):
        if isinstance(result, SeparationResult):
            for code, name in enumerate(GROUP_NAMES):
                out[f"{key}_{name}"] = int((result.groups == code).sum())
    return out


def loss_value(output: Any, key: str = "loss") -> float:
    """The scalar ``key`` of an engine output (a dict, or MONAI's decollated list of dicts); NaN when absent."""
    if isinstance(output, (list, tuple)) and output and isinstance(output[0], dict):
        output = output[0]  # MONAI's decollated batch: the batch loss is on every item
    if not isinstance(output, dict) or key not in output:
        return float("nan")
    value = output[key]
    if isinstance(value, torch.Tensor):
        value = value.detach().float().mean().item()
    return float(value)


class TrainingProgressBar:
    """Ignite ``ProgressBar`` that shows the iteration loss (``loss=...``) of the engine output.

    Args:
        persist: keep the bar of a finished epoch on screen.
        output_transform: engine output -> ``{name: number}`` for the postfix; default ``{"loss": loss_value}``.
        bar_format: passed to ``ProgressBar`` when given.
    """

    def __init__(
        self,
        persist: bool = False,
        output_transform: Callable[[Any], dict[str, float]] | None = None,
        bar_format: str | None = None,
    ) -> None:
        kwargs = {"persist": persist}
        if bar_format is not None:
            kwargs["bar_format"] = bar_format
        self.bar = ProgressBar(**kwargs)
        self.output_transform = output_transform or (lambda out: {"loss": loss_value(out)})

    def attach(self, engine: Engine) -> None:
        """Attach the bar to ``engine``."""
        self.bar.attach(engine, output_transform=self.output_transform)


class TrainingCurveHandler:
    """Write the training curves after every epoch: mean training loss, learning rate, validation metrics.

    Attach to the trainer *after* MONAI's ``ValidationHandler`` (the bundles do), so that the validator's metrics of
    the epoch are known. Rows go to ``<output_dir>/<filename>.csv`` and a figure (training loss, and each metric
    against the epoch, the best one marked) to ``<filename>.png``; both are replaced atomically, so an interrupted
    run never leaves a half-written file. When the trainer resumes after epoch ``e`` the rows of epochs ``<= e`` of an
    existing CSV are kept (read at the first epoch start, after a resume handler has loaded the checkpoint).

    Args:
        output_dir: folder of the files (created).
        validator: the evaluator whose ``state.metrics`` are recorded (``None``: training loss only).
        metric_names: metrics to record; default every scalar metric of the validator.
        key_metric: the metric whose best epoch is marked in the figure (default: the validator's
            ``key_metric_name`` when it has one).
        filename: file stem.
        save_png: also draw the PNG (needs matplotlib; skipped with one log line when it is missing).
        log: also log the row as one line per epoch (the epoch's *mean* training loss, the metrics and the
            partition sizes; MONAI's ``StatsHandler`` logs only the last iteration's loss).
        logger_name: name of that logger.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        validator: Engine | None = None,
        metric_names: Sequence[str] | None = None,
        key_metric: str | None = None,
        filename: str = "training_curves",
        save_png: bool = True,
        log: bool = True,
        logger_name: str = "monai_qmix.training",
    ) -> None:
        self.output_dir = os.fspath(output_dir)
        self.validator = validator
        self.metric_names = list(metric_names) if metric_names is not None else None
        self.key_metric = key_metric
        self.filename = filename
        self.save_png = save_png
        self.log = log
        self.logger = logging.getLogger(logger_name)
        self.rows: list[dict[str, Any]] = []
        self._restored = False
        self._losses: list[float] = []

    @property
    def csv_path(self) -> str:
        return os.path.join(self.output_dir, self.filename + ".csv")

    @property
    def png_path(self) -> str:
        return os.path.join(self.output_dir, self.filename + ".png")

    def attach(self, engine: Engine) -> None:
        """Record on ``engine``'s iterations and epochs."""
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def _started(self, engine: Engine) -> None:
        self._restored = False

    def _epoch_started(self, engine: Engine) -> None:
        self._losses.clear()
        if not self._restored:  # the first epoch of this run: a resume (loaded at STARTED) has set the epoch
            self.rows = restored_rows(self._read(), int(engine.state.epoch) - 1)
            self._restored = True

    def _read(self) -> list[dict[str, Any]]:
        return read_csv_rows(self.csv_path)

    def _iteration(self, engine: Engine) -> None:
        v = loss_value(engine.state.output)
        if math.isfinite(v):
            self._losses.append(v)

    def _metrics(self) -> dict[str, float]:
        return scalar_metrics(self.validator, self.metric_names)

    def __call__(self, engine: Engine) -> None:
        row: dict[str, Any] = {
            "epoch": int(engine.state.epoch),
            "train_loss": sum(self._losses) / len(self._losses) if self._losses else float("nan"),
        }
        optimizer = getattr(engine, "optimizer", None)
        if optimizer is not None and getattr(optimizer, "param_groups", None):
            row["lr"] = float(optimizer.param_groups[0]["lr"])
        row.update(self._metrics())
        row.update(partition_sizes(engine))
        self.rows = [r for r in self.rows if int(r["epoch"]) != row["epoch"]] + [row]
        os.makedirs(self.output_dir, exist_ok=True)
        if self.log:
            self.logger.info(self.format_row(row, engine.state.max_epochs))
        self._write_csv()
        if self.save_png:
            self._write_png()

    @staticmethod
    def format_row(row: dict[str, Any], max_epochs: int | None = None) -> str:
        """One line: ``Epoch 3/10 -- train_loss (mean) 1.2345, lr 0.0001, val_qwk 0.5000 | A: correct 40, ...``."""
        of = f"/{max_epochs}" if max_epochs else ""
        parts, sizes = [], {}
        for k, v in row.items():
            if k == "epoch":
                continue
            m = _PARTITION_COLUMN.match(k)
            if m and isinstance(v, int):
                sizes.setdefault(m.group(1), []).append(f"{m.group(2)} {v}")
            elif k == "train_loss":
                parts.append(f"train_loss (mean) {v:.4f}")
            elif k == "lr":
                parts.append(f"lr {v:.3g}")
            else:
                parts.append(f"{k} {v:.4f}")
        line = f"Epoch {row['epoch']}{of} -- " + ", ".join(parts)
        for net, groups in sizes.items():
            line += f" | partition {net}: " + ", ".join(groups)
        return line

    def _write_csv(self) -> None:
        write_csv_rows(self.csv_path, self.rows)

    def _write_png(self) -> None:
        plt, has_mpl = optional_import("matplotlib.pyplot")
        if not has_mpl:
            self.save_png = False
            return
        columns = _columns(self.rows)
        sizes = {c for c in columns if _PARTITION_COLUMN.match(c)}
        networks = sorted({_PARTITION_COLUMN.match(c).group(1) for c in sizes})  # type: ignore[union-attr]
        cols = [c for c in columns if c not in ("epoch", "lr") and c not in sizes]
        epochs = [int(r["epoch"]) for r in self.rows]
        key = self.key_metric
        if key is None and self.validator is not None:
            key = getattr(self.validator.state, "key_metric_name", None)

        def values(c: str) -> list[float]:
            return [float(r.get(c, "nan") or "nan") for r in self.rows]

        n = len(cols) + len(networks)
        fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.2), squeeze=False)
        for ax in axes[0]:
            ax.xaxis.get_major_locator().set_params(integer=True)  # epochs
        for ax, net in zip(axes[0][len(cols) :], networks):  # one panel per network: its partition sizes
            for g in GROUP_NAMES:
                ax.plot(epochs, values(f"{net}_{g}"), marker="o", ms=3, label=g)
            ax.set_title(f"partition of network {net}", fontsize=9)
            ax.set_xlabel("epoch")
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        for ax, c in zip(axes[0], cols):
            ys = values(c)
            ax.plot(epochs, ys, marker="o", ms=3)
            if c == key and any(math.isfinite(y) for y in ys):
                best = max(range(len(ys)), key=lambda i: ys[i] if math.isfinite(ys[i]) else -math.inf)
                ax.scatter([epochs[best]], [ys[best]], color="C3", zorder=3, label=f"best {ys[best]:.3f}")
                ax.legend(fontsize=8)
            ax.set_title(c, fontsize=9)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
        fig.tight_layout()

        try:
            atomic_write(self.png_path, lambda f: fig.savefig(f, format="png", dpi=100))
        finally:
            plt.close(fig)


@contextlib.contextmanager
def warnings_once(logger: logging.Logger | None = None) -> Iterator[dict[tuple[type[Warning], str, int], list[Any]]]:
    """Show each warning once for the time of the block: the first occurrence of each warning *statement*.

    Python's default filter already hides a repeat of the same text from the same line, but a message that names
    an epoch, a count or a value (``"separate: degenerate input handled: ..."``) is new text each time and so is
    printed every epoch. Here a warning is identified by its category and the file and line that raised it; later
    occurrences are counted, not shown, and at the end of the block one line per repeated warning says how many
    were hidden (``logger``, default ``monai_qmix.training``, at WARNING level).

    The warning filters are left as they are: ``-W error`` still raises, ``ignore`` still hides, and
    ``pytest.warns`` / ``warnings.catch_warnings(record=True)`` still record the first occurrence. Warnings raised
    in DataLoader worker processes are outside this process and are not counted.

    Args:
        logger: where the repeat counts go.

    Yields:
        ``{(category, filename, lineno): [first message, repeats]}``, filled as the block runs.
    """
    log = logger or logging.getLogger("monai_qmix.training")
    seen: dict[tuple[type[Warning], str, int], list[Any]] = {}
    with warnings.catch_warnings():  # restores warnings.showwarning on exit
        show = warnings.showwarning

        def show_first(message: Any, category: type[Warning], filename: str, lineno: int, *args: Any) -> None:
            key = (category, filename, lineno)
            if key in seen:
                seen[key][1] += 1
                return
            seen[key] = [str(message), 0]
            show(message, category, filename, lineno, *args)

        warnings.showwarning = show_first
        try:
            yield seen
        finally:
            for (category, filename, lineno), (message, repeats) in seen.items():
                if repeats:
                    text = message if len(message) <= 120 else message[:117] + "..."
                    log.warning(
                        f"{category.__name__} from {os.path.basename(filename)}:{lineno} repeated {repeats} more "
                        f"time(s) in this run (shown once): {text}"
                    )
