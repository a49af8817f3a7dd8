# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""QMix sample separation: a Gaussian mixture on (normalised loss, normalised uncertainty).

QMix (Hou et al., IEEE TMI 2025, arXiv:2404.05169) splits the training set every epoch after warm-up with a
"joint uncertainty-loss criterion": a 3-component 2-D GMM on min-max normalised per-sample loss and uncertainty
whose components are mapped to Correct, Mis-H (mislabelled, high quality) and Mis-L (low quality). GMM settings
``max_iter=10, tol=1e-2, reg_covar=5e-4`` are those of the official README; the number of EM initialisations
(``n_init``, not given there) defaults to 5 and the best-likelihood fit is kept (see :func:`separate`).
``mode="dividemix"`` is the
DivideMix (Li et al., ICLR 2020) baseline: a 2-component 1-D GMM on the loss with a ``p_threshold``.

Degenerate input never raises; it is handled with a warning and recorded in ``SeparationResult.fallback``:

* non-finite loss/uncertainty values are replaced by the largest finite value of that score (the sample is
  treated as the worst observed; 0 when nothing is finite);
* a constant score normalises to 0 (``max == min`` guard);
* fewer samples, or fewer distinct score pairs, than components, or a GMM that fails to fit: every sample of
  that fit is assigned to Correct with probability 1 (its given label is kept — the least destructive choice);
* per-class mode: a class with fewer than ``min_class_size`` samples is scored with the GMM fitted on all
  samples instead of its own.

Each fit runs with one BLAS / OpenMP thread (:data:`GMM_THREADS`): a 2-D mixture of a few thousand points is far
too small to gain from threads, and scikit-learn's k-means initialisation with one OpenMP thread per core stalls
whenever the cores are busy (the training process, DataLoader workers, other jobs): on a loaded 2-core machine a
192-sample fit took 0.19–0.29 s with 2 threads against 0.014–0.022 s with one. One thread also makes the fit
independent of the machine's core count.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from monai.utils import look_up_option
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

from .result import CORRECT, MIS_H, MIS_L, SeparationResult

__all__ = [
    "separate",
    "qmix_mapping",
    "loss_first_mapping",
    "dividemix_mapping",
    "minmax_normalise",
    "SEPARATION_MODES",
    "MAPPING_RULES",
]

SEPARATION_MODES = ("qmix", "dividemix")
#: with ``n_init > 1`` and more samples than this, the best start is chosen on a seeded subsample of this size and
#: refined once on all samples (keeps a 100k-sample separation near the cost of a single start)
INIT_SUBSAMPLE = 2_000
#: BLAS / OpenMP threads of each GMM fit (see the module docstring)
GMM_THREADS = 1
MappingRule = Callable[[np.ndarray], Sequence[int]]


def qmix_mapping(means: np.ndarray) -> np.ndarray:
    """Default QMix component → group rule.

    Mis-L is the component with the largest uncertainty mean; of the remaining components the one with the
    lowest loss mean is Correct and the others are Mis-H (with 3 components: exactly one of each). This rule is
    the one of the third-party re-implementation and matches the paper's framework figure (Mis-L has the highest
    uncertainty, Correct the lowest loss); the paper's own rule was not found.

    Args:
        means: (K, 2) component means, columns ``(loss, uncertainty)``, K >= 3.

    Returns:
        (K,) int64 group codes.
    """
    return _pick_two(means, (MIS_L, 1, np.argmax), (CORRECT, 0, np.argmin))


def loss_first_mapping(means: np.ndarray) -> np.ndarray:
    """Alternative QMix component → group rule (``mapping_rule="loss_first"``).

    Correct is the component with the lowest loss mean; of the remaining components the one with the largest
    uncertainty mean is Mis-L and the others are Mis-H. It differs from :func:`qmix_mapping` only when the
    highest-uncertainty component is also the lowest-loss one, or when a hard-but-correct component (low loss,
    high uncertainty) out-ranks the degraded images on uncertainty: :func:`qmix_mapping` then sends those correct
    samples to Mis-L, this rule keeps them Correct. Neither rule is confirmed by the paper (method doc, §4.2 item 6).

    Args:
        means: (K, 2) component means, columns ``(loss, uncertainty)``, K >= 3.

    Returns:
        (K,) int64 group codes.
    """
    return _pick_two(means, (CORRECT, 0, np.argmin), (MIS_L, 1, np.argmax))


def _pick_two(means: np.ndarray, first: tuple, second: tuple) -> np.ndarray:
    """Mis-H everywhere, then ``first = (code, column, argmin|argmax)`` picks one component by its mean in that
    column, and ``second`` picks one of the remaining components the same way."""
    means = np.asarray(means)
    out = np.full(means.shape[0], MIS_H, dtype=np.int64)
    rest = list(range(means.shape[0]))
    for code, column, pick in (first, second):
        chosen = rest[int(pick(means[rest, column]))]
        out[chosen] = code
        rest.remove(chosen)
    return out


def dividemix_mapping(means: np.ndarray) -> np.ndarray:
    """DivideMix rule: the lowest-loss component is Correct ("clean"), every other one Mis-H ("noisy").

    Args:
        means: (K, D) component means, column 0 is the loss.

    Returns:
        (K,) int64 group codes (0 or 1).
    """
    means = np.asarray(means)
    out = np.full(means.shape[0], MIS_H, dtype=np.int64)
    out[int(np.argmin(means[:, 0]))] = CORRECT
    return out


#: named ``mapping_rule`` values of :func:`separate` (``"qmix"`` mode)
MAPPING_RULES: dict[str, MappingRule] = {"uncertainty_first": qmix_mapping, "loss_first": loss_first_mapping}


def minmax_normalise(x: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1]; a constant input maps to zeros (``max == min`` guard)."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return x.copy()
    lo, hi = float(x.min()), float(x.max())
    if not hi > lo:
        return np.zeros_like(x)
    return (x - lo) / (hi - lo)


def _as_1d(x: Any, name: str, dtype: Any = np.float64) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=dtype)
    if arr.ndim > 1 and sum(s > 1 for s in arr.shape) <= 1:  # (N, 1) or (1, N)
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}.")
    return arr


def _replace_non_finite(x: np.ndarray) -> tuple[np.ndarray, int]:
    bad = ~np.isfinite(x)
    n_bad = int(bad.sum())
    if n_bad == 0:
        return x, 0
    x = x.copy()
    finite = x[~bad]
    x[bad] = float(finite.max()) if finite.size else 0.0
    return x, n_bad


def _has_distinct(x: np.ndarray, k: int) -> bool:
    """Whether ``x`` (n, D) holds at least ``k`` distinct rows (cheap: per column first, rows only if needed)."""
    if any(np.unique(x[:, d]).shape[0] >= k for d in range(x.shape[1])):
        return True
    return np.unique(x, axis=0).shape[0] >= k


class _Degenerate(Exception):
    """Raised inside a fit when the data cannot support a GMM with the requested number of components."""


def _fit(
    x: np.ndarray,
    n_components: int,
    max_iter: int,
    tol: float,
    reg_covar: float,
    seed: int,
    n_init: int,
    rule: MappingRule,
    allowed: tuple[int, ...],
    max_fit_samples: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit one GMM on ``x`` (n, D); return group probabilities (n, 3), means (K, D), mapping (K,)."""
    n = x.shape[0]
    if n < n_components:
        raise _Degenerate(f"{n} samples < {n_components} components")
    if not _has_distinct(x, n_components):
        raise _Degenerate(f"fewer distinct score values than {n_components} components")
    common = {"n_components": n_components, "max_iter": max_iter, "tol": tol, "reg_covar": reg_covar}
    with warnings.catch_warnings():
        # max_iter=10 (official setting) routinely stops before tol is met; that is expected, not an error
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            x_fit = x
            if max_fit_samples is not None and n > max_fit_samples:
                x_fit = x[np.sort(np.random.default_rng(seed).choice(n, size=max_fit_samples, replace=False))]
            if n_init > 1 and x_fit.shape[0] > INIT_SUBSAMPLE:
                # choose the best of the n_init starts on a seeded subsample, then refine it once on all samples
                sub = np.sort(np.random.default_rng([seed, 1]).choice(x_fit.shape[0], INIT_SUBSAMPLE, replace=False))
                probe = GaussianMixture(**common, random_state=seed, n_init=n_init).fit(x_fit[sub])
                gmm = GaussianMixture(
                    **common,
                    random_state=seed,
                    weights_init=probe.weights_,
                    means_init=probe.means_,
                    precisions_init=probe.precisions_,
                )
            else:
                gmm = GaussianMixture(**common, random_state=seed, n_init=n_init)
            gmm.fit(x_fit)
            post = gmm.predict_proba(x)
        except (ValueError, np.linalg.LinAlgError) as e:  # ill-conditioned covariance etc.
            raise _Degenerate(f"GaussianMixture failed ({e})") from e
    means = np.asarray(gmm.means_, dtype=np.float64)
    mapping = np.asarray(rule(means.copy()), dtype=np.int64).reshape(-1)
    if mapping.shape[0] != n_components or not np.isin(mapping, allowed).all():
        raise ValueError(
            f"mapping_rule: must return {n_components} group codes from {allowed}, got {mapping.tolist()}."
        )
    probs = np.zeros((n, 3), dtype=np.float64)
    for k in range(n_components):
        probs[:, mapping[k]] += post[:, k]
    return probs, means, mapping


def separate(
    loss: Any,
    uncertainty: Any = None,
    labels: Any = None,
    indices: Any = None,
    per_class: bool = False,
    n_components: int | None = None,
    max_iter: int = 10,
    tol: float = 1e-2,
    reg_covar: float = 5e-4,
    seed: int = 0,
    n_init: int = 5,
    mode: str = "qmix",
    p_threshold: float = 0.5,
    mapping_rule: MappingRule | str | None = None,
    min_class_size: int | None = None,
    max_fit_samples: int | None = None,
) -> SeparationResult:
    """Split samples into Correct / Mis-H / Mis-L with a Gaussian mixture on their scores.

    ``mode="qmix"`` (QMix, Hou et al. TMI 2025): min-max normalise loss and uncertainty to [0, 1], fit a
    ``n_components``-component 2-D ``sklearn.mixture.GaussianMixture`` (full covariance), map components to
    groups with ``mapping_rule`` (default :func:`qmix_mapping`), sum the posteriors per group and take the argmax.
    ``mode="dividemix"`` (DivideMix baseline): 1-D GMM on the normalised loss; ``P(correct)`` is the posterior of
    the lowest-loss component and a sample is Correct iff ``P(correct) > p_threshold``, otherwise Mis-H
    (unlabelled); ``probs[:, 2] == 0``.

    Results are ordered by ascending ``indices`` (the input order does not influence the fit), so the same scores
    give the same partition on every process. Degenerate inputs are handled as described in the module docstring.

    Args:
        loss: (N,) per-sample loss (cross-entropy with the given label).
        uncertainty: (N,) per-sample uncertainty; required in ``"qmix"`` mode, ignored in ``"dividemix"`` mode.
        labels: (N,) given labels; required when ``per_class=True``, otherwise only stored.
        indices: (N,) unique sample indices; default ``0..N-1``.
        per_class: fit one GMM per given label (on the globally normalised scores) instead of one for all.
        n_components: mixture components; default 3 (``"qmix"``, must be >= 3) or 2 (``"dividemix"``, >= 2).
        max_iter: EM iterations (official: 10).
        tol: EM convergence threshold (official: 1e-2).
        reg_covar: covariance regulariser (official: 5e-4).
        seed: ``random_state`` of the GMM (deterministic fits).
        n_init: EM initialisations per fit; the fit with the best likelihood is kept (``GaussianMixture(n_init=...)``).
            Not given by the official README; 1 is scikit-learn's default and most likely the official code's. With
            ``max_iter=10`` a single k-means initialisation of the 3-component 2-D mixture often stops in a poor local
            optimum in which two components share the low losses, one of them is mapped to Mis-H and the partition
            (and ``AUC_clean``) changes with ``seed`` and with the CPU's floating-point path. Default 5: the
            best-likelihood fit is stable across seeds. Above :data:`INIT_SUBSAMPLE` samples the best start is
            chosen on a seeded subsample of that size and refined once on all samples, so a large set costs about
            one full fit plus ``n_init`` small ones.
        mode: ``"qmix"`` or ``"dividemix"``.
        p_threshold: ``"dividemix"`` only: the clean-probability threshold (DivideMix default 0.5).
        mapping_rule: callable ``means (K, D) -> K group codes`` replacing the default rule; codes in {0, 1, 2}
            (``"qmix"``) or {0, 1} (``"dividemix"``). ``"qmix"`` mode also takes a name of :data:`MAPPING_RULES`:
            ``"uncertainty_first"`` (:func:`qmix_mapping`, the default) or ``"loss_first"``
            (:func:`loss_first_mapping`).
        min_class_size: per-class mode: classes with fewer samples use the global fit. Default
            ``10 * n_components``.
        max_fit_samples: when set and a fit has more samples, the GMM is fitted on a seeded random subset of this
            size and the posteriors are computed for all samples (for very large sets; default: fit on all).

    Returns:
        :class:`SeparationResult`.

    Raises:
        ValueError: on inconsistent lengths, duplicate indices, an unknown ``mode``, invalid ``n_components``,
            ``p_threshold`` outside (0, 1), missing ``uncertainty``/``labels``, or a mapping rule returning
            invalid codes.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> loss = np.r_[rng.normal(0.1, 0.03, 50), rng.normal(0.8, 0.05, 50), rng.normal(0.5, 0.05, 50)]
        >>> unc = np.r_[rng.normal(0.2, 0.03, 50), rng.normal(0.2, 0.03, 50), rng.normal(0.9, 0.03, 50)]
        >>> separate(loss, unc).counts()
        {'correct': 50, 'mis_h': 50, 'mis_l': 50}
    """
    mode = look_up_option(mode, SEPARATION_MODES)
    if n_components is None:
        n_components = 3 if mode == "qmix" else 2
    min_k = 3 if mode == "qmix" else 2
    if not isinstance(n_components, (int, np.integer)) or n_components < min_k:
        raise ValueError(f"n_components: expected an int >= {min_k} for mode={mode!r}, got {n_components!r}.")
    if not 0.0 < float(p_threshold) < 1.0:
        raise ValueError(f"p_threshold: expected a value in (0, 1), got {p_threshold!r}.")
    if not isinstance(n_init, (int, np.integer)) or isinstance(n_init, bool) or n_init < 1:
        raise ValueError(f"n_init: expected a positive int (EM initialisations per GMM fit), got {n_init!r}.")
    if max_fit_samples is not None and (not isinstance(max_fit_samples, (int, np.integer)) or max_fit_samples < 1):
        raise ValueError(f"max_fit_samples: expected a positive int or None, got {max_fit_samples!r}.")
    if isinstance(mapping_rule, str):
        if mode != "qmix" or mapping_rule not in MAPPING_RULES:
            raise ValueError(
                f"mapping_rule: expected one of {sorted(MAPPING_RULES)} (mode='qmix') or a callable, got "
                f"{mapping_rule!r} with mode={mode!r}."
            )
        mapping_rule = MAPPING_RULES[mapping_rule]
    if mapping_rule is not None and not callable(mapping_rule):
        raise ValueError(f"mapping_rule: expected a callable or None, got {type(mapping_rule).__name__}.")
    rule = mapping_rule or (qmix_mapping if mode == "qmix" else dividemix_mapping)
    allowed = (CORRECT, MIS_H, MIS_L) if mode == "qmix" else (CORRECT, MIS_H)

    loss_raw = _as_1d(loss, "loss")
    n = loss_raw.shape[0]
    if uncertainty is None:
        if mode == "qmix":
            raise ValueError("uncertainty: required in mode='qmix' (the 2-D loss x uncertainty GMM), got None.")
        unc_raw = np.zeros(n, dtype=np.float64)
    else:
        unc_raw = _as_1d(uncertainty, "uncertainty")
    idx = np.arange(n, dtype=np.int64) if indices is None else _as_1d(indices, "indices", np.int64)
    lab = None if labels is None else _as_1d(labels, "labels", np.int64)
    for name, arr in (("uncertainty", unc_raw), ("indices", idx), ("labels", lab)):
        if arr is not None and arr.shape[0] != n:
            raise ValueError(f"{name}: length {arr.shape[0]} does not match the {n} losses.")
    if per_class and lab is None:
        raise ValueError("labels: required when per_class=True, got None.")
    if min_class_size is None:
        min_class_size = 10 * int(n_components)

    order = np.argsort(idx, kind="stable")
    idx, loss_raw, unc_raw = idx[order], loss_raw[order], unc_raw[order]
    lab = None if lab is None else lab[order]
    if n > 1 and (np.diff(idx) == 0).any():
        raise ValueError(f"indices: duplicate sample indices, e.g. {idx[1:][np.diff(idx) == 0][:5].tolist()}.")

    reasons: list[str] = []
    loss_f, n_bad_l = _replace_non_finite(loss_raw)
    unc_f, n_bad_u = _replace_non_finite(unc_raw)
    if n_bad_l or n_bad_u:
        reasons.append(
            f"non-finite scores replaced by the largest finite value (loss: {n_bad_l}, uncertainty: {n_bad_u})"
        )
    loss_n = minmax_normalise(loss_f)
    unc_n = minmax_normalise(unc_f)
    x = loss_n[:, None] if mode == "dividemix" else np.stack([loss_n, unc_n], axis=1)

    probs = np.zeros((n, 3), dtype=np.float64)
    means: dict[int, np.ndarray] = {}
    mapping: dict[int, np.ndarray] = {}
    fit_args = (
        int(n_components),
        int(max_iter),
        float(tol),
        float(reg_covar),
        int(seed),
        int(n_init),
        rule,
        allowed,
        max_fit_samples,
    )

    def fit_into(key: int, sel: np.ndarray, what: str) -> None:
        try:
            p, m, mp = _fit(x[sel], *fit_args)
        except _Degenerate as e:
            reasons.append(f"{what}: {e}; samples assigned to correct")
            p = np.zeros((int(sel.sum()) if sel.dtype == bool else len(sel), 3))
            p[:, CORRECT] = 1.0
            m = np.full((int(n_components), x.shape[1]), np.nan)
            mp = np.full(int(n_components), -1, dtype=np.int64)
        probs[sel] = p
        means[key], mapping[key] = m, mp

    with threadpool_limits(limits=GMM_THREADS):  # once per separation, whatever the number of fits
        if not per_class:
            fit_into(-1, np.ones(n, dtype=bool), "all samples")
        else:
            small: list[int] = []
            for c in np.unique(lab):
                sel = lab == c
                if int(sel.sum()) < min_class_size:
                    small.append(int(c))
                    continue
                fit_into(int(c), sel, f"class {int(c)}")
            if small:
                reasons.append(f"classes {small} have < {min_class_size} samples; scored with the GMM on all samples")
                full = np.ones(n, dtype=bool)
                saved = probs.copy()
                fit_into(-1, full, "all samples")
                keep = ~np.isin(lab, small)
                probs[keep] = saved[keep]

    if mode == "dividemix":
        groups = np.where(probs[:, CORRECT] > float(p_threshold), CORRECT, MIS_H).astype(np.int64)
    else:
        groups = np.argmax(probs, axis=1).astype(np.int64)

    fallback = "; ".join(reasons) if reasons else None
    if fallback is not None:
        warnings.warn(f"separate: degenerate input handled: {fallback}.", stacklevel=2)
    return SeparationResult(
        indices=idx,
        probs=probs.astype(np.float32),
        groups=groups,
        loss=loss_raw.astype(np.float32),
        uncertainty=unc_raw.astype(np.float32),
        loss_norm=loss_n.astype(np.float32),
        uncertainty_norm=unc_n.astype(np.float32),
        means=means,
        mapping=mapping,
        mode=mode,
        labels=lab,
        fallback=fallback,
    )
