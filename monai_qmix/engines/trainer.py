# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""``QMixTrainer``: QMix co-training (co-divide + quality-aware SSL) as a MONAI ``SupervisedTrainer``.

QMix (Hou et al., "QMix: Quality-aware Learning with Mixed Noise for Robust Retinal Disease Diagnosis", IEEE TMI
2025, arXiv:2404.05169) trains two networks A and B. After ``warmup_epochs`` of cross-entropy on all samples,
every epoch starts with a sample separation by A and by B (:class:`~monai_qmix.handlers.SampleSeparationHandler`,
published on ``engine.state.separation``); then A is trained on **B's** partition and B on **A's** (co-divide).

Default loop (``loop="two_loader"``, DivideMix's ``Train_cifar.py`` structure and the official QMix
``dataset.py`` loaders). At every ``EPOCH_STARTED`` the trainer rebuilds per network ``DataLoader`` objects over
the **one** dataset of ``train_data_loader`` (a seeded :class:`~monai_qmix.engines.co_training.GroupSampler` per
group, sharded across ranks when ``torch.distributed`` is initialised); one engine iteration is one optimiser step
of **one** network, and ``engine.state.epoch_length`` is set to the epoch's number of steps:

* warm-up epochs: network A makes one pass over all samples (batch 2B, its own shuffle and augmentation draws),
  then network B makes its own pass; cross-entropy on the first strong view;
* later epochs: network A makes one pass over its *labelled* loader (batch B; QMix: Correct ∪ Mis-L, DivideMix:
  Correct, of **B's** partition), each step also drawing B samples from its *unlabelled* loader (Mis-H; restarted
  when exhausted), with network B fixed in ``eval()`` under ``no_grad`` (no gradient, no BN-statistics update);
  then B makes the same pass on A's partition with the updated A fixed. A step (:meth:`QMixTrainer._two_loader_step`):

  1. separate: the rows' groups from the partner's partition;
  2. targets (no grad, weak views): Correct → :func:`~monai_qmix.losses.co_refine` with the trained network's mean
     weak prediction, Mis-L → :func:`~monai_qmix.losses.pseudo_label`, Mis-H →
     :func:`~monai_qmix.losses.co_guess` with both networks; the rows' targets are then published at
     ``CoTrainingEvents.TARGETS_COMPLETED`` (``engine.state.targets``, read by
     :class:`~monai_qmix.handlers.CoTrainingDiagnosticsHandler`);
  3. strong views of all rows → the trained network with gradient (optional MixMatch over all rows,
     :func:`~monai_qmix.losses.mixup`);
  4. losses: :class:`~monai_qmix.losses.SampleReweighingLoss` with ``normalization="loader"``:
     ``L_x = mean over the labelled rows of w_i·CE_i`` (w = 1 on Correct rows, Ω(t) on Mis-L rows) and
     ``λ_m·L_u`` with ``L_u`` the mean over the unlabelled rows **and** classes of the squared error
     (``mis_h_loss="mse_mean"``, DivideMix's ``torch.mean((probs_u - targets_u)**2)``); + λ_c ·
     :class:`~monai_qmix.losses.ContrastiveEnhancementLoss` on the labelled rows' projections + λ_reg ·
     :class:`~monai_qmix.losses.PriorRegularizationLoss` over all rows;
  5. backward and the trained network's optimiser step; MONAI ``IterationEvents`` fire once per step.

A checkpoint of this loop resumes at an epoch boundary or within an epoch (e.g. ``CheckpointSaver`` with
``epoch_level=False``): the epoch's loaders are rebuilt from the loader seeds of its start, fast-forwarded to the
step, and the partition of that epoch is taken from the checkpoint (a change made to ``engine.state.separation`` by
a handler of ``SEPARATION_COMPLETED`` is then not repeated). Both are bit for bit on CPU with ``num_workers=0``
(tested); with loader workers a within-epoch resume restarts the workers' augmentation streams.

``loop="single"`` keeps the former loop for side-by-side runs: one iteration per batch of ``train_data_loader``
(all samples, 2 weak + 2 strong views and ``index``), both networks updated in it:

1. weak views → A and B forward under ``no_grad`` (computed once, shared by both updates), targets as above with
   the groups looked up per sample (published per network at ``CoTrainingEvents.TARGETS_COMPLETED``);
2. strong views → each network forward with gradient: :class:`~monai_qmix.losses.SampleReweighingLoss`
   (``normalization="batch"``, MSE summed over classes) + λ_c · contrastive + λ_reg · prior, optional MixMatch;
3. both networks are updated; MONAI ``IterationEvents`` fire once per iteration, phase by phase (forward of
   both networks → ``FORWARD_COMPLETED`` → losses → ``LOSS_COMPLETED`` → backward → ``BACKWARD_COMPLETED`` → both
   optimiser steps → ``MODEL_COMPLETED``). Warm-up: both networks on the same batch B and strong view.

Baselines in the same harness: ``method="standard"`` (cross-entropy, one network, strong view 1, always iterating
``train_data_loader`` as is) and ``method="dividemix"`` (2-group loss-only GMM, MixMatch on, no Mis-L /
contrastive terms, uniform prior; see :func:`~monai_qmix.losses.get_dividemix_preset` for the official settings).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from ignite.engine import Events
from ignite.metrics import Metric
from monai.data import MetaTensor
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents, default_metric_cmp_fn
from monai.transforms import Transform
from monai.utils import CommonKeys as Keys
from monai.utils import StrEnum
from torch.optim.optimizer import Optimizer

from monai_qmix.handlers.bn_recalibration import BatchNormRecalibrationHandler
from monai_qmix.handlers.co_training_diagnostics import CoTrainingEvents
from monai_qmix.handlers.separation import SampleSeparationHandler, SeparationEvents
from monai_qmix.losses import (
    ContrastiveEnhancementLoss,
    CoTrainingTargets,
    OmegaSchedule,
    PriorRegularizationLoss,
    SampleReweighingLoss,
    estimate_class_prior,
    linear_rampup,
)
from monai_qmix.networks.wrappers import unwrap_network, wrapped_method
from monai_qmix.separation import CORRECT, GROUP_NAMES, MIS_H, MIS_L, SeparationResult
from monai_qmix.transforms.augment import MultiViewd

from .co_training import CoTrainingPass, CoTrainingSteps, GroupSampler
from .rng_state import RNGState, find_randomizables
from .utils import choose_option

__all__ = ["QMixTrainer", "TrainingMethod", "CoTrainingLoop"]

_NETS = ("A", "B")


class TrainingMethod(StrEnum):
    """Training methods of :class:`QMixTrainer`."""

    QMIX = "qmix"
    DIVIDEMIX = "dividemix"
    STANDARD = "standard"


class CoTrainingLoop(StrEnum):
    """Per-epoch structure of :class:`QMixTrainer` (``method`` ``qmix`` / ``dividemix``).

    - ``two_loader`` (default): DivideMix's ``Train_cifar.py`` structure: network A trains one pass with B fixed,
      then B with A fixed; every step draws B labelled and B unlabelled samples (warm-up: 2B samples per step,
      one pass per network); one engine iteration is one optimiser step of one network.
    - ``single``: the former loop: one loader over all samples, both networks updated in every iteration on the
      same batch and augmentation draws (kept for side-by-side runs).
    """

    TWO_LOADER = "two_loader"
    SINGLE = "single"


def _neg_entropy(logits: torch.Tensor) -> torch.Tensor:
    """DivideMix's confidence penalty ``mean_i Σ_c p_ic log p_ic`` (minimising it raises the entropy)."""
    logp = F.log_softmax(logits.float(), dim=1)
    return (logp.exp() * logp).sum(dim=1).mean()


class QMixTrainer(SupervisedTrainer):
    """Two-network QMix trainer (and the standard-CE / DivideMix baselines) as a MONAI ``SupervisedTrainer``.

    The training loader must yield dict batches with the given label (``label_key``), the sample index
    (``index_key``, the key of every per-sample array, see the architecture notes), the weak views
    (``weak_keys``) and the strong views (``strong_keys``), e.g. from
    :func:`monai_qmix.transforms.augment.fundus_views`. Warm-up epochs and ``method="standard"`` use the first
    strong view (the official loader warms up on the strong augmentation).

    Separation: pass ``separation_loader`` (a deterministic loader over the same training samples, test
    transform) and the trainer builds and attaches a :class:`~monai_qmix.handlers.SampleSeparationHandler` for
    ``{"A": network, "B": network_b}``, or pass your own ``separation_handler`` publishing keys ``"A"`` and
    ``"B"``. ``engine.state.separation[k]`` is the split computed *by* network ``k``; network A is trained on
    ``separation["B"]`` and B on ``separation["A"]``.

    ``engine.state.output`` (before MONAI's decollation) holds ``image`` (strong view 1), ``label``, ``pred`` (class
    probabilities), ``loss`` and, per network ``x`` in ``a``/``b``: ``loss_x``, ``correct_x``, ``mis_h_x``,
    ``mis_l_x`` (unweighted group means), ``lx_x`` / ``lu_x`` (the normalised labelled / unlabelled terms, so that
    the SSL term is ``lx_x + λ_m·lu_x``), ``con_x``, ``reg_x``, ``n_correct_x``, ``n_mis_h_x``, ``n_mis_l_x`` (rows
    per group, views counted), plus ``omega`` and ``lambda_m`` (warm-up: ``loss_x``, ``ce_x``, ``penalty_x``).
    Two-loader loop: a step holds the keys of the trained network only, ``loss`` is its total, ``image`` /
    ``label`` / ``pred`` describe the step's labelled batch (its unlabelled batch when it has none) and
    ``engine.state.batch`` is that batch (at ``GET_BATCH_COMPLETED`` it is the step dict ``{"network", "labelled",
    "unlabelled", "step", "steps"}``). Single loop: the keys of both networks, ``loss`` is their mean, ``pred`` the
    A+B mean over the weak views. Use e.g. ``StatsHandler(output_transform=from_engine(["loss"], first=True))``.

    Robustness: a group with fewer than ``min_group_size`` samples in a batch has its term skipped (weight 0,
    counted and logged at the end of the epoch); an empty group of a partition is logged when the epoch starts;
    the contrastive term needs 2 samples in Correct ∪ Mis-L. A non-finite term raises ``FloatingPointError``
    naming the epoch, iteration, network and term. AMP is only used on CUDA (a warning disables it otherwise).

    Checkpointing: :meth:`checkpoint_dict` returns every ``state_dict``-able piece (the trainer's epoch/iteration,
    both networks, optimisers, schedulers, the separation handler, the RNG states) for MONAI's
    ``CheckpointSaver(save_dict=...)`` and ``CheckpointLoader(load_dict=...)``.

    Args:
        device: device of training.
        max_epochs: total number of epochs (warm-up included).
        train_data_loader: loader over all training samples yielding the views, labels and indices. The two-loader
            loop builds its per-epoch loaders over this loader's dataset (see ``loop``); the single loop iterates it.
        network: network A (a :class:`~monai_qmix.networks.QMixNet` or any module returning logits; the
            contrastive term needs ``forward_all(x, with_projection)``).
        optimizer: optimiser of network A.
        network_b: network B (required unless ``method="standard"``).
        optimizer_b: optimiser of network B.
        lr_scheduler: optional LR scheduler of A, stepped at every ``EPOCH_COMPLETED`` (before user handlers).
        lr_scheduler_b: optional LR scheduler of B.
        method: ``"qmix"`` (default), ``"dividemix"`` or ``"standard"``.
        warmup_epochs: epochs of cross-entropy on all samples before the first separation (QMix: 10).
        separation_loader: deterministic loader for the separation handler built by the trainer.
        separation_handler: a ready handler (then ``separation_loader``/``separation_handler_kwargs`` are not
            used).
        separation_handler_kwargs: extra arguments of the :class:`~monai_qmix.handlers.SampleSeparationHandler`
            the trainer builds, e.g. ``{"separation_kwargs": {"n_init": 5}, "scoring_kwargs": {...},
            "output_dir": ..., "noise_group": ...}``; ``separation_kwargs["mode"]``, when given, must equal
            ``method``.
        loss_function: the warm-up / standard classification loss (default ``torch.nn.CrossEntropyLoss()``).
        sample_loss: the configured :class:`~monai_qmix.losses.SampleReweighingLoss` of the semi-supervised phase
            (Ω(t) of Mis-L, λ_m of Mis-H, the Mis-H loss, the group normalisation), as MONAI's ``loss_function``.
            Default ``None``: ``SampleReweighingLoss.for_loop(loop, omega=OmegaSchedule(0.3, max_epochs,
            warmup_epochs, "linear"))``, the bundles' setting: λ_m 1, ``mse_mean`` with ``"loader"`` normalisation
            for the two-loader loop (labelled and unlabelled rows each averaged over their own count), ``mse`` with
            ``"batch"`` for ``loop="single"`` (Ω constant 0.3 when ``max_epochs <= warmup_epochs``). Its
            ``lambda_m`` is the maximum of the ``lambda_m_rampup`` ramp (the trainer sets the current value on it
            at every step). ``"group"`` normalisation gives the few samples of a group that is small in a batch a
            weight up to B times larger; when a partition is unbalanced across classes this collapses the networks
            onto the classes of the Correct group within one epoch.
        contrastive_loss: the configured :class:`~monai_qmix.losses.ContrastiveEnhancementLoss` (default ``None``:
            τ = 0.07); its weight is ``lambda_c``.
        targets: the configured :class:`~monai_qmix.losses.CoTrainingTargets` (co-refinement of Correct, the
            Mis-L rule, co-guessing of Mis-H, the sharpening T, MixMatch and its α). Default ``None``:
            ``CoTrainingTargets()`` (T 0.5, ``posterior_refine``, α 4); its ``mixmatch=None`` means on for
            ``dividemix`` and off for ``qmix`` (the resolved choice is ``trainer.mixmatch``).
        lambda_c: weight λ_c of the contrastive enhancement loss (0 switches it and the projector off).
        lambda_m_rampup: epochs of a linear ramp-up of ``sample_loss.lambda_m`` after warm-up (0 = none, QMix
            default; DivideMix 16).
        lambda_reg: weight of the prior regulariser (0 switches it off).
        prior: ``"class_prior"`` (the given labels' distribution, taken from the separation result), ``"uniform"``,
            ``"off"`` or a sequence of class probabilities; default per method: qmix ``class_prior``, dividemix
            ``uniform``, standard ``off``.
        strong_views: number of strong views in the loss (1 or 2).
        warmup_penalty: weight of DivideMix's negative-entropy penalty during warm-up (0 = off).
        weak_mode: ``"train"`` (default; BN batch statistics, as DivideMix's trained network) or ``"eval"`` for the
            no-grad weak-view forwards of the trained network (single loop: of both networks). In the two-loader
            loop the fixed partner is always in ``eval()``.
        min_group_size: a group with fewer samples in a batch skips its term.
        loop: ``"two_loader"`` (default) or ``"single"``, see :class:`CoTrainingLoop` and the module docstring.
            Ignored for ``method="standard"``. The two-loader loop needs a ``DataLoader``-like
            ``train_data_loader`` (``dataset``, ``batch_size``, ``num_workers``, ``collate_fn``, ``pin_memory``,
            ``drop_last`` are reused, ``drop_last`` only for a group of at least one batch; its sampler and shuffle
            are not) whose dataset position of every sample equals its ``index``.
        skip_unused_views: compute only the views each epoch uses: at every ``EPOCH_STARTED`` every
            :class:`~monai_qmix.transforms.MultiViewd` of the training loader (found as its dataset's transforms)
            that makes ``strong_keys[0]`` gets :meth:`~monai_qmix.transforms.MultiViewd.set_active_views`: the
            first strong view in warm-up epochs and for ``method="standard"``, ``weak_keys`` + the first
            ``strong_views`` strong keys afterwards. Off by default (the seeded random stream of the augmentations
            changes). A 2 weak + 2 strong loader otherwise augments 4 views per sample for a warm-up that uses 1,
            which costs a large share of a warm-up epoch when augmenting in the main process (see
            ``benchmarks/cost.py``). Needs non-persistent loader workers (the flag reaches workers started after
            ``EPOCH_STARTED``).
        bn_recalibration_loader: un-augmented training images (e.g. ``separation_loader``); when given, a
            :class:`~monai_qmix.handlers.BatchNormRecalibrationHandler` recomputes every network's batch-norm
            running statistics over it at the end of every epoch, before any ``train_handlers`` (validation,
            checkpoints) and the next epoch's separation. Costs one no-grad pass per network and epoch. Default
            ``None`` (off): the statistics then describe the strongly augmented training views.
        weak_keys: batch keys of the weak views.
        strong_keys: batch keys of the strong views (at least ``strong_views``).
        label_key: batch key of the given labels.
        index_key: batch key of the sample indices.
        seed: seed of the trainer's MixMatch generator and of the generator seeding the per-epoch loaders.
        channels_last: use ``torch.channels_last`` memory format for the inputs and networks.
        compile: ``torch.compile`` the networks' forward calls (the modules and state dicts are unchanged).
        compile_kwargs: arguments of ``torch.compile``.
        epoch_length: iterations per epoch (default ``len(train_data_loader)``); ``loop="single"`` only (the
            two-loader loop sets it every epoch).
        non_blocking: non-blocking host-to-device copies.
        postprocessing: MONAI post-processing of the (decollated) output.
        key_train_metric: MONAI key metric on the output.
        additional_metrics: more MONAI metrics.
        metric_cmp_fn: comparison of key metric values.
        train_handlers: handlers attached after the trainer's own.
        amp: mixed precision (CUDA only).
        event_names: extra events to register.
        event_to_attr: see :class:`~monai.engines.Workflow`.
        decollate: decollate ``state.batch`` and ``state.output`` at ``MODEL_COMPLETED``.
        optim_set_to_none: ``zero_grad(set_to_none=...)``.
        to_kwargs: extra arguments of ``Tensor.to``.
        amp_kwargs: extra arguments of ``torch.autocast``.

    Raises:
        ValueError: for an unknown method / option, a missing network B, optimiser or separation source, or
            inconsistent options (e.g. ``lambda_c > 0`` with ``method="dividemix"``).
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable,
        network: torch.nn.Module,
        optimizer: Optimizer,
        network_b: torch.nn.Module | None = None,
        optimizer_b: Optimizer | None = None,
        lr_scheduler: Any = None,
        lr_scheduler_b: Any = None,
        method: str = TrainingMethod.QMIX,
        warmup_epochs: int = 10,
        separation_loader: Iterable | None = None,
        separation_handler: SampleSeparationHandler | None = None,
        separation_handler_kwargs: Mapping[str, Any] | None = None,
        loss_function: Callable | None = None,
        sample_loss: SampleReweighingLoss | None = None,
        contrastive_loss: ContrastiveEnhancementLoss | None = None,
        targets: CoTrainingTargets | None = None,
        lambda_c: float = 0.0,
        lambda_m_rampup: int = 0,
        lambda_reg: float = 1.0,
        prior: str | Sequence[float] | None = None,
        strong_views: int = 2,
        warmup_penalty: float = 0.0,
        weak_mode: str = "train",
        min_group_size: int = 1,
        loop: str = CoTrainingLoop.TWO_LOADER,
        skip_unused_views: bool = False,
        bn_recalibration_loader: Iterable | None = None,
        weak_keys: Sequence[str] = ("image_w1", "image_w2"),
        strong_keys: Sequence[str] = ("image_s1", "image_s2"),
        label_key: str = "label",
        index_key: str = "index",
        seed: int = 0,
        channels_last: bool = False,
        compile: bool = False,
        compile_kwargs: dict | None = None,
        epoch_length: int | None = None,
        non_blocking: bool = False,
        postprocessing: Transform | None = None,
        key_train_metric: dict[str, Metric] | None = None,
        additional_metrics: dict[str, Metric] | None = None,
        metric_cmp_fn: Callable = default_metric_cmp_fn,
        train_handlers: Sequence | None = None,
        amp: bool = False,
        event_names: list | None = None,
        event_to_attr: dict | None = None,
        decollate: bool = True,
        optim_set_to_none: bool = False,
        to_kwargs: dict | None = None,
        amp_kwargs: dict | None = None,
    ) -> None:
        self.method = choose_option(method, TrainingMethod, "method")
        two_nets = self.method != TrainingMethod.STANDARD
        self.loop = CoTrainingLoop(choose_option(loop, CoTrainingLoop, "loop")) if two_nets else CoTrainingLoop.SINGLE
        two_loader = self.loop == CoTrainingLoop.TWO_LOADER
        if two_loader and epoch_length is not None:
            raise ValueError(
                f"epoch_length must be None for loop='two_loader' (each epoch has the steps of its two passes), "
                f"got {epoch_length!r}; pass loop='single' for a fixed epoch_length."
            )
        for name, obj, cls in (
            ("sample_loss", sample_loss, SampleReweighingLoss),
            ("contrastive_loss", contrastive_loss, ContrastiveEnhancementLoss),
            ("targets", targets, CoTrainingTargets),
        ):
            if obj is not None and not isinstance(obj, cls):
                raise TypeError(f"{name}: expected a {cls.__name__} or None, got {type(obj).__name__}.")
        if two_nets and (network_b is None or optimizer_b is None):
            raise ValueError(f"network_b and optimizer_b are required for method={self.method!r}, got None.")
        if not two_nets and (network_b is not None or optimizer_b is not None):
            raise ValueError("network_b / optimizer_b: method='standard' trains one network; pass None.")
        if int(warmup_epochs) != warmup_epochs or warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be an integer >= 0, got {warmup_epochs!r}.")
        if strong_views not in (1, 2):
            raise ValueError(f"strong_views must be 1 or 2, got {strong_views!r}.")
        if len(strong_keys) < strong_views:
            raise ValueError(f"strong_keys must name at least strong_views={strong_views} keys, got {strong_keys}.")
        if two_nets and len(weak_keys) < 1:
            raise ValueError(f"weak_keys must name at least one weak view, got {weak_keys}.")
        if weak_mode not in ("train", "eval"):
            raise ValueError(f"weak_mode must be 'train' or 'eval', got {weak_mode!r}.")
        if int(min_group_size) != min_group_size or min_group_size < 1:
            raise ValueError(f"min_group_size must be an integer >= 1, got {min_group_size!r}.")
        for name, v in (("lambda_c", lambda_c), ("lambda_reg", lambda_reg), ("warmup_penalty", warmup_penalty)):
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite value >= 0, got {v!r}.")
        if self.method == TrainingMethod.DIVIDEMIX and lambda_c > 0:
            raise ValueError(f"lambda_c must be 0 for method='dividemix' (no quality terms), got {lambda_c!r}.")
        if lambda_c > 0 and not callable(getattr(unwrap_network(network), "forward_all", None)):
            raise ValueError("lambda_c > 0 needs networks with forward_all(x, with_projection) (e.g. QMixNet).")
        device = torch.device(device)
        if amp and device.type != "cuda":
            warnings.warn(f"amp=True needs a CUDA device, got {device}; training in full precision.", stacklevel=2)
            amp = False

        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            network=network,
            optimizer=optimizer,
            loss_function=loss_function if loss_function is not None else torch.nn.CrossEntropyLoss(),
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            postprocessing=postprocessing,
            key_train_metric=key_train_metric,
            additional_metrics=additional_metrics,
            metric_cmp_fn=metric_cmp_fn,
            train_handlers=None,  # attached below, after the trainer's own handlers
            amp=amp,
            event_names=[*(event_names or []), SeparationEvents, CoTrainingEvents],
            event_to_attr=event_to_attr,
            decollate=decollate,
            optim_set_to_none=optim_set_to_none,
            to_kwargs=to_kwargs,
            amp_kwargs=amp_kwargs,
        )
        self.scaler = torch.amp.GradScaler("cuda") if self.amp else None
        self.network_b = network_b
        self.optimizer_b = optimizer_b
        self.lr_scheduler = lr_scheduler
        self.lr_scheduler_b = lr_scheduler_b
        self.warmup_epochs = int(warmup_epochs) if two_nets else 0
        self.weak_keys, self.strong_keys = tuple(weak_keys), tuple(strong_keys)
        self.label_key, self.index_key = label_key, index_key
        self.strong_views = int(strong_views)
        self.weak_mode = weak_mode
        self.min_group_size = int(min_group_size)
        self.warmup_penalty = float(warmup_penalty)
        self.channels_last = bool(channels_last)
        self.lambda_c = float(lambda_c)
        self.lambda_reg = float(lambda_reg)
        self.lambda_m_rampup = int(lambda_m_rampup)
        self.targets = targets if targets is not None else CoTrainingTargets()
        mixmatch = self.targets.mixmatch
        self.mixmatch = (self.method == TrainingMethod.DIVIDEMIX) if mixmatch is None else mixmatch
        if sample_loss is None:  # the bundles' schedule: linear decay of Omega(0) = 0.3 after the warm-up
            omega = (
                OmegaSchedule(0.3, int(max_epochs), self.warmup_epochs, "linear")
                if int(max_epochs) > self.warmup_epochs
                else 0.3
            )
            sample_loss = SampleReweighingLoss.for_loop(self.loop.value, omega=omega)
        self.sample_loss = sample_loss
        self.lambda_m = float(sample_loss.lambda_m)  # the maximum of the ramp; the current value is set per step
        self.contrastive_loss = contrastive_loss if contrastive_loss is not None else ContrastiveEnhancementLoss()
        self.prior = self._resolve_prior(prior)
        self.prior_loss: PriorRegularizationLoss | None = (
            PriorRegularizationLoss(self.prior) if isinstance(self.prior, torch.Tensor) else None
        )
        if isinstance(self.prior, str) and self.prior == "uniform":
            self.prior_loss = PriorRegularizationLoss(None)
        self.mix_generator = torch.Generator().manual_seed(int(seed))
        self.loader_generator = torch.Generator().manual_seed(int(seed) + 1)  # seeds of the per-epoch loaders
        self.skipped: dict[str, int] = {}
        if channels_last:
            for net in self.networks:
                net.to(memory_format=torch.channels_last)
        self._forwards = {k: self._compiled(n, compile, compile_kwargs) for k, n in zip(_NETS, self.networks)}
        self.rng_state = RNGState(
            train_data_loader, generators={"mixup": self.mix_generator, "loaders": self.loader_generator}
        )

        # the trainer's own handlers come first: schedulers step before a CheckpointSaver saves the epoch
        self._epoch_start_iteration = 0
        self._epoch_loader_seed_state = self.loader_generator.get_state()
        self._resume: tuple[int, torch.Tensor] | None = None  # (steps into the epoch, loader seeds at its start)
        self.add_event_handler(Events.EPOCH_STARTED, self._mark_epoch_start)
        self.add_event_handler(Events.EPOCH_COMPLETED, self._step_schedulers)
        self.add_event_handler(Events.EPOCH_COMPLETED, self._log_skipped)
        self.bn_recalibration: BatchNormRecalibrationHandler | None = None
        if bn_recalibration_loader is not None:
            self.bn_recalibration = BatchNormRecalibrationHandler(bn_recalibration_loader)
            self.bn_recalibration.attach(self)
        self.separation_handler: SampleSeparationHandler | None = None
        if two_nets and self.warmup_epochs < max_epochs:
            self.separation_handler = separation_handler or self._build_separation_handler(
                separation_loader, separation_handler_kwargs
            )
            self.separation_handler.attach(self)
            self.add_event_handler(Events.EPOCH_STARTED, self._check_partitions)
        self.train_data_loader = train_data_loader
        self.epoch_loaders: dict[str, dict[str, Any]] = {}
        if two_loader:
            self._check_two_loader_source(train_data_loader)
            self.co_training_steps = CoTrainingSteps()
            self.data_loader = self.co_training_steps  # what Ignite iterates: one step of one network at a time
            self.add_event_handler(Events.EPOCH_STARTED, self._plan_epoch)
        self.multiview_transforms = self._find_multiviews(train_data_loader) if skip_unused_views else []
        if skip_unused_views:
            self.add_event_handler(Events.EPOCH_STARTED, self._select_views)
        if train_handlers is not None:
            self._register_handlers(train_handlers)

    # ------------------------------------------------------------------ construction helpers
    @property
    def networks(self) -> list[torch.nn.Module]:
        """The trained networks: ``[A]`` or ``[A, B]``."""
        return [self.network] if self.network_b is None else [self.network, self.network_b]

    @property
    def optimizers(self) -> list[Optimizer]:
        """The optimisers, aligned with :attr:`networks`."""
        return [self.optimizer] if self.optimizer_b is None else [self.optimizer, self.optimizer_b]

    @staticmethod
    def _compiled(net: torch.nn.Module, compile: bool, kwargs: dict | None) -> dict[str, Callable]:
        fns: dict[str, Callable] = {"logits": net.forward}
        if callable(getattr(unwrap_network(net), "forward_all", None)):
            fns["all"] = wrapped_method(net, "forward_all")  # through DDP's forward when wrapped
        if compile:
            fns = {k: torch.compile(f, **(kwargs or {})) for k, f in fns.items()}
        return fns

    def _find_multiviews(self, loader: Iterable) -> list[MultiViewd]:
        if getattr(loader, "persistent_workers", False) and getattr(loader, "num_workers", 0) > 0:
            raise ValueError(
                "skip_unused_views=True needs a train_data_loader without persistent_workers (its workers keep the "
                "views selected when they started); pass persistent_workers=False or skip_unused_views=False."
            )
        found = [t for t in find_randomizables(loader) if isinstance(t, MultiViewd) and self.strong_keys[0] in t.views]
        if not found:
            warnings.warn(
                f"skip_unused_views=True: no MultiViewd making {self.strong_keys[0]!r} found in train_data_loader's "
                "dataset; every view the loader makes is computed.",
                stacklevel=3,
            )
        return found

    def _select_views(self, engine: QMixTrainer) -> None:
        if engine.state.epoch <= self.warmup_epochs or self.method == TrainingMethod.STANDARD:
            needed: tuple[str, ...] = self.strong_keys[:1]
        else:
            needed = (*self.weak_keys, *self.strong_keys[: self.strong_views])
        for t in self.multiview_transforms:
            t.set_active_views([k for k in t.views if k in needed])

    def _resolve_prior(self, prior: str | Sequence[float] | None) -> str | torch.Tensor | None:
        if prior is None:
            prior = {"qmix": "class_prior", "dividemix": "uniform", "standard": "off"}[self.method]
        if isinstance(prior, str):
            if prior not in ("class_prior", "uniform", "off"):
                raise ValueError(f"prior must be 'class_prior', 'uniform', 'off' or a sequence, got {prior!r}.")
            return None if (prior == "off" or self.lambda_reg == 0) else prior
        return torch.as_tensor(prior, dtype=torch.float64)

    def _build_separation_handler(
        self, loader: Iterable | None, handler_kwargs: Mapping[str, Any] | None
    ) -> SampleSeparationHandler:
        if loader is None:
            raise ValueError(
                f"separation_loader (or separation_handler) is required for method={self.method!r} when "
                f"warmup_epochs={self.warmup_epochs} < max_epochs={self.state.max_epochs}."
            )
        kwargs = {"progress": False, **dict(handler_kwargs or {})}
        for name in ("networks", "warmup_epochs"):
            if name in kwargs:
                raise ValueError(f"separation_handler_kwargs[{name!r}] is set by the trainer; remove it.")
        sep_kwargs = dict(kwargs.pop("separation_kwargs", None) or {})
        mode = sep_kwargs.pop("mode", self.method)
        if mode != self.method:
            raise ValueError(
                f"separation_handler_kwargs['separation_kwargs']['mode']={mode!r} contradicts method={self.method!r}."
            )
        return SampleSeparationHandler(
            loader,
            {"A": self.network, "B": self.network_b},  # type: ignore[dict-item]
            warmup_epochs=self.warmup_epochs,
            separation_kwargs={"mode": mode, **sep_kwargs},
            **kwargs,
        )

    def checkpoint_dict(self) -> dict[str, Any]:
        """Everything a resume needs, for ``CheckpointSaver(save_dict=...)`` / ``CheckpointLoader(load_dict=...)``.

        Keys: ``trainer`` (epoch, iteration), ``network_a``, ``optimizer_a``, ``network_b``, ``optimizer_b``,
        ``lr_scheduler_a`` / ``lr_scheduler_b`` (when given), ``separation`` (the separation handler) and ``rng``
        (:class:`~monai_qmix.engines.rng_state.RNGState`: torch, numpy, python, loader and transform generators).
        """
        d: dict[str, Any] = {"trainer": self, "network_a": self.network, "optimizer_a": self.optimizer}
        if self.network_b is not None:
            d.update(network_b=self.network_b, optimizer_b=self.optimizer_b)
        if self.lr_scheduler is not None:
            d["lr_scheduler_a"] = self.lr_scheduler
        if self.lr_scheduler_b is not None:
            d["lr_scheduler_b"] = self.lr_scheduler_b
        if self.separation_handler is not None:
            d["separation"] = self.separation_handler
        d["rng"] = self.rng_state
        return d

    # ------------------------------------------------------------------ epoch-level handlers
    def _mark_epoch_start(self, engine: QMixTrainer) -> None:
        into = self._resume[0] if self._resume is not None else 0  # resuming within this epoch
        self._epoch_start_iteration = int(engine.state.iteration) - into

    def _step_schedulers(self, engine: QMixTrainer) -> None:
        for s in (self.lr_scheduler, self.lr_scheduler_b):
            if s is not None:
                s.step()

    def _log_skipped(self, engine: QMixTrainer) -> None:
        if self.skipped:
            engine.logger.info(
                f"Epoch {engine.state.epoch}: terms skipped (group smaller than min_group_size={self.min_group_size} "
                f"in the batch), batches per term: {dict(sorted(self.skipped.items()))}"
            )
        self.skipped = {}

    def partitions(self, engine: QMixTrainer | None = None) -> dict[str, SeparationResult]:
        """The partition each network is trained on: ``{"A": separation["B"], "B": separation["A"]}`` (co-divide).

        The two-loader loop reads it once per epoch, at ``EPOCH_STARTED`` after the separation handler (to train on
        another partition, publish it from the separation handler, e.g. a
        :class:`~monai_qmix.handlers.FixedPartitionHandler`, or at ``SeparationEvents.SEPARATION_COMPLETED``).

        Raises:
            RuntimeError: when no separation result for both networks is on ``engine.state``.
        """
        engine = engine or self
        sep = getattr(engine.state, "separation", None)
        if not isinstance(sep, Mapping) or not all(k in sep for k in _NETS):
            raise RuntimeError(
                f"epoch {engine.state.epoch}: no separation results for networks 'A' and 'B' on "
                f"engine.state.separation (got {None if sep is None else sorted(sep)}); attach a "
                "SampleSeparationHandler for both networks or pass separation_loader."
            )
        return {"A": sep["B"], "B": sep["A"]}

    def _check_partitions(self, engine: QMixTrainer) -> None:
        if engine.state.epoch <= self.warmup_epochs:
            return
        groups = (CORRECT, MIS_H) if self.method == TrainingMethod.DIVIDEMIX else (CORRECT, MIS_H, MIS_L)
        for net, part in self.partitions(engine).items():
            counts = part.counts()
            partner = "B" if net == "A" else "A"
            msg = f"Epoch {engine.state.epoch}: network {net} trains on the split of network {partner}"
            msg += ": " + ", ".join(f"{GROUP_NAMES[g]}={counts[GROUP_NAMES[g]]}" for g in groups)
            empty = [GROUP_NAMES[g] for g in groups if counts[GROUP_NAMES[g]] == 0]
            if empty:
                msg += f"; empty groups skip their term this epoch: {empty}"
            engine.logger.info(msg)
        if isinstance(self.prior, str) and self.prior == "class_prior" and self.prior_loss is None:
            self.prior_loss = self._class_prior_loss(engine)

    def _class_prior_loss(self, engine: QMixTrainer) -> PriorRegularizationLoss:
        labels = self.partitions(engine)["A"].labels
        num_classes = self._num_classes()
        if labels is None or len(labels) == 0 or num_classes is None:
            warnings.warn("prior='class_prior': no given labels available; using a uniform prior.", stacklevel=2)
            return PriorRegularizationLoss(None)
        num_classes = max(num_classes, int(np.max(labels)) + 1)
        return PriorRegularizationLoss(estimate_class_prior(labels, num_classes))

    def _num_classes(self) -> int | None:
        n = getattr(unwrap_network(self.network), "num_classes", None)
        if n is None:
            lin = [m for m in self.network.modules() if isinstance(m, torch.nn.Linear)]
            n = lin[-1].out_features if lin else None
        return None if n is None else int(n)

    # ------------------------------------------------------------------ iteration
    def _autocast(self) -> Any:
        return torch.autocast("cuda", **self.amp_kwargs) if self.amp else nullcontext()

    def _to_device(self, engine: QMixTrainer, x: Any) -> torch.Tensor:
        x = torch.as_tensor(x).to(engine.state.device, non_blocking=engine.non_blocking, **engine.to_kwargs)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _batch_key(self, batchdata: Mapping, key: str) -> Any:
        if key not in batchdata:
            raise KeyError(f"{key!r}: key missing from the training batch (available: {sorted(batchdata)}).")
        return batchdata[key]

    def _check_finite(self, engine: QMixTrainer, terms: Mapping[str, torch.Tensor], net: str) -> None:
        for name, value in terms.items():
            if not bool(torch.isfinite(value.detach()).all()):
                raise FloatingPointError(
                    f"non-finite loss at epoch {engine.state.epoch}, iteration {engine.state.iteration}: "
                    f"term {name!r} of network {net} is {value.detach().float().cpu().tolist()}."
                )

    def _backward_and_step(
        self, engine: QMixTrainer, losses: Sequence[torch.Tensor], optimizers: Sequence[Optimizer] | None = None
    ) -> None:
        for loss in losses:
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
            else:
                loss.backward()
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        for opt in self.optimizers if optimizers is None else optimizers:
            if self.scaler is not None:
                self.scaler.step(opt)
            else:
                opt.step()
        if self.scaler is not None:
            self.scaler.update()

    def _iteration(self, engine: QMixTrainer, batchdata: dict[str, Any]) -> dict:  # type: ignore[override]
        """One iteration: a step of one network (``loop="two_loader"``) or of both (``loop="single"``)."""
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        warm = engine.state.epoch <= self.warmup_epochs or self.method == TrainingMethod.STANDARD
        if self.loop == CoTrainingLoop.TWO_LOADER:
            k = batchdata["network"]
            primary = batchdata["labelled"] if batchdata["labelled"] is not None else batchdata["unlabelled"]
            engine.state.batch = primary  # MONAI decollates state.batch; it holds the step's main batch
            if warm:
                return self._ce_iteration(engine, primary, nets=(k,))
            return self._two_loader_step(engine, batchdata)
        if warm:
            return self._ce_iteration(engine, batchdata)
        return self._ssl_iteration(engine, batchdata)

    def _ce_iteration(self, engine: QMixTrainer, batchdata: Mapping, nets: Sequence[str] | None = None) -> dict:
        keys = tuple(_NETS[: len(self.networks)] if nets is None else nets)
        pairs = [(self.networks[_NETS.index(k)], self.optimizers[_NETS.index(k)]) for k in keys]
        x = self._to_device(engine, self._batch_key(batchdata, self.strong_keys[0]))
        y = self._to_device(engine, self._batch_key(batchdata, self.label_key)).long().reshape(-1)
        engine.state.output = {Keys.IMAGE: x, Keys.LABEL: y}
        for net, opt in pairs:
            net.train()
            opt.zero_grad(set_to_none=engine.optim_set_to_none)
        with self._autocast():
            logits = [self._forwards[k]["logits"](x) for k in keys]
        engine.state.output[Keys.PRED] = torch.stack([torch.softmax(lg.detach().float(), 1) for lg in logits]).mean(0)
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        totals = []
        for k, lg in zip(keys, logits):
            ce = self.loss_function(lg.float(), y).mean()
            terms = {"ce": ce}
            total = ce
            if self.warmup_penalty > 0:
                terms["penalty"] = _neg_entropy(lg)
                total = total + self.warmup_penalty * terms["penalty"]
            self._check_finite(engine, terms, k)
            totals.append(total)
            for name, v in terms.items():
                engine.state.output[f"{name}_{k.lower()}"] = v.detach()
            engine.state.output[f"loss_{k.lower()}"] = total.detach()
        engine.state.output[Keys.LOSS] = torch.stack([t.detach() for t in totals]).mean()
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        self._backward_and_step(engine, totals, [opt for _, opt in pairs])
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output

    def _current_lambda_m(self, epoch: int) -> float:
        if self.lambda_m_rampup <= 0:
            return self.lambda_m
        return linear_rampup(epoch, self.lambda_m_rampup, start=self.warmup_epochs, max_value=self.lambda_m)

    def _ssl_iteration(self, engine: QMixTrainer, batchdata: Mapping) -> dict:
        epoch = int(engine.state.epoch)
        parts = self.partitions(engine)
        index = torch.as_tensor(self._batch_key(batchdata, self.index_key)).reshape(-1).cpu()
        y = self._to_device(engine, self._batch_key(batchdata, self.label_key)).long().reshape(-1)
        weak = torch.cat([self._to_device(engine, self._batch_key(batchdata, k)) for k in self.weak_keys])
        strong = torch.cat(
            [self._to_device(engine, self._batch_key(batchdata, k)) for k in self.strong_keys[: self.strong_views]]
        )
        b, m, v = y.shape[0], len(self.weak_keys), self.strong_views
        engine.state.output = {Keys.IMAGE: strong[:b], Keys.LABEL: y}

        # 1. weak views -> both networks, no grad, shared by both updates
        weak_probs = {}
        with torch.no_grad(), self._autocast():
            for k, net in zip(_NETS, self.networks):
                net.train(self.weak_mode == "train")
                weak_probs[k] = torch.softmax(self._forwards[k]["logits"](weak).float(), dim=1).reshape(m, b, -1)
        guessed = self.targets.mis_h(weak_probs["A"], weak_probs["B"])
        engine.state.output[Keys.PRED] = 0.5 * (weak_probs["A"].mean(0) + weak_probs["B"].mean(0))

        # 2. targets per network from the partner's partition
        plan = {}
        for k in _NETS:
            part = parts[k]
            groups = torch.as_tensor(part.groups_for(index), dtype=torch.long).to(y.device)
            post = torch.as_tensor(part.probs_for(index), dtype=torch.float32).to(y.device)
            target = torch.where(
                (groups == MIS_H)[:, None], guessed, self._labelled_targets(y, groups, post, weak_probs[k])
            )
            plan[k] = (groups, target, self._row_weights(k, groups))
            self._publish_targets(engine, k, index, y, groups, target)

        # 3. strong views -> forward with gradient, both networks
        for net, opt in zip(self.networks, self.optimizers):
            net.train()
            opt.zero_grad(set_to_none=engine.optim_set_to_none)
        with_proj = self.lambda_c > 0
        outputs, inputs = {}, {}
        for k in _NETS:
            groups, target, weight = plan[k]
            x, t = strong, target.repeat(v, 1)
            x, t = self.targets.mix(x, t, self.mix_generator, self.mixmatch)
            inputs[k] = (t, groups.repeat(v), weight.repeat(v))
            with self._autocast():
                if with_proj:
                    outputs[k] = self._forwards[k]["all"](x, with_projection=True)
                else:
                    outputs[k] = {"logits": self._forwards[k]["logits"](x)}
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)

        # 4. losses
        self.sample_loss.lambda_m = self._current_lambda_m(epoch)
        totals = []
        for k in _NETS:
            t, gg, ww = inputs[k]
            groups, weight = plan[k][0], plan[k][2]

            def contrast(k: str = k, groups: torch.Tensor = groups, weight: torch.Tensor = weight) -> Any:
                sel = ((groups == CORRECT) | (groups == MIS_L)) & (weight > 0)
                if int(sel.sum()) < 2:
                    return None
                proj = outputs[k]["projection"].float().reshape(v, b, -1).transpose(0, 1)
                return proj[sel], y[sel], groups[sel] == MIS_L

            batch = {"targets": t, "groups": gg, "weights": ww}
            total, terms, terms_log = self._network_loss(engine, k, outputs[k]["logits"].float(), batch, contrast)
            totals.append(total)
            self._log_terms(engine.state.output, k.lower(), total, terms, terms_log)
        engine.state.output["lambda_m"] = torch.tensor(self.sample_loss.lambda_m)
        engine.state.output[Keys.LOSS] = torch.stack([t.detach() for t in totals]).mean()
        engine.fire_event(IterationEvents.LOSS_COMPLETED)

        # 5. backward + both optimiser steps
        self._backward_and_step(engine, totals)
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output

    # ------------------------------------------------------------------ two-loader loop: epochs and loaders
    @staticmethod
    def _is_done(state: Any) -> bool:
        # epochs of the two-loader loop differ in length, so Ignite's ``iteration >= epoch_length * max_epochs``
        # test would end a run early; the run ends on max_iters or max_epochs only (identical for a fixed length)
        done_iters = state.max_iters is not None and state.iteration >= state.max_iters
        return done_iters or (state.max_epochs is not None and state.epoch >= state.max_epochs)

    def state_dict(self) -> Any:
        """Ignite's engine state plus ``epochs_completed`` and ``iterations_into_epoch``.

        Ignite derives the epoch of a checkpoint as ``iteration // epoch_length``, which needs a fixed epoch
        length; epochs differ in length in the two-loader loop, so :meth:`load_state_dict` restores the epoch from
        ``epochs_completed``. Within an epoch of the two-loader loop ``epoch_loader_seed_state`` (the state of the
        generator seeding the epoch's loaders at its start) is added, to rebuild the same loaders on resume.
        """
        sd = super().state_dict()
        within = self.steps_into_epoch
        length = self.state.epoch_length or 0
        complete = within == length or within == 0 and self.state.epoch == 0
        sd["epochs_completed"] = int(self.state.epoch) if complete else int(self.state.epoch) - 1
        sd["iterations_into_epoch"] = 0 if complete else within
        if self.loop == CoTrainingLoop.TWO_LOADER and not complete:
            sd["epoch_loader_seed_state"] = self._epoch_loader_seed_state.clone()
        return sd

    @property
    def steps_into_epoch(self) -> int:
        """Steps of the current epoch done so far (its ``epoch_length`` at its end)."""
        return int(self.state.iteration) - int(self._epoch_start_iteration)

    def resumable_within_epoch(self) -> bool:
        """Whether a checkpoint written now, at an iteration boundary, resumes exactly *within* the current epoch.

        True in the two-loader loop between two steps of an epoch (not before its first step, not after its last,
        where the epoch-end handlers have yet to run). The single loop resumes exactly only at epoch boundaries.
        """
        if self.loop != CoTrainingLoop.TWO_LOADER:
            return False
        return 0 < self.steps_into_epoch < int(self.state.epoch_length or 0)

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Restore the engine state (see :meth:`state_dict`).

        Raises:
            ValueError: for a state written within an epoch of the two-loader loop without
                ``epoch_loader_seed_state``.
        """
        super().load_state_dict(state_dict)
        if "epochs_completed" not in state_dict:
            return
        into = int(state_dict.get("iterations_into_epoch", 0))
        if self.loop == CoTrainingLoop.TWO_LOADER and into != 0 and "epoch_loader_seed_state" not in state_dict:
            raise ValueError(
                f"state_dict: written {into} iterations into epoch {int(state_dict['epochs_completed']) + 1} "
                "without 'epoch_loader_seed_state'; loop='two_loader' resumes within an epoch only from its own "
                "state_dict()."
            )
        self.state.epoch = int(state_dict["epochs_completed"])
        self.state.iteration = int(state_dict["iteration"])
        if self.loop == CoTrainingLoop.TWO_LOADER:
            # Ignite would start the next epoch at step iteration % epoch_length; epochs differ in length here
            self._init_iter = into
            seeds = state_dict.get("epoch_loader_seed_state")
            self._resume = None if into == 0 else (into, torch.as_tensor(seeds, dtype=torch.uint8).cpu())

    def _check_two_loader_source(self, loader: Any) -> None:
        dataset, batch = getattr(loader, "dataset", None), getattr(loader, "batch_size", None)
        if dataset is None or not isinstance(batch, int) or batch < 1:
            raise ValueError(
                "train_data_loader must be a DataLoader with a dataset and an integer batch_size for "
                f"loop='two_loader' (the per-epoch loaders are built over its dataset), got {type(loader).__name__} "
                f"with batch_size={batch!r}; pass loop='single' to iterate it as is."
            )

    def _make_loader(self, positions: np.ndarray, batch_size: int) -> Any:
        """A loader like ``train_data_loader`` over the dataset positions ``positions`` (seeded, shuffled)."""
        from monai.data import DataLoader

        src = self.train_data_loader
        seed = int(torch.randint(0, 2**62, (1,), generator=self.loader_generator))
        sampler = GroupSampler(positions, seed=seed)
        return DataLoader(
            src.dataset,
            batch_size=int(batch_size),
            sampler=sampler,
            num_workers=src.num_workers,
            collate_fn=src.collate_fn,
            pin_memory=src.pin_memory,
            drop_last=bool(src.drop_last) and len(sampler) >= batch_size,  # a group smaller than a batch is kept
            generator=torch.Generator().manual_seed(seed + 1),  # worker seeds of this loader
        )

    def _plan_epoch(self, engine: QMixTrainer) -> None:
        """``EPOCH_STARTED``: build this epoch's loaders from the partitions and set ``state.epoch_length``.

        Warm-up: one pass per network over all samples, each with its own shuffle, batch 2B. Afterwards: per
        network the labelled loader (QMix: Correct ∪ Mis-L, DivideMix: Correct) and the unlabelled loader (Mis-H)
        of the partner's partition, batch B each; the pass is one pass over the labelled loader (over the
        unlabelled one when the labelled group is empty).
        """
        epoch = int(engine.state.epoch)
        b = int(self.train_data_loader.batch_size)
        passes = []
        self.epoch_loaders = {}
        resume, self._resume = self._resume, None
        restored: list = []
        if resume is not None:  # within-epoch resume: the loaders' seeds as drawn at the start of this epoch
            self.loader_generator.set_state(resume[1])
            restored = [(t, t.R.get_state()) for t in find_randomizables(self.train_data_loader)]
        self._epoch_loader_seed_state = self.loader_generator.get_state()
        if epoch <= self.warmup_epochs:
            every = np.arange(len(self.train_data_loader.dataset), dtype=np.int64)
            for k in _NETS:
                self.epoch_loaders[k] = {"labelled": self._make_loader(every, 2 * b), "unlabelled": None}
        else:
            labelled = (CORRECT, MIS_L) if self.method == TrainingMethod.QMIX else (CORRECT,)
            for k, part in self.partitions(engine).items():
                lab = part.indices[np.isin(part.groups, labelled)]
                unl = part.indices[part.groups == MIS_H]
                self.epoch_loaders[k] = {
                    "labelled": self._make_loader(lab, b) if lab.size else None,
                    "unlabelled": self._make_loader(unl, b) if unl.size else None,
                }
        for k in _NETS:
            loaders = self.epoch_loaders[k]
            lab = loaders["labelled"]
            primary = "labelled" if lab is not None and len(lab) > 0 else "unlabelled"
            if loaders[primary] is None or len(loaders[primary]) == 0:
                engine.logger.warning(f"Epoch {epoch}: network {k} has no training step this epoch (empty loaders).")
                continue
            passes.append(CoTrainingPass(k, loaders, primary))
        for t, state in restored:  # MONAI's DataLoader re-seeds the dataset's transforms when it is built
            t.R.set_state(state)
        skip = 0 if resume is None else resume[0]
        for p in passes:  # a resumed epoch starts at its step `skip` (Ignite counts from state_dict's position)
            p.start = min(skip, len(p))
            skip -= p.start
        steps = self.co_training_steps.set_plan(passes)
        if steps == 0:
            raise RuntimeError(
                f"epoch {epoch}: no training step for either network (dataset size "
                f"{len(self.train_data_loader.dataset)}, batch_size={b}, drop_last={self.train_data_loader.drop_last})."
            )
        engine.state.epoch_length = steps

    # ------------------------------------------------------------------ two-loader loop: one step of one network
    def _inputs(self, engine: QMixTrainer, batch: Mapping | None) -> dict[str, Any] | None:
        if batch is None:
            return None

        def plain(key: str) -> torch.Tensor:  # rows of two batches are concatenated: drop MetaTensor metadata
            x = self._to_device(engine, self._batch_key(batch, key))
            return x.as_tensor() if isinstance(x, MetaTensor) else x

        y = plain(self.label_key).long().reshape(-1)
        return {
            "index": torch.as_tensor(plain(self.index_key)).reshape(-1).cpu(),
            "y": y,
            "weak": torch.cat([plain(k) for k in self.weak_keys]),
            "strong": torch.cat([plain(k) for k in self.strong_keys[: self.strong_views]]),
            "b": int(y.shape[0]),
        }

    def _separate_rows(self, engine: QMixTrainer, k: str, rows: dict[str, Any], role: str) -> torch.Tensor:
        """Groups of a loader's rows from the partition network ``k`` trains on, checked against the loader role."""
        part = self.partitions(engine)[k]
        groups = torch.as_tensor(part.groups_for(rows["index"]), dtype=torch.long).to(rows["y"].device)
        rows["post"] = torch.as_tensor(part.probs_for(rows["index"]), dtype=torch.float32).to(rows["y"].device)
        bad = (groups == MIS_H) if role == "labelled" else (groups != MIS_H)
        if bool(bad.any()):
            raise RuntimeError(
                f"epoch {engine.state.epoch}: the {role} loader of network {k} yielded sample indices "
                f"{rows['index'][bad.cpu()][:10].tolist()} of the wrong group; the dataset position of every sample "
                f"must equal its {self.index_key!r} value."
            )
        return groups

    def _targets(
        self, engine: QMixTrainer, k: str, lab: dict | None, unl: dict | None
    ) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
        """Targets (no grad): co-refinement / pseudo-labels on the labelled rows with the trained network, the
        co-guess on the unlabelled rows with both networks; the partner is in ``eval()`` (fixed BN statistics)."""
        i = _NETS.index(k)
        partner = _NETS[1 - i]
        m = len(self.weak_keys)
        pred, targets = None, []
        with torch.no_grad(), self._autocast():
            self.networks[i].train(self.weak_mode == "train")
            self.networks[1 - i].eval()
            if lab is not None:
                p = torch.softmax(self._forwards[k]["logits"](lab["weak"]).float(), 1).reshape(m, lab["b"], -1)
                targets.append(self._labelled_targets(lab["y"], lab["groups"], lab["post"], p))
                pred = p.mean(0)
            if unl is not None:
                pk = torch.softmax(self._forwards[k]["logits"](unl["weak"]).float(), 1).reshape(m, unl["b"], -1)
                pp = torch.softmax(self._forwards[partner]["logits"](unl["weak"]).float(), 1).reshape(m, unl["b"], -1)
                targets.append(self.targets.mis_h(pk, pp))
                pred = pk.mean(0) if pred is None else pred
        return pred, targets

    def _labelled_targets(
        self, labels: torch.Tensor, groups: torch.Tensor, posterior: torch.Tensor, probs: torch.Tensor
    ) -> torch.Tensor:
        """Targets of the rows with a usable label: co-refined for Correct, ``targets.mis_l`` for Mis-L (QMix;
        DivideMix has no Mis-L group, its non-Correct labelled rows get the co-refined target too)."""
        refined = self.targets.correct(labels, posterior[:, CORRECT], probs)
        if self.method != TrainingMethod.QMIX:
            return refined
        return torch.where((groups == CORRECT)[:, None], refined, self.targets.mis_l(labels, probs, posterior))

    @staticmethod
    def _publish_targets(
        engine: QMixTrainer,
        k: str,
        index: torch.Tensor,
        given: torch.Tensor,
        groups: torch.Tensor,
        target: torch.Tensor,
    ) -> None:
        """Put the rows' targets on ``engine.state.targets`` and fire ``CoTrainingEvents.TARGETS_COMPLETED``
        (read by :class:`~monai_qmix.handlers.CoTrainingDiagnosticsHandler`; nothing random is drawn)."""
        engine.state.targets = {
            "network": k,
            "index": index.reshape(-1).cpu(),
            "label": given.reshape(-1).cpu(),
            "group": groups.reshape(-1).cpu(),
            "target": target.argmax(dim=1).cpu(),
        }
        engine.fire_event(CoTrainingEvents.TARGETS_COMPLETED)

    def _row_weights(self, k: str, groups: torch.Tensor) -> torch.Tensor:
        weight = torch.ones(groups.shape[0], device=groups.device)
        for g in range(3):
            n_g = int((groups == g).sum())
            if 0 < n_g < self.min_group_size:
                weight[groups == g] = 0.0
                name = f"{GROUP_NAMES[g]}_{k.lower()}"
                self.skipped[name] = self.skipped.get(name, 0) + 1
        return weight

    def _two_loader_step(self, engine: QMixTrainer, step: Mapping[str, Any]) -> dict:
        """One optimiser step of network ``step["network"]`` on B labelled + B unlabelled samples.

        Phases, as in the paper's figure: separate (the rows' groups from the partner's partition) → targets (no
        grad, partner fixed) → forward of the strong views with gradient (optional MixMatch over all rows) →
        losses (``L_x`` mean over the labelled rows, ``λ_m·L_u`` mean over the unlabelled rows and classes, +
        λ_c·contrastive on the labelled rows' projections + λ_reg·prior over all rows) → backward and step of
        this network only.
        """
        k = step["network"]
        lab, unl = self._inputs(engine, step["labelled"]), self._inputs(engine, step["unlabelled"])
        present = self._separate_step(engine, k, lab, unl)
        targets, groups, weight = self._step_targets(engine, k, lab, unl, present)
        out, batch = self._forward_strong(engine, k, present, targets, groups, weight)
        total = self._step_losses(engine, k, step, out, batch, lab, weight)
        self._backward_and_step(engine, [total], [self.optimizers[_NETS.index(k)]])
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output

    def _separate_step(
        self, engine: QMixTrainer, k: str, lab: dict[str, Any] | None, unl: dict[str, Any] | None
    ) -> list[dict[str, Any]]:
        """1. Separate: the groups of the step's rows in the partner's partition; returns the loaders' rows."""
        for rows, role in ((lab, "labelled"), (unl, "unlabelled")):
            if rows is not None:
                rows["groups"] = self._separate_rows(engine, k, rows, role)
        present = [r for r in (lab, unl) if r is not None]
        main = present[0]
        engine.state.output = {Keys.IMAGE: main["strong"][: main["b"]], Keys.LABEL: main["y"]}
        return present

    def _step_targets(
        self,
        engine: QMixTrainer,
        k: str,
        lab: dict[str, Any] | None,
        unl: dict[str, Any] | None,
        present: list[dict[str, Any]],
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """2. Targets (co-refined, co-guessed, pseudo-labels; published), the rows' groups and weights."""
        pred, targets = self._targets(engine, k, lab, unl)
        engine.state.output[Keys.PRED] = pred
        groups = torch.cat([r["groups"] for r in present])
        index, given = torch.cat([r["index"] for r in present]), torch.cat([r["y"] for r in present])
        self._publish_targets(engine, k, index, given, groups, torch.cat(targets))
        return targets, groups, self._row_weights(k, groups)

    def _forward_strong(
        self,
        engine: QMixTrainer,
        k: str,
        present: list[dict[str, Any]],
        targets: list[torch.Tensor],
        groups: torch.Tensor,
        weight: torch.Tensor,
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """3. The strong views of all rows through network ``k`` with gradient (labelled views, then unlabelled),
        with the per-view targets, groups and weights (MixMatch-interpolated when ``mixmatch``)."""
        i, v = _NETS.index(k), self.strong_views
        net, opt = self.networks[i], self.optimizers[i]
        net.train()
        opt.zero_grad(set_to_none=engine.optim_set_to_none)
        x = torch.cat([r["strong"] for r in present])
        t = torch.cat([tg.repeat(v, 1) for tg in targets])
        sizes = [r["b"] for r in present]
        gg = torch.cat([g.repeat(v) for g in torch.split(groups, sizes)])
        ww = torch.cat([w.repeat(v) for w in torch.split(weight, sizes)])
        x, t = self.targets.mix(x, t, self.mix_generator, self.mixmatch)
        with self._autocast():
            out = (
                self._forwards[k]["all"](x, with_projection=True)
                if self.lambda_c > 0
                else {"logits": self._forwards[k]["logits"](x)}
            )
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        return out, {"targets": t, "groups": gg, "weights": ww}

    def _step_losses(
        self,
        engine: QMixTrainer,
        k: str,
        step: Mapping[str, Any],
        out: dict[str, torch.Tensor],
        batch: dict[str, torch.Tensor],
        lab: dict[str, Any] | None,
        weight: torch.Tensor,
    ) -> torch.Tensor:
        """4. Losses: ``sample_loss`` + λ_c · ``contrastive_loss`` (labelled rows) + λ_reg · prior; logged terms."""
        epoch, s, v = int(engine.state.epoch), k.lower(), self.strong_views

        def contrast() -> tuple[torch.Tensor, ...] | None:
            sel = (weight[: lab["b"]] > 0) if lab is not None else None
            if sel is None or int(sel.sum()) < 2:
                return None
            proj = out["projection"].float()[: v * lab["b"]].reshape(v, lab["b"], -1).transpose(0, 1)
            return proj[sel], lab["y"][sel], lab["groups"][sel] == MIS_L

        self.sample_loss.lambda_m = self._lambda_m_at(epoch, step)
        total, terms, terms_log = self._network_loss(engine, k, out["logits"].float(), batch, contrast)
        o = engine.state.output
        o[Keys.LOSS] = total.detach()
        self._log_terms(o, s, total, terms, terms_log, ("lx", "lu"))
        o["lambda_m"] = torch.tensor(self.sample_loss.lambda_m)
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        return total

    def _network_loss(
        self,
        engine: QMixTrainer,
        k: str,
        logits: torch.Tensor,
        batch: Mapping[str, torch.Tensor],
        contrast: Callable[[], tuple[torch.Tensor, ...] | None],
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Network ``k``'s loss: ``sample_loss`` + λ_c · ``contrastive_loss(*contrast())`` (skipped and counted
        when ``contrast()`` is ``None``: fewer than 2 rows) + λ_reg · prior; checked finite.

        Returns:
            the total, the terms (``ssl``, ``con``, ``reg``, ``total``) and the sample loss's ``last_terms``.
        """
        ssl = self.sample_loss(
            logits, batch["targets"], batch["groups"], epoch=engine.state.epoch, weight=batch["weights"]
        )
        terms_log = dict(self.sample_loss.last_terms)
        terms = {"ssl": ssl}
        total = ssl
        if self.lambda_c > 0:
            rows = contrast()
            if rows is not None:
                terms["con"] = self.contrastive_loss(*rows)
                total = total + self.lambda_c * terms["con"]
            else:
                s = f"con_{k.lower()}"
                self.skipped[s] = self.skipped.get(s, 0) + 1
                terms["con"] = logits.new_zeros(())
        if self.prior_loss is not None and self.lambda_reg > 0:
            terms["reg"] = self.prior_loss(logits)
            total = total + self.lambda_reg * terms["reg"]
        terms["total"] = total
        self._check_finite(engine, terms, k)
        return total, terms, terms_log

    @staticmethod
    def _log_terms(
        o: dict[str, Any],
        s: str,
        total: torch.Tensor,
        terms: Mapping[str, torch.Tensor],
        terms_log: Mapping[str, torch.Tensor],
        extra: Sequence[str] = (),
    ) -> None:
        """Network ``s``'s loss terms into ``engine.state.output`` (``loss_a``, ``correct_a``, ..., ``omega``)."""
        o[f"loss_{s}"] = total.detach()
        for name in ("correct", "mis_h", "mis_l", "n_correct", "n_mis_h", "n_mis_l", *extra):
            o[f"{name}_{s}"] = terms_log[name]
        zero = total.new_zeros(())
        o[f"con_{s}"] = terms.get("con", zero).detach()
        o[f"reg_{s}"] = terms.get("reg", zero).detach()
        o["omega"] = terms_log["omega"]

    def _lambda_m_at(self, epoch: int, step: Mapping[str, Any]) -> float:
        """λ_m at a step: DivideMix's ramp ``clip((e + i/n − T_w)/ramp)`` on the fractional 0-based epoch."""
        if self.lambda_m_rampup <= 0:
            return self.lambda_m
        current = (epoch - 1) + int(step["step"]) / max(int(step["steps"]), 1)
        return linear_rampup(current, self.lambda_m_rampup, start=self.warmup_epochs, max_value=self.lambda_m)
