# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Mixed-noise training sets (QMix): Correct, Mis-H (high quality, wrong label) and Mis-L (low quality) samples.

From a clean datalist (any reader's output) :func:`build_mixed_noise` makes a training set whose per-sample truth
is known, so sample separation can be scored:

* **Mis-L** (low quality, label treated as wrong) comes from

  (a) the dataset's *natural* low-quality images (``quality == 0``: DDR grade 5, EyeQ Reject, DeepDRiD overall
      quality 0, ...), which get a random grade (``natural_label="uniform"`` or ``"class_prior"``, as the official
      code's ``bad_file/*_uni.json`` / ``*_pro.json``; or ``"keep"`` their own grade where they have one), and/or
  (b) *synthetic degradation* of randomly chosen high-quality images with
      :class:`~monai_qmix.transforms.degradation.RandFundusDegradation`, seeded per sample (seed drawn from
      ``default_rng([seed, index])``). The degraded image is **written once** to ``cache_dir`` (a sub-folder named
      after a hash of the degradation options, so changed options never reuse stale files; existing files are
      reused) and the item's ``image`` points to it (``source_image`` keeps the original). Like the official code,
      a degraded image keeps its label by default (``synthetic_label="keep"``).

* **Mis-H** (label noise) is applied to the remaining high-quality images only, with any mode of
  :func:`~monai_qmix.transforms.label_noise.corrupt_labels`.

**Ratios and their denominators** (the paper does not define them, see the method reference §2.4). Let ``N`` be
the size of the *resulting* training set (high-quality images plus the natural low-quality images used):

* ``mis_l`` (``r_l``): the Mis-L fraction of the whole training set: ``n_l = round(r_l * N)``. Natural low-quality
  images are used first (a seeded random subset if there are more than ``n_l``; the unused ones are left out, which
  shrinks ``N``, and ``n_l`` is solved self-consistently); synthetic degradation makes up the rest.
  ``mis_l=None`` means "all natural low-quality images, no synthetic degradation" (real-world datasets).
* ``mis_h`` (``r_h``): the fraction of the *high-quality* part of the training set (``N - n_l`` images) that is
  *selected* for label noise: exactly ``round(r_h * (N - n_l))`` (as the official ``int(r * N_gradable)``).
  Selected samples whose redrawn label equals the true label (``include_true=True``, the DivideMix / official QMix
  convention used by the presets, or the ``class_prior`` mode) stay in the ``correct`` group: ``noise_group`` is
  ground truth, so ``mis_h`` always means ``label != true_label``. The achieved fractions are stored in the noise
  file (``"counts"``).

Every item of the result has ``label`` (given to the model), ``true_label`` (``-1`` where unknown, e.g. DDR's
ungradable images), ``noise_group`` (``"correct"``, ``"mis_h"``, ``"mis_l"``; codes 0/1/2 in
:data:`NOISE_GROUPS` order), ``quality`` (``1`` high, ``0`` low; by construction), ``source_index`` (position in
the clean datalist) and a new stable ``index``.

**Noise file.** :func:`save_noise_file` writes the specification and the drawn assignment as JSON (the official
code's "noise file"); :func:`load_noise_file` + :func:`apply_noise_file` rebuild the identical training set from the
same clean datalist, which is validated (same length and ids) first. Named presets for the paper's DDR settings are
in :data:`MIXED_NOISE_PRESETS`.

CLI (reads a dataset with ``load_datalist``, builds the set, prints the group x grade table, saves the noise file)::

    python -m monai_qmix.data.mixed_noise --dataset csv --dataset_dir D --reader_options '{"quality_column": "quality"}'
        --mis_h 0.4 [--mis_l R] [--preset ddr_sym_L15_H20] [--seed 0] [--out noise.json] [--cache_dir C]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import numbers
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.utils import look_up_option

from monai_qmix.transforms.label_noise import corrupt_labels, resolve_class_prior

__all__ = [
    "NOISE_GROUPS",
    "NATURAL_LABEL_MODES",
    "MIXED_NOISE_PRESETS",
    "NOISE_FILE_FORMAT",
    "mixed_noise_preset",
    "build_mixed_noise",
    "apply_noise_file",
    "save_noise_file",
    "load_noise_file",
    "noise_table",
    "format_noise_table",
    "main",
]

#: group names in code order (0 correct, 1 mis_h, 2 mis_l), as everywhere in monai_qmix.
NOISE_GROUPS: tuple[str, ...] = ("correct", "mis_h", "mis_l")
#: how natural (and, optionally, synthetic) low-quality images get their training label.
NATURAL_LABEL_MODES: tuple[str, ...] = ("uniform", "class_prior", "keep")
NOISE_FILE_FORMAT = "monai_qmix.mixed_noise/1"
_UNKNOWN = -1


def _preset(mis_l: float, mis_h: float, sym: bool) -> dict[str, Any]:
    if sym:  # official `sym`: random.randint(0, 4), i.e. uniform over all grades including the true one
        return {"mis_l": mis_l, "mis_h": mis_h, "label_mode": "symmetric", "label_options": {"include_true": True},
                "natural_label": "uniform", "num_classes": 5}  # fmt: skip
    # official `asym`: labels redrawn from the fixed DDR prior; ungradable images labelled "pro"(portionally)
    return {"mis_l": mis_l, "mis_h": mis_h, "label_mode": "class_prior", "label_options": {"prior": "ddr"},
            "natural_label": "class_prior", "natural_prior": "ddr", "num_classes": 5}  # fmt: skip


#: The paper's DDR settings (official README): name -> keyword arguments of :func:`build_mixed_noise`.
#: ``ddr_sym_L<Mis-L %>_H<Mis-H %>`` (symmetric) and ``ddr_asym_L.._H..`` (class-prior / "asymmetric").
MIXED_NOISE_PRESETS: dict[str, dict[str, Any]] = {
    **{f"ddr_sym_L{int(lo * 100)}_H{int(h * 100)}": _preset(lo, h, True)
       for lo, h in ((0.15, 0.2), (0.15, 0.5), (0.15, 0.8), (0.45, 0.2), (0.75, 0.2))},
    **{f"ddr_asym_L{int(lo * 100)}_H{int(h * 100)}": _preset(lo, h, False)
       for lo, h in ((0.15, 0.3), (0.15, 0.5), (0.35, 0.2), (0.55, 0.2))},
}  # fmt: skip


def mixed_noise_preset(name: str) -> dict[str, Any]:
    """Keyword arguments of :func:`build_mixed_noise` for a named paper setting (a fresh copy).

    Args:
        name: a key of :data:`MIXED_NOISE_PRESETS`, e.g. ``"ddr_sym_L15_H50"`` or ``"ddr_asym_L35_H20"``.

    Raises:
        ValueError: unknown name (close matches are suggested).
    """
    key = look_up_option(name, list(MIXED_NOISE_PRESETS))
    return json.loads(json.dumps(MIXED_NOISE_PRESETS[key]))


# ----------------------------------------------------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------------------------------------------------
def _ratio(name: str, value: Any, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        extra = " or None" if allow_none else ""
        raise ValueError(f"{name} must be a number in [0, 1]{extra}, got {value!r}.")
    return float(value)


def _item_key(item: Mapping[str, Any]) -> str:
    """The identity of a datalist item used to validate a noise file: its ``id`` if present, else the image name."""
    if "id" in item:
        return str(item["id"])
    if "image" not in item:
        raise KeyError(f"datalist items need an 'id' or 'image' key, got keys {sorted(item)}.")
    return os.path.basename(str(item["image"]))


def _degrade_folder(cache_dir: str | os.PathLike, degradation: Mapping[str, Any]) -> Path:
    tag = hashlib.sha1(json.dumps(dict(degradation), sort_keys=True, default=str).encode()).hexdigest()[:10]
    return Path(cache_dir) / f"degraded_{tag}"


def _write_degraded(src: str, dst: Path, seed: int, degradation: Mapping[str, Any]) -> None:
    """Load ``src``, degrade it with ``RandFundusDegradation(**degradation)`` seeded by ``seed``, save ``dst`` (PNG)."""
    import torch
    from PIL import Image

    from monai_qmix.transforms.degradation import RandFundusDegradation

    arr = np.asarray(Image.open(src).convert("RGB"), dtype=np.float32) / 255.0
    img = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
    t = RandFundusDegradation(**dict(degradation))
    t.set_random_state(seed=seed)
    out = t(img)
    out = out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
    out8 = (np.clip(out.transpose(1, 2, 0), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(f".{os.getpid()}.tmp.png")  # unique per process: concurrent writers never collide
    Image.fromarray(out8).save(tmp)
    os.replace(tmp, dst)  # atomic: an interrupted run never leaves a half-written image


# ----------------------------------------------------------------------------------------------------------------------
# building
# ----------------------------------------------------------------------------------------------------------------------
def build_mixed_noise(
    datalist: Sequence[Mapping[str, Any]],
    mis_h: float = 0.0,
    mis_l: float | None = None,
    label_mode: str = "symmetric",
    label_options: Mapping[str, Any] | None = None,
    natural_label: str = "uniform",
    natural_prior: Any = None,
    synthetic_label: str = "keep",
    degradation: Mapping[str, Any] | None = None,
    cache_dir: str | os.PathLike | None = None,
    num_classes: int = 5,
    seed: int = 0,
    unknown_quality: str = "high",
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Make a mixed-noise training set from a clean datalist (see the module docstring for the definitions).

    Args:
        datalist: clean items with ``image``, ``label`` and ``quality`` (``1`` high, ``0`` low, ``-1`` unknown);
            low-quality items may have ``label == -1`` (ungradable).
        mis_h: Mis-H ratio ``r_h`` in [0, 1]: fraction of the high-quality training images selected for label noise.
        mis_l: Mis-L ratio ``r_l`` in [0, 1]: fraction of the whole training set that is low quality; ``None`` = all
            natural low-quality images and no synthetic degradation.
        label_mode: ``corrupt_labels`` mode for Mis-H (``"symmetric"``, ``"class_prior"``/``"asymmetric"``,
            ``"ordinal"``, ``"transition"``).
        label_options: that mode's options (e.g. ``{"include_true": True}``, ``{"prior": "ddr"}``).
        natural_label: training label of natural low-quality images: ``"uniform"`` over the grades,
            ``"class_prior"`` (drawn from ``natural_prior``) or ``"keep"`` (their own grade; must be valid).
        natural_prior: prior for ``"class_prior"``: a vector, a preset name (``"ddr"``) or ``None``/``"empirical"``
            (class frequencies of the high-quality images).
        synthetic_label: label of synthetically degraded images: ``"keep"`` (official code), ``"uniform"`` or
            ``"class_prior"`` (as ``natural_label``).
        degradation: keyword arguments of ``RandFundusDegradation`` (e.g. ``{"severity": 0.8}``); default ``{}``.
        cache_dir: folder for the degraded images (needed only when synthetic Mis-L images are required).
        num_classes: number of grades.
        seed: seed of every draw (selection of Mis-L images, Mis-H label noise, random labels, degradations).
        unknown_quality: how items with ``quality == -1`` are treated: ``"high"`` (default: e.g. APTOS, SynthDR)
            or ``"error"``.

    Returns:
        ``(train_datalist, noise)``: the new items (order of the clean datalist, new ``index`` 0..N-1) and the noise
        record (specification + assignment) that :func:`save_noise_file` writes.

    Raises:
        ValueError: bad ratios or options; a target Mis-L count that the images cannot provide; labels out of range.
        KeyError: items without ``label``/``quality``/``image``.
    """
    spec = {
        "mis_h": _ratio("mis_h", mis_h),
        "mis_l": _ratio("mis_l", mis_l, allow_none=True),
        "label_mode": str(label_mode),
        "label_options": dict(label_options or {}),
        "natural_label": look_up_option(natural_label, NATURAL_LABEL_MODES),
        "natural_prior": natural_prior if natural_prior is None or isinstance(natural_prior, str)
        else [float(x) for x in np.asarray(natural_prior).tolist()],
        "synthetic_label": look_up_option(synthetic_label, NATURAL_LABEL_MODES),
        "degradation": dict(degradation or {}),
        "num_classes": int(num_classes),
        "seed": int(seed),
        "unknown_quality": look_up_option(unknown_quality, ("high", "error")),
    }  # fmt: skip
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or int(num_classes) < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}.")
    n_src = len(datalist)
    if n_src == 0:
        raise ValueError("datalist is empty; nothing to build a training set from.")
    for k in ("image", "label", "quality"):
        miss = [i for i, d in enumerate(datalist) if k not in d]
        if miss:
            raise KeyError(f"datalist items {miss[:5]} (of {len(miss)}) have no {k!r} key; every item needs it.")
    labels = np.asarray([int(d["label"]) for d in datalist], dtype=np.int64)
    quality = np.asarray([int(d["quality"]) for d in datalist], dtype=np.int64)
    if spec["unknown_quality"] == "error" and np.any(quality == _UNKNOWN):
        raise ValueError(
            f"{int((quality == _UNKNOWN).sum())} items have quality -1 (unknown) and unknown_quality='error'; "
            "pass unknown_quality='high' to treat them as high quality."
        )
    bad_q = ~np.isin(quality, (0, 1, _UNKNOWN))
    if np.any(bad_q):
        raise ValueError(f"quality must be 1, 0 or -1; items {np.flatnonzero(bad_q)[:5].tolist()} have other values.")
    high = np.flatnonzero(quality != 0)
    natural = np.flatnonzero(quality == 0)
    bad = high[(labels[high] < 0) | (labels[high] >= num_classes)]
    if bad.size:
        raise ValueError(
            f"high-quality items need a label in [0, num_classes={num_classes}); items {bad[:5].tolist()} have "
            f"{labels[bad[:5]].tolist()}. Mark ungradable images quality=0 or drop them."
        )
    ss = np.random.SeedSequence(int(seed))
    rng_nat, rng_syn, rng_lab = (np.random.default_rng(s) for s in ss.spawn(3))

    # ---- Mis-L counts: n_l = round(r_l * N), N = n_high + n_nat_used ----
    n_high, n_nat_all = high.size, natural.size
    if spec["mis_l"] is None:
        n_nat, n_syn = n_nat_all, 0
    else:
        r = spec["mis_l"]
        if r >= 1.0:
            raise ValueError("mis_l must be < 1 (a training set of low-quality images only has no Correct group).")
        # all natural images: N = n_high + n_nat_all; if more than needed, solve n_nat = round(r (n_high + n_nat))
        target = round(r * (n_high + n_nat_all))
        if target >= n_nat_all:
            n_nat, n_syn = n_nat_all, target - n_nat_all
        else:
            n_nat, n_syn = min(n_nat_all, round(r * n_high / (1.0 - r))), 0
        if n_syn > n_high:
            raise ValueError(f"mis_l={r} needs {n_syn} degraded images but only {n_high} high-quality images exist.")
    nat_used = np.sort(rng_nat.permutation(natural)[:n_nat]) if n_nat < n_nat_all else natural
    if n_nat < n_nat_all:
        warnings.warn(
            f"mis_l={spec['mis_l']} is reached with {n_nat} of the {n_nat_all} natural low-quality images; the other "
            f"{n_nat_all - n_nat} are left out of the training set (use mis_l=None to keep them all).",
            stacklevel=2,
        )
    syn = np.sort(rng_syn.permutation(high)[:n_syn])
    hq = np.setdiff1d(high, syn)

    # ---- labels ----
    new_labels = labels.copy()
    true_labels = labels.copy()
    groups = np.full(n_src, "correct", dtype=object)
    # Mis-H: label noise on the remaining high-quality images only
    if hq.size:
        noisy, _ = corrupt_labels(
            labels, spec["mis_h"], label_mode, num_classes, int(seed), candidates=hq, **spec["label_options"]
        )
        new_labels[hq] = noisy[hq]
    groups[hq[new_labels[hq] != labels[hq]]] = "mis_h"

    def random_labels(mode: str, idx: np.ndarray, what: str) -> None:
        if mode == "keep":
            bad = idx[(labels[idx] < 0) | (labels[idx] >= num_classes)]
            if bad.size:
                raise ValueError(
                    f"{what}='keep' needs a valid grade, but items {bad[:5].tolist()} have {labels[bad[:5]].tolist()}; "
                    "use 'uniform' or 'class_prior'."
                )
            return
        p = (np.full(num_classes, 1.0 / num_classes) if mode == "uniform"
             else resolve_class_prior(natural_prior, num_classes, labels[high], name="natural_prior"))  # fmt: skip
        new_labels[idx] = rng_lab.choice(num_classes, size=idx.size, p=p)

    random_labels(spec["natural_label"], nat_used, "natural_label")
    random_labels(spec["synthetic_label"], syn, "synthetic_label")
    mis_l = np.concatenate([nat_used, syn])
    groups[mis_l] = "mis_l"
    true_labels[nat_used] = np.where((labels[nat_used] >= 0) & (labels[nat_used] < num_classes), labels[nat_used], -1)

    # ---- synthetic degradation: one seed per sample ----
    deg_seed = np.full(n_src, -1, dtype=np.int64)
    for i in syn:
        deg_seed[i] = int(np.random.default_rng([int(seed), int(i)]).integers(0, 2**31 - 1))

    used = np.sort(np.concatenate([high, nat_used]))
    low = set(mis_l.tolist())
    assignment = [
        {"source_index": int(i), "id": _item_key(datalist[i]), "label": int(new_labels[i]),
         "true_label": int(true_labels[i]), "noise_group": str(groups[i]), "quality": 0 if i in low else 1,
         "degradation_seed": int(deg_seed[i]) if deg_seed[i] >= 0 else None}
        for i in used
    ]  # fmt: skip
    noise = {
        "format": NOISE_FILE_FORMAT,
        "spec": spec,
        "source": {"num_items": n_src, "ids": [_item_key(d) for d in datalist]},
        "assignment": assignment,
    }
    noise["counts"] = _counts(assignment)
    return apply_noise_file(datalist, noise, cache_dir=cache_dir), noise


def _counts(assignment: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    n = len(assignment)
    g = {name: sum(a["noise_group"] == name for a in assignment) for name in NOISE_GROUPS}
    n_syn = sum(a["degradation_seed"] is not None for a in assignment)
    n_hq = n - g["mis_l"]
    return {
        "total": n,
        **g,
        "mis_l_natural": g["mis_l"] - n_syn,
        "mis_l_synthetic": n_syn,
        "mis_l_fraction": g["mis_l"] / n if n else 0.0,
        "mis_h_fraction_of_high_quality": g["mis_h"] / n_hq if n_hq else 0.0,
        "mis_h_fraction_of_total": g["mis_h"] / n if n else 0.0,
    }


def apply_noise_file(
    datalist: Sequence[Mapping[str, Any]],
    noise: Mapping[str, Any],
    cache_dir: str | os.PathLike | None = None,
) -> list[dict[str, Any]]:
    """Rebuild the training set recorded in ``noise`` (from :func:`build_mixed_noise` or :func:`load_noise_file`).

    Args:
        datalist: the same clean datalist the noise was drawn for (validated: same length and ids, in order).
        noise: the noise record.
        cache_dir: folder of the degraded images (written if absent), needed when the record has synthetic Mis-L.

    Returns:
        the training datalist (copies of the clean items with ``label``, ``true_label``, ``noise_group``, ``quality``,
        ``source_index``, a new ``index``, ``source_image`` (the original image; the same as ``image`` unless the
        item was degraded) and ``degradation_seed`` (``-1`` when not degraded)). Every item has the same keys, so
        the list batches with the default collate.

    Raises:
        ValueError: wrong format, or ``datalist`` does not match the record (length or ids); synthetic Mis-L images
            without ``cache_dir``.
    """
    if noise.get("format") != NOISE_FILE_FORMAT:
        raise ValueError(f"not a mixed-noise record: format={noise.get('format')!r}, expected {NOISE_FILE_FORMAT!r}.")
    src = noise["source"]
    if len(datalist) != int(src["num_items"]):
        raise ValueError(
            f"the datalist has {len(datalist)} items but the noise file was made for {src['num_items']}; "
            "pass the same clean datalist (same reader, split and options)."
        )
    ids = [_item_key(d) for d in datalist]
    if ids != list(src["ids"]):
        j = next(k for k, (a, b) in enumerate(zip(ids, src["ids"])) if a != b)
        raise ValueError(
            f"the datalist does not match the noise file: item {j} is {ids[j]!r} but the file expects "
            f"{src['ids'][j]!r}; pass the same clean datalist in the same order."
        )
    degradation = noise["spec"].get("degradation", {})
    out: list[dict[str, Any]] = []
    for new_index, a in enumerate(noise["assignment"]):
        item = dict(datalist[a["source_index"]])
        item.update(
            label=a["label"], true_label=a["true_label"], noise_group=a["noise_group"], quality=a["quality"],
            source_index=a["source_index"], index=new_index,
            source_image=item["image"], degradation_seed=-1,
        )  # fmt: skip
        if a.get("degradation_seed") is not None:
            if cache_dir is None:
                raise ValueError(
                    "the noise specification needs synthetic Mis-L images (degraded copies); pass cache_dir= to write "
                    "them once (they are reused afterwards)."
                )
            dst = (
                _degrade_folder(cache_dir, degradation) / f"{a['source_index']:07d}_{Path(str(item['image'])).stem}.png"
            )
            if not dst.exists():
                _write_degraded(str(item["image"]), dst, int(a["degradation_seed"]), degradation)
            item["image"] = str(dst)
            item["degradation_seed"] = int(a["degradation_seed"])
        out.append(item)
    return out


# ----------------------------------------------------------------------------------------------------------------------
# noise file I/O
# ----------------------------------------------------------------------------------------------------------------------
def save_noise_file(noise: Mapping[str, Any], path: str | os.PathLike) -> str:
    """Write the noise record (specification + assignment + counts) as JSON; returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "w") as f:
        json.dump(noise, f, indent=1)
    return str(p)


def load_noise_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a noise record written by :func:`save_noise_file` (use :func:`apply_noise_file` to rebuild the set).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a mixed-noise noise file.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"noise file {str(path)!r} does not exist.")
    with open(path) as f:
        noise = json.load(f)
    if not isinstance(noise, dict) or noise.get("format") != NOISE_FILE_FORMAT:
        raise ValueError(f"{str(path)!r} is not a mixed-noise file (expected format {NOISE_FILE_FORMAT!r}).")
    return noise


# ----------------------------------------------------------------------------------------------------------------------
# reporting
# ----------------------------------------------------------------------------------------------------------------------
def noise_table(
    datalist: Sequence[Mapping[str, Any]], by: str = "label", num_classes: int | None = None
) -> dict[str, list[int]]:
    """Counts per noise group x grade.

    Args:
        datalist: a mixed-noise training set (items with ``noise_group``).
        by: ``"label"`` (the given label) or ``"true_label"`` (``-1`` = unknown is counted under ``"?"``).
        num_classes: number of grades; default: largest grade + 1.

    Returns:
        ``{group: [count per grade ..., count of unknown grade, total]}`` for each group of :data:`NOISE_GROUPS`
        and ``"total"``.

    Raises:
        KeyError: an item without ``noise_group`` or the ``by`` key.
    """
    by = look_up_option(by, ("label", "true_label"))
    for d in datalist:
        if "noise_group" not in d or by not in d:
            raise KeyError(f"items need 'noise_group' and {by!r} keys (a mixed-noise datalist); got keys {sorted(d)}.")
    grades = [int(d[by]) for d in datalist]
    c = int(num_classes) if num_classes is not None else max([g + 1 for g in grades] + [1])
    table = {g: [0] * (c + 2) for g in (*NOISE_GROUPS, "total")}
    for d, g in zip(datalist, grades):
        col = g if 0 <= g < c else c
        for row in (str(d["noise_group"]), "total"):
            table[row][col] += 1
            table[row][c + 1] += 1
    return table


def format_noise_table(datalist: Sequence[Mapping[str, Any]], by: str = "label", num_classes: int | None = None) -> str:
    """:func:`noise_table` as aligned text (rows: groups + total; columns: grades, unknown ``?``, total)."""
    table = noise_table(datalist, by, num_classes)
    c = len(table["total"]) - 2
    head = ["group"] + [f"{by}={k}" for k in range(c)] + ["?", "total"]
    rows = [[name] + [str(v) for v in vals] for name, vals in table.items()]
    widths = [max(len(r[j]) for r in [head] + rows) for j in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" if j == 0 else f"{{:>{w}}}" for j, w in enumerate(widths))
    return "\n".join(fmt.format(*r) for r in [head] + rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point (``python -m monai_qmix.data.mixed_noise --help``)."""
    ap = argparse.ArgumentParser(prog="python -m monai_qmix.data.mixed_noise", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", required=True, help="reader name for load_datalist (aptos, ddr, eyeq, csv, ...)")
    ap.add_argument("--dataset_dir", required=True)
    ap.add_argument("--split", default="train")
    ap.add_argument("--reader_options", type=json.loads, default={}, help="JSON dict of reader options")
    ap.add_argument("--preset", default=None, help=f"one of {sorted(MIXED_NOISE_PRESETS)} (overrides the ratios)")
    ap.add_argument("--mis_h", type=float, default=0.0)
    ap.add_argument("--mis_l", type=float, default=None, help="default: all natural low-quality images")
    ap.add_argument("--label_mode", default="symmetric")
    ap.add_argument("--label_options", type=json.loads, default={}, help="JSON, e.g. '{\"include_true\": true}'")
    ap.add_argument("--natural_label", default="uniform", choices=NATURAL_LABEL_MODES)
    ap.add_argument("--num_classes", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache_dir", default=None, help="folder for degraded images (synthetic Mis-L)")
    ap.add_argument("--out", default=None, help="write the noise file (JSON) here")
    a = ap.parse_args(argv)
    from monai_qmix.data.readers import load_datalist

    items = load_datalist(a.dataset, a.dataset_dir, a.split, **a.reader_options)
    kwargs: dict[str, Any] = {
        "mis_h": a.mis_h, "mis_l": a.mis_l, "label_mode": a.label_mode, "label_options": a.label_options,
        "natural_label": a.natural_label, "num_classes": a.num_classes,
    }  # fmt: skip
    if a.preset:
        kwargs = mixed_noise_preset(a.preset)
    train, noise = build_mixed_noise(items, **kwargs, cache_dir=a.cache_dir, seed=a.seed)
    print(f"{len(train)} training items from {len(items)} listed ({noise['counts']})")
    print(format_noise_table(train, "label", a.num_classes))
    if a.out:
        print(f"noise file: {save_noise_file(noise, a.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
