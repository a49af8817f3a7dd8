# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""``CoTrainingTargets``: the per-group targets of QMix's semi-supervised phase as one configured object."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ._utils import check_positive
from .ssl import MisLTargetRule, co_guess, co_refine, mixup, pseudo_label

__all__ = ["CoTrainingTargets"]


class CoTrainingTargets:
    """The targets box of QMix's Fig. 1c: one rule per group, the sharpening T, and the optional MixMatch.

    - Correct → :func:`~monai_qmix.losses.co_refine` (the given label refined with the trained network's mean
      weak prediction, weighted by the partner's P(Correct));
    - Mis-L → :func:`~monai_qmix.losses.pseudo_label` with ``mis_l_rule`` (the paper's rule is not published,
      see :class:`~monai_qmix.losses.MisLTargetRule`);
    - Mis-H → :func:`~monai_qmix.losses.co_guess` with both networks' weak predictions;
    - then, when ``mixmatch``, :func:`~monai_qmix.losses.mixup` of the strong views and their targets.

    Passed to :class:`~monai_qmix.engines.QMixTrainer` as ``targets``, as MONAI's ``loss_function``.

    Args:
        sharpen_temperature: sharpening ``T`` of co-refinement, co-guessing and the Mis-L pseudo-labels (0.5, as
            DivideMix's ``--T``).
        mis_l_rule: the Mis-L target rule (default ``posterior_refine``).
        mixmatch: MixMatch interpolation of the strong views and the targets. ``None`` (default) lets the trainer
            choose by method: on for ``dividemix`` (official DivideMix), off for ``qmix`` (not published for QMix).
        mixup_alpha: ``α`` of MixMatch's ``Beta(α, α)`` (DivideMix: 4 on CIFAR, 0.5 on Clothing1M).

    Raises:
        ValueError: for a non-positive ``sharpen_temperature`` or ``mixup_alpha``, or an unknown ``mis_l_rule``,
            naming the argument and the value.

    Example:
        >>> targets = CoTrainingTargets(sharpen_temperature=0.5, mis_l_rule="label_smoothing")
        >>> targets.mis_h(torch.tensor([[0.6, 0.4]]), torch.tensor([[0.8, 0.2]])).argmax(1)
        tensor([0])
    """

    def __init__(
        self,
        sharpen_temperature: float = 0.5,
        mis_l_rule: MisLTargetRule | str = MisLTargetRule.POSTERIOR_REFINE,
        mixmatch: bool | None = None,
        mixup_alpha: float = 4.0,
    ) -> None:
        self.sharpen_temperature = check_positive("sharpen_temperature", sharpen_temperature)
        rules = [r.value for r in MisLTargetRule]
        if str(mis_l_rule) not in rules:
            raise ValueError(f"mis_l_rule must be one of {rules}, got {mis_l_rule!r}.")
        self.mis_l_rule = MisLTargetRule(str(mis_l_rule))
        if mixmatch is not None and not isinstance(mixmatch, bool):
            raise TypeError(f"mixmatch must be True, False or None (by method), got {mixmatch!r}.")
        self.mixmatch = mixmatch
        self.mixup_alpha = check_positive("mixup_alpha", mixup_alpha)

    def correct(
        self, labels: torch.Tensor, weight: torch.Tensor, probs: torch.Tensor | Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """Co-refined targets of Correct rows: ``Sharpen(w·y + (1 − w)·p̄, T)`` (see :func:`co_refine`)."""
        return co_refine(labels, weight, probs, self.sharpen_temperature)

    def mis_l(
        self, labels: torch.Tensor, probs: torch.Tensor | Sequence[torch.Tensor], posterior: torch.Tensor
    ) -> torch.Tensor:
        """Pseudo-label targets of Mis-L rows by ``mis_l_rule`` (see :func:`pseudo_label`)."""
        return pseudo_label(labels, probs, posterior, self.mis_l_rule, self.sharpen_temperature)

    def mis_h(
        self, probs_a: torch.Tensor | Sequence[torch.Tensor], probs_b: torch.Tensor | Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """Co-guessed targets of Mis-H rows from both networks (see :func:`co_guess`)."""
        return co_guess(probs_a, probs_b, self.sharpen_temperature)

    def mix(
        self, inputs: torch.Tensor, targets: torch.Tensor, generator: torch.Generator | None, enabled: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """MixMatch of ``inputs`` and ``targets`` when ``enabled`` (the trainer's resolved ``mixmatch``)."""
        if not enabled:
            return inputs, targets
        mixed_x, mixed_t, _, _ = mixup(inputs, targets, alpha=self.mixup_alpha, generator=generator)
        return mixed_x, mixed_t

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(sharpen_temperature={self.sharpen_temperature}, "
            f"mis_l_rule={self.mis_l_rule.value!r}, mixmatch={self.mixmatch}, mixup_alpha={self.mixup_alpha})"
        )
