# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""A fundus-aware image-quality score measured *inside the field of view* (FOV).

Generic image-quality checks (e.g. CleanVision's "dark" / "low information") misfire on fundus photographs: the
black surround of the circular FOV reads as dark, flat and uninformative. :func:`fundus_quality` first finds the
FOV with :func:`~monai_qmix.transforms.fundus.fov_mask` and measures only inside it (eroded by a margin so that the
FOV rim is not mistaken for detail). Three components, each mapped to ``[0, 1]`` (1 = good):

* **sharpness**: variance of the Laplacian of the (green-channel) image inside the FOV, relative to the variance of
  its mid-frequency detail layer (image minus a Gaussian low-pass), so it is independent of brightness and
  contrast and falls when an image is blurred (blur removes Laplacian energy faster than mid-frequency detail);
  ``r / (r + sharpness_ref)``.
* **illumination**: uniformity of the illumination field (the masked Gaussian low-pass of the image) inside the
  FOV, ``exp(-cv / uniformity_ref)`` with ``cv`` its coefficient of variation (halos, dark holes, vignetting),
  times an exposure term that falls linearly to 0 below ``dark_level`` and above ``bright_level`` mean intensity
  (under- and over-exposure).
* **contrast**: RMS of the detail layer relative to the mean FOV intensity (a Weber-like local contrast, low for
  hazy, washed-out or dim images); ``c / (c + contrast_ref)``.

The combined ``score`` is their weighted geometric mean (any component near 0 pulls it down). An image without a
usable FOV (fewer than ``min_fov_fraction`` of its pixels) scores 0 on every component, with a warning.

All computations are batched torch operations (CPU or CUDA), at a fixed working resolution (``working_size``,
default 128 px on the shorter side) so that scores are comparable across datasets of different image sizes. The
reference constants were set on the scikit-image CC0 fundus photograph and on SynthDR images (clean ones score
about 0.5-0.8, strongly blurred / darkened / haloed ones below 0.35); they are options, not published values.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.utils import look_up_option

from monai_qmix.transforms.fundus import fov_mask, gaussian_blur

__all__ = ["QUALITY_COMPONENTS", "QUALITY_CHANNELS", "fundus_quality", "quality_flags"]

#: Names of the per-image outputs of :func:`fundus_quality` (components, then the combined score).
QUALITY_COMPONENTS: tuple[str, ...] = ("sharpness", "illumination", "contrast", "score")
#: Intensity channel used for the measurements.
QUALITY_CHANNELS: tuple[str, ...] = ("green", "luminance", "max")

_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def _masked_mean(x: torch.Tensor, m: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    return (x * m).flatten(1).sum(1) / n


def _masked_var(x: torch.Tensor, m: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    mu = _masked_mean(x, m, n).view(-1, 1, 1, 1)
    return _masked_mean((x - mu) ** 2, m, n)


def _channel(x: torch.Tensor, channel: str) -> torch.Tensor:
    if channel == "green":
        return x[:, 1:2]
    if channel == "luminance":
        w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * w).sum(1, keepdim=True)
    return x.amax(1, keepdim=True)


def fundus_quality(
    img: Any,
    mask: Any = None,
    working_size: int = 128,
    channel: str = "green",
    margin: float = 0.04,
    sharpness_ref: float = 1.0,
    uniformity_ref: float = 0.5,
    contrast_ref: float = 0.02,
    dark_level: float = 0.12,
    bright_level: float = 0.85,
    weights: Mapping[str, float] | None = None,
    min_fov_fraction: float = 0.05,
) -> dict[str, torch.Tensor]:
    """Fundus-aware image-quality score of an RGB fundus image or batch, measured inside the FOV.

    Args:
        img: ``(3, H, W)`` or ``(B, 3, H, W)`` RGB image(s), numpy array or tensor, intensities in 0-1 or 0-255
            (decided per image: 0-255 when its maximum exceeds 1.5).
        mask: optional FOV mask(s) ``(1, H, W)`` / ``(B, 1, H, W)`` (or without the channel axis); default: estimated
            with :func:`~monai_qmix.transforms.fundus.fov_mask`.
        working_size: shorter side (pixels) the image is resampled to before measuring (area down-sampling,
            bilinear up-sampling), so scores do not depend on the stored resolution.
        channel: ``"green"`` (default; the fundus channel with the most vessel contrast), ``"luminance"`` or ``"max"``.
        margin: FOV erosion as a fraction of ``working_size`` (the FOV rim is a strong edge that is not image detail).
        sharpness_ref: Laplacian-to-detail variance ratio that scores 0.5.
        uniformity_ref: scale of the illumination coefficient of variation (``exp(-cv / ref)``).
        contrast_ref: relative detail RMS that scores 0.5.
        dark_level: mean FOV intensity (0-1 scale) below which the exposure term falls linearly to 0 at 0.
        bright_level: mean FOV intensity above which the exposure term falls linearly to 0 at 1.
        weights: weights of ``sharpness``, ``illumination``, ``contrast`` in the geometric mean (default 1 each).
        min_fov_fraction: an image whose FOV covers less than this fraction of its pixels scores 0 (no usable FOV).

    Returns:
        dict of float32 tensors on the input's device with keys :data:`QUALITY_COMPONENTS` (``sharpness``,
        ``illumination``, ``contrast``, ``score``, all in ``[0, 1]``, higher is better) and ``fov_fraction``;
        each of shape ``(B,)``, or 0-d for a single image.

    Raises:
        ValueError: bad shape (see :func:`~monai_qmix.transforms.fundus.fov_mask`), unknown ``channel``, or an
            option out of range.

    Example:
        >>> from skimage.data import retina
        >>> img = torch.as_tensor(retina()).permute(2, 0, 1).float() / 255
        >>> q = fundus_quality(img)
        >>> sorted(q), bool(0 <= q["score"] <= 1)
        (['contrast', 'fov_fraction', 'illumination', 'score', 'sharpness'], True)
    """
    channel = look_up_option(channel, QUALITY_CHANNELS)
    if int(working_size) < 32:
        raise ValueError(f"working_size: expected an int >= 32 pixels, got {working_size!r}.")
    if not 0.0 <= float(margin) < 0.25:
        raise ValueError(f"margin: expected a fraction in [0, 0.25), got {margin!r}.")
    for name, v in (
        ("sharpness_ref", sharpness_ref),
        ("uniformity_ref", uniformity_ref),
        ("contrast_ref", contrast_ref),
    ):
        if not float(v) > 0:
            raise ValueError(f"{name}: expected a positive number, got {v!r}.")
    if not 0.0 <= float(dark_level) < float(bright_level) <= 1.0:
        raise ValueError(
            f"dark_level, bright_level: expected 0 <= dark_level < bright_level <= 1, got {dark_level!r}, "
            f"{bright_level!r}."
        )
    w = {"sharpness": 1.0, "illumination": 1.0, "contrast": 1.0}
    if weights is not None:
        unknown = set(weights) - set(w)
        if unknown:
            raise ValueError(f"weights: unknown component(s) {sorted(unknown)}; expected keys among {sorted(w)}.")
        w.update({k: float(v) for k, v in weights.items()})
        if any(v < 0 for v in w.values()) or sum(w.values()) <= 0:
            raise ValueError(f"weights: expected non-negative weights with a positive sum, got {dict(weights)!r}.")

    x = img.as_tensor() if isinstance(img, MetaTensor) else img
    x = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    single = x.ndim == 3
    if single:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"img: expected an RGB image (3, H, W) or batch (B, 3, H, W), got shape {tuple(x.shape)}.")
    x = x.detach().float()
    peak = x.flatten(1).amax(1)
    x = x / torch.where(peak > 1.5, torch.full_like(peak, 255.0), torch.ones_like(peak)).view(-1, 1, 1, 1)
    b, _, h, wd = x.shape
    if mask is None:
        m = fov_mask(x)
    else:
        m = mask.as_tensor() if isinstance(mask, MetaTensor) else mask
        m = torch.as_tensor(np.asarray(m)) if not isinstance(m, torch.Tensor) else m
        m = m.to(x.device).bool().reshape(b, 1, h, wd)

    # resample to the working resolution
    f = int(working_size) / min(h, wd)
    size = (max(8, round(h * f)), max(8, round(wd * f)))
    mode = "area" if f < 1 else "bilinear"
    kw = {} if mode == "area" else {"align_corners": False}
    g = F.interpolate(_channel(x, channel), size=size, mode=mode, **kw)
    mf = F.interpolate(m.float(), size=size, mode="area" if f < 1 else "nearest")
    m = mf > 0.5
    fov_fraction = m.flatten(1).float().mean(1)
    r = max(1, round(float(margin) * int(working_size)))
    inner = F.max_pool2d(F.pad((~m).float(), (r, r, r, r), value=1.0), 2 * r + 1, stride=1) < 0.5
    mi = inner.float()
    n = mi.flatten(1).sum(1).clamp_min(1.0)

    # illumination field: masked low-pass (normalised convolution, so the dark surround does not leak in)
    sigma_l = working_size / 16.0
    mfl = m.float()
    field = gaussian_blur(g * mfl, sigma_l) / gaussian_blur(mfl, sigma_l).clamp_min(1e-3)
    g_fill = torch.where(m, g, field)  # fill the surround with the field: no artificial edge at the FOV rim
    detail = g_fill - gaussian_blur(g_fill, working_size / 32.0)
    lap = F.conv2d(F.pad(g_fill, (1, 1, 1, 1), mode="replicate"), _LAPLACIAN.to(g).view(1, 1, 3, 3))

    mean_i = _masked_mean(g, mi, n)
    var_d = _masked_var(detail, mi, n)
    var_l = _masked_var(lap, mi, n)
    ratio = var_l / var_d.clamp_min(1e-10)
    sharp = ratio / (ratio + float(sharpness_ref))
    cv = _masked_var(field, mi, n).sqrt() / mean_i.clamp_min(1e-6)
    expo = torch.minimum(mean_i / max(float(dark_level), 1e-6), (1.0 - mean_i) / max(1.0 - float(bright_level), 1e-6))
    illum = torch.exp(-cv / float(uniformity_ref)) * expo.clamp(0.0, 1.0)
    crel = var_d.sqrt()
    contrast = crel / (crel + float(contrast_ref))

    comps = {"sharpness": sharp, "illumination": illum, "contrast": contrast}
    total = sum(w.values())
    log_score = sum(w[k] * torch.log(comps[k].clamp_min(1e-6)) for k in comps) / total
    score = torch.exp(log_score)
    no_fov = (fov_fraction < float(min_fov_fraction)) | (inner.flatten(1).sum(1) < 16)
    if bool(no_fov.any()):
        warnings.warn(
            f"fundus_quality: {int(no_fov.sum())} of {b} image(s) have no usable field of view "
            f"(< {min_fov_fraction:.0%} of the image); they score 0.",
            stacklevel=2,
        )
    out = {k: torch.where(no_fov, torch.zeros_like(v), v).clamp(0.0, 1.0) for k, v in comps.items()}
    out["score"] = torch.where(no_fov, torch.zeros_like(score), score).clamp(0.0, 1.0)
    out["fov_fraction"] = fov_fraction
    out = {k: torch.nan_to_num(v.float(), nan=0.0) for k, v in out.items()}
    return {k: v[0] for k, v in out.items()} if single else out


def quality_flags(scores: Any, threshold: float | str = "auto", mad_factor: float = 3.0) -> tuple[np.ndarray, float]:
    """Flag low-quality images from their :func:`fundus_quality` scores.

    Args:
        scores: (N,) combined quality scores in ``[0, 1]``.
        threshold: a fixed score in ``(0, 1)`` (flag ``score < threshold``) or ``"auto"``: a robust outlier rule,
            ``median - mad_factor * 1.4826 * MAD`` of the given scores, clipped to ``[0.05, 0.5]`` (a dataset-relative
            rule; the absolute scale of the score depends on camera and resolution).
        mad_factor: width of the ``"auto"`` rule in robust standard deviations.

    Returns:
        ``(flags, threshold)``: a bool array (N,) and the threshold used.

    Raises:
        ValueError: for a threshold that is neither ``"auto"`` nor a number in ``(0, 1)``.
    """
    s = np.asarray(scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else scores, dtype=np.float64)
    s = s.reshape(-1)
    if isinstance(threshold, str):
        look_up_option(threshold, ("auto",))
        if s.size == 0:
            return np.zeros(0, dtype=bool), float("nan")
        med = float(np.median(s))
        mad = float(np.median(np.abs(s - med)))
        thr = float(np.clip(med - float(mad_factor) * 1.4826 * mad, 0.05, 0.5))
    else:
        thr = float(threshold)
        if not 0.0 < thr < 1.0 or math.isnan(thr):
            raise ValueError(f"threshold: expected 'auto' or a number in (0, 1), got {threshold!r}.")
    return s < thr, thr
