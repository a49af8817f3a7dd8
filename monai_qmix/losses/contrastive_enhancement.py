# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""QMix's contrastive enhancement loss: supervised contrastive learning with Mis-L samples as an extra class."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from monai.utils import LossReduction, StrEnum
from torch.nn.modules.loss import _Loss

from ._utils import as_class_indices, as_float32, autocast_off, check_option, check_positive

__all__ = ["MisLContrastMode", "ContrastiveEnhancementLoss"]


class MisLContrastMode(StrEnum):
    """How Mis-L samples enter the contrastive loss.

    - ``class`` (default, method notes §6.3): all Mis-L samples share one extra class C, so they are pulled
      together and pushed away from every correct class;
    - ``negatives``: Mis-L samples are negatives only: they have no positives, so they are not anchors (with
      multi-view input the views of one Mis-L sample are still positives of each other, as in SimCLR).
    """

    CLASS = "class"
    NEGATIVES = "negatives"


class ContrastiveEnhancementLoss(_Loss):
    """Contrastive enhancement loss of QMix (supervised contrastive loss with a low-quality class).

    From Hou et al., "QMix: Quality-aware Learning with Mixed Noise for Robust Retinal Disease Diagnosis",
    IEEE TMI 2025 (arXiv:2404.05169), built on SupCon (Khosla et al., NeurIPS 2020). The projector embeddings of
    Correct and Mis-L samples are L2-normalised; a sample's extended label is its class for Correct samples and an
    extra class C for Mis-L samples (``low_quality=True``). With anchors ``I`` (all samples/views that have at least
    one positive), positives ``P(i)`` (same extended label, ``j ≠ i``) and ``A(i)`` (all ``a ≠ i``)::

        L = −(1/|I|) Σ_{i∈I} (1/|P(i)|) Σ_{p∈P(i)} log[ exp(z_i·z_p/τ) / Σ_{a∈A(i)} exp(z_i·z_a/τ) ]

    Anchors without a positive are skipped; a batch without any positive pair gives 0 (no NaN, gradient 0).
    With two views ``(B, V, D)`` every view is an anchor and the views of one sample are positives of each other.
    Only the equality of extended labels matters, so the loss is invariant to relabelling the classes.

    Args:
        temperature: τ > 0 (QMix: 0.07, unverified).
        mis_l_mode: ``"class"`` (default) or ``"negatives"``, see :class:`MisLContrastMode`.
        reduction: ``"mean"`` (mean over the anchors that have a positive), ``"sum"`` (sum over anchors) or
            ``"none"`` (per-anchor losses ``(B,)``, or ``(B, V)`` for multi-view input, 0 for skipped anchors).

    Raises:
        ValueError: for a non-positive ``temperature`` or an unknown ``mis_l_mode`` / ``reduction``.

    Example:
        >>> loss = ContrastiveEnhancementLoss(temperature=0.07)
        >>> feats = torch.nn.functional.normalize(torch.randn(8, 16), dim=1)
        >>> labels = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])
        >>> low_quality = torch.tensor([False] * 6 + [True] * 2)
        >>> loss(feats, labels, low_quality).shape
        torch.Size([])
    """

    def __init__(
        self,
        temperature: float = 0.07,
        mis_l_mode: MisLContrastMode | str = MisLContrastMode.CLASS,
        reduction: LossReduction | str = LossReduction.MEAN,
    ) -> None:
        super().__init__(reduction=LossReduction(reduction).value)
        self.temperature = check_positive("temperature", temperature)
        self.mis_l_mode = MisLContrastMode(check_option("mis_l_mode", mis_l_mode, [m.value for m in MisLContrastMode]))

    def forward(  # type: ignore[override]
        self, features: torch.Tensor, labels: Any, low_quality: Any | None = None
    ) -> torch.Tensor:
        """Compute the loss.

        Args:
            features: ``(B, D)`` or ``(B, V, D)`` projector embeddings (normalised here).
            labels: ``(B,)`` non-negative integer class labels (ignored for Mis-L samples in ``"class"`` mode).
            low_quality: ``(B,)`` booleans, ``True`` for Mis-L samples; ``None`` means all False (plain SupCon).

        Returns:
            A scalar for ``"mean"`` / ``"sum"``, ``(B,)`` or ``(B, V)`` for ``"none"``.

        Raises:
            ValueError: naming ``features``, ``labels`` or ``low_quality`` for bad shapes or values.
        """
        if not isinstance(features, torch.Tensor) or features.ndim not in (2, 3):
            shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise ValueError(f"features must be a (B, D) or (B, V, D) tensor, got {shape}.")
        if not features.is_floating_point():
            raise ValueError(f"features must be a floating point tensor, got dtype {features.dtype}.")
        feats = as_float32(features)
        multiview = feats.ndim == 3
        if not multiview:
            feats = feats[:, None]
        b, v, _ = feats.shape
        y = as_class_indices("labels", labels, b, device=feats.device)
        if low_quality is None:
            lq = torch.zeros(b, dtype=torch.bool, device=feats.device)
        else:
            lq = torch.as_tensor(low_quality, device=feats.device)
            if lq.shape != (b,):
                raise ValueError(f"low_quality must have shape ({b},) (one flag per sample), got {tuple(lq.shape)}.")
            if lq.dtype != torch.bool:
                if lq.numel() and not bool(((lq == 0) | (lq == 1)).all()):
                    raise ValueError("low_quality must hold booleans (or 0/1).")
                lq = lq.bool()
        # extended labels: the Mis-L class gets -1 (labels are validated non-negative), or a unique negative id
        if self.mis_l_mode == MisLContrastMode.CLASS:
            ext = torch.where(lq, torch.full_like(y, -1), y)
        else:
            ext = torch.where(lq, -1 - torch.arange(b, device=y.device), y)

        n = b * v
        z = F.normalize(feats.reshape(n, -1), dim=1)
        ext = ext.repeat_interleave(v)
        per_anchor = z.new_zeros(n)
        if n >= 2:
            eye = torch.eye(n, dtype=torch.bool, device=z.device)
            with autocast_off(z.device):  # a bf16/fp16 matmul divided by a small tau loses too much precision
                logits = (z @ z.t()) / self.temperature
            log_den = torch.logsumexp(logits.masked_fill(eye, float("-inf")), dim=1, keepdim=True)
            log_prob = logits - log_den
            pos = (ext[:, None] == ext[None, :]) & ~eye
            n_pos = pos.sum(dim=1)
            pos_sum = torch.where(pos, log_prob, log_prob.new_zeros(())).sum(dim=1)
            per_anchor = -pos_sum / n_pos.clamp_min(1).to(z.dtype)  # 0 for anchors without a positive
            valid = n_pos > 0
        else:
            valid = torch.zeros(n, dtype=torch.bool, device=z.device)
            per_anchor = per_anchor + 0.0 * z.sum()  # keep the graph connected

        if self.reduction == LossReduction.MEAN.value:
            return per_anchor.sum() / valid.sum().clamp_min(1).to(per_anchor.dtype)
        if self.reduction == LossReduction.SUM.value:
            return per_anchor.sum()
        if self.reduction == LossReduction.NONE.value:
            return per_anchor.reshape(b, v) if multiview else per_anchor
        raise ValueError(f'Unsupported reduction: {self.reduction}, available options are ["mean", "sum", "none"].')
