# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Synthetic label noise (the "Mis-H" group of QMix: high-quality images with wrong labels).

Two entry points share one noise model, so they produce the same labels:

* :func:`corrupt_labels` corrupts a whole label vector at once (e.g. to write the noise file of a training set);
* :class:`LabelNoise` / :class:`LabelNoised` corrupt one sample at a time inside a MONAI pipeline,
  deterministically from the sample's ``index`` so that DataLoader workers and epochs agree.

**The noise model.** A noisy label set is made in two steps:

1. *Selection*: exactly ``round(ratio * n)`` of the ``n`` candidate samples are chosen at random (not a Bernoulli
   draw per sample), so the noise ratio of a benchmark is exact. Python's :func:`round` is used (halves round to
   even: ``round(2.5) == 2``).
2. *Replacement*: every selected sample with true class ``c`` gets a new label drawn from row ``c`` of a
   replacement matrix ``R`` (shape ``(C, C)``, row-stochastic) that depends on the mode, see
   :func:`label_noise_matrix`. The expected noise transition matrix is therefore ``(1 - ratio) * I + ratio * R``.

``flipped_mask`` marks the samples whose label actually changed. It equals the selected set whenever ``R`` has a
zero diagonal (``"symmetric"``, ``"ordinal"``, ``"class_prior"`` with ``exclude_true=True``); otherwise
(``include_true=True``, the default ``"class_prior"``, a ``"transition"`` matrix with a non-zero diagonal) a
selected sample may redraw its own class and the number of flips is at most ``round(ratio * n)``.

**Randomness.** Everything comes from ``numpy.random.SeedSequence(seed)`` (the seed of
``numpy.random.default_rng(seed)``), split into two independent streams: one chooses the selected samples
(it depends only on ``seed`` and the candidate set), the other draws one uniform number per sample index (it
depends only on ``seed`` and ``N``); the new label of sample ``i`` is the inverse CDF of ``R[label_i]`` at that
sample's uniform. No global random state is used, so the result is identical for an identical seed whatever else
was called before, and the per-sample transform can reproduce it from ``(seed, index, label)`` alone.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import StrEnum, TransformBackends, convert_to_dst_type, ensure_tuple, look_up_option

__all__ = [
    "CLASS_PRIORS",
    "LabelNoiseMode",
    "label_noise_matrix",
    "resolve_class_prior",
    "select_noisy_samples",
    "corrupt_labels",
    "LabelNoise",
    "LabelNoised",
    "LabelNoiseD",
    "LabelNoiseDict",
]

#: Named class priors for the ``"class_prior"`` mode. ``"ddr"`` is the fixed distribution over DR grades 0-4 used
#: by the official QMix code for its asymmetric DDR noise (``p = [0.5, 0.05, 0.35, 0.02, 0.08]``, about the DDR
#: gradable class prior).
CLASS_PRIORS: dict[str, tuple[float, ...]] = {"ddr": (0.5, 0.05, 0.35, 0.02, 0.08)}

_SUM_ATOL = 1e-6


class LabelNoiseMode(StrEnum):
    """How a selected sample's new label is drawn (see :func:`label_noise_matrix`).

    * ``SYMMETRIC``: uniform over the other classes (``include_true=True``: over all classes).
    * ``CLASS_PRIOR`` / ``ASYMMETRIC`` (alias): from a class distribution, independently of the true class.
    * ``ORDINAL``: a neighbouring grade at most ``max_shift`` away (grader disagreement on ordinal DR grades).
    * ``TRANSITION``: from row ``c`` of a user-given row-stochastic matrix.
    """

    SYMMETRIC = "symmetric"
    CLASS_PRIOR = "class_prior"
    ASYMMETRIC = "asymmetric"
    ORDINAL = "ordinal"
    TRANSITION = "transition"


#: mode-specific keyword options accepted by each mode (anything else raises ``ValueError``).
_MODE_OPTIONS: dict[LabelNoiseMode, tuple[str, ...]] = {
    LabelNoiseMode.SYMMETRIC: ("include_true",),
    LabelNoiseMode.CLASS_PRIOR: ("prior", "exclude_true"),
    LabelNoiseMode.ORDINAL: ("max_shift",),
    LabelNoiseMode.TRANSITION: ("matrix",),
}


# ---------------------------------------------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------------------------------------------
def _check_mode(mode: str | LabelNoiseMode) -> LabelNoiseMode:
    try:
        found = look_up_option(mode, LabelNoiseMode)
    except ValueError as e:
        raise ValueError(f"mode={mode!r} is not a supported label-noise mode. {e}") from e
    return LabelNoiseMode.CLASS_PRIOR if found == LabelNoiseMode.ASYMMETRIC else LabelNoiseMode(found)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__}).")
    return int(value)


def _check_ratio(ratio: Any) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0.0 <= float(ratio) <= 1.0:
        raise ValueError(f"ratio must be a number in [0, 1], got {ratio!r}.")
    return float(ratio)


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be a bool, got {value!r} ({type(value).__name__}).")
    return bool(value)


def _as_int_array(name: str, values: Any) -> np.ndarray:
    """``values`` (list, numpy, torch) as a 1-D int64 array; integer-valued floats are accepted."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}.")
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{name} must hold integer class ids, got dtype {arr.dtype}.")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            bad = arr[~np.isfinite(arr) | (arr != np.round(arr))][:5]
            raise ValueError(f"{name} must hold integer class ids, got non-integer values {bad.tolist()}.")
    return arr.astype(np.int64)


def _check_class_ids(name: str, values: np.ndarray, num_classes: int) -> None:
    bad = (values < 0) | (values >= num_classes)
    if np.any(bad):
        shown = np.unique(values[bad])[:10].tolist()
        raise ValueError(
            f"{name} must be class ids in [0, num_classes={num_classes}), got out-of-range values {shown} "
            f"({int(bad.sum())} entries)."
        )


def _check_distribution(name: str, values: Any, num_classes: int) -> np.ndarray:
    arr = np.asarray(values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    if arr.shape != (num_classes,):
        raise ValueError(f"{name} must have length num_classes={num_classes}, got shape {arr.shape}: {values!r}.")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{name} must hold finite non-negative probabilities, got {arr.tolist()}.")
    if not math.isclose(float(arr.sum()), 1.0, rel_tol=0.0, abs_tol=_SUM_ATOL):
        raise ValueError(f"{name} must sum to 1 (within {_SUM_ATOL}), got sum {arr.sum():.8g}: {arr.tolist()}.")
    return arr


def resolve_class_prior(
    prior: Any, num_classes: int, labels: np.ndarray | None = None, name: str = "prior"
) -> np.ndarray:
    """Resolve a class prior: a named preset of :data:`CLASS_PRIORS`, ``None``/``"empirical"`` (the class
    frequencies of ``labels``; uniform when ``labels`` is empty) or an explicit probability vector.

    Args:
        prior: the prior as given by the user.
        num_classes: number of classes ``C``.
        labels: integer labels for the empirical prior (required for ``None``/``"empirical"``).
        name: the parameter name used in error messages.

    Returns:
        A float64 vector of length ``C`` summing to 1.

    Raises:
        ValueError: unknown preset, wrong length, negative entries or a sum other than 1, or an empirical prior
            without labels; the message names ``name``.
    """
    if prior is None or (isinstance(prior, str) and prior == "empirical"):
        if labels is None:
            raise ValueError(
                f"{name}={prior!r} (the empirical class distribution) needs the whole label set, which a per-sample "
                "transform does not see; pass an explicit prior (a named preset such as "
                f"{sorted(CLASS_PRIORS)} or a vector, e.g. np.bincount(labels, minlength=num_classes) / len(labels))."
            )
        if labels.size == 0:
            return np.full(num_classes, 1.0 / num_classes)
        return np.bincount(labels, minlength=num_classes).astype(np.float64) / labels.size
    if isinstance(prior, str):
        if prior not in CLASS_PRIORS:
            raise ValueError(
                f"{name}={prior!r} is not a named class prior; available presets are {sorted(CLASS_PRIORS)}, "
                "'empirical', or pass a probability vector of length num_classes."
            )
        arr = np.asarray(CLASS_PRIORS[prior], dtype=np.float64)
        if arr.shape != (num_classes,):
            raise ValueError(
                f"{name}={prior!r} has {arr.size} classes but num_classes={num_classes}; the preset does not apply."
            )
        return arr
    return _check_distribution(name, prior, num_classes)


# ---------------------------------------------------------------------------------------------------------------
# the noise model
# ---------------------------------------------------------------------------------------------------------------
def label_noise_matrix(
    mode: str | LabelNoiseMode, num_classes: int, labels: Any = None, **mode_options: Any
) -> np.ndarray:
    """The replacement matrix ``R`` of a label-noise mode: ``R[c, k]`` is the probability that a *selected* sample
    of true class ``c`` gets label ``k``.

    Modes and their options:

    * ``"symmetric"``: ``R[c, k] = 1 / (C - 1)`` for ``k != c``: every selected sample changes label.
      ``include_true=True`` gives ``R = 1 / C`` everywhere: the DivideMix / official QMix convention
      (``random.randint(0, C - 1)``), where about ``ratio * (C - 1) / C`` of the samples actually change.
    * ``"class_prior"`` (alias ``"asymmetric"``): every row is the distribution ``prior`` (a vector, a named preset
      of :data:`CLASS_PRIORS` such as ``"ddr"``, or ``None``/``"empirical"`` for the class frequencies of
      ``labels``). Like the official QMix code (``asym`` noise), a redraw may equal the true label, so a class-``c``
      sample keeps its label with probability ``prior[c]``: this is the default ``exclude_true=False``.
      ``exclude_true=True`` zeroes the diagonal and renormalises each row (then every selected sample changes).
    * ``"ordinal"``: uniform over the valid grades ``c ± 1 … c ± max_shift`` inside ``[0, C)`` (default
      ``max_shift=1``). Shifts that would leave the range are not clipped onto the boundary grade but removed, so a
      selected sample always changes grade (grade 0 with ``max_shift=1`` always becomes 1).
    * ``"transition"``: ``matrix`` (shape ``(C, C)``, non-negative, each row summing to 1). A non-zero diagonal
      lets selected samples keep their label. For the classic "every sample goes through ``T``" convention use
      ``ratio=1.0``.

    Args:
        mode: one of :class:`LabelNoiseMode` (``"symmetric"``, ``"class_prior"``, ``"asymmetric"``, ``"ordinal"``,
            ``"transition"``).
        num_classes: number of classes ``C`` (>= 2).
        labels: the label set, used only for the empirical prior of ``"class_prior"``.
        mode_options: the options of ``mode`` listed above; options of another mode raise ``ValueError``.

    Returns:
        float64 array of shape ``(C, C)`` whose rows sum to 1.

    Raises:
        ValueError: unknown mode or option, ``num_classes < 2``, bad ``max_shift``, a matrix that is not
            ``(C, C)`` row-stochastic, a prior of the wrong length or not summing to 1.
    """
    mode = _check_mode(mode)
    num_classes = _check_int("num_classes", num_classes, 2)
    unknown = sorted(set(mode_options) - set(_MODE_OPTIONS[mode]))
    if unknown:
        raise ValueError(
            f"unexpected option(s) {unknown} for mode={mode.value!r}; this mode accepts {list(_MODE_OPTIONS[mode])}."
        )
    eye = np.eye(num_classes)
    if mode == LabelNoiseMode.SYMMETRIC:
        if _check_bool("include_true", mode_options.get("include_true", False)):
            return np.full((num_classes, num_classes), 1.0 / num_classes)
        return (1.0 - eye) / (num_classes - 1)
    if mode == LabelNoiseMode.CLASS_PRIOR:
        lab = None if labels is None else _as_int_array("labels", labels)
        prior = resolve_class_prior(mode_options.get("prior"), num_classes, lab)
        mat = np.tile(prior, (num_classes, 1))
        if _check_bool("exclude_true", mode_options.get("exclude_true", False)):
            if np.count_nonzero(prior) < 2:
                raise ValueError(
                    f"prior={prior.tolist()} with exclude_true=True needs at least two classes of positive "
                    "probability, otherwise a sample of the only positive class has no other label to take."
                )
            mat = mat * (1.0 - eye)
            mat = mat / mat.sum(axis=1, keepdims=True)
        return mat
    if mode == LabelNoiseMode.ORDINAL:
        max_shift = _check_int("max_shift", mode_options.get("max_shift", 1), 1)
        dist = np.abs(np.arange(num_classes)[:, None] - np.arange(num_classes)[None, :])
        mat = ((dist >= 1) & (dist <= max_shift)).astype(np.float64)
        return mat / mat.sum(axis=1, keepdims=True)
    # TRANSITION
    if "matrix" not in mode_options or mode_options["matrix"] is None:
        raise ValueError(
            f"mode='transition' needs matrix= (a row-stochastic array of shape ({num_classes}, "
            f"{num_classes})), got {mode_options.get('matrix')!r}."
        )
    raw = mode_options["matrix"]
    mat = np.asarray(raw.detach().cpu().numpy() if isinstance(raw, torch.Tensor) else raw, dtype=np.float64)
    if mat.shape != (num_classes, num_classes):
        raise ValueError(
            f"matrix must have shape (num_classes, num_classes)=({num_classes}, {num_classes}), got {mat.shape}."
        )
    if not np.all(np.isfinite(mat)) or np.any(mat < 0):
        raise ValueError(f"matrix must hold finite non-negative probabilities, got {mat.tolist()}.")
    row_sums = mat.sum(axis=1)
    bad_rows = np.flatnonzero(np.abs(row_sums - 1.0) > _SUM_ATOL)
    if bad_rows.size:
        raise ValueError(
            f"matrix must be row-stochastic (every row sums to 1 within {_SUM_ATOL}); rows {bad_rows.tolist()} "
            f"sum to {row_sums[bad_rows].round(8).tolist()}."
        )
    return mat


def _candidate_indices(candidates: Any, num_samples: int) -> np.ndarray:
    """``None`` (all), a boolean mask of length ``num_samples`` or unique integer indices -> sorted int64 indices."""
    if candidates is None:
        return np.arange(num_samples, dtype=np.int64)
    if isinstance(candidates, torch.Tensor):
        candidates = candidates.detach().cpu().numpy()
    arr = np.asarray(candidates)
    if arr.dtype == bool:
        if arr.shape != (num_samples,):
            raise ValueError(
                f"candidates as a boolean mask must have shape ({num_samples},) (one entry per sample), "
                f"got {arr.shape}."
            )
        return np.flatnonzero(arr).astype(np.int64)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(
            f"candidates must be a boolean mask or a 1-D array of integer indices, got dtype {arr.dtype} "
            f"and shape {arr.shape}."
        )
    idx = arr.astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= num_samples):
        raise ValueError(f"candidates must be indices in [0, {num_samples}), got values in [{idx.min()}, {idx.max()}].")
    uniq = np.unique(idx)
    if uniq.size != idx.size:
        raise ValueError(f"candidates must not repeat indices; {idx.size - uniq.size} duplicate(s) found.")
    return uniq


def _streams(seed: Any) -> tuple[np.random.Generator, np.random.Generator]:
    seed = _check_int("seed", seed, 0)
    sel_ss, draw_ss = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(sel_ss), np.random.default_rng(draw_ss)


def select_noisy_samples(num_samples: int, ratio: float, seed: int = 0, candidates: Any = None) -> np.ndarray:
    """The exact-count selection of :func:`corrupt_labels`: which samples get a redrawn label.

    Args:
        num_samples: ``N``, the size of the label set.
        ratio: fraction in ``[0, 1]`` of the candidates to select; exactly ``round(ratio * n_candidates)`` are.
        seed: non-negative integer seed.
        candidates: ``None`` (every sample may be selected), a boolean mask of shape ``(N,)`` or integer indices.

    Returns:
        boolean mask of shape ``(N,)``.

    Raises:
        ValueError: bad ``num_samples``, ``ratio``, ``seed`` or ``candidates``.
    """
    selected, _ = _selection_and_uniforms(num_samples, ratio, seed, candidates)
    return selected


def _selection_and_uniforms(num_samples: Any, ratio: Any, seed: Any, candidates: Any) -> tuple[np.ndarray, np.ndarray]:
    num_samples = _check_int("num_samples", num_samples, 0)
    ratio = _check_ratio(ratio)
    cand = _candidate_indices(candidates, num_samples)
    sel_rng, draw_rng = _streams(seed)
    n_sel = round(ratio * cand.size)
    selected = np.zeros(num_samples, dtype=bool)
    selected[sel_rng.permutation(cand)[:n_sel]] = True
    return selected, draw_rng.random(num_samples)


def _draw(matrix: np.ndarray, labels: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw: the new label of each sample from row ``labels[i]`` of ``matrix`` at ``uniforms[i]``."""
    cdf = np.cumsum(matrix, axis=1)
    cdf /= cdf[:, -1:]  # the last entry is exactly 1, so u in [0, 1) never runs past the last class
    rows = cdf[labels]
    # first class whose cumulative probability exceeds u: never a zero-probability class
    return (rows <= uniforms[:, None]).sum(axis=1).astype(np.int64)


def corrupt_labels(
    labels: Any,
    ratio: float,
    mode: str | LabelNoiseMode = LabelNoiseMode.SYMMETRIC,
    num_classes: int | None = None,
    seed: int = 0,
    candidates: Any = None,
    **mode_options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Corrupt a label vector with synthetic label noise (see the module docstring for the noise model).

    Exactly ``round(ratio * n)`` of the ``n`` candidate samples are selected, and each selected sample's new label
    is drawn from row ``labels[i]`` of :func:`label_noise_matrix` (``mode`` and its options). The output depends
    only on the arguments (no global random state), so the same seed gives the same labels in any call order, and
    :class:`LabelNoised` with ``num_samples=len(labels)`` reproduces it sample by sample.

    Args:
        labels: 1-D integer class ids (list, numpy or torch), length ``N``. The candidates must lie in
            ``[0, num_classes)``; non-candidates are copied unchanged (they may hold other codes, e.g. ``5`` for
            DDR's "ungradable").
        ratio: fraction in ``[0, 1]`` of the candidates whose label is redrawn.
        mode: ``"symmetric"``, ``"class_prior"`` (alias ``"asymmetric"``), ``"ordinal"`` or ``"transition"``.
        num_classes: number of classes ``C`` (>= 2). ``None`` is accepted only with a ``"transition"`` matrix or a
            prior vector/preset, whose length gives ``C``.
        seed: non-negative integer seed (see ``numpy.random.default_rng``).
        candidates: the samples that may be selected: ``None`` (all), a boolean mask of shape ``(N,)`` or integer
            indices (e.g. only the gradable images). ``round(ratio * n_candidates)`` of them are selected.
        mode_options: ``include_true`` (symmetric), ``prior`` and ``exclude_true`` (class_prior), ``max_shift``
            (ordinal), ``matrix`` (transition); see :func:`label_noise_matrix`.

    Returns:
        ``(noisy, flipped_mask)``: the noisy labels as int64 array of shape ``(N,)``, and a boolean array marking the
        samples whose label changed (``noisy != labels``). With ``include_true=True``, the default ``class_prior``
        or a transition matrix with a non-zero diagonal, the *selected* set has exactly ``round(ratio * n)``
        members but only those that drew a different class are flipped.

    Raises:
        ValueError: ``ratio`` outside ``[0, 1]``, candidate class ids outside ``[0, num_classes)``,
            ``num_classes < 2``, an unknown mode or option, a non row-stochastic or wrong-shape ``matrix``, a
            ``prior`` of the wrong length or not summing to 1, bad ``candidates`` or ``seed``.

    Example:
        >>> noisy, flipped = corrupt_labels([0, 1, 2, 3, 4] * 20, ratio=0.2, mode="symmetric", num_classes=5, seed=0)
        >>> int(flipped.sum())
        20
    """
    lab = _as_int_array("labels", labels)
    num_classes = _infer_num_classes(num_classes, mode, mode_options)
    selected, uniforms = _selection_and_uniforms(lab.size, ratio, seed, candidates)
    cand_labels = lab if candidates is None else lab[_candidate_indices(candidates, lab.size)]
    _check_class_ids("labels", cand_labels, num_classes)
    matrix = label_noise_matrix(mode, num_classes, labels=cand_labels, **mode_options)
    noisy = lab.copy()
    noisy[selected] = _draw(matrix, lab[selected], uniforms[selected])
    return noisy, noisy != lab


def _infer_num_classes(num_classes: Any, mode: Any, mode_options: Mapping[str, Any]) -> int:
    if num_classes is not None:
        return _check_int("num_classes", num_classes, 2)
    src = mode_options.get("matrix", mode_options.get("prior"))
    if src is not None and not isinstance(src, str):
        n = len(src)
    elif isinstance(src, str) and src in CLASS_PRIORS:
        n = len(CLASS_PRIORS[src])
    else:
        raise ValueError(
            f"num_classes=None can only be inferred from matrix= or a prior vector/preset; pass num_classes "
            f"explicitly for mode={mode!r}."
        )
    return _check_int("num_classes", n, 2)


# ---------------------------------------------------------------------------------------------------------------
# MONAI transforms
# ---------------------------------------------------------------------------------------------------------------
class LabelNoise(Transform):
    """Synthetic label noise applied per sample, deterministically from the sample's index.

    The noisy label of sample ``index`` depends only on ``(seed, index, label)`` and the constructor arguments, never
    on a random state, so every DataLoader worker, every epoch and a resumed run see the same noisy label. That is
    why this transform is deliberately *not* ``Randomizable`` (a ``CacheDataset`` may cache its output).

    Two ways to choose the noisy samples:

    * ``num_samples=N`` given (recommended): exactly ``round(ratio * n_candidates)`` samples are noisy, the
      selection and the per-index uniforms are computed once, lazily, and the labels are **identical to**
      :func:`corrupt_labels` ``(labels, ratio, mode, num_classes, seed, candidates, **mode_options)`` for a label
      vector of length ``N``.
    * ``num_samples=None``: each index is selected independently with probability ``ratio`` (a Bernoulli draw from
      ``numpy.random.default_rng([seed, index])``), so the noise count is only ``ratio * n`` in expectation; any
      index >= 0 is accepted.

    The empirical class prior is not available here (a single sample cannot see the class frequencies): give
    ``prior=`` explicitly for ``"class_prior"``.

    Args:
        ratio: fraction in ``[0, 1]`` of the candidates whose label is redrawn.
        mode: ``"symmetric"``, ``"class_prior"`` (alias ``"asymmetric"``), ``"ordinal"`` or ``"transition"``.
        num_classes: number of classes (>= 2); may be ``None`` when a ``matrix`` or ``prior`` gives it.
        seed: non-negative integer seed.
        num_samples: size ``N`` of the dataset the indices refer to, enabling the exact-count selection.
        candidates: the indices that may be noisy: ``None`` (all), a boolean mask of shape ``(num_samples,)``
            (needs ``num_samples``) or integer indices.
        mode_options: options of ``mode``, see :func:`label_noise_matrix`.

    Raises:
        ValueError: as :func:`corrupt_labels`; at call time also for a class id outside ``[0, num_classes)`` or an
            index outside ``[0, num_samples)``.

    Example:
        >>> t = LabelNoise(ratio=0.2, mode="ordinal", num_classes=5, seed=0, num_samples=100)
        >>> noisy, flag = t.corrupt(3, index=7)
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        ratio: float,
        mode: str | LabelNoiseMode = LabelNoiseMode.SYMMETRIC,
        num_classes: int | None = None,
        seed: int = 0,
        num_samples: int | None = None,
        candidates: Any = None,
        **mode_options: Any,
    ) -> None:
        self.ratio = _check_ratio(ratio)
        self.mode = _check_mode(mode)
        self.num_classes = _infer_num_classes(num_classes, mode, mode_options)
        self.seed = _check_int("seed", seed, 0)
        self.num_samples = None if num_samples is None else _check_int("num_samples", num_samples, 0)
        self.matrix = label_noise_matrix(self.mode, self.num_classes, **mode_options)
        self._candidate_set: set[int] | None = None
        if self.num_samples is not None:
            _candidate_indices(candidates, self.num_samples)  # validate early
        elif candidates is not None:
            if np.asarray(candidates).dtype == bool:
                raise ValueError(
                    "candidates as a boolean mask needs num_samples (the mask length); pass integer indices instead."
                )
            self._candidate_set = set(_candidate_indices(candidates, np.iinfo(np.int64).max).tolist())
        self.candidates = candidates
        self._selected: np.ndarray | None = None
        self._uniforms: np.ndarray | None = None

    def _precomputed(self) -> tuple[np.ndarray, np.ndarray]:
        if self._selected is None or self._uniforms is None:
            self._selected, self._uniforms = _selection_and_uniforms(
                self.num_samples, self.ratio, self.seed, self.candidates
            )
        return self._selected, self._uniforms

    def _corrupt_np(self, labels: np.ndarray, indices: np.ndarray) -> np.ndarray:
        if self.num_samples is not None:
            bad = (indices < 0) | (indices >= self.num_samples)
            if np.any(bad):
                raise ValueError(
                    f"index must be in [0, num_samples={self.num_samples}), got {indices[bad][:5].tolist()}."
                )
            selected, uniforms = self._precomputed()
            sel, u = selected[indices], uniforms[indices]
        else:
            if np.any(indices < 0):
                raise ValueError(f"index must be >= 0, got {indices[indices < 0][:5].tolist()}.")
            sel = np.zeros(indices.size, dtype=bool)
            u = np.zeros(indices.size)
            for j, i in enumerate(indices.tolist()):
                if self._candidate_set is not None and i not in self._candidate_set:
                    continue
                rng = np.random.default_rng([self.seed, i])
                sel[j] = rng.random() < self.ratio
                u[j] = rng.random()
        noisy = labels.copy()
        if np.any(sel):
            _check_class_ids("label", labels[sel], self.num_classes)
            noisy[sel] = _draw(self.matrix, labels[sel], u[sel])
        return noisy

    def corrupt(self, label: Any, index: Any) -> tuple[Any, Any]:
        """Noisy label and "label changed" flag of the sample(s) ``index``.

        Args:
            label: the sample's class id: ``int``, numpy scalar/array or tensor/MetaTensor (any shape; several
                labels need as many indices).
            index: the sample's stable dataset index (``int``, numpy or tensor), as many as labels.

        Returns:
            ``(noisy, flag)``: ``noisy`` of the same type, shape, dtype (and device) as ``label``; ``flag`` is a
            ``bool`` for a Python/numpy scalar label, else a boolean array/tensor of the label's shape.

        Raises:
            ValueError: non-integer or mismatched ``label``/``index``, out-of-range class id or index.
        """
        lab_np = label.detach().cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
        idx_np = index.detach().cpu().numpy() if isinstance(index, torch.Tensor) else np.asarray(index)
        if idx_np.size != lab_np.size:
            raise ValueError(
                f"index must give one index per label: label has {lab_np.size} element(s), index {idx_np.size}."
            )
        if idx_np.size and not np.issubdtype(idx_np.dtype, np.integer):
            if idx_np.dtype == bool or np.any(idx_np != np.round(idx_np)):
                raise ValueError(f"index must hold integers, got {index!r}.")
        flat = _as_int_array("label", lab_np.reshape(-1))
        noisy_flat = self._corrupt_np(flat, idx_np.reshape(-1).astype(np.int64))
        flag_flat = noisy_flat != flat
        if isinstance(label, torch.Tensor):
            noisy_t = torch.as_tensor(noisy_flat.reshape(lab_np.shape))
            out, *_ = convert_to_dst_type(noisy_t, label, dtype=label.dtype)
            flag = torch.as_tensor(flag_flat.reshape(lab_np.shape), device=label.device)
            return out, flag
        if isinstance(label, np.ndarray):
            return noisy_flat.reshape(lab_np.shape).astype(label.dtype), flag_flat.reshape(lab_np.shape)
        if isinstance(label, np.generic):
            return type(label)(noisy_flat[0]), bool(flag_flat[0])
        if isinstance(label, numbers.Integral) and lab_np.ndim == 0:
            return int(noisy_flat[0]), bool(flag_flat[0])
        if isinstance(label, numbers.Real) and lab_np.ndim == 0:
            return type(label)(noisy_flat[0]), bool(flag_flat[0])
        # list / tuple: return a list of Python ints
        return noisy_flat.reshape(lab_np.shape).tolist(), flag_flat.reshape(lab_np.shape).tolist()

    def __call__(self, label: Any, index: Any) -> Any:  # type: ignore[override]
        """Return the noisy version of ``label`` (same type), see :meth:`corrupt`."""
        return self.corrupt(label, index)[0]


class LabelNoised(MapTransform):
    """Dictionary-based version :py:class:`LabelNoise`.

    Reads the label(s) under ``keys`` and the sample index under ``index_key``, writes the noisy label back under the
    same key and records the original label under ``true_label_key`` and the "label changed" flag under
    ``flag_key``. Given ``num_samples``, the labels are identical to :func:`corrupt_labels` with the same arguments;
    without it each index is selected by a per-index Bernoulli draw (see :class:`LabelNoise`).

    If the dictionary already holds ``true_label_key`` with a value different from the label (noise was already
    applied or is known), a ``ValueError`` is raised instead of silently overwriting the ground truth.

    Args:
        keys: key(s) of the label(s) to corrupt (default ``"label"``).
        ratio, mode, num_classes, seed, num_samples, candidates, mode_options: as :class:`LabelNoise`.
        index_key: key of the sample's stable dataset index (default ``"index"``).
        true_label_key: key(s) under which the original label is stored, one per key (default ``"true_label"``).
        flag_key: key(s) under which the flag is stored, one per key (default ``"label_noise_flag"``).
        allow_missing_keys: don't raise if a label key is missing.

    Example:
        >>> t = LabelNoised(ratio=0.5, num_classes=5, seed=0, num_samples=10)
        >>> out = t({"label": 2, "index": 3})
        >>> sorted(out)
        ['index', 'label', 'label_noise_flag', 'true_label']
    """

    backend = LabelNoise.backend

    def __init__(
        self,
        keys: KeysCollection = "label",
        *,
        ratio: float,
        mode: str | LabelNoiseMode = LabelNoiseMode.SYMMETRIC,
        num_classes: int | None = None,
        seed: int = 0,
        num_samples: int | None = None,
        candidates: Any = None,
        index_key: str = "index",
        true_label_key: str | Sequence[str] = "true_label",
        flag_key: str | Sequence[str] = "label_noise_flag",
        allow_missing_keys: bool = False,
        **mode_options: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.noise = LabelNoise(
            ratio=ratio,
            mode=mode,
            num_classes=num_classes,
            seed=seed,
            num_samples=num_samples,
            candidates=candidates,
            **mode_options,
        )
        self.index_key = index_key
        self.true_label_keys = ensure_tuple(true_label_key)
        self.flag_keys = ensure_tuple(flag_key)
        for name, value in (("true_label_key", self.true_label_keys), ("flag_key", self.flag_keys)):
            if len(value) != len(self.keys):
                raise ValueError(f"{name} must give one key per label key {list(self.keys)}, got {list(value)}.")
        if set(self.keys) & (set(self.true_label_keys) | set(self.flag_keys) | {index_key}):
            raise ValueError(
                f"keys={list(self.keys)} must differ from index_key={index_key!r}, "
                f"true_label_key={list(self.true_label_keys)} and flag_key={list(self.flag_keys)}."
            )

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, true_key, flag_key in self.key_iterator(d, self.true_label_keys, self.flag_keys):
            if self.index_key not in d:
                raise KeyError(f"index_key={self.index_key!r} not found in the data (keys {list(d)}) of {self}.")
            label = d[key]
            if true_key in d and not _same_value(d[true_key], label):
                raise ValueError(
                    f"the data already holds true_label_key={true_key!r} ({d[true_key]!r}) different from "
                    f"{key!r} ({label!r}); refusing to overwrite the ground truth, use another true_label_key."
                )
            noisy, flag = self.noise.corrupt(label, d[self.index_key])
            d[true_key] = label.clone() if isinstance(label, torch.Tensor) else label
            d[key] = noisy
            d[flag_key] = flag
        return d


def _same_value(a: Any, b: Any) -> bool:
    a_np = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b_np = b.detach().cpu().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    return a_np.size == b_np.size and bool(np.all(a_np.reshape(-1) == b_np.reshape(-1)))


LabelNoiseD = LabelNoiseDict = LabelNoised
