# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Checkpoints that are never lost: atomic writes, a per-epoch ``model_last.pt`` and a resume that keeps the best.

* :func:`atomic_torch_save`: ``torch.save`` into a temporary file of the target's folder, ``fsync``, then
  ``os.replace`` (atomic on POSIX and Windows): a reader sees the old file or the new one, never a partial one, and
  the previous file is only replaced once the new one is completely on disk.
* :class:`AtomicCheckpointSaver` (attach to the trainer): every epoch ``model_last.pt`` (everything a resume needs),
  ``model.pt`` when the validation key metric improves, ``model_final.pt`` when the run completes. Its own state
  (best metric and epoch) is part of every checkpoint, so a resumed run never replaces the best by a worse epoch.
* :class:`CheckpointResumer` (attach to the trainer): loads a checkpoint when the run starts, restores the best
  metric, keeps the configured ``max_epochs`` and recomputes cosine LR schedules when the run is extended.
* :func:`resolve_resume`: the ``resume`` setting of the bundles (``None``, ``"auto"`` or a path) as a file or ``None``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, BinaryIO

import torch
from ignite.engine import Events
from ignite.handlers import Checkpoint

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = [
    "AtomicCheckpointSaver",
    "CheckpointResumer",
    "atomic_torch_save",
    "atomic_write",
    "resolve_resume",
    "SAVER_KEY",
]

#: key of the saver's own state (best metric, best epoch) inside every checkpoint it writes.
SAVER_KEY = "checkpoint_saver"


def _unwrap(obj: Any) -> Any:
    if isinstance(obj, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)):
        return obj.module
    return obj


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> str:
    """Write ``path`` with ``write(f)`` (``f``: a binary file) so that it is never left partial or empty.

    The data go to ``<path>.<pid>.tmp`` in the same folder, are flushed and ``fsync``-ed, then moved onto ``path``
    with ``os.replace``; when anything fails (an exception, Ctrl-C) the temporary file is removed and ``path`` is
    untouched (the previous file, if any, stays valid).

    Args:
        path: the target file; its folder is created.
        write: writes the content to the open temporary file.

    Returns:
        ``path`` as a string.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    try:  # make the rename itself durable (best effort: not every file system allows opening a folder)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    return path


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> str:
    """``torch.save(obj, path)`` that never leaves a partial or empty ``path`` behind (:func:`atomic_write`).

    Args:
        obj: what to save (e.g. a dict of state dicts).
        path: the target file; its folder is created.

    Returns:
        ``path`` as a string.
    """
    return atomic_write(path, lambda f: torch.save(obj, f))


def resolve_resume(resume: str | os.PathLike | None, ckpt_dir: str | os.PathLike, last: str = "model_last.pt"):
    """The checkpoint a bundle resumes from.

    Args:
        resume: ``None`` / ``""`` (start from scratch), ``"auto"`` (``<ckpt_dir>/<last>`` when it exists, else from
            scratch) or the path of a checkpoint written by :class:`AtomicCheckpointSaver`.
        ckpt_dir: the checkpoint folder of the run.
        last: file name of the per-epoch checkpoint.

    Returns:
        the file to load, or ``None``.

    Raises:
        FileNotFoundError: ``resume`` is a path that does not exist.
    """
    if resume is None or str(resume) == "":
        return None
    if str(resume) == "auto":
        path = os.path.join(os.fspath(ckpt_dir), last)
        if os.path.isfile(path):
            return path
        logging.getLogger(__name__).info(f"resume='auto': no {path} yet, training starts from scratch.")
        return None
    if not os.path.isfile(resume):
        raise FileNotFoundError(
            f"resume: no checkpoint file '{resume}' (expected 'auto', null or the path of a model_last.pt / model.pt "
            "written by a training run)."
        )
    return os.fspath(resume)


class AtomicCheckpointSaver:
    """Save the best, the last and the final checkpoint of a training run, each file written atomically.

    Attach it to the trainer **after** the ``ValidationHandler`` (the bundles attach it in ``initialize``): at every
    ``EPOCH_COMPLETED`` it reads the evaluator's key metric of that epoch (when validation ran), writes
    ``best_filename`` when it improves on the best so far (``metric_cmp_fn``, default: the evaluator's), then
    ``last_filename`` (every epoch); at ``COMPLETED`` it writes ``final_filename``. Every file holds the state dicts
    of ``save_dict`` (DDP / DataParallel modules unwrapped) plus this saver's state under :data:`SAVER_KEY`
    (``best_metric``, ``best_metric_epoch``, ``key_metric_name``), so :class:`CheckpointResumer` restores the best
    metric and a resumed run only replaces ``best_filename`` by a better epoch.

    :meth:`save_within_epoch` writes ``last_filename`` between two steps of an epoch (the bundles'
    :func:`~monai_qmix.bundles.scripts.run_training` calls it when a run is interrupted where the trainer can resume
    exactly: :meth:`QMixTrainer.resumable_within_epoch`); otherwise an interrupt or exception writes nothing and
    ``last_filename`` holds the last completed epoch.

    Args:
        save_dir: folder of the checkpoints (created).
        save_dict: ``{name: object with state_dict()}``, e.g. ``QMixTrainer.checkpoint_dict()``.
        evaluator: the validation engine whose ``state.metrics[state.key_metric_name]`` selects the best epoch
            (``None``: no best checkpoint).
        best_filename: file of the best epoch (``None``: not written).
        last_filename: file written at the end of every epoch (``None``: not written).
        final_filename: file written when the run completes (``None``: not written).
        metric_cmp_fn: ``fn(current, best) -> bool``; default: the evaluator's ``metric_cmp_fn`` or ``>``.
        write: write files (``False`` on the non-zero ranks of a distributed run: the state is still tracked, so
            every rank saves and resumes the same best metric).
        name: logger name (default: the engine's logger).

    Raises:
        ValueError: ``save_dict`` empty or holding :data:`SAVER_KEY`.
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        save_dict: Mapping[str, Any],
        evaluator: Engine | None = None,
        best_filename: str | None = "model.pt",
        last_filename: str | None = "model_last.pt",
        final_filename: str | None = "model_final.pt",
        metric_cmp_fn: Callable[[float, float], bool] | None = None,
        write: bool = True,
        name: str | None = None,
    ) -> None:
        if not save_dict:
            raise ValueError("save_dict: expected at least one object with state_dict(), got an empty mapping.")
        if SAVER_KEY in save_dict:
            raise ValueError(f"save_dict: the key {SAVER_KEY!r} is reserved for the saver's own state.")
        self.save_dir = os.fspath(save_dir)
        self.save_dict = dict(save_dict)
        self.evaluator = evaluator
        self.best_filename, self.last_filename, self.final_filename = best_filename, last_filename, final_filename
        self.metric_cmp_fn = metric_cmp_fn or getattr(evaluator, "metric_cmp_fn", None) or (lambda a, b: a > b)
        self.write = bool(write)
        self.name = name
        self.logger = logging.getLogger(name) if name is not None else None
        self.best_metric: float | None = None
        self.best_metric_epoch: int = -1
        self.key_metric_name: str | None = None
        self.last_epoch: int = 0
        self.last_steps_into_epoch: int = 0

    @property
    def objects(self) -> dict[str, Any]:
        """``save_dict`` plus this saver (what a checkpoint holds; the ``load_dict`` of :class:`CheckpointResumer`)."""
        return {**self.save_dict, SAVER_KEY: self}

    def attach(self, engine: Engine) -> None:
        """Register on the trainer's ``EPOCH_COMPLETED`` and ``COMPLETED``."""
        if self.logger is None:
            self.logger = engine.logger
        if not engine.has_event_handler(self.epoch_completed, Events.EPOCH_COMPLETED):
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.epoch_completed)
        if not engine.has_event_handler(self.completed, Events.COMPLETED):
            engine.add_event_handler(Events.COMPLETED, self.completed)

    def state_dict(self) -> dict[str, Any]:
        """``best_metric`` (``None`` before the first validation), ``best_metric_epoch``, ``key_metric_name``."""
        return {
            "best_metric": self.best_metric,
            "best_metric_epoch": self.best_metric_epoch,
            "key_metric_name": self.key_metric_name,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the best metric (and publish it on the evaluator's state, as MONAI's evaluator keeps it)."""
        best = state.get("best_metric")
        self.best_metric = None if best is None else float(best)
        self.best_metric_epoch = int(state.get("best_metric_epoch", -1))
        self.key_metric_name = state.get("key_metric_name")
        if self.evaluator is not None and self.best_metric is not None:
            self.evaluator.state.best_metric = self.best_metric
            self.evaluator.state.best_metric_epoch = self.best_metric_epoch

    def _current_metric(self, epoch: int) -> float | None:
        ev = self.evaluator
        if ev is None or getattr(ev.state, "epoch", None) != epoch:
            return None  # no validation in this epoch (val_interval > 1)
        key = getattr(ev.state, "key_metric_name", None)
        if key is None or key not in ev.state.metrics:
            return None
        self.key_metric_name = key
        return float(ev.state.metrics[key])

    def save(self, filename: str) -> str | None:
        """Write ``objects`` to ``save_dir/filename`` atomically (rank 0 only); returns the path or ``None``."""
        if not self.write:
            return None
        data = {k: _unwrap(v).state_dict() for k, v in self.objects.items()}
        return atomic_torch_save(data, os.path.join(self.save_dir, filename))

    def epoch_completed(self, engine: Engine) -> None:
        """Best checkpoint on improvement, then the last checkpoint."""
        epoch = int(engine.state.epoch)
        value = self._current_metric(epoch)
        improved = value is not None and (self.best_metric is None or bool(self.metric_cmp_fn(value, self.best_metric)))
        if improved:
            self.best_metric, self.best_metric_epoch = value, epoch
        self.last_epoch, self.last_steps_into_epoch = epoch, 0
        if improved and self.best_filename:
            path = self.save(self.best_filename)
            if path and self.logger is not None:
                self.logger.info(f"Epoch {epoch}: best {self.key_metric_name} {value:.4f}, saved {path}")
        if self.last_filename:
            self.save(self.last_filename)

    def save_within_epoch(self, engine: Engine) -> str | None:
        """Write ``last_filename`` now, between two steps of an epoch (the trainer's ``state_dict()`` records where).

        Only call it at an iteration boundary of a trainer that resumes exactly from there (the two-loader loop of
        :class:`~monai_qmix.engines.QMixTrainer`: ``resumable_within_epoch()``); the best checkpoint is untouched.

        Returns:
            the path written, or ``None`` (no ``last_filename``, or not rank 0).
        """
        if not self.last_filename:
            return None
        sd = engine.state_dict()
        epoch = int(engine.state.epoch)
        self.last_epoch = int(sd.get("epochs_completed", epoch - 1))
        self.last_steps_into_epoch = int(sd.get("iterations_into_epoch", 0))
        path = self.save(self.last_filename)
        if path and self.logger is not None:
            self.logger.info(
                f"Epoch {epoch}: saved {path} after step {self.last_steps_into_epoch} of {engine.state.epoch_length}"
            )
        return path

    def completed(self, engine: Engine) -> None:
        """The final checkpoint."""
        if self.final_filename:
            path = self.save(self.final_filename)
            if path and self.logger is not None:
                self.logger.info(f"Training completed: saved {path}")

    def describe(self) -> str:
        """One sentence on what is on disk (for interruption messages)."""
        steps = self.last_steps_into_epoch
        if not self.last_filename or (self.last_epoch == 0 and steps == 0):
            return "no epoch completed, no checkpoint written"
        last = os.path.join(self.save_dir, self.last_filename)
        text = f"{last} holds epoch {self.last_epoch}"
        if steps:
            text = f"{last} holds epoch {self.last_epoch} and {steps} step(s) of epoch {self.last_epoch + 1}"
        if self.best_filename and self.best_metric_epoch > 0:
            text += f", {os.path.join(self.save_dir, self.best_filename)} the best epoch {self.best_metric_epoch}"
        return text


class CheckpointResumer:
    """Resume a training run from a checkpoint of :class:`AtomicCheckpointSaver` when the trainer starts.

    Loads every object of ``load_dict`` (``AtomicCheckpointSaver.objects``: networks, optimisers, schedulers,
    separation state, RNG states, the trainer's epoch and the saver's best metric). The trainer keeps its configured
    ``max_epochs``:

    * equal to the checkpoint's: the run continues where it stopped (after the last completed epoch);
    * larger (the run is extended): every ``CosineAnnealingLR`` of ``load_dict`` gets ``T_max = max_epochs`` and its
      optimiser's learning rates are set to that cosine at the current epoch, so the remaining epochs follow the
      cosine of the new length (without this the restored schedule would climb again after its old end);
    * smaller than the checkpoint's epoch: refused.

    Args:
        load_path: the checkpoint file.
        load_dict: objects to restore (``{name: object with load_state_dict()}``).
        map_location: ``torch.load`` map location (e.g. the device).
        optional: keys of ``load_dict`` that may be missing from the checkpoint (older checkpoints have no saver
            state: a warning says that the best metric is unknown).
        name: logger name (default: the engine's logger).

    Raises:
        FileNotFoundError: ``load_path`` does not exist.
    """

    def __init__(
        self,
        load_path: str | os.PathLike,
        load_dict: Mapping[str, Any],
        map_location: Any = None,
        optional: tuple[str, ...] = (SAVER_KEY,),
        name: str | None = None,
    ) -> None:
        if not os.path.isfile(load_path):
            raise FileNotFoundError(f"load_path: no checkpoint file '{load_path}'.")
        if not load_dict:
            raise ValueError("load_dict: expected at least one object with load_state_dict(), got an empty mapping.")
        self.load_path = os.fspath(load_path)
        self.load_dict = dict(load_dict)
        self.map_location = map_location
        self.optional = tuple(optional)
        self.logger = logging.getLogger(name) if name is not None else None

    def attach(self, engine: Engine) -> None:
        """Load at ``STARTED``."""
        if self.logger is None:
            self.logger = engine.logger
        if not engine.has_event_handler(self, Events.STARTED):
            engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        """Load the checkpoint into ``load_dict`` and the engine (see the class docstring)."""
        ckpt = torch.load(self.load_path, map_location=self.map_location, weights_only=True)
        missing = [k for k in self.load_dict if k not in ckpt]
        required = [k for k in missing if k not in self.optional]
        if required:
            raise ValueError(
                f"resume: checkpoint '{self.load_path}' has no {required} (it holds {sorted(ckpt)}); it was written "
                "by a run with other settings (e.g. another --method) or is not a training checkpoint."
            )
        if missing:
            self.logger.warning(
                f"resume: '{self.load_path}' has no {missing}: the best metric of the interrupted run is unknown, the "
                "first validated epoch becomes the best."
            )
        saved_max = ckpt.get("trainer", {}).get("max_epochs")
        prior_max = engine.state.max_epochs
        Checkpoint.load_objects(to_load={k: v for k, v in self.load_dict.items() if k in ckpt}, checkpoint=ckpt)
        epoch = int(engine.state.epoch)
        if prior_max is not None and epoch > prior_max:
            raise ValueError(
                f"resume: checkpoint '{self.load_path}' is at epoch {epoch}, beyond epochs={prior_max}; pass "
                f"--epochs larger than {epoch} to train further."
            )
        engine.state.max_epochs = prior_max
        if saved_max is not None and prior_max is not None and int(saved_max) != int(prior_max):
            n = self._recompute_cosine(int(prior_max))
            self.logger.info(
                f"resume: the run of {saved_max} epochs is extended to {prior_max}; {n} cosine LR schedule(s) "
                f"recomputed for T_max={prior_max}."
            )
        if prior_max is not None and epoch >= prior_max:
            self.logger.warning(
                f"resume: '{self.load_path}' is already at epoch {epoch} = epochs; nothing left to train (pass a "
                "larger --epochs to extend the run)."
            )
        into = int(ckpt.get("trainer", {}).get("iterations_into_epoch", 0) or 0)
        where = f"epoch {epoch}" + (f" and {into} step(s) of epoch {epoch + 1}" if into else "")
        self.logger.info(f"resume: restored {where} from {self.load_path}")

    def _recompute_cosine(self, max_epochs: int) -> int:
        n = 0
        for obj in self.load_dict.values():
            if isinstance(obj, torch.optim.lr_scheduler.CosineAnnealingLR):
                obj.T_max = max_epochs
                t = obj.last_epoch
                lrs = [
                    obj.eta_min + (b - obj.eta_min) * (1 + math.cos(math.pi * t / max_epochs)) / 2 for b in obj.base_lrs
                ]
                for group, lr in zip(obj.optimizer.param_groups, lrs):
                    group["lr"] = lr
                obj._last_lr = list(lrs)
                n += 1
        return n
