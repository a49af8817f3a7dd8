# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Fundus image quality degradations after Shen et al., "Modeling and Enhancing Low-quality Retinal Fundus Images"
(IEEE TMI 40(3), 2021; official code ``HzFu/EyeQ_Enhancement:degradation_code``).

Three degradation factors, applied in the reference order *illumination -> spot -> blur*:

* **illumination** (type bit 3): colour (brightness, contrast, saturation, torchvision semantics), a coloured
  **halo** ring at the FOV periphery and a dark **hole** (non-uniform lighting);
* **spot** (type bit 2): 5-10 bright, blurred artefact spots (light-transmission model);
* **blur** (type bit 1): Gaussian blur.

Type codes are the reference's 3-character strings ``"<blur><spot><illumination>"``: the **first** character is
blur, the second spot, the **last** illumination (``"001"`` = illumination only, ``"100"`` = blur only, ``"111"``
= all three). Names (``"illumination"``, ``"spot"``, ``"blur"``, joined with ``+``, or ``"all"``) are accepted too.

Design (all documented deviations from the reference are options or noted here):

* **FOV-aware**: pixels outside the field-of-view mask are returned exactly as in the input; statistics that the
  reference takes over the whole image (contrast mean, halo level, hole mean) are taken over the FOV (the halo
  level counts the background as 0, which equals the reference for black backgrounds).
* **Size-independent parameters**: every length is drawn in pixels of a ``reference_size`` (512, the size at which
  the reference runs) and recorded as a *fraction of the image side*, so a recorded degradation replays at any
  size. The spot intensity formula uses the 512-equivalent radius, so it stays bright at any resolution.
* **Cheap smooth fields**: halo, hole and spot fields are rendered (anti-aliased) and blurred at a working
  resolution of at most ``field_size`` pixels and upsampled bilinearly; blurs are separable Gaussian kernels with
  continuous widths (the reference's ``cv2.GaussianBlur(ksize, sigma)`` truncated kernels), computed with shifted
  multiply-adds on CPU (batches are processed in cache-sized chunks) and one grouped convolution on CUDA; the wide
  halo and hole kernels are applied as two batched matrix products (banded blur matrices) instead.
* **Severity** ``s`` in ``[0, 1]`` scales every factor towards the identity: colour factors ``1 + s (f - 1)``,
  halo/hole/spot strength ``x s``, blur sigma ``x s``. ``s = 1`` (default) is the reference's range, ``s = 0``
  the identity. Named levels: ``"mild"`` = 1/3, ``"moderate"`` = 2/3, ``"severe"`` = 1. The number of random
  draws does not depend on ``s``, so the same seed gives the same geometry at every severity.
* **Batches**: for ``(B, C, H, W)`` input the parameters are drawn per element, in order, from ``self.R``; a batch
  call therefore equals stacking single-image calls of an identically seeded transform applied sequentially.
* **Replay**: the drawn parameters are available from :attr:`RandFundusDegradation.last_params` and attached to
  MetaTensor outputs under ``meta["fundus_degradation"]`` (:data:`DEGRADATION_META_KEY`) as a JSON string (its
  structure varies with the type drawn, and a string collates into a batch where a varying dict cannot);
  :meth:`RandFundusDegradation.apply` re-applies them (dicts or that JSON string). Quantities that depend on the
  image (the halo level, the hole darkening ``beta`` which depends on the FOV mean) are recomputed from the image on
  replay, as in the reference.

Reference quirks kept as options with the reference behaviour as default: ``halo_presets=(1, 2)`` (the white
preset 0 is unreachable in the reference), ``reference_size=512`` and ``blur_kernel_rule="official"`` (kernel
size ``randint(sigma/3, sigma/2)``, i.e. a mild, box-like blur; ``"full_gaussian"`` uses a full ``6 sigma + 1``
Gaussian, computed by downsample-blur-upsample for large sigma).
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms.transform import MapTransform, RandomizableTransform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor, look_up_option

from monai_qmix.transforms.fundus import fov_mask

__all__ = [
    "DEGRADATION_META_KEY",
    "DEGRADATION_TYPES",
    "HALO_PRESET_COLORS",
    "SEVERITY_LEVELS",
    "parse_degradation_type",
    "RandFundusDegradation",
    "RandFundusIllumination",
    "RandFundusSpot",
    "RandFundusBlur",
    "RandFundusDegradationd",
    "RandFundusDegradationD",
    "RandFundusDegradationDict",
    "RandFundusIlluminationd",
    "RandFundusIlluminationD",
    "RandFundusIlluminationDict",
    "RandFundusSpotd",
    "RandFundusSpotD",
    "RandFundusSpotDict",
    "RandFundusBlurd",
    "RandFundusBlurD",
    "RandFundusBlurDict",
]

#: MetaTensor meta key under which the drawn parameters are recorded (a dict, or a list of dicts for a batch).
DEGRADATION_META_KEY = "fundus_degradation"
#: The reference's valid type codes ``"<blur><spot><illumination>"``.
DEGRADATION_TYPES = ("001", "010", "011", "100", "101", "110", "111")
#: Halo colours (R, G, B) in [0, 1] of the reference's presets 0 ("white"), 1 (cyan-ish), 2 (yellow-green).
HALO_PRESET_COLORS = (
    (251 / 255, 249 / 255, 246 / 255),
    (141 / 255, 238 / 255, 238 / 255),
    (177 / 255, 195 / 255, 147 / 255),
)
#: Named severity levels.
SEVERITY_LEVELS = {"mild": 1.0 / 3.0, "moderate": 2.0 / 3.0, "severe": 1.0}

_TYPE_NAMES = {"blur": 0, "spot": 1, "illumination": 2}  # character position in the type code
_ILLUMINATION_STEPS = ("color", "halo", "hole")
_BLUR_RULES = ("official", "full_gaussian")
_MIN_SIZE = 32
_GRAY = (0.2989, 0.587, 0.114)  # torchvision rgb_to_grayscale weights
_RANGE_TOL = 1e-3
_CPU_CHUNK_ELEMENTS = 1 << 20  # ~4 MB of float32 per temporary on CPU (cache friendly)
_FIELD_BATCH = 64  # images whose low-resolution fields are built in one call on CPU


# ----------------------------------------------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------------------------------------------
def parse_degradation_type(de_type: str) -> str:
    """Convert a degradation type spec into the reference's 3-character code ``"<blur><spot><illumination>"``.

    Args:
        de_type: a code (``"001"`` ... ``"111"``), a name (``"illumination"``, ``"spot"``, ``"blur"``), names
            joined with ``+`` (``"illumination+blur"``) or ``"all"``.

    Returns:
        the code, e.g. ``parse_degradation_type("illumination+blur") == "101"``.

    Raises:
        ValueError: for anything else (including ``"000"``).
    """
    if not isinstance(de_type, str):
        raise ValueError(f"de_type must be a type code or name string, got {de_type!r} ({type(de_type).__name__}).")
    spec = de_type.strip().lower()
    if re.fullmatch(r"[01]{3}", spec):
        if spec not in DEGRADATION_TYPES:
            raise ValueError(f"de_type {de_type!r} selects no degradation; expected one of {DEGRADATION_TYPES}.")
        return spec
    if spec == "all":
        return "111"
    bits = ["0", "0", "0"]
    for name in spec.split("+"):
        if name.strip() not in _TYPE_NAMES:
            raise ValueError(
                f"de_type {de_type!r} is not a valid degradation type: expected a code in {DEGRADATION_TYPES} "
                f"(characters: blur, spot, illumination), 'all', or names from {tuple(_TYPE_NAMES)} joined with '+'."
            )
        bits[_TYPE_NAMES[name.strip()]] = "1"
    return "".join(bits)


def _check_severity(severity: float | str) -> float:
    if isinstance(severity, str):
        return float(look_up_option(severity.lower(), SEVERITY_LEVELS))
    if isinstance(severity, bool) or not isinstance(severity, (int, float)) or not 0.0 <= float(severity) <= 1.0:
        raise ValueError(f"severity must be a number in [0, 1] or one of {tuple(SEVERITY_LEVELS)}, got {severity!r}.")
    return float(severity)


def _check_range(name: str, value: Sequence[float], low: float = 0.0, integer: bool = False) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (min, max) pair, got {value!r}.") from None
    if not low <= lo <= hi or (integer and (lo != int(lo) or hi != int(hi))):
        kind = "integers" if integer else "numbers"
        raise ValueError(f"{name} must be {kind} with {low} <= min <= max, got {value!r}.")
    return lo, hi


def _odd(k: int) -> int:
    return k if k % 2 == 1 else k + 1


# ----------------------------------------------------------------------------------------------------------------
# torch building blocks (CPU and CUDA)
# ----------------------------------------------------------------------------------------------------------------
def _gaussian_kernels(width: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Rows of truncated, normalised Gaussian kernels of continuous ``width`` (pixels) and ``sigma`` -> ``(N, K)``.

    A tap at offset ``j`` gets weight ``exp(-j^2 / 2 sigma^2) * clamp(width / 2 + 0.5 - |j|, 0, 1)``: for odd
    integer widths this is exactly OpenCV's ``getGaussianKernel(width, sigma)``; widths <= 1 give the identity.
    """
    half = max(0, math.ceil(float(width.max()) / 2.0 - 0.5))
    j = torch.arange(-half, half + 1, device=width.device, dtype=width.dtype)
    cover = (width[:, None] / 2.0 + 0.5 - j.abs()[None]).clamp(0.0, 1.0)
    gauss = torch.exp(-(j[None] ** 2) / (2.0 * sigma.clamp_min(1e-6)[:, None] ** 2))
    k = gauss * cover
    return k / k.sum(dim=1, keepdim=True)


def _reflect_taps(x: torch.Tensor, k: torch.Tensor, dim: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """Correlate ``x`` ``(N, C, H, W)`` along ``dim`` with per-image kernels ``k`` ``(N, 2 h + 1)`` (``h`` smaller
    than the axis), reflecting at the border: what reflect padding and shifted multiply-adds give, without the padded
    copy. One multiply-add per tap over the whole batch; the few border rows a shift leaves take their reflected
    sources with a small gather. ``out``: where to write the result (not ``x`` itself); a new tensor when ``None``."""
    n, size = x.shape[0], x.shape[dim]
    half = k.shape[1] // 2
    weights = k.view(n, 1, 1, 1, -1).unbind(dim=-1)
    res = torch.mul(x, weights[half], out=out) if out is not None else x * weights[half]
    for j, wj in enumerate(weights):
        o = j - half
        if o == 0:
            continue
        a = abs(o)
        # interior: output r reads r + o
        res.narrow(dim, max(0, -o), size - a).addcmul_(x.narrow(dim, max(0, o), size - a), wj)
        # border: r + o falls outside [0, size) and reflects (without repeating the edge)
        rows = torch.arange(size - a, size) if o > 0 else torch.arange(0, a)
        src = rows + o
        src = torch.where(src < 0, -src, torch.where(src > size - 1, 2 * (size - 1) - src, src))
        res.narrow(dim, int(rows[0]), a).addcmul_(x.index_select(dim, src.to(x.device)), wj)
    return res


def _separable_blur(
    x: torch.Tensor,
    width_y: torch.Tensor,
    width_x: torch.Tensor,
    sigma_y: torch.Tensor,
    sigma_x: torch.Tensor,
    use_conv: bool | None = None,
    overwrite: bool = False,
) -> torch.Tensor:
    """Blur each of the ``N`` images of ``x`` ``(N, C, H, W)`` with its own separable Gaussian (reflect border).

    On CPU, one shifted multiply-add per tap over the batch (several times faster than a depthwise convolution
    there); on CUDA, one grouped convolution for the whole batch (``use_conv`` forces either path). ``overwrite``:
    ``x`` may be overwritten (on CPU its memory then holds intermediate or final results: one allocation fewer).
    """
    if use_conv is None:
        use_conv = x.device.type != "cpu"
    n, c, h, w = x.shape
    out = x
    for dim, width, sigma in ((2, width_y, sigma_y), (3, width_x, sigma_x)):
        k = _gaussian_kernels(width.to(x), sigma.to(x))
        half = k.shape[1] // 2
        if half == 0:
            continue
        size = h if dim == 2 else w
        if not use_conv and half < size:
            reuse = overwrite and out is not x  # the second pass can write into x
            out = _reflect_taps(out, k, dim, out=x if reuse else None)
            continue
        pad = (0, 0, half, half) if dim == 2 else (half, half, 0, 0)
        padded = F.pad(out, pad, mode="reflect" if half < size else "replicate")
        if not use_conv:
            # one multiply-add per tap over the whole batch, each image with its own weight (zero taps pad shorter
            # kernels to the batch's longest one and add exact zeros)
            weights = k.view(n, 1, 1, 1, -1).unbind(dim=-1)
            res = padded.narrow(dim, 0, size) * weights[0]
            for j in range(1, len(weights)):
                res.addcmul_(padded.narrow(dim, j, size), weights[j])
            out = res
        else:
            shape = (n * c, 1, -1, 1) if dim == 2 else (n * c, 1, 1, -1)
            weight = k.repeat_interleave(c, dim=0).view(shape)
            out = F.conv2d(padded.reshape(1, n * c, *padded.shape[2:]), weight, groups=n * c).reshape(n, c, h, w)
    return out


def _blur_matrix(k: torch.Tensor, size: int) -> torch.Tensor:
    """Kernel rows ``k`` ``(N, K)`` as ``(N, size, size)`` matrices that blur one axis with the border handling of
    :func:`_separable_blur` (reflect, or replicate for kernels wider than the image): ``M @ x`` blurs along H."""
    half = k.shape[1] // 2
    src = torch.arange(size, device=k.device)[:, None] + torch.arange(-half, half + 1, device=k.device)[None]
    if half < size:
        src = src.abs()
        src = torch.where(src > size - 1, 2 * (size - 1) - src, src)
    else:
        src = src.clamp(0, size - 1)
    n = k.shape[0]
    mat = torch.zeros(n, size, size, device=k.device, dtype=k.dtype)
    return mat.scatter_add_(2, src.expand(n, size, -1), k[:, None, :].expand(n, size, -1))


def _field_blur(
    x: torch.Tensor, width_y: torch.Tensor, width_x: torch.Tensor, sigma_y: torch.Tensor, sigma_x: torch.Tensor
) -> torch.Tensor:
    """:func:`_separable_blur` as two batched matrix products: much faster for kernels as wide as a good part of the
    image (the halo and hole fields); narrow kernels (spots, image blur) stay with :func:`_separable_blur`."""
    n, _, h, w = x.shape
    my = _blur_matrix(_gaussian_kernels(width_y.to(x), sigma_y.to(x)), h)
    mx = _blur_matrix(_gaussian_kernels(width_x.to(x), sigma_x.to(x)), w)
    return torch.matmul(torch.matmul(my[:, None], x), mx[:, None].transpose(-1, -2))


def _grid(size: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates as fractions of the image side, ``(1, size, 1)`` and ``(1, 1, size)``."""
    t = (torch.arange(size, device=device, dtype=dtype) + 0.5) / size
    return t.view(1, size, 1), t.view(1, 1, size)


def _disc(dist: torch.Tensor, radius: torch.Tensor, size: int) -> torch.Tensor:
    """Anti-aliased disc indicator (1 pixel soft edge) from distances (fractions of the side)."""
    return ((radius - dist) * size + 0.5).clamp(0.0, 1.0)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """Luma ``(N, 1, H, W)`` of RGB ``x`` ``(N, 3, H, W)`` (three single-channel passes, no 3-channel temporary)."""
    g = x[:, 0:1] * _GRAY[0]
    return g.add_(x[:, 1:2], alpha=_GRAY[1]).add_(x[:, 2:3], alpha=_GRAY[2])


def _masked_sum(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``(x * m).sum()`` per image and channel, ``(N, C)``, as a batched dot product (no temporary)."""
    n, c = x.shape[:2]
    return torch.bmm(x.reshape(n, c, -1), m.reshape(n, -1, 1)).view(n, c)


def _fov_mean(x: torch.Tensor, m: torch.Tensor, m_sum: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image mean over the FOV (all channels) ``(N,)``; images with an empty FOV give 0. ``m_sum``: the
    FOV's pixel count per image, when already known."""
    m_sum = m.sum(dim=(1, 2, 3)) if m_sum is None else m_sum
    return _masked_sum(x, m).sum(dim=1) / (x.shape[1] * m_sum).clamp_min(1.0)


def _apply_color(
    x: torch.Tensor, m: torch.Tensor, p: Sequence[dict], m_sum: torch.Tensor | None = None
) -> torch.Tensor:
    """torchvision-style brightness -> contrast -> saturation (in place); the contrast mean is taken in the FOV."""

    def factor(key: str) -> torch.Tensor:
        vals = [q.get("color", {}).get(key, 1.0) for q in p]
        return torch.tensor(vals, device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)

    x.mul_(factor("brightness")).clamp_(0.0, 1.0)
    m_sum = m.sum(dim=(1, 2, 3)) if m_sum is None else m_sum
    # the FOV mean of the luma is the luma of the FOV channel means (linear): no luma image needed here
    gray_w = torch.tensor(_GRAY, device=x.device, dtype=x.dtype)
    mean = ((_masked_sum(x, m) @ gray_w) / m_sum.clamp_min(1.0)).view(-1, 1, 1, 1)
    c = factor("contrast")
    torch.addcmul((1.0 - c) * mean, x, c, out=x).clamp_(0.0, 1.0)
    s = factor("saturation")
    return torch.addcmul(_gray(x).mul_(1.0 - s), x, s, out=x).clamp_(0.0, 1.0)


def _halo_field(p: Sequence[dict], size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Blurred ring between the inner and the outer halo discs at ``size`` px, ``(N, 1, size, size)``."""
    hs = [q.get("halo") for q in p]
    val = [(h["center"], h["inner_diameter"], h["outer_diameter"], h["kernel"], h["sigma"]) if h else None for h in hs]
    val = [v if v is not None else ((0.5, 0.5), 1.0, 1.0, 0.0, 0.0) for v in val]
    t = torch.tensor([[c[0], c[1], da, db, k, s] for c, da, db, k, s in val], device=device, dtype=dtype)
    yy, xx = _grid(size, device, dtype)
    dist = torch.sqrt((yy - t[:, 0, None, None]) ** 2 + (xx - t[:, 1, None, None]) ** 2)
    ring = _disc(dist, t[:, 3, None, None] / 2, size) * (1.0 - _disc(dist, t[:, 2, None, None] / 2, size))
    return _field_blur(ring[:, None], t[:, 4] * size, t[:, 4] * size, t[:, 5] * size, t[:, 5] * size)


def _hole_field(p: Sequence[dict], size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Blurred dark-hole disc at ``size`` px, ``(N, 1, size, size)``."""
    hs = [q.get("hole") for q in p]
    val = [(*h["center"], h["diameter"], *h["kernel"], h["sigma"]) if h else (0.5, 0.5, 0.0, 0.0, 0.0, 0.0) for h in hs]
    t = torch.tensor(val, device=device, dtype=dtype)
    yy, xx = _grid(size, device, dtype)
    dist = torch.sqrt((yy - t[:, 0, None, None]) ** 2 + (xx - t[:, 1, None, None]) ** 2)
    disc = _disc(dist, t[:, 2, None, None] / 2, size)
    return _field_blur(disc[:, None], t[:, 3] * size, t[:, 4] * size, t[:, 5] * size, t[:, 5] * size)


def _spot_field(p: Sequence[dict], size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Sum of the blurred spots (each times its value) at ``size`` px, ``(N, 1, size, size)``.

    Each spot is rasterised and blurred in a square window around it that holds the whole blurred disc (clipped to
    the image, where the blur reflects at the image border exactly as on the full field), then added into its image:
    the same values as full-field rasterisation at a fraction of the cost, the spots being small.
    """
    rows, owner = [], []
    for i, q in enumerate(p):
        for d in q["spot"]["spots"] if "spot" in q else []:
            rows.append([*d["center"], d["radius"], *d["kernel"], d["sigma"], d["value"]])
            owner.append(i)
    field = torch.zeros(len(p), 1, size, size, device=device, dtype=dtype)
    if not rows:
        return field
    t = torch.tensor(rows, device=device, dtype=dtype)  # (R, 7)
    # half kernel widths as _gaussian_kernels computes them, and the disc's support (anti-aliased edge included)
    half = max(0, math.ceil(float((t[:, 3:5] * size).max()) / 2.0 - 0.5))
    support = math.ceil(float(t[:, 2].max()) * size + 1.5)
    extent = support + half + 1
    win = min(size, 2 * extent + 1)
    if win == size:
        origin_y = origin_x = torch.zeros(len(rows), device=device, dtype=torch.long)
    else:
        centre = (t[:, :2] * size).floor().long() - extent
        origin_y, origin_x = centre.clamp(0, size - win).unbind(dim=1)
    steps = torch.arange(win, device=device)
    iy, ix = origin_y[:, None] + steps[None], origin_x[:, None] + steps[None]  # (R, win) pixel indices
    yy = ((iy.to(dtype) + 0.5) / size)[:, :, None]
    xx = ((ix.to(dtype) + 0.5) / size)[:, None, :]
    dist = torch.sqrt((yy - t[:, 0, None, None]) ** 2 + (xx - t[:, 1, None, None]) ** 2)
    disc = _disc(dist, t[:, 2, None, None], size)
    blurred = _separable_blur(disc[:, None], t[:, 3] * size, t[:, 4] * size, t[:, 5] * size, t[:, 5] * size)
    blurred = blurred[:, 0] * t[:, 6, None, None]
    owner_t = torch.tensor(owner, device=device, dtype=torch.long)
    flat = (owner_t[:, None, None] * size + iy[:, :, None]) * size + ix[:, None, :]
    return field.view(-1).index_add_(0, flat.reshape(-1), blurred.reshape(-1)).view(len(p), 1, size, size)


def _apply_blur(x: torch.Tensor, p: Sequence[dict]) -> torch.Tensor:
    """Per-image Gaussian blur: truncated official kernels directly; full Gaussians via downsample-blur-upsample."""
    n = x.shape[-1]
    blurs = [q.get("blur") for q in p]
    official = [i for i, b in enumerate(blurs) if b is not None and b.get("kernel") is not None]
    out = x  # in place: x is the caller's working copy
    if official:
        kh = torch.tensor([blurs[i]["kernel"][0] * n for i in official], dtype=torch.float64)
        kw = torch.tensor([blurs[i]["kernel"][1] * n for i in official], dtype=torch.float64)
        sg = torch.tensor([blurs[i]["sigma"] * n for i in official], dtype=torch.float64)
        if len(official) == len(p):
            out = _separable_blur(x, kh, kw, sg, sg, overwrite=True)
        else:
            out[official] = _separable_blur(x[official], kh, kw, sg, sg, overwrite=True)
    # full Gaussian: group the images by their downsampling factor (so a batch equals single-image calls)
    groups: dict[int, list[int]] = {}
    for i, b in enumerate(blurs):
        if b is not None and b.get("kernel") is None and b["sigma"] * n > 0:
            groups.setdefault(max(1, int(b["sigma"] * n / 2.0)), []).append(i)
    for f, idx in groups.items():
        sigma_px = torch.tensor([blurs[i]["sigma"] * n for i in idx], dtype=torch.float64)
        xi = out if len(idx) == len(p) else out[idx]
        if f > 1:
            low_size = math.ceil(n / f)
            xi = F.interpolate(xi, size=(low_size, low_size), mode="area")
            # area down- and bilinear up-sampling add roughly (f / 2)^2 of variance
            sigma_px = (sigma_px**2 - f**2 / 4.0).clamp_min(0.25).sqrt() / f
        width = 2 * torch.ceil(3 * sigma_px) + 1
        xi = _separable_blur(xi, width, width, sigma_px, sigma_px, overwrite=True)
        if f > 1:
            xi = F.interpolate(xi, size=(n, n), mode="bilinear", align_corners=False)
        if len(idx) == len(p):
            out = xi
        else:
            out[idx] = xi
    return out.clamp_(0.0, 1.0)


_FIELD_BUILDERS = {"halo": _halo_field, "hole": _hole_field, "spot": _spot_field}


def _low_res_fields(
    p: Sequence[dict], n: int, field_size: int, device: torch.device, dtype: torch.dtype
) -> tuple[list[str], torch.Tensor | None]:
    """The smooth halo, hole and spot fields that ``p`` asks for, at ``min(n, field_size)`` pixels:
    ``(names, (N, len(names), s, s))`` (``None`` when no image needs one). Built for many images at once: at this
    resolution the cost is per call, not per pixel."""
    names = [k for k in _FIELD_BUILDERS if any(k in q for q in p)]
    if not names:
        return names, None
    size = min(n, field_size)
    return names, torch.cat([_FIELD_BUILDERS[k](p, size, device, dtype) for k in names], dim=1)


def _degrade(
    x: torch.Tensor, m: torch.Tensor, p: Sequence[dict], names: Sequence[str], fields: torch.Tensor | None
) -> torch.Tensor:
    """Apply the recorded degradations ``p`` (one dict per image) to ``x`` ``(N, 3, n, n)`` in [0, 1]; ``m`` is the
    float FOV mask ``(N, 1, n, n)``, ``names`` / ``fields`` the low-resolution fields of :func:`_low_res_fields` for
    these images. Works in place on ``x`` (already clamped to [0, 1]); returns the degraded images (not yet
    re-masked)."""
    n = x.shape[-1]
    dev, dt = x.device, x.dtype
    m_sum = m.sum(dim=(1, 2, 3))
    if any("color" in q for q in p):
        x = _apply_color(x, m, p, m_sum)
    if fields is not None:
        size = fields.shape[-1]
        if size != n:
            # one single-channel image per field: much faster than a (N, 3, ...) interpolation on CPU
            fields = F.interpolate(fields.reshape(-1, 1, size, size), size=(n, n), mode="bilinear", align_corners=False)
            fields = fields.view(-1, len(names), n, n)
        field = dict(zip(names, fields.split(1, dim=1)))
        if "halo" in field:
            hs = [q.get("halo") for q in p]
            color = torch.tensor([h["color"] if h else (0.0, 0.0, 0.0) for h in hs], device=dev, dtype=dt)
            strength = torch.tensor([h["strength"] if h else 0.0 for h in hs], device=dev, dtype=dt)
            # the reference's level is the whole-image mean; here the background counts as 0
            level = _fov_mean(x, m, m_sum) * (m_sum / m[0].numel()) * strength
            x.addcmul_((level[:, None] * color)[:, :, None, None], field["halo"]).clamp_(0.0, 1.0)
        if "hole" in field:
            hs = [q.get("hole") for q in p]
            rows = [(h["beta0"], h["beta_u"], h["min_mean"], h["strength"]) if h else (0.0, 0.0, 1.0, 0.0) for h in hs]
            b0, u, min_mean, strength = torch.tensor(rows, device=dev, dtype=dt).unbind(dim=1)
            a = _fov_mean(x, m, m_sum)
            beta = (b0 - 0.06 * a + u * 0.01 * a) * strength
            beta = torch.where(a > min_mean, beta, torch.zeros_like(beta))  # dark images are not darkened further
            x.addcmul_(beta.view(-1, 1, 1, 1), field["hole"]).clamp_(0.0, 1.0)
        if "spot" in field:
            x.add_(field["spot"]).clamp_(0.0, 1.0)
    if any("blur" in q for q in p):
        x = _apply_blur(x, p)
    return x


# ----------------------------------------------------------------------------------------------------------------
# array transforms
# ----------------------------------------------------------------------------------------------------------------
class RandFundusDegradation(RandomizableTransform):
    """Randomly degrade the quality of RGB fundus photographs with Shen et al.'s model (TMI 2021), FOV-aware.

    Works on one image ``(3, H, W)`` or a batch ``(B, 3, H, W)`` (square, >= 32 px; crop to the FOV and pad to a
    square first, e.g. with ``CropFundusFOV``), as numpy array, tensor or MetaTensor on CPU or CUDA, float in
    ``[0, 1]`` or integer (scaled by the dtype's maximum). Dtype, device and MetaTensor meta are preserved; pixels
    outside the FOV are returned unchanged. See the module docstring for the model, the type codes
    ``"<blur><spot><illumination>"``, the severity scaling and the recorded parameters.

    Args:
        de_type: a type code (``"001"`` ... ``"111"``) or name (``"illumination"``, ``"spot"``, ``"blur"``, names
            joined with ``+``, ``"all"``) applied to every image; or a sequence of such specs, one of which is drawn
            uniformly per image (e.g. ``DEGRADATION_TYPES`` for a random type as in the reference's seven outputs).
        prob: probability of degrading each image (drawn per image).
        severity: number in ``[0, 1]`` scaling every factor towards the identity (1 = reference ranges), or
            ``"mild"``, ``"moderate"``, ``"severe"``.
        illumination: which illumination steps to apply, a subset of ``("color", "halo", "hole")``.
        brightness: range of the brightness factor (reference: ``(0.7, 1.2)``).
        contrast: range of the contrast factor (reference: ``(0.6, 1.4)``).
        saturation: range of the saturation factor (reference: ``(0.6, 1.4)``).
        halo_presets: halo colour presets to draw from (indices into :data:`HALO_PRESET_COLORS`; the reference
            can only reach 1 and 2).
        hole_min_mean: images whose FOV mean is at most this are not darkened by the hole (reference: 0.25).
        num_spots: (min, max) number of spots, inclusive (reference: ``(5, 10)``).
        spot_radius: (min, max) spot radius as a fraction of the side (reference: ``(0.01, 0.05)``); the drawn spot
            is a disc of half this radius.
        blur_sigma: range of the blur sigma in pixels at ``reference_size`` (reference: ``(5, 15)``).
        blur_kernel_rule: ``"official"`` (kernel sizes ``randint(sigma/3, sigma/2)`` made odd: a mild box-like
            blur, a no-op for small sigma) or ``"full_gaussian"`` (kernel ``6 sigma + 1``).
        reference_size: image size (pixels) at which pixel constants are defined (the reference runs at 512).
        field_size: working resolution (pixels) of the smooth halo, hole and spot fields.
        fov_threshold: forwarded to :func:`monai_qmix.transforms.fundus.fov_mask` when no FOV mask is given.

    Raises:
        ValueError: for invalid options (the message names the parameter and the value).

    Example:
        >>> import torch
        >>> t = RandFundusDegradation("illumination+blur", severity="moderate").set_random_state(0)
        >>> out = t(torch.rand(3, 64, 64))
        >>> t.last_params["type"]
        '101'
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        de_type: str | Sequence[str] = "111",
        prob: float = 1.0,
        severity: float | str = 1.0,
        illumination: Sequence[str] = _ILLUMINATION_STEPS,
        brightness: Sequence[float] = (0.7, 1.2),
        contrast: Sequence[float] = (0.6, 1.4),
        saturation: Sequence[float] = (0.6, 1.4),
        halo_presets: Sequence[int] = (1, 2),
        hole_min_mean: float = 0.25,
        num_spots: Sequence[int] = (5, 10),
        spot_radius: Sequence[float] = (0.01, 0.05),
        blur_sigma: Sequence[float] = (5.0, 15.0),
        blur_kernel_rule: str = "official",
        reference_size: int = 512,
        field_size: int = 128,
        fov_threshold: float | None = None,
    ) -> None:
        if isinstance(prob, bool) or not isinstance(prob, (int, float)) or not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be a probability in [0, 1], got {prob!r}.")
        RandomizableTransform.__init__(self, prob=float(prob))
        specs = [de_type] if isinstance(de_type, str) else list(de_type) if isinstance(de_type, Sequence) else None
        if not specs:
            raise ValueError(f"de_type must be a type spec or a non-empty sequence of type specs, got {de_type!r}.")
        self.types = tuple(parse_degradation_type(s) for s in specs)
        self.severity = _check_severity(severity)
        steps = (illumination,) if isinstance(illumination, str) else tuple(illumination)
        if not steps or any(s not in _ILLUMINATION_STEPS for s in steps):
            raise ValueError(f"illumination must be a non-empty subset of {_ILLUMINATION_STEPS}, got {illumination!r}.")
        self.illumination = tuple(s for s in _ILLUMINATION_STEPS if s in steps)
        self.brightness = _check_range("brightness", brightness)
        self.contrast = _check_range("contrast", contrast)
        self.saturation = _check_range("saturation", saturation)
        presets = tuple(halo_presets)
        if not presets or any(isinstance(k, bool) or k not in range(len(HALO_PRESET_COLORS)) for k in presets):
            raise ValueError(f"halo_presets must be a non-empty sequence from (0, 1, 2), got {halo_presets!r}.")
        self.halo_presets = tuple(int(k) for k in presets)
        if not 0.0 <= float(hole_min_mean) < 1.0:
            raise ValueError(f"hole_min_mean must be in [0, 1), got {hole_min_mean!r}.")
        self.hole_min_mean = float(hole_min_mean)
        if isinstance(reference_size, bool) or int(reference_size) != reference_size or reference_size < _MIN_SIZE:
            raise ValueError(f"reference_size must be an integer >= {_MIN_SIZE}, got {reference_size!r}.")
        self.reference_size = int(reference_size)
        self.num_spots = tuple(int(v) for v in _check_range("num_spots", num_spots, low=1, integer=True))
        self.spot_radius = _check_range("spot_radius", spot_radius)
        r_lo = math.ceil(self.spot_radius[0] * self.reference_size)
        r_hi = math.floor(self.spot_radius[1] * self.reference_size)
        if not 1 <= r_lo <= r_hi or 2 * r_hi + 2 >= self.reference_size:
            raise ValueError(
                f"spot_radius {spot_radius!r} gives no integer radius in pixels at reference_size "
                f"{self.reference_size} (need 1 <= ceil(min * size) <= floor(max * size) < size / 2 - 1)."
            )
        self._spot_px = (r_lo, r_hi)
        self.blur_sigma = _check_range("blur_sigma", blur_sigma)
        self.blur_kernel_rule = look_up_option(blur_kernel_rule, _BLUR_RULES)
        if isinstance(field_size, bool) or int(field_size) != field_size or field_size < 16:
            raise ValueError(f"field_size must be an integer >= 16, got {field_size!r}.")
        self.field_size = int(field_size)
        if fov_threshold is not None and not 0.0 < float(fov_threshold) < 1.0:
            raise ValueError(f"fov_threshold must be None or a fraction in (0, 1), got {fov_threshold!r}.")
        self.fov_threshold = fov_threshold
        self._params: list[dict] | None = None
        self._batched = False

    # -- drawing -------------------------------------------------------------------------------------------------
    def _draw_color(self) -> dict:
        s, r = self.severity, self.R
        b, c, sat = r.uniform(*self.brightness), r.uniform(*self.contrast), r.uniform(*self.saturation)
        return {"brightness": 1 + s * (b - 1), "contrast": 1 + s * (c - 1), "saturation": 1 + s * (sat - 1)}

    def _draw_halo(self) -> dict:
        r = self.R
        preset = self.halo_presets[r.randint(len(self.halo_presets))]
        cy, cx = r.uniform(3 / 8, 5 / 8), r.uniform(3 / 8, 5 / 8)
        da = r.uniform(0.75, 1.0)
        db_max = 2 * math.sqrt(max(cx, 1 - cx) ** 2 + max(cy, 1 - cy) ** 2)
        w_prime = 2 / 3 if preset == 0 else 0.5
        db = r.uniform(1.0, db_max) + abs(max(cx - 0.5, cy - 0.5) + w_prime)
        k = abs(2 * max(cx, 1 - cx, cy, 1 - cy) - da)
        return {
            "preset": preset,
            "color": list(HALO_PRESET_COLORS[preset]),
            "center": [cy, cx],
            "inner_diameter": da,
            "outer_diameter": db,
            "kernel": k,
            "sigma": 2 / 3 * k,
            "strength": self.severity,
        }

    def _draw_hole(self) -> dict:
        r = self.R
        diameter = r.uniform(0.4, 0.7)
        cx, cy = r.uniform(0.25, 0.75), r.uniform(3 / 8, 5 / 8)
        kw, kh = r.uniform(0.55, 0.75) * diameter, r.uniform(0.55, 0.75) * diameter
        return {
            "center": [cy, cx],
            "diameter": diameter,
            "kernel": [kh, kw],
            "sigma": 0.8 * max(kh, kw),
            "beta0": r.uniform(-0.262, -0.26),
            "beta_u": r.uniform(0.0, 1.0),
            "min_mean": self.hole_min_mean,
            "strength": self.severity,
        }

    def _draw_spot(self) -> dict:
        r, ref = self.R, self.reference_size
        spots = []
        for _ in range(r.randint(self.num_spots[0], self.num_spots[1] + 1)):
            rad = int(r.randint(self._spot_px[0], self._spot_px[1] + 1))
            cy, cx = r.uniform(rad + 1, ref - rad - 1), r.uniform(rad + 1, ref - rad - 1)
            # the reference's constants are tied to 512 px: evaluate at the 512-equivalent radius
            r512 = rad * 512 / ref
            k, beta, d = 14 / 25 + (1 - r512 / 25), 0.5 + r512 / 25, 0.3 * r512 / 25
            sigma = 2 * (5 + 20 * r512 / 25)
            kw = _odd(int(r.randint(int(sigma / 5), int(sigma / 4) + 1)))
            kh = _odd(int(r.randint(int(sigma / 5), int(sigma / 4) + 1)))
            spots.append(
                {
                    "center": [cy / ref, cx / ref],
                    "radius": rad / 2 / ref,
                    "kernel": [kh / 512, kw / 512],
                    "sigma": sigma / 512,
                    "value": k * (1 - math.exp(-beta * d)) * self.severity,
                }
            )
        return {"spots": spots}

    def _draw_blur(self) -> dict:
        r, ref = self.R, self.reference_size
        sigma = r.uniform(*self.blur_sigma) * self.severity
        if self.blur_kernel_rule == "full_gaussian":
            return {"sigma": sigma / ref, "kernel": None}
        kw = _odd(int(r.randint(int(sigma // 3), int(sigma // 2) + 1)))
        kh = _odd(int(r.randint(int(sigma // 3), int(sigma // 2) + 1)))
        return {"sigma": sigma / ref, "kernel": [kh / ref, kw / ref]}

    def _draw_one(self) -> dict:
        if self.R.rand() >= self.prob:
            return {"applied": False}
        code = self.types[0] if len(self.types) == 1 else self.types[self.R.randint(len(self.types))]
        p: dict[str, Any] = {"applied": True, "type": code, "severity": self.severity}
        if code[2] == "1":
            for step in self.illumination:
                p[step] = getattr(self, f"_draw_{step}")()
        if code[1] == "1":
            p["spot"] = self._draw_spot()
        if code[0] == "1":
            p["blur"] = self._draw_blur()
        return p

    def randomize(self, data: int | None = None) -> None:
        """Draw the parameters of one image (``data=None``) or of each of ``data`` batch elements, in order."""
        self._batched = data is not None
        self._params = [self._draw_one() for _ in range(1 if data is None else int(data))]
        self._do_transform = any(p["applied"] for p in self._params)

    @property
    def last_params(self) -> dict | list[dict] | None:
        """A copy of the last drawn (or applied) parameters: a dict for one image, a list of dicts for a batch.

        Keys: ``applied``; if applied also ``type`` (code), ``severity`` and one entry per step applied among
        ``color`` (factors), ``halo``, ``hole``, ``spot`` (``spots``: list) and ``blur``; all lengths are fractions
        of the image side.
        """
        if self._params is None:
            return None
        return copy.deepcopy(self._params if self._batched else self._params[0])

    # -- applying ------------------------------------------------------------------------------------------------
    def __call__(
        self, img: NdarrayOrTensor, fov: NdarrayOrTensor | None = None, randomize: bool = True
    ) -> NdarrayOrTensor:
        """Degrade ``img`` (``(3, H, W)`` or ``(B, 3, H, W)``).

        Args:
            img: the image(s).
            fov: optional FOV mask (``(H, W)``, ``(1, H, W)`` or ``(B, 1, H, W)``, bool or 0/1); estimated with
                :func:`~monai_qmix.transforms.fundus.fov_mask` when omitted.
            randomize: draw new parameters (default) or re-use the last ones (e.g. for several dictionary keys).

        Returns:
            the degraded image(s), same type/dtype/device; MetaTensor outputs carry the parameters as a JSON
            string under ``meta["fundus_degradation"]`` (``json.loads`` gives :attr:`last_params`).
        """
        img_t = convert_to_tensor(img, track_meta=get_track_meta())
        batch = self._check_img(img_t)
        if randomize:
            self.randomize(batch)
        if self._params is None:
            raise RuntimeError("call randomize() (or the transform with randomize=True) before randomize=False.")
        return self._apply(img_t, fov, self._params, self._batched)

    def apply(
        self, img: NdarrayOrTensor, params: dict | Sequence[dict] | str, fov: NdarrayOrTensor | None = None
    ) -> NdarrayOrTensor:
        """Re-apply recorded parameters (from :attr:`last_params` or ``meta["fundus_degradation"]``) without drawing.

        Args:
            img: one image ``(3, H, W)`` with a params dict, or a batch ``(B, 3, H, W)`` with a list of ``B`` dicts.
            params: the parameters, or the JSON string recorded in ``meta["fundus_degradation"]``.
            fov: optional FOV mask as in :meth:`__call__`.

        Returns:
            the degraded image(s); identical to the original output for the same image and FOV.

        Raises:
            ValueError: if the number of parameter dicts does not match the input.
        """
        img_t = convert_to_tensor(img, track_meta=get_track_meta())
        batch = self._check_img(img_t)
        if isinstance(params, str):
            try:
                params = json.loads(params)
            except json.JSONDecodeError as e:
                raise ValueError(f"params: not a JSON record of this transform ({e}): {params[:80]!r}") from e
        plist = [params] if isinstance(params, Mapping) else list(params)
        if len(plist) != (1 if batch is None else batch) or (batch is None and not isinstance(params, Mapping)):
            raise ValueError(
                f"params must be one dict for an image (3, H, W) or a list of B dicts for a batch (B, 3, H, W); got "
                f"{type(params).__name__} of length {len(plist)} for input shape {tuple(img_t.shape)}."
            )
        for q in plist:
            if not isinstance(q, Mapping) or "applied" not in q:
                raise ValueError(f"params entries must be dicts recorded by this transform, got {q!r}.")
        self._params, self._batched = copy.deepcopy(plist), batch is not None
        return self._apply(img_t, fov, self._params, self._batched)

    @staticmethod
    def _check_img(img: torch.Tensor) -> int | None:
        if img.ndim not in (3, 4) or img.shape[-3] != 3:
            raise ValueError(
                f"img must be RGB with shape (3, H, W) or (B, 3, H, W), got shape {tuple(img.shape)} "
                f"({img.shape[-3] if img.ndim >= 3 else 'no'} channels)."
            )
        h, w = img.shape[-2:]
        if h != w:
            raise ValueError(f"img must be square (crop to the FOV and pad first), got spatial size {(h, w)}.")
        if h < _MIN_SIZE:
            raise ValueError(f"img must be at least {_MIN_SIZE} px per side, got spatial size {(h, w)}.")
        if img.dtype == torch.bool or img.is_complex():
            raise ValueError(f"img must have a real float or integer dtype, got {img.dtype}.")
        return img.shape[0] if img.ndim == 4 else None

    def _apply(
        self, img_t: torch.Tensor, fov: NdarrayOrTensor | None, params: list[dict], batched: bool
    ) -> NdarrayOrTensor:
        x = img_t.as_tensor() if isinstance(img_t, MetaTensor) else img_t
        if len(params) != (x.shape[0] if batched else 1) or batched != (x.ndim == 4):
            raise ValueError(
                f"randomize=False re-uses {len(params)} parameter set(s) drawn for a "
                f"{'batch' if batched else 'single image'}, but img has shape {tuple(x.shape)}."
            )
        xb = x if batched else x[None]
        if x.is_floating_point():
            lo, hi = (float(v) for v in torch.aminmax(xb))
            if lo < -_RANGE_TOL or hi > 1 + _RANGE_TOL:
                raise ValueError(
                    f"img must hold float intensities in [0, 1] (apply degradations before normalisation), "
                    f"got range [{lo:.4g}, {hi:.4g}]."
                )
            scale, work_dtype = 1.0, torch.float64 if xb.dtype == torch.float64 else torch.float32
        else:
            scale, work_dtype = float(torch.iinfo(xb.dtype).max), torch.float32
        mask = self._fov(xb, fov, batched)
        idx = [i for i, q in enumerate(params) if q["applied"]]
        out = torch.empty_like(xb)
        for i in sorted(set(range(xb.shape[0])) - set(idx)):
            out[i] = xb[i]
        # CPU: work on chunks of a few images so that temporaries stay small (large allocations page-fault on
        # every call); CUDA: the whole batch at once. Parameters are per image, so chunking changes nothing.
        # the low-resolution fields of up to _FIELD_BATCH images at once (their cost is per call); the full-resolution
        # steps on CPU in chunks of a few images so that temporaries stay small (large allocations page-fault on every
        # call), on CUDA for the whole batch. Parameters are per image, so the chunking changes nothing.
        n_img = 3 * xb.shape[-1] * xb.shape[-2]
        on_cuda = xb.device.type == "cuda"
        chunk = len(idx) if on_cuda else max(1, _CPU_CHUNK_ELEMENTS // n_img)
        field_batch = max(len(idx), 1) if on_cuda else _FIELD_BATCH
        direct = xb.dtype == work_dtype
        mask_buf = torch.empty((min(chunk, max(len(idx), 1)), *mask.shape[1:]), device=xb.device, dtype=work_dtype)
        for f_start in range(0, len(idx), field_batch):
            f_idx = idx[f_start : f_start + field_batch]
            names, fields = _low_res_fields(
                [params[i] for i in f_idx], xb.shape[-1], self.field_size, xb.device, work_dtype
            )
            for start in range(0, len(f_idx), chunk):
                sel = f_idx[start : start + chunk]
                rows = slice(sel[0], sel[-1] + 1) if sel[-1] - sel[0] + 1 == len(sel) else sel  # views where possible
                xc, mc = xb[rows], mask[rows]
                # float input of the working dtype: degrade directly in the output's rows (no temporary to allocate)
                in_out = direct and isinstance(rows, slice)
                if in_out:  # the copy and the clamp to [0, 1] in one pass
                    work = torch.clamp(xc, 0.0, 1.0, out=out[rows])
                else:
                    work = xc.to(work_dtype, copy=True)
                    if scale != 1.0:
                        work.div_(scale)
                    work.clamp_(0.0, 1.0)
                mf = mask_buf[: len(sel)].copy_(mc)
                sub = None if fields is None else fields[start : start + chunk]
                deg = _degrade(work, mf, [params[i] for i in sel], names, sub)
                if scale != 1.0:
                    deg = deg.mul_(scale).round_()
                # merge with the input outside the FOV: lerp with 0/1 weights returns either end exactly (and is
                # several times faster than torch.where on CPU)
                merged = torch.lerp(xc.to(work_dtype), deg, mf, out=work)
                if not in_out:
                    out[rows] = merged.to(xb.dtype)
        out = out if batched else out[0]
        result, *_ = convert_to_dst_type(out, dst=img_t, dtype=x.dtype)
        if isinstance(result, MetaTensor):
            result.meta[DEGRADATION_META_KEY] = json.dumps(params if batched else params[0])
        return result

    def _fov(self, work: torch.Tensor, fov: NdarrayOrTensor | None, batched: bool) -> torch.Tensor:
        """The FOV mask as bool ``(B, 1, n, n)``."""
        if fov is None:
            return fov_mask(work, threshold=self.fov_threshold)  # any intensity range
        m = convert_to_tensor(fov, track_meta=False, device=work.device)
        b, _, h, w = work.shape
        if m.ndim == 2:
            m = m[None]
        if m.ndim == 3:
            m = m[:, None] if batched and m.shape[0] == b and b > 1 else m[None]
        if m.ndim != 4 or m.shape[1] != 1 or m.shape[-2:] != (h, w) or m.shape[0] not in (1, b):
            raise ValueError(
                f"fov must be a mask of shape (H, W), (1, H, W) or (B, 1, H, W) matching img {tuple(work.shape)}, "
                f"got shape {tuple(m.shape)}."
            )
        return (m if m.dtype == torch.bool else m.float() > 0.5).expand(b, 1, h, w)


class RandFundusIllumination(RandFundusDegradation):
    """Random illumination degradation (reference type ``"001"``): colour, halo and dark hole, each optional.

    Args:
        prob: probability of degrading each image.
        severity: number in ``[0, 1]`` or named level (see :class:`RandFundusDegradation`).
        color: apply the brightness/contrast/saturation change.
        halo: apply the coloured peripheral halo.
        hole: apply the dark hole.
        kwargs: ``brightness``, ``contrast``, ``saturation``, ``halo_presets``, ``hole_min_mean``, ``field_size``,
            ``fov_threshold`` of :class:`RandFundusDegradation`.

    Raises:
        ValueError: if no step is enabled or an option is invalid.
    """

    def __init__(
        self,
        prob: float = 1.0,
        severity: float | str = 1.0,
        color: bool = True,
        halo: bool = True,
        hole: bool = True,
        **kwargs: Any,
    ) -> None:
        steps = tuple(s for s, on in zip(_ILLUMINATION_STEPS, (color, halo, hole)) if on)
        if not steps:
            raise ValueError("RandFundusIllumination needs at least one of color, halo, hole to be True.")
        super().__init__(de_type="001", prob=prob, severity=severity, illumination=steps, **kwargs)


class RandFundusSpot(RandFundusDegradation):
    """Random bright artefact spots (reference type ``"010"``).

    Args:
        prob: probability of degrading each image.
        severity: number in ``[0, 1]`` or named level (scales the spot intensity).
        kwargs: ``num_spots``, ``spot_radius``, ``reference_size``, ``field_size``, ``fov_threshold`` of
            :class:`RandFundusDegradation`.
    """

    def __init__(self, prob: float = 1.0, severity: float | str = 1.0, **kwargs: Any) -> None:
        super().__init__(de_type="010", prob=prob, severity=severity, **kwargs)


class RandFundusBlur(RandFundusDegradation):
    """Random Gaussian blur (reference type ``"100"``).

    Args:
        prob: probability of degrading each image.
        severity: number in ``[0, 1]`` or named level (scales sigma).
        kwargs: ``blur_sigma``, ``blur_kernel_rule``, ``reference_size``, ``fov_threshold`` of
            :class:`RandFundusDegradation`.
    """

    def __init__(self, prob: float = 1.0, severity: float | str = 1.0, **kwargs: Any) -> None:
        super().__init__(de_type="100", prob=prob, severity=severity, **kwargs)


# ----------------------------------------------------------------------------------------------------------------
# dictionary transforms
# ----------------------------------------------------------------------------------------------------------------
class RandFundusDegradationd(RandomizableTransform, MapTransform):
    """Dictionary-based version :py:class:`RandFundusDegradation`.

    The parameters are drawn once per call (per batch element) and applied to every key.

    Args:
        keys: keys of the images to degrade.
        fov_key: optional key of a FOV mask (e.g. from ``FundusFOVMaskd``); estimated per key when ``None``.
        allow_missing_keys: do not raise for missing image keys.
        kwargs: options of the array transform (``de_type``, ``prob``, ``severity``, ...).
    """

    backend = RandFundusDegradation.backend
    array_class: type[RandFundusDegradation] = RandFundusDegradation

    def __init__(
        self, keys: KeysCollection, fov_key: str | None = None, allow_missing_keys: bool = False, **kwargs: Any
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob=1.0)
        self.fov_key = fov_key
        self.transform = self.array_class(**kwargs)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.transform.set_random_state(seed, state)
        return self

    @property
    def last_params(self) -> dict | list[dict] | None:
        """The parameters drawn by the last call (see :attr:`RandFundusDegradation.last_params`)."""
        return self.transform.last_params

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        fov = None
        if self.fov_key is not None:
            if self.fov_key not in d:
                raise KeyError(f"fov_key {self.fov_key!r} not found in the data (keys: {list(d)}).")
            fov = d[self.fov_key]
        first = True
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key], fov=fov, randomize=first)
            first = False
        return d


class RandFundusIlluminationd(RandFundusDegradationd):
    """Dictionary-based version :py:class:`RandFundusIllumination` (same arguments as
    :class:`RandFundusDegradationd`)."""

    array_class = RandFundusIllumination


class RandFundusSpotd(RandFundusDegradationd):
    """Dictionary-based version :py:class:`RandFundusSpot` (same arguments as :class:`RandFundusDegradationd`)."""

    array_class = RandFundusSpot


class RandFundusBlurd(RandFundusDegradationd):
    """Dictionary-based version :py:class:`RandFundusBlur` (same arguments as :class:`RandFundusDegradationd`)."""

    array_class = RandFundusBlur


RandFundusDegradationD = RandFundusDegradationDict = RandFundusDegradationd
RandFundusIlluminationD = RandFundusIlluminationDict = RandFundusIlluminationd
RandFundusSpotD = RandFundusSpotDict = RandFundusSpotd
RandFundusBlurD = RandFundusBlurDict = RandFundusBlurd
