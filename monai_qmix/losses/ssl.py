# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Target construction for QMix's quality-aware semi-supervised training (DivideMix-style helpers).

QMix (Hou et al., IEEE TMI 2025, arXiv:2404.05169) builds the targets of its three sample groups from weakly
augmented views (no gradient): Correct → *co-refinement*, Mis-H → *co-guessing*, Mis-L → *pseudo-labelling*.
The formulas follow DivideMix (Li et al., ICLR 2020), which QMix is built on. Every function here expects
**probabilities** (softmax outputs), not logits, and returns probabilities; call them under ``torch.no_grad()``.

The Mis-L pseudo-label rule is not published; :func:`pseudo_label` offers the candidate rules of the method
notes as the option ``rule`` (see :class:`MisLTargetRule`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.utils import StrEnum

from ._utils import as_float32, as_soft_target, check_non_negative, check_option, check_positive

__all__ = [
    "sharpen",
    "mean_prediction",
    "co_refine",
    "co_guess",
    "MisLTargetRule",
    "pseudo_label",
    "mixup",
    "linear_rampup",
]


def sharpen(probs: torch.Tensor, temperature: float = 0.5, dim: int = -1) -> torch.Tensor:
    """MixMatch sharpening ``Sharpen(p, T)_c = p_c^{1/T} / Σ_k p_k^{1/T}``.

    Computed in log space (``softmax(log(p) / T)``) so that tiny probabilities and small ``T`` do not underflow
    to 0/0. ``T = 1`` only renormalises; ``T → 0`` approaches the one-hot argmax.

    Args:
        probs: non-negative probabilities, classes along ``dim``.
        temperature: ``T > 0`` (DivideMix default 0.5; QMix's value is not published).
        dim: the class dimension.

    Returns:
        Sharpened probabilities, same shape as ``probs`` (float32 for half / bfloat16 input).

    Raises:
        ValueError: for a non-positive or non-finite ``temperature``.

    Example:
        >>> sharpen(torch.tensor([0.6, 0.4]), temperature=0.5)
        tensor([0.6923, 0.3077])
    """
    t = check_positive("temperature", temperature)
    p = as_float32(torch.as_tensor(probs))
    if not p.is_floating_point():
        p = p.float()
    log_p = torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))
    return torch.softmax(log_p / t, dim=dim)


def mean_prediction(probs: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """Average of the predictions of several views / networks.

    Args:
        probs: a ``(B, C)`` tensor (returned as is), a ``(M, B, C)`` tensor (averaged over ``M``) or a sequence of
            ``(B, C)`` tensors (averaged).

    Raises:
        ValueError: for other shapes or inconsistent shapes in a sequence.
    """
    if isinstance(probs, torch.Tensor):
        p = probs
    else:
        items = [as_float32(torch.as_tensor(x)) for x in probs]
        if not items:
            raise ValueError("probs must not be an empty sequence.")
        if any(x.shape != items[0].shape or x.ndim != 2 for x in items):
            raise ValueError(f"probs must be (B, C) tensors of one shape, got {[tuple(x.shape) for x in items]}.")
        p = torch.stack(items)
    p = as_float32(p)
    if p.ndim == 3:
        p = p.mean(dim=0)
    if p.ndim != 2:
        raise ValueError(f"probs must have shape (B, C) or (M, B, C), got {tuple(p.shape)}.")
    return p


def co_refine(
    labels: torch.Tensor,
    weight: torch.Tensor,
    probs: torch.Tensor | Sequence[torch.Tensor],
    temperature: float | None = 0.5,
) -> torch.Tensor:
    """Co-refinement of the Correct group's targets: ``Sharpen(w·y + (1 − w)·p̄, T)``.

    ``w`` is the GMM posterior of Correct (from the partner network's separation) and ``p̄`` the mean weak-view
    prediction of the network being trained (QMix Fig. 1c; DivideMix Eq. 3).

    Args:
        labels: given labels, class indices ``(B,)`` or one-hot / soft ``(B, C)``.
        weight: ``(B,)`` (or ``(B, 1)``) weights in [0, 1], e.g. P(Correct).
        probs: weak-view probabilities ``(B, C)``, ``(M, B, C)`` or a sequence of ``(B, C)``; averaged over views.
        temperature: sharpening ``T``; ``None`` skips sharpening.

    Returns:
        ``(B, C)`` refined targets (rows sum to 1).

    Raises:
        ValueError: for shape mismatches (naming ``labels``, ``weight`` or ``probs``) or a bad ``temperature``.

    Example:
        >>> co_refine(torch.tensor([0]), torch.tensor([0.5]), torch.tensor([[0.2, 0.8]]), temperature=None)
        tensor([[0.6000, 0.4000]])
    """
    p = mean_prediction(probs)
    b, c = p.shape
    y = as_soft_target("labels", labels, b, c, like=p)
    w = _per_sample("weight", weight, b, p)
    refined = w * y + (1.0 - w) * p
    return refined if temperature is None else sharpen(refined, temperature)


def co_guess(
    probs_a: torch.Tensor | Sequence[torch.Tensor],
    probs_b: torch.Tensor | Sequence[torch.Tensor],
    temperature: float | None = 0.5,
) -> torch.Tensor:
    """Co-guessing of the Mis-H group's targets: ``Sharpen((1/2M) Σ_m [p_A(u_m) + p_B(u_m)], T)``.

    Args:
        probs_a: weak-view probabilities of network A, ``(B, C)``, ``(M, B, C)`` or a sequence of ``(B, C)``.
        probs_b: the same for network B (same shape as ``probs_a``).
        temperature: sharpening ``T``; ``None`` skips sharpening.

    Returns:
        ``(B, C)`` guessed targets.

    Raises:
        ValueError: when the two networks' predictions differ in shape.

    Example:
        >>> co_guess(torch.tensor([[0.6, 0.4]]), torch.tensor([[0.8, 0.2]]), temperature=None)
        tensor([[0.7000, 0.3000]])
    """
    pa, pb = mean_prediction(probs_a), mean_prediction(probs_b)
    if pa.shape != pb.shape:
        raise ValueError(f"probs_a and probs_b must have the same shape, got {tuple(pa.shape)} and {tuple(pb.shape)}.")
    guessed = 0.5 * (pa + pb)
    return guessed if temperature is None else sharpen(guessed, temperature)


class MisLTargetRule(StrEnum):
    """Candidate targets for Mis-L samples (method notes §5.2; the paper's rule is not published).

    - ``posterior_refine`` (a, default): ``Sharpen(w_L·y + (1 − w_L)·p̄, T)`` with ``w_L = P(Mis-L)``;
    - ``joint_refine`` (b): ``Sharpen((w_C + w_L)·y + (1 − w_C − w_L)·p̄, T)``;
    - ``label_smoothing`` (c): ``(1 − ε)·onehot(y) + ε/C`` with ``ε = 1 − w_C`` (adaptive label smoothing, not
      sharpened since sharpening would undo the smoothing);
    - ``prediction`` (d): ``Sharpen(p̄, T)``;
    - ``label`` (e): the given label as is.
    """

    POSTERIOR_REFINE = "posterior_refine"
    JOINT_REFINE = "joint_refine"
    LABEL_SMOOTHING = "label_smoothing"
    PREDICTION = "prediction"
    LABEL = "label"


def pseudo_label(
    labels: torch.Tensor,
    probs: torch.Tensor | Sequence[torch.Tensor],
    posterior: torch.Tensor,
    rule: MisLTargetRule | str = MisLTargetRule.POSTERIOR_REFINE,
    temperature: float | None = 0.5,
) -> torch.Tensor:
    """Pseudo-label targets of the Mis-L group.

    The default ``posterior_refine`` is rule (a) of the method notes: it is DivideMix's refinement formula fed
    with exactly what the official QMix loader hands over for a Mis-L sample (``prob`` = P(Mis-L) and the full
    posterior "for adaptive label smooth eps"), so it needs no quantity the official code does not have. Note
    that it keeps more of the given label the more certainly a sample is Mis-L; Ω(t) is what limits the damage
    of those labels. See :class:`MisLTargetRule` for all rules.

    Args:
        labels: given labels, class indices ``(B,)`` or one-hot / soft ``(B, C)``.
        probs: weak-view probabilities of the network being trained: ``(B, C)``, ``(M, B, C)`` or a sequence.
        posterior: ``(B, 3)`` separation posteriors in the column order ``[correct, mis_h, mis_l]``.
        rule: one of :class:`MisLTargetRule`.
        temperature: sharpening ``T`` (``None`` skips sharpening); unused by ``label_smoothing`` and ``label``.

    Returns:
        ``(B, C)`` targets.

    Raises:
        ValueError: for an unknown ``rule`` or shape mismatches (naming the argument).

    Example:
        >>> post = torch.tensor([[0.1, 0.1, 0.8]])
        >>> pseudo_label(torch.tensor([1]), torch.tensor([[0.5, 0.5]]), post, rule="label_smoothing")
        tensor([[0.4500, 0.5500]])
    """
    rule = MisLTargetRule(check_option("rule", rule, [r.value for r in MisLTargetRule]))
    p = mean_prediction(probs)
    b, c = p.shape
    y = as_soft_target("labels", labels, b, c, like=p)
    post = as_float32(torch.as_tensor(posterior, device=p.device)).to(p.dtype)
    if post.shape != (b, 3):
        raise ValueError(
            f"posterior must have shape ({b}, 3) with columns [correct, mis_h, mis_l], got {tuple(post.shape)}."
        )
    if rule == MisLTargetRule.LABEL:
        return y
    if rule == MisLTargetRule.LABEL_SMOOTHING:
        eps = (1.0 - post[:, :1]).clamp(0.0, 1.0)
        return (1.0 - eps) * y + eps / c
    if rule == MisLTargetRule.PREDICTION:
        target = p
    else:
        w = post[:, 2:3] if rule == MisLTargetRule.POSTERIOR_REFINE else post[:, 0:1] + post[:, 2:3]
        w = w.clamp(0.0, 1.0)
        target = w * y + (1.0 - w) * p
    return target if temperature is None else sharpen(target, temperature)


def mixup(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 4.0,
    generator: torch.Generator | None = None,
    enabled: bool = True,
    lam: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, float, torch.Tensor]:
    """MixMatch interpolation (DivideMix): ``λ ~ Beta(α, α)``, ``λ' = max(λ, 1 − λ)``, mix with a shuffled batch.

    ``x' = λ'·x + (1 − λ')·x[perm]`` and the same for the targets, so every mixed sample stays closer to its own
    input (and keeps its group). Whether QMix keeps MixMatch is not published; the trainer's default is off.

    Args:
        inputs: ``(B, ...)`` batch (images or features).
        targets: ``(B, C)`` soft targets.
        alpha: Beta parameter ``α > 0`` (DivideMix: 4 on CIFAR, 0.5 on Clothing1M).
        generator: a seeded ``torch.Generator`` for the permutation and for λ (λ is drawn with a numpy generator
            seeded from it); ``None`` uses a fresh, non-deterministically seeded generator.
        enabled: ``False`` returns ``inputs`` and ``targets`` unchanged (``λ' = 1``, identity permutation).
        lam: a fixed λ in [0, 1] instead of a Beta draw (still mapped to ``max(λ, 1 − λ)``).

    Returns:
        ``(mixed_inputs, mixed_targets, lam_prime, perm)``.

    Raises:
        ValueError: for a non-positive ``alpha``, ``lam`` outside [0, 1] or a batch-size mismatch.

    Example:
        >>> x, y = torch.eye(2), torch.eye(2)
        >>> xm, ym, lam, perm = mixup(x, y, generator=torch.Generator().manual_seed(0), lam=0.25)
        >>> lam
        0.75
    """
    if targets.shape[0] != inputs.shape[0]:
        raise ValueError(f"targets must have as many rows as inputs ({inputs.shape[0]}), got {targets.shape[0]}.")
    b = inputs.shape[0]
    if not enabled:
        return inputs, targets, 1.0, torch.arange(b, device=inputs.device)
    alpha = check_positive("alpha", alpha)
    if generator is None:
        generator = torch.Generator()
        generator.seed()
    if lam is None:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
        lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    else:
        lam = check_non_negative("lam", lam)
        if lam > 1:
            raise ValueError(f"lam must be in [0, 1], got {lam!r}.")
    lam_prime = max(lam, 1.0 - lam)
    perm = torch.randperm(b, generator=generator, device=generator.device).to(inputs.device)
    mixed_x = lam_prime * inputs + (1.0 - lam_prime) * inputs[perm]
    mixed_y = lam_prime * targets + (1.0 - lam_prime) * targets[perm.to(targets.device)]
    return mixed_x, mixed_y, lam_prime, perm


def linear_rampup(current: float, rampup_length: float, start: float = 0.0, max_value: float = 1.0) -> float:
    """Linear ramp-up ``max_value · clip((current − start) / rampup_length, 0, 1)`` (DivideMix's λ_u ramp).

    Args:
        current: current epoch (or iteration, fractional allowed).
        rampup_length: length of the ramp; ``0`` gives a step at ``start``.
        start: where the ramp starts (e.g. the warm-up length).
        max_value: the value reached at ``start + rampup_length``.

    Raises:
        ValueError: for a negative ``rampup_length``.

    Example:
        >>> linear_rampup(18, rampup_length=16, start=10, max_value=25.0)
        12.5
    """
    length = check_non_negative("rampup_length", rampup_length)
    if length == 0:
        return float(max_value) if current >= start else 0.0
    return float(max_value) * float(np.clip((current - start) / length, 0.0, 1.0))


def _per_sample(name: str, weight: torch.Tensor | float, batch: int, like: torch.Tensor) -> torch.Tensor:
    """Return ``weight`` as a ``(B, 1)`` column (a scalar is broadcast)."""
    w = as_float32(torch.as_tensor(weight, device=like.device)).to(like.dtype)
    if w.ndim == 0:
        return w.expand(batch, 1)
    if w.ndim == 2 and w.shape[1] == 1:
        w = w[:, 0]
    if w.shape != (batch,):
        raise ValueError(f"{name} must have shape ({batch},) (one weight per sample), got {tuple(w.shape)}.")
    return w[:, None]
