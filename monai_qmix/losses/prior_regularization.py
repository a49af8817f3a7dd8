# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Prior regularisation KL(π ‖ mean prediction), which keeps SSL training from collapsing onto one class."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

from ._utils import as_class_indices, as_float32, check_non_negative

__all__ = ["PriorRegularizationLoss", "estimate_class_prior"]


def estimate_class_prior(labels: Any, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """Class distribution of ``labels``, optionally with additive smoothing (for ``prior="class_prior"`` use).

    Args:
        labels: integer class labels (any 1-D array-like).
        num_classes: number of classes C.
        smoothing: pseudo-count added to every class (avoids zero entries).

    Returns:
        float64 ``(C,)`` tensor summing to 1.

    Raises:
        ValueError: for an empty input without smoothing, labels outside ``[0, C)`` or bad ``num_classes``.

    Example:
        >>> estimate_class_prior([0, 0, 1, 2], num_classes=3)
        tensor([0.5000, 0.2500, 0.2500], dtype=torch.float64)
    """
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}.")
    smoothing = check_non_negative("smoothing", smoothing)
    y = torch.as_tensor(labels).reshape(-1)
    y = as_class_indices("labels", y, y.shape[0])
    if y.numel() and int(y.max()) >= num_classes:
        raise ValueError(f"labels holds class {int(y.max())} but num_classes={num_classes}.")
    counts = torch.bincount(y, minlength=int(num_classes)).double() + smoothing
    if float(counts.sum()) <= 0:
        raise ValueError("labels must not be empty when smoothing is 0.")
    return counts / counts.sum()


class PriorRegularizationLoss(_Loss):
    """Prior regularisation ``L_reg = KL(π ‖ p̄) = Σ_c π_c log(π_c / p̄_c)``, p̄ the batch-mean prediction.

    The regularisation term of QMix (Hou et al., IEEE TMI 2025, arXiv:2404.05169), as in DivideMix (Li et al.,
    ICLR 2020), which uses a uniform prior; a class prior (e.g. from :func:`estimate_class_prior`) suits the
    imbalanced DR grades. Classes with ``π_c = 0`` contribute 0. ``p̄`` is clamped at ``eps`` before the log.

    Reductions: the KL is one number per batch, because the batch mean is already inside ``p̄``. ``"none"``
    returns the ``(C,)`` per-class terms ``π_c log(π_c / p̄_c)`` (which sum to the KL); ``"mean"`` and ``"sum"`` both
    return the KL itself.

    Args:
        prior: ``None`` or ``"uniform"`` for ``π_c = 1/C``, or a sequence / tensor of C non-negative values summing
            to 1.
        softmax: ``True`` if :meth:`forward` receives logits, ``False`` for probabilities.
        eps: clamp of ``p̄`` before the log.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (see above).

    Raises:
        ValueError: naming ``prior`` for a negative, non-finite, non-1-D or not normalised prior, or ``eps <= 0``.

    Example:
        >>> loss = PriorRegularizationLoss()  # uniform prior
        >>> loss(torch.zeros(4, 3)).item()  # mean prediction is uniform
        0.0
    """

    def __init__(
        self,
        prior: str | Sequence[float] | torch.Tensor | None = None,
        softmax: bool = True,
        eps: float = 1e-8,
        reduction: LossReduction | str = LossReduction.MEAN,
    ) -> None:
        super().__init__(reduction=LossReduction(reduction).value)
        self.softmax = bool(softmax)
        self.eps = check_non_negative("eps", eps)
        if self.eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps!r}.")
        self.prior: torch.Tensor | None
        if prior is None or (isinstance(prior, str) and prior.lower() == "uniform"):
            self.prior = None
        elif isinstance(prior, str):
            raise ValueError(f"prior must be None, 'uniform' or a sequence of class probabilities, got {prior!r}.")
        else:
            p = torch.as_tensor(prior, dtype=torch.float64)
            if p.ndim != 1 or p.numel() < 1:
                raise ValueError(f"prior must be a 1-D sequence of class probabilities, got shape {tuple(p.shape)}.")
            if not bool(torch.isfinite(p).all()) or bool((p < 0).any()):
                raise ValueError(f"prior must hold finite non-negative values, got {p.tolist()}.")
            if abs(float(p.sum()) - 1.0) > 1e-4:
                raise ValueError(f"prior must sum to 1 (got {float(p.sum()):.6f}); normalise it first.")
            self.prior = p

    def forward(self, input: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        """Compute the loss.

        Args:
            input: ``(B, C)`` logits (``softmax=True``) or probabilities.
            target: unused; accepted so the loss fits ``loss(pred, label)`` call sites.

        Returns:
            The KL (``"mean"`` / ``"sum"``) or the ``(C,)`` per-class terms (``"none"``).

        Raises:
            ValueError: naming ``input`` for a bad shape, or ``prior`` when its length is not C.
        """
        if not isinstance(input, torch.Tensor) or input.ndim != 2 or input.shape[0] < 1:
            shape = tuple(input.shape) if isinstance(input, torch.Tensor) else type(input).__name__
            raise ValueError(f"input must be a (B, C) tensor with B >= 1, got {shape}.")
        x = as_float32(input)
        c = x.shape[1]
        probs = torch.softmax(x, dim=1) if self.softmax else x
        mean_pred = probs.mean(dim=0).clamp_min(self.eps)
        if self.prior is None:
            pi = mean_pred.new_full((c,), 1.0 / c)
        else:
            if self.prior.numel() != c:
                raise ValueError(f"prior has {self.prior.numel()} classes but input has C={c}.")
            pi = self.prior.to(device=mean_pred.device, dtype=mean_pred.dtype)
        safe_pi = torch.where(pi > 0, pi, torch.ones_like(pi))
        terms = torch.where(pi > 0, pi * (torch.log(safe_pi) - torch.log(mean_pred)), torch.zeros_like(pi))
        if self.reduction in (LossReduction.MEAN.value, LossReduction.SUM.value):
            return terms.sum()
        if self.reduction == LossReduction.NONE.value:
            return terms
        raise ValueError(f'Unsupported reduction: {self.reduction}, available options are ["mean", "sum", "none"].')
