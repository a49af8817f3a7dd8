# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""QMix's sample-reweighing loss: the quality-aware SSL objective over the Correct / Mis-H / Mis-L groups."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from monai.utils import LossReduction, StrEnum
from torch.nn.modules.loss import _Loss

from ._utils import as_class_indices, as_float32, as_soft_target, check_non_negative, check_option
from .schedules import OmegaSchedule

__all__ = ["MisHLossType", "GroupNormalization", "SampleReweighingLoss", "GROUP_CORRECT", "GROUP_MIS_H", "GROUP_MIS_L"]

#: Group codes shared by the whole package (separation columns use the same order).
GROUP_CORRECT, GROUP_MIS_H, GROUP_MIS_L = 0, 1, 2
_GROUP_NAMES = ("correct", "mis_h", "mis_l")


class MisHLossType(StrEnum):
    """Loss of the Mis-H (unlabeled) group.

    - ``mse``: squared error on probabilities summed over the classes (the method notes' Eq. 8);
    - ``mse_mean``: squared error averaged over the classes, i.e. ``mse / C`` (DivideMix's
      ``torch.mean((probs_u - targets_u)**2)``);
    - ``ce``: soft cross-entropy.
    """

    MSE = "mse"
    MSE_MEAN = "mse_mean"
    CE = "ce"


class GroupNormalization(StrEnum):
    """Denominator of each group term of :class:`SampleReweighingLoss` (``reduction="mean"``).

    - ``group``: the number of samples of that group in the batch (per-group means of a batch);
    - ``batch``: the batch size, so every sample weighs ``coef_g / B`` whatever the group sizes of the batch;
    - ``loader``: the rows of each loader of DivideMix's two-loader batch: Correct and Mis-L rows (the labelled
      loader) are averaged together over their joint count, ``L_x = Σ_{i∈C∪L} c_i·w_i·ℓ_i / |C ∪ L|`` with
      ``c_i`` = 1 for Correct and Ω(t) for Mis-L, and Mis-H rows (the unlabelled loader) over their own count,
      ``L_u = Σ_{i∈H} w_i·ℓ_i / |H|``; the result is ``L_x + λ_m·L_u``.
    """

    GROUP = "group"
    BATCH = "batch"
    LOADER = "loader"


class SampleReweighingLoss(_Loss):
    """Sample-reweighing loss of QMix: ``L_SSL = L_C + Ω(t)·L_M-L + λ_m·L_M-H``.

    From Hou et al., "QMix: Quality-aware Learning with Mixed Noise for Robust Retinal Disease Diagnosis",
    IEEE TMI 2025 (arXiv:2404.05169). On strongly augmented predictions of a batch whose samples carry a group id
    (0 correct, 1 mis_h, 2 mis_l) and a soft target:

    - Correct: ``L_C = mean_{i∈C} −Σ_c ȳ_ic log p_ic`` (cross-entropy with the co-refined target);
    - Mis-H: ``L_M-H = mean_{i∈H} ‖ȳ_i − p_i‖²`` (squared error summed over classes, as in the method notes'
      Eq. 8; DivideMix's ``torch.mean`` additionally divides by C) or the soft cross-entropy (``mis_h_loss="ce"``);
    - Mis-L: ``L_M-L = mean_{i∈L} −Σ_c ȳ_ic log p_ic`` (pseudo-label target), weighted by Ω(t).

    Each group term is a mean over the samples of that group in the batch, and a group absent from the batch
    contributes exactly 0. Optional per-sample ``weight`` multiplies each sample's term; the group mean still
    divides by the group's *count*, so weights act as multipliers (e.g. Ω(t)·P(Mis-L)_i).

    Reductions:

    - ``"mean"`` (default): the formula above (per-group means combined with 1, Ω(t), λ_m). With
      ``normalization="group"`` (default) each group is normalised by its own size in the batch, so this is **not**
      ``none.mean()``; with ``normalization="batch"`` every group sum is divided by the batch size ``B`` and the
      result equals ``none.mean()``.
    - ``"none"``: ``(B,)`` per-sample weighted terms ``coef_g(i) · weight_i · ℓ_i`` with ``coef`` = 1, λ_m, Ω(t)
      for correct, mis_h, mis_l;
    - ``"sum"``: the sum of the ``"none"`` vector.

    After every call, :attr:`last_terms` holds detached tensors for logging: the unweighted group means
    ``correct``, ``mis_h``, ``mis_l``, the counts ``n_correct``, ``n_mis_h``, ``n_mis_l``, the ``omega`` used, the
    normalised labelled term ``lx`` (Correct + Ω·Mis-L) and unlabelled term ``lu`` (Mis-H, before λ_m) of the
    chosen ``normalization`` (so that ``total = lx + λ_m·lu`` for ``"mean"``) and the ``total`` returned (for
    ``"mean"``; the reduced value otherwise).

    Args:
        lambda_m: weight λ_m >= 0 of the Mis-H term (QMix: 1, unverified).
        mis_h_loss: ``"mse"`` (default), ``"mse_mean"`` or ``"ce"`` (see :class:`MisHLossType`).
        omega: Ω as a constant float >= 0 or an :class:`~monai_qmix.losses.schedules.OmegaSchedule` evaluated at the
            ``epoch`` given to :meth:`forward`. The default 0.3 is the modal Ω(0) of the official tables.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (see above).
        normalization: denominator of the group terms for ``"mean"``: ``"group"`` (its count in the batch, the
            formula read per batch), ``"batch"`` (the batch size) or ``"loader"`` (the labelled rows C ∪ L and the
            unlabelled rows H each averaged over their own count, as DivideMix's ``Lx`` and ``Lu``; the default of
            :class:`~monai_qmix.engines.QMixTrainer`'s two-loader loop). Use ``"batch"`` when the groups share one
            loader (as in :class:`~monai_qmix.engines.QMixTrainer`): with ``"group"`` a group holding 1 of B samples
            in a batch weighs as much as one holding B − 1, which gives the few samples of a small group a weight
            up to B times larger and lets an unbalanced partition (e.g. Correct holding only some classes)
            dominate training. ``"batch"`` gives every sample the weight ``coef_g / B``, which is what DivideMix's
            separate labelled / unlabelled loaders (each batch of size B, averaged) amount to.

    Raises:
        ValueError: for a negative ``lambda_m`` or ``omega``, an unknown ``mis_h_loss``, ``reduction`` or
            ``normalization``.

    Example:
        >>> loss = SampleReweighingLoss(lambda_m=1.0, omega=0.3)
        >>> logits = torch.zeros(3, 2)
        >>> targets = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
        >>> round(loss(logits, targets, groups=torch.tensor([0, 1, 2])).item(), 4)  # ln2 + 0.3 ln2 + 0
        0.9011
        >>> [k for k in ("correct", "mis_h", "mis_l") if k in loss.last_terms]
        ['correct', 'mis_h', 'mis_l']
    """

    def __init__(
        self,
        lambda_m: float = 1.0,
        mis_h_loss: MisHLossType | str = MisHLossType.MSE,
        omega: float | OmegaSchedule = 0.3,
        reduction: LossReduction | str = LossReduction.MEAN,
        normalization: GroupNormalization | str = GroupNormalization.GROUP,
    ) -> None:
        super().__init__(reduction=LossReduction(reduction).value)
        self.normalization = GroupNormalization(
            check_option("normalization", normalization, [m.value for m in GroupNormalization])
        )
        self.lambda_m = check_non_negative("lambda_m", lambda_m)
        self.mis_h_loss = MisHLossType(check_option("mis_h_loss", mis_h_loss, [m.value for m in MisHLossType]))
        if isinstance(omega, OmegaSchedule):
            self.omega: float | OmegaSchedule = omega
        else:
            self.omega = check_non_negative("omega", omega)
        self.last_terms: dict[str, torch.Tensor] = {}

    #: ``mis_h_loss`` and ``normalization`` of :meth:`for_loop` per co-training loop of
    #: :class:`~monai_qmix.engines.QMixTrainer`: DivideMix's ``torch.mean`` over the two loaders' rows, or the former
    #: single loop's sum over classes with every group divided by the batch size.
    LOOP_DEFAULTS: dict[str, dict[str, str]] = {
        "two_loader": {"mis_h_loss": "mse_mean", "normalization": "loader"},
        "single": {"mis_h_loss": "mse", "normalization": "batch"},
    }

    @classmethod
    def for_loop(cls, loop: str = "two_loader", **kwargs: Any) -> SampleReweighingLoss:
        """The loss with the ``mis_h_loss`` / ``normalization`` defaults of a :class:`QMixTrainer` loop.

        Args:
            loop: ``"two_loader"`` (the trainer's default: ``mse_mean``, ``loader``) or ``"single"`` (``mse``,
                ``batch``).
            kwargs: any other argument of the constructor (``omega``, ``lambda_m``, ...); an explicit
                ``mis_h_loss`` or ``normalization`` overrides the loop's.

        Raises:
            ValueError: for an unknown ``loop``.
        """
        loop = str(loop)
        if loop not in cls.LOOP_DEFAULTS:
            raise ValueError(f"loop: expected one of {sorted(cls.LOOP_DEFAULTS)}, got {loop!r}.")
        return cls(**{**cls.LOOP_DEFAULTS[loop], **kwargs})

    def resolve_omega(self, epoch: float | None = None, omega: float | None = None) -> float:
        """Ω used by :meth:`forward`: the explicit ``omega``, else the schedule at ``epoch``, else the constant.

        Raises:
            ValueError: when both ``epoch`` and ``omega`` are given, when a schedule needs an ``epoch`` that is
                missing, or for a negative ``omega``.
        """
        if omega is not None:
            if epoch is not None:
                raise ValueError(f"give either epoch ({epoch!r}) or omega ({omega!r}), not both.")
            return check_non_negative("omega", float(omega))
        if isinstance(self.omega, OmegaSchedule):
            if epoch is None:
                raise ValueError(f"epoch is required when omega is a schedule ({self.omega!r}), got None.")
            return self.omega(epoch)
        return self.omega

    def forward(  # type: ignore[override]
        self,
        input: torch.Tensor,
        target: torch.Tensor,
        groups: Any,
        epoch: float | None = None,
        omega: float | None = None,
        weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Compute the loss.

        Args:
            input: ``(B, C)`` logits of the strongly augmented view.
            target: ``(B, C)`` soft targets per sample (co-refined / co-guessed / pseudo-label) or ``(B,)`` class
                indices (one-hot targets).
            groups: ``(B,)`` group ids, 0 correct, 1 mis_h, 2 mis_l.
            epoch: epoch for a scheduled Ω (1-based, see :mod:`monai_qmix.losses.schedules`).
            omega: an explicit Ω value (overrides the constructor's ``omega``; not together with ``epoch``).
            weight: optional ``(B,)`` non-negative per-sample weights.

        Returns:
            A scalar for ``"mean"`` / ``"sum"``, ``(B,)`` for ``"none"``.

        Raises:
            ValueError: naming ``input``, ``target``, ``groups`` or ``weight`` for bad shapes or values.
        """
        if not isinstance(input, torch.Tensor) or input.ndim != 2:
            shape = tuple(input.shape) if isinstance(input, torch.Tensor) else type(input).__name__
            raise ValueError(f"input must be a (B, C) tensor of logits, got {shape}.")
        logits = as_float32(input)
        b, c = logits.shape
        y = as_float32(as_soft_target("target", target, b, c, like=logits))
        if y.dtype != logits.dtype:
            y = y.to(logits.dtype)
        g = as_class_indices("groups", groups, b, device=logits.device)
        if g.numel() and int(g.max()) > GROUP_MIS_L:
            raise ValueError(f"groups must hold 0 (correct), 1 (mis_h) or 2 (mis_l), got {int(g.max())}.")
        if weight is not None:
            w = as_float32(torch.as_tensor(weight, device=logits.device)).to(logits.dtype)
            if w.shape != (b,):
                raise ValueError(f"weight must have shape ({b},) (one weight per sample), got {tuple(w.shape)}.")
            if w.numel() and bool((w < 0).any()):
                raise ValueError("weight must be non-negative.")
        else:
            w = torch.ones(b, dtype=logits.dtype, device=logits.device)
        om = self.resolve_omega(epoch, omega)

        log_p = F.log_softmax(logits, dim=1)
        ce = -(y * log_p).sum(dim=1)
        if self.mis_h_loss == MisHLossType.MSE:
            mis_h_term = ((log_p.exp() - y) ** 2).sum(dim=1)
        elif self.mis_h_loss == MisHLossType.MSE_MEAN:
            mis_h_term = ((log_p.exp() - y) ** 2).mean(dim=1)
        else:
            mis_h_term = ce
        per_sample = torch.where(g == GROUP_MIS_H, mis_h_term, ce) * w  # (B,) unweighted by group coefficients

        coef = logits.new_tensor([1.0, self.lambda_m, om])
        masks = [g == k for k in range(3)]
        counts = torch.stack([m.sum() for m in masks]).to(logits.dtype)
        sums = torch.stack([torch.where(m, per_sample, per_sample.new_zeros(())).sum() for m in masks])
        means = sums / counts.clamp_min(1.0)  # exactly 0 for an absent group (0 / 1)

        if self.normalization == GroupNormalization.GROUP:
            terms_norm = means
        elif self.normalization == GroupNormalization.BATCH:
            terms_norm = sums / max(b, 1)
        else:  # LOADER: Correct and Mis-L share the labelled rows' denominator, Mis-H has its own
            n_lab = (counts[GROUP_CORRECT] + counts[GROUP_MIS_L]).clamp_min(1.0)
            terms_norm = torch.stack([sums[GROUP_CORRECT] / n_lab, means[GROUP_MIS_H], sums[GROUP_MIS_L] / n_lab])
        lx = terms_norm[GROUP_CORRECT] + coef[GROUP_MIS_L] * terms_norm[GROUP_MIS_L]
        lu = terms_norm[GROUP_MIS_H]
        if self.reduction == LossReduction.MEAN.value:
            out = (coef * terms_norm).sum()
        elif self.reduction == LossReduction.SUM.value:
            out = (coef[g] * per_sample).sum()
        elif self.reduction == LossReduction.NONE.value:
            out = coef[g] * per_sample
        else:
            raise ValueError(f'Unsupported reduction: {self.reduction}, available options are ["mean", "sum", "none"].')

        terms = {name: means[k].detach() for k, name in enumerate(_GROUP_NAMES)}
        terms.update({f"n_{name}": counts[k].detach() for k, name in enumerate(_GROUP_NAMES)})
        terms["omega"] = coef[2].detach()
        terms["lx"], terms["lu"] = lx.detach(), lu.detach()
        terms["total"] = out.detach() if out.ndim == 0 else out.detach().sum()
        self.last_terms = terms
        return out
