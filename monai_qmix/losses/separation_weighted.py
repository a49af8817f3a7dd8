# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""A separation-weighted loss with the ``loss(pred, label)`` signature of MONAI's ``SupervisedTrainer``.

MONAI's default training step calls ``loss_function(pred, label)``: the loss never sees which samples are in the
batch, so it cannot know their Correct / Mis-H / Mis-L groups. :class:`SeparationWeightedLoss` closes that gap with
one extra call per batch, :meth:`SeparationWeightedLoss.set_batch` (the sample indices and the latest
:class:`~monai_qmix.separation.SeparationResult`), made by
:class:`~monai_qmix.handlers.SeparationLossHandler` at ``ITERATION_STARTED`` or by hand in a plain PyTorch loop.
It builds each group's target from the network's own detached prediction and applies
:class:`~monai_qmix.losses.SampleReweighingLoss`. This module does not import Ignite, the engines or the handlers.
"""

from __future__ import annotations

import warnings
from typing import Any, Protocol

import torch
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

from ._utils import as_soft_target, check_option, check_positive
from .sample_reweighing import GROUP_CORRECT, GROUP_MIS_H, GroupNormalization, MisHLossType, SampleReweighingLoss
from .schedules import OmegaSchedule
from .ssl import MisLTargetRule, co_guess, co_refine, pseudo_label

__all__ = ["SeparationWeightedLoss"]


class _Partition(Protocol):
    """What the loss needs from a separation result (e.g. :class:`~monai_qmix.separation.SeparationResult`)."""

    def groups_for(self, index: Any) -> Any: ...

    def probs_for(self, index: Any) -> Any: ...


class SeparationWeightedLoss(_Loss):
    """QMix's sample-reweighing loss for a single network trained by a standard ``loss(pred, label)`` step.

    From Hou et al., "QMix: Quality-aware Learning with Mixed Noise for Robust Retinal Disease Diagnosis",
    IEEE TMI 2025 (arXiv:2404.05169). Before each batch, :meth:`set_batch` gives the sample indices of the batch,
    the latest separation result and the epoch. :meth:`forward` then looks up each sample's group and posteriors
    ``[P(correct), P(mis_h), P(mis_l)]`` and builds its target from the network's detached softmax ``p`` on the same
    batch:

    - Correct: ``co_refine(label, P(correct), p, T)``, that is ``Sharpen(w·y + (1 − w)·p, T)``, or the given label
      when ``refine_correct=False``;
    - Mis-H (label discarded): ``Sharpen(p, T)``. This is co-guessing with a single network, so the guess comes
      from the network itself;
    - Mis-L: ``pseudo_label(label, p, posteriors, mis_l_rule, T)``.

    The result is :class:`SampleReweighingLoss` ``L_C + λ_m·L_M-H + Ω(t)·L_M-L``.

    **Single-network simplification.** QMix computes these targets from weakly augmented views of two co-trained
    networks (see :class:`~monai_qmix.engines.QMixTrainer`). A plain ``SupervisedTrainer`` has one network and one
    view, so the targets come from that network's prediction on the training view itself. There is no co-divide,
    no contrastive term and no MixMatch. Use :class:`~monai_qmix.engines.QMixTrainer` for the full method.

    **Before the first separation** (warm-up, or ``separation=None``) every sample is Correct with its given label.
    With ``normalization="batch"`` (the default here) the loss then equals ``torch.nn.CrossEntropyLoss()``.

    **Without** :meth:`set_batch` (for example when the handler was not attached), :meth:`forward` warns once per
    instance and falls back to the given labels (cross-entropy). Each :meth:`set_batch` is used by exactly one
    :meth:`forward` call, so a stale partition is never applied to the next batch.

    Attributes:
        last_groups: ``(B,)`` long tensor of the groups used by the last call (all 0 before a separation).
        num_calls: number of :meth:`forward` calls.
        num_separated_calls: number of calls that used a separation result.

    Args:
        lambda_m: weight λ_m >= 0 of the Mis-H term.
        omega: Ω as a constant float >= 0 or an :class:`~monai_qmix.losses.OmegaSchedule` evaluated at the epoch
            given to :meth:`set_batch`.
        mis_h_loss: ``"mse"`` (default) or ``"ce"``, see :class:`SampleReweighingLoss`.
        mis_l_rule: Mis-L target rule, one of :class:`~monai_qmix.losses.MisLTargetRule` (default
            ``"posterior_refine"``).
        temperature: sharpening temperature ``T > 0`` of the targets (DivideMix default 0.5).
        refine_correct: refine the Correct group's labels with the prediction (``True``) or keep them as given.
        normalization: ``"batch"`` (default: every sample weighs ``coef_g / B``) or ``"group"``, see
            :class:`~monai_qmix.losses.GroupNormalization`.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``, as :class:`SampleReweighingLoss`.

    Raises:
        ValueError: for a negative ``lambda_m`` or ``omega``, a non-positive ``temperature`` or an unknown
            ``mis_h_loss``, ``mis_l_rule``, ``normalization`` or ``reduction``.

    Example:
        >>> from monai_qmix.separation import separate
        >>> loss = SeparationWeightedLoss(omega=0.3)
        >>> logits, labels = torch.zeros(2, 5), torch.tensor([1, 3])
        >>> round(loss(logits, labels).item(), 4)  # no set_batch: warns, then cross-entropy = ln 5
        1.6094
        >>> result = separate([0.1, 0.2, 0.9, 0.15] * 10, [0.2, 0.1, 0.3, 0.9] * 10)  # scores of samples 0..39
        >>> loss.set_batch(torch.tensor([0, 3]), result, epoch=5)
        >>> loss(logits, labels).shape
        torch.Size([])
    """

    def __init__(
        self,
        lambda_m: float = 1.0,
        omega: float | OmegaSchedule = 0.3,
        mis_h_loss: MisHLossType | str = MisHLossType.MSE,
        mis_l_rule: MisLTargetRule | str = MisLTargetRule.POSTERIOR_REFINE,
        temperature: float = 0.5,
        refine_correct: bool = True,
        normalization: GroupNormalization | str = GroupNormalization.BATCH,
        reduction: LossReduction | str = LossReduction.MEAN,
    ) -> None:
        super().__init__(reduction=LossReduction(reduction).value)
        self.reweighing = SampleReweighingLoss(
            lambda_m=lambda_m, mis_h_loss=mis_h_loss, omega=omega, reduction=reduction, normalization=normalization
        )
        self.mis_l_rule = MisLTargetRule(check_option("mis_l_rule", mis_l_rule, [r.value for r in MisLTargetRule]))
        self.temperature = check_positive("temperature", temperature)
        self.refine_correct = bool(refine_correct)
        self._pending: tuple[torch.Tensor, _Partition | None, float | None] | None = None
        self._warned = False
        self.last_groups: torch.Tensor | None = None
        self.num_calls = 0
        self.num_separated_calls = 0

    @property
    def last_terms(self) -> dict[str, torch.Tensor]:
        """Detached group terms and counts of the last call (see :attr:`SampleReweighingLoss.last_terms`)."""
        return self.reweighing.last_terms

    def set_batch(self, index: Any, separation: _Partition | None = None, epoch: float | None = None) -> None:
        """Give the indices of the next batch, the separation to read their groups from, and the epoch.

        Args:
            index: ``(B,)`` stable sample indices of the batch (the datalist's ``"index"`` key), int sequence,
                numpy array or tensor.
            separation: the latest :class:`~monai_qmix.separation.SeparationResult` (anything with ``groups_for``
                and ``probs_for``); ``None`` before the first separation, when every sample is Correct.
            epoch: the current (1-based) epoch, needed when ``omega`` is an :class:`OmegaSchedule`.

        Raises:
            TypeError: when ``separation`` lacks ``groups_for`` / ``probs_for``.
            ValueError: when ``index`` is not a 1-D sequence of integers.
        """
        if separation is not None and not (
            callable(getattr(separation, "groups_for", None)) and callable(getattr(separation, "probs_for", None))
        ):
            raise TypeError(
                f"separation: expected a SeparationResult (with groups_for and probs_for) or None, "
                f"got {type(separation).__name__}."
            )
        idx = torch.as_tensor(index.detach().cpu() if isinstance(index, torch.Tensor) else index)
        if idx.ndim == 2 and idx.shape[1] == 1:
            idx = idx[:, 0]
        if idx.ndim != 1 or idx.is_floating_point() or idx.dtype == torch.bool:
            raise ValueError(f"index: expected a 1-D sequence of integer sample indices, got {index!r}.")
        self._pending = (idx.long(), separation, None if epoch is None else float(epoch))

    def _take_pending(self, batch: int) -> tuple[torch.Tensor | None, _Partition | None, float | None]:
        pending, self._pending = self._pending, None
        if pending is None:
            if not self._warned:
                warnings.warn(
                    "SeparationWeightedLoss: no set_batch() before this call, so no separation groups are known; "
                    "training with the given labels (cross-entropy). Attach "
                    "monai_qmix.handlers.SeparationLossHandler(loss) to the trainer or call set_batch() per batch.",
                    stacklevel=2,
                )
                self._warned = True
            return None, None, None
        idx, separation, epoch = pending
        if idx.numel() != batch:
            raise ValueError(
                f"index: set_batch() got {idx.numel()} sample indices but the loss got {batch} predictions; "
                "set_batch() must describe the batch of the next call."
            )
        return idx, separation, epoch

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Compute the loss of a batch.

        Args:
            input: ``(B, C)`` logits.
            target: the given labels, class indices ``(B,)`` or ``(B, 1)``, or one-hot / soft ``(B, C)``.

        Returns:
            A scalar for ``"mean"`` / ``"sum"``, ``(B,)`` for ``"none"``.

        Raises:
            ValueError: for bad shapes (naming ``input`` or ``target``) or a batch that does not match
                :meth:`set_batch`.
            KeyError: when a sample index is not part of the separation result.
        """
        if not isinstance(input, torch.Tensor) or input.ndim != 2:
            shape = tuple(input.shape) if isinstance(input, torch.Tensor) else type(input).__name__
            raise ValueError(f"input must be a (B, C) tensor of logits, got {shape}.")
        b, c = input.shape
        index, separation, epoch = self._take_pending(b)
        self.num_calls += 1
        with torch.no_grad():
            probs = torch.softmax(input.detach().float(), dim=1)
            labels = as_soft_target("target", target, b, c, like=probs)
            if separation is None:
                groups = torch.full((b,), GROUP_CORRECT, dtype=torch.long, device=input.device)
                soft = labels
            else:
                groups = torch.as_tensor(separation.groups_for(index), dtype=torch.long).to(input.device)
                post = torch.as_tensor(separation.probs_for(index), dtype=probs.dtype).to(input.device)
                correct = co_refine(labels, post[:, 0], probs, self.temperature) if self.refine_correct else labels
                guessed = co_guess(probs, probs, self.temperature)
                pseudo = pseudo_label(labels, probs, post, self.mis_l_rule, self.temperature)
                g = groups[:, None]
                soft = torch.where(g == GROUP_CORRECT, correct, torch.where(g == GROUP_MIS_H, guessed, pseudo))
                self.num_separated_calls += 1
        self.last_groups = groups.detach()
        scheduled = isinstance(self.reweighing.omega, OmegaSchedule)
        return self.reweighing(input, soft, groups, epoch=epoch if scheduled else None)
