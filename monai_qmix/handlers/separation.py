# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Ignite handler running QMix sample separation at the start of every epoch after warm-up.

Published state (the contract read by trainers and losses):

* ``engine.state.separation``: ``dict[str, SeparationResult]``, one entry per network key (e.g. ``"A"``,
  ``"B"``); the entry of key ``k`` is the split computed *by* network ``k``. With co-divide, network A is
  trained on ``engine.state.separation["B"]`` and vice versa.
* ``engine.state.separation_epoch``: ``dict[str, int]``, the epoch at which each entry was computed.
* ``engine.state.separation_metrics``: ``dict[str, dict]``, :func:`separation_metrics` per key (only when
  ground truth is available).

After publishing, :attr:`SeparationEvents.SEPARATION_COMPLETED` is fired once per handler call.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from ignite.engine import EventEnum, Events

from monai_qmix.separation import (
    CORRECT,
    GROUP_NAMES,
    MIS_H,
    SeparationResult,
    align_groups,
    score_samples,
    separate,
    separation_metrics,
)
from monai_qmix.separation.report import plot_separation, write_separation_csv
from monai_qmix.separation.result import group_codes

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["SampleSeparationHandler", "SeparationEvents", "FixedPartitionHandler", "ground_truth_partition"]

_SCORING_KEYS = {"uncertainty", "mc_samples", "amp", "image_key", "label_key", "index_key", "reuse_features", "seed"}
_SEPARATE_KEYS = {
    "per_class",
    "n_components",
    "max_iter",
    "tol",
    "reg_covar",
    "seed",
    "n_init",
    "mode",
    "p_threshold",
    "mapping_rule",
    "min_class_size",
    "max_fit_samples",
}


class SeparationEvents(EventEnum):
    """Custom events of :class:`SampleSeparationHandler`.

    ``SEPARATION_COMPLETED`` fires after the results of a separation pass are on ``engine.state``.
    """

    SEPARATION_COMPLETED = "separation_completed"


class SampleSeparationHandler:
    """Score all training samples with frozen network(s) and split them into Correct / Mis-H / Mis-L.

    Runs at ``Events.EPOCH_STARTED``. Ignite epochs are 1-based at ``EPOCH_STARTED`` (``engine.state.epoch`` is
    already incremented), so with ``warmup_epochs=W`` the first separation is at epoch ``W + 1`` and then every
    ``interval`` epochs (``W + 1``, ``W + 1 + interval``, ...). Each network is put in eval mode under
    ``torch.no_grad()`` (autocast on CUDA), its per-module train flags are restored afterwards.

    Co-divide: pass both networks in one handler (``networks={"A": net_a, "B": net_b}``; one event per epoch)
    or attach one handler per network (``networks=net_a, key="A"`` and ``networks=net_b, key="B"``; one event per
    handler). Either way ``engine.state.separation[k]`` is the split computed by network ``k``; the trainer uses
    the *other* network's split (see the module docstring).

    Distributed: every rank must attach the handler; each rank scores its shard of ``loader`` (e.g. with a
    ``DistributedSampler``), the scores are all-gathered by index and every rank fits the same GMM on the whole
    set, so all ranks publish the identical partition. Files and logs are written by rank 0 only.

    Args:
        loader: deterministic loader over the training set (test transform); dict batches with ``image``,
            ``label`` and ``index`` keys (names configurable via ``scoring_kwargs``).
        networks: a network, or a mapping ``{key: network}``.
        key: the key of a single network (ignored when ``networks`` is a mapping).
        warmup_epochs: number of warm-up epochs without separation (>= 0).
        interval: run every ``interval`` epochs after warm-up (>= 1).
        device: device for scoring (default: each network's parameter device).
        separation_kwargs: keyword arguments of :func:`~monai_qmix.separation.separate` (``per_class``,
            ``mode``, ``n_components``, ``max_iter``, ``tol``, ``reg_covar``, ``seed``, ``n_init``,
            ``p_threshold``, ``mapping_rule``, ``min_class_size``, ``max_fit_samples``).
        scoring_kwargs: keyword arguments of :func:`~monai_qmix.separation.score_samples` (``uncertainty``,
            ``mc_samples``, ``amp``, ``image_key``, ``label_key``, ``index_key``, ``reuse_features``, ``seed``).
        noise_group: ground-truth groups for metrics and the CSV: a mapping ``{index: group}`` or a sequence
            indexed by sample index (names or codes). When ``None``, the batch key ``noise_group_key`` is used
            if the loader provides it; without ground truth no AUCs are computed.
        noise_group_key: batch key holding the true group per sample (``None`` to disable).
        output_dir: when given, writes ``separation_<key>_epoch<NNN>.csv`` and ``.png`` there (rank 0).
        save_csv: write the per-epoch CSV (needs ``output_dir``).
        save_png: write the per-epoch scatter plot (needs ``output_dir``).
        summary_writer: a TensorBoard ``SummaryWriter``-like object (``add_scalar``) for counts and AUCs.
        progress: show a progress bar over the scoring pass.
        state_attr: name of the ``engine.state`` attribute holding the results (default ``"separation"``).
        name: logger name; default the engine's logger.

    Raises:
        TypeError: when a network is not a ``torch.nn.Module`` or ``loader`` is not iterable.
        ValueError: for invalid epochs/interval, unknown keyword arguments or an empty network mapping.
    """

    def __init__(
        self,
        loader: Any,
        networks: torch.nn.Module | Mapping[str, torch.nn.Module],
        key: str = "A",
        warmup_epochs: int = 0,
        interval: int = 1,
        device: str | torch.device | None = None,
        separation_kwargs: Mapping[str, Any] | None = None,
        scoring_kwargs: Mapping[str, Any] | None = None,
        noise_group: Any = None,
        noise_group_key: str | None = "noise_group",
        output_dir: str | os.PathLike | None = None,
        save_csv: bool = True,
        save_png: bool = True,
        summary_writer: Any = None,
        progress: bool = True,
        state_attr: str = "separation",
        name: str | None = None,
    ) -> None:
        if not hasattr(loader, "__iter__"):
            raise TypeError(f"loader: expected an iterable of batches, got {type(loader).__name__}.")
        nets = dict(networks) if isinstance(networks, Mapping) else {str(key): networks}
        if not nets:
            raise ValueError("networks: expected at least one network, got an empty mapping.")
        for k, net in nets.items():
            if not isinstance(net, torch.nn.Module):
                raise TypeError(f"networks[{k!r}]: expected a torch.nn.Module, got {type(net).__name__}.")
        if not isinstance(warmup_epochs, int) or warmup_epochs < 0:
            raise ValueError(f"warmup_epochs: expected an int >= 0, got {warmup_epochs!r}.")
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f"interval: expected an int >= 1, got {interval!r}.")
        self.separation_kwargs = dict(separation_kwargs or {})
        self.scoring_kwargs = dict(scoring_kwargs or {})
        for what, given, allowed in (
            ("separation_kwargs", self.separation_kwargs, _SEPARATE_KEYS),
            ("scoring_kwargs", self.scoring_kwargs, _SCORING_KEYS),
        ):
            bad = sorted(set(given) - allowed)
            if bad:
                raise ValueError(f"{what}: unknown keys {bad}; expected a subset of {sorted(allowed)}.")
        if summary_writer is not None and not callable(getattr(summary_writer, "add_scalar", None)):
            raise TypeError(f"summary_writer: expected an object with add_scalar, got {type(summary_writer).__name__}.")
        if not isinstance(state_attr, str) or not state_attr.isidentifier():
            raise ValueError(f"state_attr: expected a Python identifier, got {state_attr!r}.")
        self.loader = loader
        self.networks = nets
        self.warmup_epochs = warmup_epochs
        self.interval = interval
        self.device = device
        self.noise_group = noise_group
        self.noise_group_key = noise_group_key
        self.output_dir = None if output_dir is None else os.fspath(output_dir)
        self.save_csv = save_csv
        self.save_png = save_png
        self.summary_writer = summary_writer
        self.progress = progress
        self.state_attr = state_attr
        self.logger = logging.getLogger(name)
        self._name = name
        self.results: dict[str, SeparationResult] = {}
        self.epochs: dict[str, int] = {}
        self.metrics: dict[str, dict[str, Any]] = {}
        self._told_no_noise = False

    # ------------------------------------------------------------------ Ignite plumbing
    def attach(self, engine: Engine) -> None:
        """Register on ``EPOCH_STARTED`` (and ``STARTED`` to re-publish results loaded from a checkpoint).

        Also registers :class:`SeparationEvents` on the engine when it is not registered yet.
        """
        if self._name is None:
            self.logger = engine.logger
        if SeparationEvents.SEPARATION_COMPLETED not in getattr(engine, "_allowed_events", ()):
            engine.register_events(*SeparationEvents)
        if not engine.has_event_handler(self, Events.EPOCH_STARTED):
            engine.add_event_handler(Events.EPOCH_STARTED, self)
        if not engine.has_event_handler(self.publish, Events.STARTED):
            engine.add_event_handler(Events.STARTED, self.publish)

    def should_run(self, epoch: int) -> bool:
        """Whether separation runs at (1-based) ``epoch``."""
        return epoch > self.warmup_epochs and (epoch - self.warmup_epochs - 1) % self.interval == 0

    def __call__(self, engine: Engine) -> None:
        """Separate with every network (when due at this epoch), publish on ``engine.state`` and fire the event.

        Results already computed at this epoch (restored from a checkpoint written within the epoch) are published
        as they are, without separating again or firing the event.
        """
        epoch = int(engine.state.epoch)
        restored = bool(self.results) and all(self.epochs.get(k) == epoch for k in self.networks)
        if not self.should_run(epoch) or restored:  # restored: computed at this epoch (a within-epoch checkpoint)
            self.publish(engine)  # results restored from a checkpoint stay visible whatever the handler order
            return
        for k, net in self.networks.items():
            self.results[k], self.metrics[k] = self.run_separation(net, k, epoch)
            self.epochs[k] = epoch
        self.publish(engine)
        engine.fire_event(SeparationEvents.SEPARATION_COMPLETED)

    def publish(self, engine: Engine) -> None:
        """Put the current results on ``engine.state`` (merged with entries published by other handlers)."""
        if not self.results:
            return
        for attr, values in (
            (self.state_attr, self.results),
            (f"{self.state_attr}_epoch", self.epochs),
            (f"{self.state_attr}_metrics", self.metrics),
        ):
            store = getattr(engine.state, attr, None)
            if not isinstance(store, dict):
                store = {}
                setattr(engine.state, attr, store)
            store.update({k: v for k, v in values.items() if v is not None})

    # ------------------------------------------------------------------ work
    def run_separation(
        self, network: torch.nn.Module, key: str, epoch: int
    ) -> tuple[SeparationResult, dict[str, Any] | None]:
        """Score, separate, log and write the records of one network; returns (result, metrics or None)."""
        extra = (self.noise_group_key,) if (self.noise_group is None and self.noise_group_key) else ()
        scores = score_samples(
            network,
            self.loader,
            device=self.device,
            extra_keys=extra,
            progress=self.progress,
            desc=f"separation {key} epoch {epoch}",
            **self.scoring_kwargs,
        )
        result = separate(
            scores["loss"],
            scores["uncertainty"],
            labels=scores["label"],
            indices=scores["index"],
            **self.separation_kwargs,
        )
        truth = self.noise_group if self.noise_group is not None else scores.get(self.noise_group_key or "")
        metrics = separation_metrics(result, truth) if self._has_planted_noise(result, truth) else None
        if self._is_main():
            self._report(result, metrics, key, epoch, scores.get("image"), truth)
        return result, metrics

    def _has_planted_noise(self, result: SeparationResult, truth: Any) -> bool:
        """Whether ``truth`` holds more than one known group; else the AUCs are undefined: one log line, no metrics."""
        if truth is None:
            return False
        known = align_groups(result, truth)
        known = known[known >= 0]
        if np.unique(known).size > 1:
            return True
        if not self._told_no_noise and self._is_main():
            self._told_no_noise = True
            what = f"only {GROUP_NAMES[int(known[0])]!r}" if known.size else "no known group"
            self.logger.info(
                f"Separation: the ground truth ({self.noise_group_key or 'noise_group'}) has {what}, i.e. no planted "
                "noise: AUC_clean / AUC_good are undefined and not computed (group counts are still logged)."
            )
        return False

    @staticmethod
    def _is_main() -> bool:
        dist = torch.distributed
        return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0

    def _report(
        self,
        result: SeparationResult,
        metrics: dict[str, Any] | None,
        key: str,
        epoch: int,
        images: Any,
        truth: Any,
    ) -> None:
        counts = result.counts()
        msg = f"Separation {key} epoch {epoch}: " + ", ".join(f"{g}={n}" for g, n in counts.items())
        if metrics is not None:
            msg += f", AUC_clean={metrics['auc_clean']:.4f}, AUC_good={metrics['auc_good']:.4f}"
        if result.fallback:
            msg += f" (fallback: {result.fallback})"
        self.logger.info(msg)
        if self.summary_writer is not None:
            for g, n in counts.items():
                self.summary_writer.add_scalar(f"separation/{key}/n_{g}", n, epoch)
            for m in ("auc_clean", "auc_good"):
                if metrics is not None and not math.isnan(metrics[m]):
                    self.summary_writer.add_scalar(f"separation/{key}/{m}", metrics[m], epoch)
        if self.output_dir is not None:
            stem = os.path.join(self.output_dir, f"separation_{key}_epoch{epoch:03d}")
            if self.save_csv:
                write_separation_csv(result, stem + ".csv", images=images, noise_group=truth)
            if self.save_png:
                plot_separation(result, stem + ".png", title=f"network {key}, epoch {epoch}")

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        """Results (tensors/primitives, ``weights_only``-loadable) and the epoch each was computed at."""
        return {
            "results": {k: r.state_dict() for k, r in self.results.items()},
            "epochs": dict(self.epochs),
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore results; they are re-published on ``engine.state`` at ``Events.STARTED``.

        Raises:
            KeyError: when ``state_dict`` lacks ``"results"``.
        """
        if "results" not in state_dict:
            raise KeyError(f"state_dict: expected keys 'results' and 'epochs', got {sorted(state_dict)}.")
        self.results = {str(k): SeparationResult.from_state_dict(v) for k, v in state_dict["results"].items()}
        self.epochs = {str(k): int(v) for k, v in state_dict.get("epochs", {}).items()}
        self.metrics = dict.fromkeys(self.results)


def ground_truth_partition(
    noise_group: Any, labels: Any = None, mode: str = "qmix", indices: Any = None
) -> SeparationResult:
    """A :class:`~monai_qmix.separation.SeparationResult` holding the true groups (an oracle partition).

    Args:
        noise_group: the true group of every sample (names ``correct`` / ``mis_h`` / ``mis_l`` or codes 0 / 1 / 2),
            ordered like ``indices``.
        labels: the given labels (used e.g. by the trainer's ``prior="class_prior"``), ordered like ``indices``.
        mode: ``"qmix"`` (3 groups) or ``"dividemix"`` (2 groups: Correct against the mislabelled Mis-H ∪ Mis-L,
            published as group 1, DivideMix's unlabelled set).
        indices: sample indices (default ``0..N-1``).

    Returns:
        A result with one-hot posteriors, zero scores and ``fallback="ground truth"``.

    Raises:
        ValueError: for an unknown ``mode`` or lengths that do not match.
    """
    codes = np.asarray(group_codes(noise_group), dtype=np.int64)
    if mode not in ("qmix", "dividemix"):
        raise ValueError(f"mode must be 'qmix' or 'dividemix', got {mode!r}.")
    if mode == "dividemix":
        codes = np.where(codes == CORRECT, CORRECT, MIS_H)
    n = codes.shape[0]
    idx = np.arange(n, dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
    lab = None if labels is None else np.asarray(labels, dtype=np.int64).reshape(-1)
    if idx.shape[0] != n or (lab is not None and lab.shape[0] != n):
        raise ValueError(
            f"noise_group has {n} entries but indices has {idx.shape[0]}"
            + ("" if lab is None else f" and labels {lab.shape[0]}")
            + "; expected one entry per sample."
        )
    order = np.argsort(idx, kind="stable")
    idx, codes = idx[order], codes[order]
    lab = None if lab is None else lab[order]
    z = np.zeros(n, dtype=np.float32)
    probs = np.eye(3, dtype=np.float32)[codes]
    return SeparationResult(idx, probs, codes, z, z, z, z, mode=mode, labels=lab, fallback="ground truth")


class FixedPartitionHandler(SampleSeparationHandler):
    """A separation handler that publishes a given partition instead of separating (e.g. an oracle partition).

    Same events, state attributes, logging, checkpointing and metrics as :class:`SampleSeparationHandler`, so it
    can be passed as ``QMixTrainer(separation_handler=...)``; no network is scored. Use
    :func:`ground_truth_partition` for the true groups (the oracle-partition experiment of
    ``benchmarks/robustness.py --oracle_partition``).

    Args:
        partition: the result published for every key, or a callable ``(key, epoch) -> SeparationResult``.
        keys: the network keys to publish (``("A", "B")`` for the co-divide trainer: both networks then train on
            the same partition).
        warmup_epochs: epochs without a partition (as :class:`SampleSeparationHandler`).
        interval: publish every ``interval`` epochs after warm-up.
        noise_group: true groups for the logged metrics (default: none).
        kwargs: further arguments of :class:`SampleSeparationHandler` (``output_dir``, ``summary_writer``,
            ``state_attr``, ``name``, ...).

    Raises:
        TypeError: when ``partition`` is neither a ``SeparationResult`` nor callable.
    """

    def __init__(
        self,
        partition: SeparationResult | Callable[[str, int], SeparationResult],
        keys: Sequence[str] = ("A", "B"),
        warmup_epochs: int = 0,
        interval: int = 1,
        noise_group: Any = None,
        **kwargs: Any,
    ) -> None:
        if not (isinstance(partition, SeparationResult) or callable(partition)):
            raise TypeError(
                f"partition: expected a SeparationResult or a callable (key, epoch) -> SeparationResult, "
                f"got {type(partition).__name__}."
            )
        kwargs.setdefault("progress", False)
        kwargs.setdefault("noise_group_key", None)
        super().__init__(
            (),
            {str(k): torch.nn.Identity() for k in keys},  # placeholders: nothing is scored
            warmup_epochs=warmup_epochs,
            interval=interval,
            noise_group=noise_group,
            **kwargs,
        )
        self.partition = partition

    def run_separation(
        self, network: torch.nn.Module, key: str, epoch: int
    ) -> tuple[SeparationResult, dict[str, Any] | None]:
        """The fixed partition for ``key`` at ``epoch`` (and its metrics against ``noise_group`` when given)."""
        result = self.partition(key, epoch) if callable(self.partition) else self.partition
        if not isinstance(result, SeparationResult):
            raise TypeError(
                f"partition({key!r}, {epoch}) returned {type(result).__name__}; expected a SeparationResult."
            )
        metrics = separation_metrics(result, self.noise_group) if self.noise_group is not None else None
        if self._is_main():
            self._report(result, metrics, key, epoch, None, self.noise_group)
        return result, metrics
