# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""SynthDR: a procedural, license-free diabetic-retinopathy grading dataset written in APTOS layout.

Every image is a fundus-looking photograph (circular field of view on black, orange-red background with camera
colour casts and vignetting, procedural branching vessels from the optic disc, a darker macula, left/right eyes
mirrored, optionally the CC0 ``skimage.data.retina()`` photograph under random geometry and colour as the base).
Its DR grade 0-4 follows the international clinical DR scale *from the lesions drawn* (see :data:`GRADE_RULES`):

* 0 no DR: no lesion;
* 1 mild NPDR: microaneurysms only (a few tiny red dots);
* 2 moderate NPDR: microaneurysms plus a few dot/blot haemorrhages, hard exudates (yellow) or cotton-wool spots,
  not enough for grade 3;
* 3 severe NPDR: many haemorrhages in all four quadrants, or venous beading (and the grade-2 lesions);
* 4 PDR: neovascularisation (fine tortuous vessel tufts at the disc or along the arcades) or a pre-retinal
  haemorrhage (large dark-red boat-shaped patch), on top of NPDR lesions.

Design for "learnable but not trivial": lesions are small and coloured *relative to the local background*, while
global colour, brightness, gamma, vignetting and texture are randomised per image far more than the lesions change
them, so the grade cannot be read from global colour statistics (``benchmarks/synthdr_learnability.py`` checks both
properties).

Each image is drawn from ``np.random.default_rng([seed, i])`` only, so image ``i`` is identical whatever ``num``,
worker count or generation order; grades are assigned by a seeded permutation of exact per-class counts.

Output layout (identical to Kaggle APTOS 2019, readable by ``load_datalist("aptos", out)``)::

    out/train.csv                 id_code,diagnosis
    out/train_images/<id_code>.png
    out/synthdr.json              generation parameters and per-image lesion counts (extra, ignored by readers)

CLI::

    python -m monai_qmix.data.synthetic --out D --num N --size S --seed K [--class_probs 0.2,0.2,0.2,0.2,0.2]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = [
    "GRADE_RULES",
    "NUM_GRADES",
    "grade_counts",
    "render_fundus",
    "generate_synthdr",
    "synthdr_id",
    "main",
]

NUM_GRADES = 5

#: How each grade is drawn (international clinical DR scale, simplified to what is visible at 128-512 px).
GRADE_RULES: dict[int, str] = {
    0: "no lesion",
    1: "microaneurysms only (2-6 tiny red dots)",
    2: "microaneurysms + 1-2 kinds of: a few dot/blot haemorrhages (at most 3 quadrants, <=6), hard exudates, "
    "cotton-wool spots (<=3)",
    3: "grade-2 lesions + many haemorrhages (5-9) in each of the four quadrants, and/or venous beading of >=2 veins",
    4: "NPDR lesions (grade 2 or 3) + neovascularisation tufts (disc or elsewhere) and/or a pre-retinal haemorrhage",
}


# ----------------------------------------------------------------------------------------------------------------------
# drawing primitives (vectorised numpy; all coordinates in pixels)
# ----------------------------------------------------------------------------------------------------------------------
def _stamp(
    canvas: np.ndarray,
    cy: np.ndarray,
    cx: np.ndarray,
    ry: np.ndarray,
    rx: np.ndarray,
    theta: np.ndarray,
    amp: np.ndarray,
    power: float = 2.0,
    flat_top: np.ndarray | None = None,
) -> None:
    """Add K elliptical blobs ``amp * exp(-r**power)`` to ``canvas`` (H, W) in place, all at once.

    ``flat_top`` (K,), if given, cuts each blob above ``cy - flat_top * ry`` with a soft edge (boat shape).
    """
    cy, cx, ry, rx, theta, amp = (np.atleast_1d(np.asarray(a, dtype=np.float64)) for a in (cy, cx, ry, rx, theta, amp))
    if cy.size == 0:
        return
    h, w = canvas.shape
    half = int(np.ceil(2.6 * max(float(ry.max()), float(rx.max()), 0.7))) + 1
    off = np.arange(-half, half + 1)
    iy = np.round(cy).astype(np.int64)[:, None, None] + off[None, :, None]
    ix = np.round(cx).astype(np.int64)[:, None, None] + off[None, None, :]
    dy = iy - cy[:, None, None]
    dx = ix - cx[:, None, None]
    c, s = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    a = (c * dx + s * dy) / np.maximum(rx, 0.35)[:, None, None]
    b = (-s * dx + c * dy) / np.maximum(ry, 0.35)[:, None, None]
    r2 = a * a + b * b
    val = amp[:, None, None] * np.exp(-(r2 ** (power / 2.0)))
    if flat_top is not None:
        level = cy - np.asarray(flat_top, dtype=np.float64) * ry
        val = val / (1.0 + np.exp(-(iy - level[:, None, None]) / 0.6))
    iy, ix = np.broadcast_arrays(iy, ix)
    inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    flat = iy[inside] * w + ix[inside]
    canvas += np.bincount(flat, weights=val[inside], minlength=h * w).reshape(h, w)


def _walk(
    rng: np.random.Generator, start: np.ndarray, angle: float, length: float, step: float, turn: float, wiggle: float
) -> np.ndarray:
    """A smooth random walk of ``length`` (same units as ``step``): returns (n, 2) points as (y, x)."""
    n = max(int(length / step), 2)
    ang = angle + turn * step * np.arange(n) + np.cumsum(rng.normal(0.0, wiggle * np.sqrt(step), n))
    pts = np.cumsum(np.stack([np.sin(ang), np.cos(ang)], axis=1) * step, axis=0)
    return start[None, :] + pts


def _vessel_tree(
    rng: np.random.Generator, disc: np.ndarray, step: float
) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[tuple[np.ndarray, np.ndarray]]]:
    """Procedural arteries and veins leaving the optic disc (right-eye frame: macula towards -x).

    Coordinates are in units of the FOV radius; ``step`` is the sampling step along the centre lines.
    Returns two lists (arteries, veins) of ``(points (n, 2) as (y, x), widths (n,))`` in FOV-radius units.
    """
    arteries: list[tuple[np.ndarray, np.ndarray]] = []
    veins: list[tuple[np.ndarray, np.ndarray]] = []

    def grow(out: list, start: np.ndarray, angle: float, width: float, length: float, turn: float, depth: int) -> None:
        pts = _walk(rng, start, angle, length, step, turn, wiggle=0.35)
        wid = np.linspace(width, width * 0.75, len(pts))
        out.append((pts, wid))
        if depth <= 0 or length < 0.15:
            return
        nb = int(rng.integers(1, 4))
        for k in rng.uniform(0.2, 0.85, nb):
            j = int(k * (len(pts) - 1))
            d = np.diff(pts[max(j - 2, 0) : j + 2], axis=0).mean(axis=0)
            base = float(np.arctan2(d[0], d[1]))
            child = base + rng.choice([-1.0, 1.0]) * rng.uniform(0.45, 1.0)
            grow(out, pts[j], child, wid[j] * rng.uniform(0.55, 0.75), length * rng.uniform(0.35, 0.6), 0.0, depth - 1)

    # temporal arcades curve around the macula (towards -x); nasal vessels run towards +x
    for sign in (-1.0, 1.0):  # -1 superior (up), +1 inferior (down)
        for out, w0, da in ((veins, 0.034, 0.08), (arteries, 0.026, -0.08)):
            ang = np.pi - sign * (rng.uniform(0.95, 1.2) + da)  # up-left (superior) or down-left (inferior)
            grow(out, disc.copy(), float(ang), w0, rng.uniform(1.3, 1.6), sign * rng.uniform(0.6, 0.8), 2)
            ang_n = sign * rng.uniform(0.5, 1.0)
            grow(out, disc.copy(), float(ang_n), w0 * 0.8, rng.uniform(0.5, 0.8), 0.0, 1)
    for _ in range(int(rng.integers(1, 3))):  # small macular branches
        grow(arteries, disc.copy(), float(np.pi + rng.normal(0, 0.2)), 0.012, rng.uniform(0.4, 0.6), 0.0, 1)
    return arteries, veins


def _vessel_alpha(
    segments: list[tuple[np.ndarray, np.ndarray]], to_px: Any, shape: tuple[int, int], radius_px: float
) -> np.ndarray:
    """Rasterise vessel centre lines with per-point widths into an opacity map via one distance transform."""
    h, w = shape
    skel = np.zeros(shape, dtype=bool)
    width = np.zeros(shape, dtype=np.float64)
    if not segments:
        return width
    pts = np.concatenate([s[0] for s in segments])
    wid = np.concatenate([s[1] for s in segments]) * radius_px
    py, px = to_px(pts)
    iy, ix = np.round(py).astype(np.int64), np.round(px).astype(np.int64)
    ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    iy, ix, wid = iy[ok], ix[ok], wid[ok]
    order = np.argsort(wid)  # widest written last wins at crossings
    skel[iy[order], ix[order]] = True
    width[iy[order], ix[order]] = wid[order]
    dist, (ny, nx) = ndimage.distance_transform_edt(~skel, return_indices=True)
    wmap = width[ny, nx]
    half = np.maximum(wmap / 2.0, 0.5)
    return np.clip(wmap / 1.2, 0.15, 1.0) * np.exp(-((dist / half) ** 4) * 0.7)


@lru_cache(maxsize=4)
def _retina_base(size: int) -> np.ndarray:
    """The CC0 scikit-image fundus photograph resized to (size, size, 3) float in [0, 1] (cached per process)."""
    from skimage.data import retina
    from skimage.transform import resize

    img = retina().astype(np.float32) / 255.0
    return resize(img, (size, size), order=1, anti_aliasing=True).astype(np.float64)


# ----------------------------------------------------------------------------------------------------------------------
# one image
# ----------------------------------------------------------------------------------------------------------------------
def render_fundus(
    grade: int, size: int = 128, rng: np.random.Generator | int | Sequence[int] = 0, retina_prob: float = 0.0
) -> tuple[np.ndarray, dict[str, Any]]:
    """Draw one synthetic fundus photograph whose DR grade (0-4) follows from the lesions drawn.

    Args:
        grade: DR grade 0-4 (international clinical scale), see :data:`GRADE_RULES`.
        size: output height = width in pixels (>= 32).
        rng: a ``np.random.Generator`` or a seed (int or sequence, e.g. ``[seed, i]``).
        retina_prob: probability of using the CC0 ``skimage.data.retina()`` photograph (random rotation, flip,
            zoom and colour) as the anatomical base instead of the procedural one.

    Returns:
        ``(image, info)``: uint8 array (size, size, 3) and a dict of what was drawn (eye, base, lesion counts).

    Raises:
        ValueError: grade outside 0-4, size < 32, retina_prob outside [0, 1].

    >>> img, info = render_fundus(3, size=64, rng=[0, 1])
    >>> img.shape, img.dtype, info["grade"]
    ((64, 64, 3), dtype('uint8'), 3)
    """
    if int(grade) != grade or not 0 <= int(grade) < NUM_GRADES:
        raise ValueError(f"grade must be an integer in 0..{NUM_GRADES - 1}, got {grade!r}.")
    if int(size) < 32:
        raise ValueError(f"size must be >= 32 pixels, got {size!r}.")
    if not 0.0 <= float(retina_prob) <= 1.0:
        raise ValueError(f"retina_prob must be in [0, 1], got {retina_prob!r}.")
    grade, size = int(grade), int(size)
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    s = size
    info: dict[str, Any] = {"grade": grade}

    # ---- geometry: FOV circle (maybe clipped top/bottom like many cameras), rotation, eye side ----
    radius = s * rng.uniform(0.44, 0.5)
    cyc, cxc = s / 2 + rng.normal(0, 0.015 * s), s / 2 + rng.normal(0, 0.015 * s)
    rot = rng.normal(0.0, 0.12)
    eye = "left" if rng.random() < 0.5 else "right"
    info["eye"] = eye
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64)
    uy, ux = (yy - cyc) / radius, (xx - cxc) / radius  # image frame, FOV radius units
    if eye == "left":
        ux = -ux  # anatomy is drawn in the right-eye frame, the left eye is its mirror image
    cr, sr = np.cos(rot), np.sin(rot)
    ay, ax = cr * uy - sr * ux, sr * uy + cr * ux  # anatomical frame
    rho2 = uy * uy + ux * ux
    fov = 1.0 / (1.0 + np.exp((np.sqrt(rho2) - 1.0) * radius / 0.8))
    if rng.random() < 0.3:  # horizontal clipping of the circle, as on many fundus cameras
        clip = rng.uniform(0.8, 0.95)
        fov *= 1.0 / (1.0 + np.exp((np.abs(uy) - clip) * radius / 0.8))

    def to_px(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """anatomical (y, x) in FOV units -> pixel (row, col)."""
        py, px = pts[:, 0], pts[:, 1]
        iy, ix = cr * py + sr * px, -sr * py + cr * px
        if eye == "left":
            ix = -ix
        return iy * radius + cyc, ix * radius + cxc

    disc = np.array([rng.normal(-0.03, 0.05), rng.uniform(0.42, 0.58)])  # (y, x), nasal side
    mac = np.array([disc[0] + rng.uniform(0.03, 0.12), disc[1] - rng.uniform(0.8, 0.95)])
    disc_r = rng.uniform(0.1, 0.14)

    # ---- global colour: randomised far more than any lesion changes it ----
    gain = rng.uniform(0.5, 1.2)
    base_rgb = np.array([rng.uniform(0.6, 0.95), 0.0, 0.0])
    base_rgb[1] = base_rgb[0] * rng.uniform(0.22, 0.55)
    base_rgb[2] = base_rgb[0] * rng.uniform(0.04, 0.3)
    use_retina = rng.random() < retina_prob
    info["base"] = "retina" if use_retina else "procedural"
    tex = ndimage.zoom(rng.normal(0, 1, (7, 7)), s / 7, order=3)[:s, :s]
    fine = ndimage.gaussian_filter(rng.normal(0, 1, (s, s)), 0.012 * s)
    fine /= fine.std() + 1e-8
    if use_retina:
        ret = _retina_base(s)
        k = int(rng.integers(0, 4))
        ret = np.rot90(ret, k)
        if eye == "left":
            ret = ret[:, ::-1]
        zoom = rng.uniform(1.0, 1.15)
        ret = ndimage.affine_transform(
            ret, np.diag([1 / zoom, 1 / zoom, 1]), offset=(s * (1 - 1 / zoom) / 2, s * (1 - 1 / zoom) / 2, 0), order=1
        )
        img = ret / (ret[fov > 0.5].mean(axis=0) + 1e-6) * base_rgb * 0.85
        img = img * np.exp(0.06 * tex)[..., None]
    else:
        bg = base_rgb[None, None, :] * (1.0 + 0.07 * tex[..., None] + 0.03 * fine[..., None] * np.array([1, 0.6, 0.4]))
        # macula: darker, browner; tiny foveal reflex
        dm2 = ((ay - mac[0]) ** 2 + (ax - mac[1]) ** 2) / (rng.uniform(0.16, 0.24) ** 2)
        bg = bg * (1.0 - rng.uniform(0.2, 0.4) * np.exp(-dm2 / 2))[..., None] * np.array([1.0, 0.92, 0.95])
        # optic disc: bright yellowish-pink ellipse with a paler cup
        dd = ((ay - disc[0]) / (disc_r * rng.uniform(1.0, 1.15))) ** 2 + ((ax - disc[1]) / disc_r) ** 2
        disc_a = 1.0 / (1.0 + np.exp((np.sqrt(dd) - 1.0) * disc_r * radius / 0.9))
        cup_a = np.exp(-dd / (2 * rng.uniform(0.15, 0.3) ** 2))
        disc_rgb = np.array([1.0, rng.uniform(0.72, 0.88), rng.uniform(0.45, 0.65)]) * rng.uniform(0.85, 1.0)
        img = bg * (1 - disc_a[..., None] * 0.8) + disc_a[..., None] * 0.8 * disc_rgb
        img = img * (1 - 0.35 * cup_a[..., None]) + 0.35 * cup_a[..., None] * np.array([1.0, 0.95, 0.85])
        # nerve-fibre sheen (grade independent distractor)
        if rng.random() < 0.3:
            sheen = np.exp(-(((np.abs(ay - disc[0]) - 0.35) / 0.12) ** 2)) * np.exp(-((ax - disc[1] + 0.3) ** 2) / 0.2)
            img = img + 0.08 * sheen[..., None] * np.array([1.0, 1.0, 0.9])

    # ---- vessels ----
    step = 0.6 / radius
    arteries, veins = _vessel_tree(rng, disc, step)
    beading = grade == 3 and rng.random() < 0.45 or grade == 4 and rng.random() < 0.2
    if beading:  # venous beading: sausage-like width modulation of >= 2 major veins
        major = [i for i, (p, _) in enumerate(veins) if len(p) * step > 0.9]
        for i in rng.permutation(major)[: max(2, int(rng.integers(2, len(major) + 1)))] if major else []:
            p, w = veins[i]
            t = np.arange(len(p)) * step
            period = rng.uniform(0.08, 0.13)
            veins[i] = (p, w * (1.0 + 0.9 * np.clip(np.sin(2 * np.pi * t / period), 0, None) ** 2 * (t > 0.2)))
    info["venous_beading"] = bool(beading)
    if not use_retina:
        va = _vessel_alpha(veins, to_px, (s, s), radius)
        aa = _vessel_alpha(arteries, to_px, (s, s), radius)
        img = img * (1 - va[..., None] * (1 - np.array([0.5, 0.3, 0.35])))
        img = img * (1 - aa[..., None] * (1 - np.array([0.72, 0.48, 0.5])))
    elif beading:  # on the photograph only the beaded veins are overlaid
        va = _vessel_alpha(
            [veins[i] for i in range(len(veins)) if len(veins[i][0]) * step > 0.9], to_px, (s, s), radius
        )
        img = img * (1 - va[..., None] * (1 - np.array([0.5, 0.3, 0.35])))

    # ---- lesions (positions in the anatomical frame, avoiding the disc) ----
    def positions(n: int, rmax: float = 0.88, quadrant: int | None = None, near: np.ndarray | None = None, spread=0.1):
        out = np.zeros((0, 2))
        while len(out) < n:
            m = 4 * (n - len(out)) + 4
            if near is not None:
                p = near[None, :] + rng.normal(0, spread, (m, 2))
            else:
                r = rmax * np.sqrt(rng.uniform(0, 1, m))
                t = (
                    rng.uniform(0, 2 * np.pi, m)
                    if quadrant is None
                    else rng.uniform(0, np.pi / 2, m) + quadrant * np.pi / 2
                )
                p = np.stack([r * np.sin(t), r * np.cos(t)], axis=1)  # quadrants around the FOV centre
            ok = (np.hypot(p[:, 0], p[:, 1]) < 0.92) & (np.hypot(p[:, 0] - disc[0], p[:, 1] - disc[1]) > disc_r * 1.6)
            out = np.concatenate([out, p[ok]])
        return out[:n]

    red = np.zeros((s, s))  # haemorrhage / MA opacity
    dark = np.zeros((s, s))  # pre-retinal haemorrhage opacity (darker)
    yel = np.zeros((s, s))  # hard exudates
    cws = np.zeros((s, s))  # cotton-wool spots
    counts = {"ma": 0, "haem": 0, "exudate": 0, "cws": 0, "nv": 0, "preretinal": 0}
    px_r = radius  # FOV units -> pixels

    def red_dots(p: np.ndarray, rmin: float, rmax: float, amp: float, canvas: np.ndarray, blot: bool) -> None:
        if len(p) == 0:
            return
        py, pxx = to_px(p)
        r = rng.uniform(rmin, rmax, len(p)) * px_r
        k = 3 if blot else 1
        for j in range(k):  # blots are 1-3 overlapping sub-blobs
            jit = 0.0 if j == 0 else 0.6
            _stamp(
                canvas, py + rng.normal(0, jit, len(p)) * r, pxx + rng.normal(0, jit, len(p)) * r,
                r * rng.uniform(0.7, 1.0, len(p)), r * rng.uniform(0.7, 1.3, len(p)),
                rng.uniform(0, np.pi, len(p)), np.full(len(p), amp if j == 0 else amp * 0.8), power=4.0,
            )  # fmt: skip

    if grade >= 1:
        n_ma = int(rng.integers(2, 7)) if grade == 1 else int(rng.integers(2, 10))
        red_dots(positions(n_ma, rmax=0.7), 0.011, 0.016, 1.0, red, blot=False)
        counts["ma"] = n_ma
    if grade >= 2:
        kinds = ["haem", "exudate", "cws"]
        chosen = set(rng.choice(kinds, size=int(rng.integers(1, 3)), replace=False).tolist())
        if grade >= 3:
            chosen |= {"haem"} if rng.random() < 0.5 else set()
        if "haem" in chosen:
            n_h = int(rng.integers(1, 7))
            quads = rng.choice(4, size=min(3, n_h), replace=False)
            p = np.concatenate([positions(1, quadrant=int(quads[j % len(quads)])) for j in range(n_h)])
            red_dots(p, 0.025, 0.045, 0.95, red, blot=True)
            counts["haem"] += n_h
        if "exudate" in chosen:
            n_cl = int(rng.integers(1, 3))
            for c in positions(n_cl, rmax=0.55):
                n_e = int(rng.integers(3, 9))
                p = positions(n_e, near=c, spread=0.06)
                py, pxx = to_px(p)
                r = rng.uniform(0.009, 0.02, n_e) * px_r
                _stamp(yel, py, pxx, r, r * rng.uniform(0.8, 1.6, n_e), rng.uniform(0, np.pi, n_e), np.ones(n_e), 4.0)
                counts["exudate"] += n_e
        if "cws" in chosen:
            n_c = int(rng.integers(1, 4))
            p = positions(n_c, rmax=0.75)
            py, pxx = to_px(p)
            r = rng.uniform(0.035, 0.06, n_c) * px_r
            _stamp(cws, py, pxx, r, r * rng.uniform(1.1, 1.6, n_c), rng.uniform(0, np.pi, n_c), np.ones(n_c), 2.0)
            counts["cws"] = n_c
    many_haem = (grade == 3 and (not beading or rng.random() < 0.5)) or (grade == 4 and rng.random() < 0.4)
    if many_haem:  # severe NPDR: many haemorrhages in each of the four quadrants (4-2-1 rule, scaled)
        for q in range(4):
            n_q = int(rng.integers(5, 10))
            red_dots(positions(n_q, quadrant=q), 0.018, 0.035, 0.95, red, blot=True)
            counts["haem"] += n_q
    info["many_haemorrhages"] = bool(many_haem)
    nv_seg: list[tuple[np.ndarray, np.ndarray]] = []
    if grade == 4:
        mode = rng.choice(["nv", "preretinal", "both"], p=[0.55, 0.3, 0.15])
        if mode in ("nv", "both"):
            for _ in range(int(rng.integers(1, 3))):
                if rng.random() < 0.5:  # NVD: on/next to the disc
                    centre = disc + rng.normal(0, disc_r * 0.6, 2)
                else:  # NVE: along a major vessel
                    vp = veins[int(rng.integers(0, min(4, len(veins))))][0]
                    centre = vp[int(rng.uniform(0.25, 0.8) * len(vp))]
                for _ in range(int(rng.integers(10, 18))):
                    st = centre + rng.normal(0, 0.035, 2)
                    p = _walk(rng, st, rng.uniform(0, 2 * np.pi), rng.uniform(0.06, 0.14), step, 0.0, wiggle=9.0)
                    nv_seg.append((p, np.full(len(p), max(0.009, 1.3 / radius))))
                counts["nv"] += 1
        if mode in ("preretinal", "both"):
            c = positions(1, rmax=0.7)
            py, pxx = to_px(c)
            r = rng.uniform(0.1, 0.17) * px_r
            _stamp(dark, py, pxx, np.array([r * rng.uniform(0.65, 0.85)]), np.array([r]), np.array([rot]),
                   np.array([1.3]), power=6.0, flat_top=np.array([rng.uniform(0.1, 0.35)]))  # fmt: skip
            counts["preretinal"] = 1
    info["lesions"] = counts

    # ---- composite lesions relative to the local background ----
    red_rgb = np.array([0.45, 0.22, 0.24]) * rng.uniform(0.9, 1.1)
    img = img * (1 - np.clip(red, 0, 1)[..., None] * (1 - red_rgb))
    img = img * (1 - np.clip(dark, 0, 1)[..., None] * (1 - np.array([0.3, 0.12, 0.13])))
    if nv_seg:
        na = _vessel_alpha(nv_seg, to_px, (s, s), radius)
        img = img * (1 - na[..., None] * (1 - np.array([0.55, 0.3, 0.33])))
    lum = img.mean(axis=2, keepdims=True) / (base_rgb.mean() + 1e-6)
    ya = np.clip(yel, 0, 1)[..., None] * rng.uniform(0.75, 0.95)
    img = img * (1 - ya) + ya * np.array([1.0, 0.88, 0.45]) * np.clip(lum * 1.05, 0.7, 1.2)
    ca = np.clip(cws, 0, 1)[..., None] * rng.uniform(0.45, 0.65)
    img = img * (1 - ca) + ca * np.array([0.98, 0.86, 0.72]) * np.clip(lum, 0.7, 1.1)

    # ---- camera: illumination, vignetting, gamma, colour cast, blur, noise ----
    vig = 1.0 - rng.uniform(0.1, 0.55) * rho2 ** rng.uniform(1.0, 2.0)
    g_dir = rng.uniform(0, 2 * np.pi)
    vig = vig * (1.0 + rng.uniform(0.0, 0.25) * (np.cos(g_dir) * ux + np.sin(g_dir) * uy))
    img = img * vig[..., None] * gain
    img = np.clip(img, 0, None) ** rng.uniform(0.75, 1.35)
    img = img * (1.0 + rng.normal(0, 0.08, 3))
    sig = rng.uniform(0.2, 0.7) * s / 256
    if sig > 0.25:
        img = ndimage.gaussian_filter(img, (sig, sig, 0))
    img = img + rng.normal(0, rng.uniform(0.004, 0.02), img.shape)
    img = img * fov[..., None] + rng.uniform(0.0, 0.03) * (1 - fov[..., None])
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), info


# ----------------------------------------------------------------------------------------------------------------------
# dataset writer + CLI
# ----------------------------------------------------------------------------------------------------------------------
def synthdr_id(seed: int, index: int) -> str:
    """APTOS-style 12-hex-digit ``id_code`` of image ``index`` of the SynthDR set with ``seed`` (deterministic)."""
    return hashlib.sha1(f"synthdr-{int(seed)}-{int(index)}".encode()).hexdigest()[:12]


def grade_counts(num: int, class_probs: Sequence[float] | None = None) -> np.ndarray:
    """Exact per-grade image counts for ``num`` images (largest-remainder rounding of ``num * class_probs``).

    Args:
        num: number of images (>= 1).
        class_probs: 5 non-negative weights (normalised here); None = balanced.

    Returns:
        int array (5,) summing to ``num``.

    Raises:
        ValueError: ``num < 1``, wrong length, negative or all-zero weights.
    """
    if int(num) < 1:
        raise ValueError(f"num must be >= 1, got {num!r}.")
    p = np.full(NUM_GRADES, 1.0 / NUM_GRADES) if class_probs is None else np.asarray(class_probs, dtype=np.float64)
    if p.shape != (NUM_GRADES,) or np.any(p < 0) or not np.isfinite(p).all() or p.sum() <= 0:
        raise ValueError(
            f"class_probs must be {NUM_GRADES} non-negative weights with a positive sum, got {class_probs!r}."
        )
    exact = p / p.sum() * int(num)
    counts = np.floor(exact).astype(np.int64)
    rem = int(num) - int(counts.sum())
    counts[np.argsort(-(exact - counts), kind="stable")[:rem]] += 1
    return counts


def _ignore_sigint() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _render_job(args: tuple[int, int, int, int, float, str]) -> dict[str, Any]:
    seed, i, grade, size, retina_prob, path = args
    from PIL import Image

    img, info = render_fundus(grade, size, np.random.default_rng([seed, i]), retina_prob)
    Image.fromarray(img).save(path, compress_level=1)
    return info


def generate_synthdr(
    out_dir: str | os.PathLike,
    num: int,
    size: int = 128,
    seed: int = 0,
    class_probs: Sequence[float] | None = None,
    retina_prob: float = 0.0,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Write a SynthDR dataset in Kaggle APTOS 2019 layout (``train.csv`` + ``train_images/<id_code>.png``).

    Args:
        out_dir: output folder (created).
        num: number of images.
        size: image side in pixels (>= 32).
        seed: dataset seed; image ``i`` is drawn from ``np.random.default_rng([seed, i])``.
        class_probs: 5 weights for grades 0-4 (normalised; exact counts by largest remainder); None = balanced.
        retina_prob: probability that an image uses the CC0 ``skimage.data.retina()`` photograph as its base.
        workers: processes used to render (1 = in this process). Output does not depend on it.
        overwrite: allow writing into a folder that already holds a ``train.csv``.
        progress: show a tqdm progress bar.

    Returns:
        the rows written: ``{"id_code", "diagnosis", "image", "eye", "base", "lesions", ...}`` in ``train.csv`` order.

    Raises:
        FileExistsError: ``out_dir/train.csv`` exists and ``overwrite`` is False.
        ValueError: invalid ``num``, ``size``, ``class_probs``, ``retina_prob`` or ``workers``.
    """
    counts = grade_counts(num, class_probs)
    if int(size) < 32:
        raise ValueError(f"size must be >= 32 pixels, got {size!r}.")
    if not 0.0 <= float(retina_prob) <= 1.0:
        raise ValueError(f"retina_prob must be in [0, 1], got {retina_prob!r}.")
    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers!r}.")
    out = Path(out_dir)
    if (out / "train.csv").exists() and not overwrite:
        raise FileExistsError(f"{out / 'train.csv'} already exists; pass overwrite=True (--overwrite) to replace it.")
    img_dir = out / "train_images"
    img_dir.mkdir(parents=True, exist_ok=True)
    grades = np.random.default_rng([int(seed), 0x5D12]).permutation(np.repeat(np.arange(NUM_GRADES), counts))
    ids = [synthdr_id(seed, i) for i in range(int(num))]
    if len(set(ids)) != len(ids):  # 48-bit ids: practically impossible, but never write a broken dataset
        raise RuntimeError("id_code collision; use another seed.")
    jobs = [
        (int(seed), i, int(grades[i]), int(size), float(retina_prob), str(img_dir / f"{ids[i]}.png"))
        for i in range(num)
    ]
    if int(workers) == 1:
        it = map(_render_job, jobs)
        infos = list(_progress(it, num, progress))
    else:
        # workers ignore SIGINT: Ctrl-C reaches this process only, which stops the workers instead of waiting for
        # every queued job (the pool's shutdown(wait=True) made Ctrl-C hang); train.csv is then not written
        ex = ProcessPoolExecutor(max_workers=int(workers), initializer=_ignore_sigint)
        try:
            infos = list(
                _progress(ex.map(_render_job, jobs, chunksize=max(1, num // (8 * int(workers)))), num, progress)
            )
        except BaseException:
            for proc in list((getattr(ex, "_processes", None) or {}).values()):
                proc.terminate()
            ex.shutdown(wait=False, cancel_futures=True)
            raise
        ex.shutdown()
    rows = [{"id_code": ids[i], "diagnosis": int(grades[i]), "image": jobs[i][5], **infos[i]} for i in range(num)]
    with open(out / "train.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id_code", "diagnosis"])
        w.writerows([r["id_code"], r["diagnosis"]] for r in rows)
    meta = {
        "generator": "monai_qmix.data.synthetic",
        "num": int(num),
        "size": int(size),
        "seed": int(seed),
        "class_probs": None if class_probs is None else [float(x) for x in class_probs],
        "class_counts": counts.tolist(),
        "retina_prob": float(retina_prob),
        "grade_rules": {str(k): v for k, v in GRADE_RULES.items()},
        "images": [{k: v for k, v in r.items() if k != "image"} for r in rows],
    }
    with open(out / "synthdr.json", "w") as f:
        json.dump(meta, f, indent=1)
    return rows


def _progress(it: Any, total: int, on: bool) -> Any:
    if not on:
        return it
    try:
        from tqdm import tqdm

        return tqdm(it, total=total, desc="SynthDR")
    except ImportError:  # pragma: no cover
        warnings.warn("tqdm is not installed; no progress bar.", stacklevel=2)
        return it


def _parse_probs(text: str | None) -> list[float] | None:
    if text is None or text.strip().lower() in ("", "balanced", "none"):
        return None
    try:
        return [float(x) for x in text.replace(" ", "").split(",")]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--class_probs must be 5 comma-separated numbers, got {text!r}.") from e


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point (``python -m monai_qmix.data.synthetic --help``)."""
    ap = argparse.ArgumentParser(prog="python -m monai_qmix.data.synthetic", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output folder (APTOS layout)")
    ap.add_argument("--num", type=int, default=1000, help="number of images")
    ap.add_argument("--size", type=int, default=128, help="image side in pixels")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--class_probs", type=_parse_probs, default=None, help="5 comma-separated weights; default balanced"
    )
    ap.add_argument("--retina_prob", type=float, default=0.0, help="probability of the skimage retina photo as base")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows = generate_synthdr(
        a.out, a.num, a.size, a.seed, a.class_probs, a.retina_prob, a.workers, a.overwrite, progress=not a.quiet
    )
    counts = np.bincount([r["diagnosis"] for r in rows], minlength=NUM_GRADES).tolist()
    print(f"wrote {len(rows)} images ({a.size}px, grades 0-4: {counts}) to {a.out} in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
