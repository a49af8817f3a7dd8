# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Fundus field-of-view (FOV) preprocessing: FOV mask, crop-to-FOV and Ben Graham's local-contrast normalisation.

A fundus photograph is a bright, roughly circular field of view on a dark surround that is rarely exactly 0
(JPEG noise, camera offsets, text overlays). :func:`fov_mask` estimates the FOV with torch operations only, so it
runs on CPU and CUDA tensors and on batches ``(B, C, H, W)``:

1. the max-over-channels image is area-downsampled to <= 64 px (3x3 box-smoothed if already that small), which
   averages out JPEG and sensor noise;
2. an automatic threshold is placed between the background and the FOV intensity levels (Otsu's two-class split
   on the low-resolution copy; the threshold sits 15% of the way from the background mean to the FOV mean), so it
   is relative to the image's own intensity range and works for 0-1 and 0-255 images alike;
3. at a low working resolution (<= 64 px) the largest connected component is kept (label propagation along
   horizontal and vertical runs) and holes are filled (row/column span filling: the FOV of a fundus camera is convex);
4. the full-resolution threshold decides the boundary, the low-resolution component decides what is kept, and a
   3x3 density filter removes 1-2 pixel speckle and fills pinholes.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import BorderPad, SpatialCrop
from monai.transforms.transform import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor, ensure_tuple_rep

__all__ = [
    "fov_mask",
    "fov_bbox",
    "gaussian_blur",
    "FundusFOVMask",
    "FundusFOVMaskd",
    "FundusFOVMaskD",
    "FundusFOVMaskDict",
    "CropFundusFOV",
    "CropFundusFOVd",
    "CropFundusFOVD",
    "CropFundusFOVDict",
    "FundusLocalContrast",
    "FundusLocalContrastd",
    "FundusLocalContrastD",
    "FundusLocalContrastDict",
]

#: Smallest supported spatial size (pixels) of a fundus image.
MIN_SPATIAL_SIZE = 16
#: Working resolution (pixels, shorter side) of the connected-component / hole-filling step of :func:`fov_mask`.
_WORK_SIZE = 64
#: Automatic threshold position between the background mean and the FOV mean (Otsu class means).
_AUTO_FRACTION = 0.15
#: Minimum contrast (fraction of the intensity scale) between the dark and the bright part of an image.
_MIN_CONTRAST = 0.04


def _check_fundus(img: torch.Tensor, name: str = "img") -> None:
    """Validate a channel-first RGB fundus image ``(3, H, W)`` or batch ``(B, 3, H, W)``.

    Raises:
        ValueError: wrong number of dimensions, channels other than 3, or a side shorter than ``MIN_SPATIAL_SIZE``.
    """
    shape = tuple(img.shape)
    if len(shape) not in (3, 4):
        raise ValueError(f"{name} must have shape (C, H, W) or (B, C, H, W), got shape {shape}.")
    channels = shape[-3]
    if channels != 3:
        raise ValueError(f"{name} must be an RGB image with 3 channels, got {channels} channels (shape {shape}).")
    if min(shape[-2:]) < MIN_SPATIAL_SIZE:
        raise ValueError(
            f"{name} spatial size must be at least {MIN_SPATIAL_SIZE} pixels per side, "
            f"got {shape[-2:]} (shape {shape})."
        )


def _intensity_scale(x: torch.Tensor) -> torch.Tensor:
    """Per-image intensity scale of a batch ``(B, ...)``: 255 if the image's maximum exceeds 1.5, else 1."""
    peak = x.flatten(1).amax(dim=1)
    return torch.where(peak > 1.5, torch.full_like(peak, 255.0), torch.ones_like(peak))


def _box_smooth(x: torch.Tensor, k: int) -> torch.Tensor:
    """Separable ``k x k`` box filter on ``(B, 1, H, W)`` (borders averaged over the valid pixels only)."""
    if k <= 1:
        return x
    x = F.avg_pool2d(x, (k, 1), stride=1, padding=(k // 2, 0), count_include_pad=False)
    return F.avg_pool2d(x, (1, k), stride=1, padding=(0, k // 2), count_include_pad=False)


def _dilate(mask: torch.Tensor, r: int) -> torch.Tensor:
    """Binary dilation of a bool ``(B, 1, H, W)`` mask by a ``(2r+1)`` square (separable max-pooling)."""
    if r <= 0:
        return mask
    m = F.max_pool2d(mask.float(), (2 * r + 1, 1), stride=1, padding=(r, 0))
    return F.max_pool2d(m, (1, 2 * r + 1), stride=1, padding=(0, r)) > 0.5


def _erode(mask: torch.Tensor, r: int) -> torch.Tensor:
    """Binary erosion of a bool ``(B, 1, H, W)`` mask by a ``(2r+1)`` square; outside the image counts as outside."""
    if r <= 0:
        return mask
    m = F.pad((~mask).float(), (r, r, r, r), value=1.0)
    m = F.max_pool2d(m, (2 * r + 1, 1), stride=1)
    return F.max_pool2d(m, (1, 2 * r + 1), stride=1) < 0.5


def _otsu_threshold(low: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """Batched automatic threshold on ``low`` ``(B, N)``, placed between Otsu's two class means.

    Returns the threshold per image ``(B,)`` as ``mu0 + _AUTO_FRACTION * (mu1 - mu0)``.
    """
    b = low.shape[0]
    span = (hi - lo).clamp_min(1e-12)
    q = ((low - lo[:, None]) / span[:, None]).clamp(0.0, 1.0)
    idx = (q * (bins - 1)).round().long()
    hist = torch.zeros(b, bins, device=low.device, dtype=torch.float32)
    hist.scatter_add_(1, idx, torch.ones_like(q, dtype=torch.float32))
    p = hist / hist.sum(dim=1, keepdim=True)
    levels = torch.arange(bins, device=low.device, dtype=torch.float32) / (bins - 1)
    omega = p.cumsum(dim=1)
    mu = (p * levels).cumsum(dim=1)
    mu_t = mu[:, -1:]
    denom = (omega * (1.0 - omega)).clamp_min(1e-12)
    between = (mu_t * omega - mu) ** 2 / denom
    between = torch.where((omega > 0) & (omega < 1), between, torch.zeros_like(between))
    k = between.argmax(dim=1, keepdim=True)
    w0 = omega.gather(1, k).clamp_min(1e-12)
    m0 = mu.gather(1, k) / w0
    m1 = (mu_t - mu.gather(1, k)) / (1.0 - w0).clamp_min(1e-12)
    frac = (m0 + _AUTO_FRACTION * (m1 - m0)).squeeze(1)
    return lo + frac * span


def _run_max(labels: torch.Tensor, fg: torch.Tensor) -> torch.Tensor:
    """Give every horizontal run of foreground pixels in ``labels`` ``(N, h, w)`` the maximum label of the run."""
    n, h, w = labels.shape
    prev = F.pad(fg[..., :-1], (1, 0), value=False)
    run = (fg & ~prev).long().cumsum(dim=2)  # run index within each row, 1-based on foreground
    rows = torch.arange(n * h, device=labels.device).view(n, h, 1) * (w + 1)
    ids = torch.where(fg, run + rows, torch.zeros_like(run))
    best = torch.zeros(n * h * (w + 1), dtype=labels.dtype, device=labels.device)
    best = best.scatter_reduce(0, ids.flatten(), labels.flatten(), reduce="amax", include_self=True)
    return best[ids] * fg


def _largest_component(mask: torch.Tensor, max_iter: int = 256) -> torch.Tensor:
    """Keep the largest 4-connected component of a bool ``(B, 1, h, w)`` mask.

    Labels are propagated along horizontal and vertical runs alternately (a convex blob converges in 2-3 passes,
    unlike pixel-by-pixel propagation which needs as many passes as the blob's diameter).
    """
    b, _, h, w = mask.shape
    if not bool(mask.any()):
        return mask
    fg = mask[:, 0]
    labels = torch.arange(1, h * w + 1, device=mask.device, dtype=torch.long).view(1, h, w) * fg
    for _ in range(max_iter):
        new = _run_max(labels, fg)
        new = _run_max(new.transpose(1, 2), fg.transpose(1, 2)).transpose(1, 2)
        if torch.equal(new, labels):
            break
        labels = new
    lab = labels.reshape(b, -1)
    offsets = torch.arange(b, device=mask.device).unsqueeze(1) * (h * w + 1)
    counts = torch.bincount((lab + offsets).reshape(-1), minlength=b * (h * w + 1)).reshape(b, h * w + 1)
    counts[:, 0] = 0
    best = counts.argmax(dim=1)
    keep = (lab == best.unsqueeze(1)) & (lab > 0)
    return keep.reshape(b, 1, h, w)


def _span_fill(mask: torch.Tensor) -> torch.Tensor:
    """Fill a bool ``(B, 1, h, w)`` mask between its first and last pixel along every row AND every column."""

    def spans(m: torch.Tensor, dim: int) -> torch.Tensor:
        m = m.to(torch.uint8)
        fwd = m.cummax(dim=dim).values
        bwd = m.flip(dim).cummax(dim=dim).values.flip(dim)
        return (fwd & bwd).bool()

    return mask | (spans(mask, 2) & spans(mask, 3))


def fov_mask(img: torch.Tensor, threshold: float | None = None, erode: int = 0) -> torch.Tensor:
    """Estimate the field-of-view (FOV) mask of an RGB fundus photograph with torch operations only.

    The threshold is derived from an area-downsampled (noise-averaged) copy of the max-over-channels image,
    relative to the image's own intensity range; the largest connected component is kept and its holes are filled
    at <= 64 px working resolution; the boundary is taken at full resolution and cleaned by a 3x3 density
    filter. Robust to a background that is not exactly 0, to JPEG noise and to small bright overlays (text).

    Args:
        img: float (or integer) tensor ``(C, H, W)`` or ``(B, C, H, W)``, RGB (``C == 3``), any intensity range
            (0-1 or 0-255), on any device.
        threshold: ``None`` (default) for the automatic threshold (15% of the way from the background mean to the
            FOV mean, the two means found with Otsu's split); or a fraction in ``(0, 1)`` of the intensity range:
            FOV = ``max_c(img) > lo + threshold * (hi - lo)``, ``lo``/``hi`` the min/max of the downsampled image.
        erode: shrink the mask by this many pixels (square structuring element; pixels beyond the image border
            count as outside the FOV), e.g. for measurements strictly inside the FOV that must not see its border.

    Returns:
        bool tensor ``(1, H, W)`` (or ``(B, 1, H, W)``) on ``img.device``, ``True`` inside the FOV. A flat image
        (contrast below 4% of its intensity scale) gives an all-``True`` mask if it is bright (> 10% of the scale,
        no dark surround) and an all-``False`` mask if it is dark (no FOV found, e.g. an all-black image).

    Raises:
        ValueError: if ``img`` is not ``(3, H, W)``/``(B, 3, H, W)``, is smaller than 16 pixels per side, or if
            ``threshold``/``erode`` are out of range.
    """
    if not isinstance(img, torch.Tensor):
        img = torch.as_tensor(np.asarray(img))
    _check_fundus(img)
    if threshold is not None and not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"threshold must be None (automatic) or a fraction in (0, 1), got {threshold!r}.")
    if int(erode) != erode or erode < 0:
        raise ValueError(f"erode must be a non-negative integer number of pixels, got {erode!r}.")
    single = img.ndim == 3
    x = img.unsqueeze(0) if single else img
    x = x.as_tensor() if isinstance(x, MetaTensor) else x
    x = x.detach().float()
    b, _, h, w = x.shape

    # 1. max-over-channels image (the red channel dominates fundus photographs; the max also covers the others)
    v = x.amax(dim=1, keepdim=True)

    # 2. threshold from a low-resolution copy (area averaging suppresses JPEG / sensor noise)
    f = max(1, math.ceil(min(h, w) / _WORK_SIZE))
    lh, lw = math.ceil(h / f), math.ceil(w / f)
    low = F.interpolate(v, size=(lh, lw), mode="area") if f > 1 else _box_smooth(v, 3)
    low_flat = low.flatten(1)
    lo, hi = low_flat.amin(dim=1), low_flat.amax(dim=1)
    scale = _intensity_scale(x)
    if threshold is None:
        thr = _otsu_threshold(low_flat, lo, hi)
    else:
        thr = lo + float(threshold) * (hi - lo)
    flat = (hi - lo) < _MIN_CONTRAST * scale
    full = flat & (hi > 2.5 * _MIN_CONTRAST * scale)  # flat and bright: no dark surround, all FOV
    thr = torch.where(flat, torch.where(full, torch.full_like(thr, -math.inf), torch.full_like(thr, math.inf)), thr)
    thr = thr.view(b, 1, 1, 1)

    # 3. largest component + hole filling at the working resolution
    low_mask = _span_fill(_largest_component(low > thr))
    near = low_mask | _dilate(low_mask, 1)
    inner = _erode(low_mask, 1)
    if f > 1:
        near = F.interpolate(near.float(), size=(h, w), mode="nearest") > 0.5
        inner = F.interpolate(inner.float(), size=(h, w), mode="nearest") > 0.5

    # 4. full-resolution boundary restricted to the kept component, filled interior, 3x3 clean-up: drop specks of
    #    1-2 pixels, fill pixels with >= 7 of 9 neighbours set (keeps the 1-pixel tips of a digitised circle)
    mask = ((v > thr) & near) | inner
    density = _box_smooth(mask.float(), 3)
    mask = (mask & (density > 0.3)) | (density > 0.7)
    mask = _erode(mask, int(erode))
    return mask[0] if single else mask


def fov_bbox(mask: torch.Tensor | np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box of a FOV mask ``(1, H, W)`` (or ``(H, W)``) as half-open ``(y0, y1, x0, x1)``.

    Args:
        mask: bool/0-1 mask, channel-first ``(1, H, W)`` or 2-D ``(H, W)``.

    Returns:
        ``(y0, y1, x0, x1)`` such that ``mask[..., y0:y1, x0:x1]`` holds every ``True`` pixel.

    Raises:
        ValueError: if ``mask`` has the wrong shape or is empty (no FOV pixel).
    """
    m = convert_to_tensor(mask, track_meta=False)
    if m.ndim == 3:
        if m.shape[0] != 1:
            raise ValueError(f"mask must have shape (1, H, W) or (H, W), got shape {tuple(m.shape)}.")
        m = m[0]
    if m.ndim != 2:
        raise ValueError(f"mask must have shape (1, H, W) or (H, W), got shape {tuple(m.shape)}.")
    m = m.bool()
    rows = torch.nonzero(m.any(dim=1)).flatten()
    cols = torch.nonzero(m.any(dim=0)).flatten()
    if rows.numel() == 0:
        raise ValueError("mask is empty (no field-of-view pixel), cannot compute a bounding box.")
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _dst(img: Any, fallback: torch.Tensor) -> Any:
    """Destination for :func:`convert_to_dst_type`: the input's own container type when it is an array/tensor."""
    return img if isinstance(img, (np.ndarray, torch.Tensor)) else fallback


def _as_batch(img: torch.Tensor) -> torch.Tensor:
    """Plain float32 ``(B, C, H, W)`` view of an image or batch (MetaTensor unwrapped)."""
    x = img.as_tensor() if isinstance(img, MetaTensor) else img
    x = x.unsqueeze(0) if x.ndim == 3 else x
    return x.float()


def _background_value(img: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-channel mean of ``img`` ``(C, H, W)`` outside ``mask`` ``(1, H, W)`` (zeros if there is no outside)."""
    x = img.as_tensor() if isinstance(img, MetaTensor) else img
    x = x.float()
    outside = (~mask.bool()).to(x.dtype)
    n = outside.sum()
    if n == 0:
        return torch.zeros(x.shape[0], device=x.device)
    return (x * outside).flatten(1).sum(dim=1) / n


def _gaussian_kernel1d(sigma: float, device: torch.device) -> torch.Tensor:
    radius = max(1, int(math.ceil(3.0 * sigma)))
    t = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Fast Gaussian blur of a float ``(B, C, H, W)`` tensor (separable 1-D convolutions, replicate padding).

    For ``sigma > 4`` the image is area-downsampled by ``f = floor(sigma / 2)``, blurred with the remaining
    standard deviation and bilinearly upsampled (the box and the interpolation kernels are accounted for), which keeps
    the cost independent of ``sigma``.

    Args:
        x: float tensor ``(B, C, H, W)``.
        sigma: standard deviation in pixels (> 0).

    Returns:
        the blurred tensor, same shape, dtype and device.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}.")
    b, c, h, w = x.shape
    f = max(1, int(sigma // 2))
    y = x
    s = sigma
    p = 0
    if f > 1:
        # replicate-pad at full resolution first, so the down/up-sampling does not distort the image border
        p = f * math.ceil(3.0 * sigma / f)
        y = F.pad(x, (p, p, p, p), mode="replicate")
        y = F.interpolate(y, size=(math.ceil((h + 2 * p) / f), math.ceil((w + 2 * p) / f)), mode="area")
        # box (area) variance f^2/12 and bilinear-upsampling variance ~f^2/6 are already part of the blur
        s = math.sqrt(max(sigma**2 - f**2 / 4.0, (0.5 * f) ** 2)) / f
    k = _gaussian_kernel1d(s, x.device).to(x.dtype)
    r = (k.numel() - 1) // 2
    wy = k.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
    wx = k.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), wy, groups=c)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="replicate"), wx, groups=c)
    if f > 1:
        y = F.interpolate(y, size=(h + 2 * p, w + 2 * p), mode="bilinear", align_corners=False)
        y = y[..., p : p + h, p : p + w]
    return y


class FundusFOVMask(Transform):
    """Field-of-view mask of an RGB fundus photograph (see :func:`fov_mask`).

    Args:
        threshold: ``None`` for the automatic threshold, or a fraction in ``(0, 1)`` of the intensity range.
        erode: shrink the mask by this many pixels.
        dtype: dtype of the returned mask (default ``torch.float32`` with values 0/1; ``torch.bool`` also works).

    Input ``(3, H, W)`` (or ``(B, 3, H, W)``) numpy array, tensor or MetaTensor, any intensity range; output the mask
    ``(1, H, W)`` (``(B, 1, H, W)``) of the same container type on the same device; a MetaTensor keeps the
    image's metadata (same spatial grid).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, threshold: float | None = None, erode: int = 0, dtype: torch.dtype = torch.float32) -> None:
        if threshold is not None and not 0.0 < float(threshold) < 1.0:
            raise ValueError(f"threshold must be None (automatic) or a fraction in (0, 1), got {threshold!r}.")
        if int(erode) != erode or erode < 0:
            raise ValueError(f"erode must be a non-negative integer number of pixels, got {erode!r}.")
        self.threshold = threshold
        self.erode = int(erode)
        self.dtype = dtype

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Return the FOV mask of ``img``."""
        img_t = convert_to_tensor(img, track_meta=get_track_meta())
        mask = fov_mask(img_t, threshold=self.threshold, erode=self.erode)
        out, *_ = convert_to_dst_type(mask, _dst(img, img_t), dtype=self.dtype)
        return out


class FundusFOVMaskd(MapTransform):
    """Dictionary-based version :py:class:`FundusFOVMask`: writes the FOV mask of each key under a new key.

    Args:
        keys: keys of the RGB fundus images.
        mask_key: output key(s); default ``f"{key}_fov"``. A single string is only allowed with a single key.
        threshold: see :func:`fov_mask`.
        erode: see :func:`fov_mask`.
        dtype: dtype of the mask (default ``torch.float32``).
        allow_missing_keys: don't raise if a key is missing.
    """

    backend = FundusFOVMask.backend

    def __init__(
        self,
        keys: KeysCollection,
        mask_key: str | Sequence[str] | None = None,
        threshold: float | None = None,
        erode: int = 0,
        dtype: torch.dtype = torch.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if mask_key is None:
            self.mask_keys = tuple(f"{k}_fov" for k in self.keys)
        elif isinstance(mask_key, str):
            if len(self.keys) != 1:
                raise ValueError(
                    f"mask_key must be a sequence of {len(self.keys)} keys (one per key in {self.keys}), "
                    f"got the single key {mask_key!r}."
                )
            self.mask_keys = (mask_key,)
        else:
            self.mask_keys = tuple(mask_key)
            if len(self.mask_keys) != len(self.keys):
                raise ValueError(f"mask_key must have {len(self.keys)} entries (one per key), got {mask_key!r}.")
        self.masker = FundusFOVMask(threshold=threshold, erode=erode, dtype=dtype)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key, mask_key in self.key_iterator(d, self.mask_keys):
            d[mask_key] = self.masker(d[key])
        return d


def _square_padding(h: int, w: int) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` padding that centres an ``h x w`` image in a square."""
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    return top, side - h - top, left, side - w - left


class CropFundusFOV(Transform):
    """Crop an RGB fundus photograph to its field-of-view bounding box, then (optionally) pad it to a centred square.

    The padding is filled with the background value (by default the per-channel mean of the pixels outside the
    FOV). For MetaTensor input the crop and pad are done by MONAI's :py:class:`~monai.transforms.SpatialCrop` and
    :py:class:`~monai.transforms.BorderPad` (affine updated, both recorded in ``applied_operations``; this class
    itself does not implement ``inverse``), and the geometry is recorded in ``meta["fov_crop"]`` as
    ``{"box": [y0, y1, x0, x1], "pad": [top, bottom, left, right], "spatial_shape": [H, W]}``.

    Fallback: if no FOV is found (e.g. an all-black image), the image is returned unchanged with a warning.

    Args:
        margin: pixels added around the FOV bounding box (clipped to the image).
        square: pad the crop to a centred square.
        pad_value: fill value of the padding; ``None`` = per-channel mean of the pixels outside the FOV.
        threshold: FOV threshold, see :func:`fov_mask`.

    Raises:
        ValueError: bad arguments, or input that is not a single ``(3, H, W)`` image of at least 16 pixels per side.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self, margin: int = 0, square: bool = True, pad_value: float | None = None, threshold: float | None = None
    ) -> None:
        if int(margin) != margin or margin < 0:
            raise ValueError(f"margin must be a non-negative integer number of pixels, got {margin!r}.")
        if threshold is not None and not 0.0 < float(threshold) < 1.0:
            raise ValueError(f"threshold must be None (automatic) or a fraction in (0, 1), got {threshold!r}.")
        self.margin = int(margin)
        self.square = bool(square)
        self.pad_value = pad_value
        self.threshold = threshold

    def compute_box(self, img: NdarrayOrTensor) -> tuple[int, int, int, int] | None:
        """FOV bounding box ``(y0, y1, x0, x1)`` of ``img`` (with the margin), or ``None`` if no FOV is found."""
        img_t = convert_to_tensor(img, track_meta=False)
        return self._box(img_t, self._mask(img_t))

    def _mask(self, img_t: torch.Tensor) -> torch.Tensor:
        if img_t.ndim != 3:
            raise ValueError(f"img must be a single image (3, H, W), got shape {tuple(img_t.shape)}.")
        return fov_mask(img_t, threshold=self.threshold)

    def _box(self, img_t: torch.Tensor, mask: torch.Tensor) -> tuple[int, int, int, int] | None:
        if not bool(mask.any()):
            return None
        y0, y1, x0, x1 = fov_bbox(mask)
        h, w = img_t.shape[-2:]
        m = self.margin
        return max(0, y0 - m), min(h, y1 + m), max(0, x0 - m), min(w, x1 + m)

    def crop(
        self,
        img: NdarrayOrTensor,
        box: Sequence[int],
        pad_value: float | Sequence[float] | torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> NdarrayOrTensor:
        """Apply a given crop ``box`` ``(y0, y1, x0, x1)`` (and the square padding) to any channel-first image.

        Used to replay a crop on other images of the same geometry (e.g. a segmentation mask).

        Args:
            img: ``(C, H, W)`` image of any channel count.
            box: half-open crop box ``(y0, y1, x0, x1)``.
            pad_value: fill value (scalar or per channel); ``None``: ``self.pad_value``, and if that is ``None``
                too, the per-channel mean of ``img`` outside ``mask`` (0 without a mask).
            mask: FOV mask ``(1, H, W)`` used to estimate the background.
        """
        img_t = convert_to_tensor(img, track_meta=get_track_meta())
        if img_t.ndim != 3:
            raise ValueError(f"img must be a channel-first image (C, H, W), got shape {tuple(img_t.shape)}.")
        h, w = (int(s) for s in img_t.shape[-2:])
        y0, y1, x0, x1 = (int(v) for v in box)
        if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
            raise ValueError(f"box must satisfy 0 <= y0 < y1 <= {h} and 0 <= x0 < x1 <= {w}, got {tuple(box)!r}.")
        pad_value = self.pad_value if pad_value is None else pad_value
        out = SpatialCrop(roi_start=(y0, x0), roi_end=(y1, x1))(img_t)
        pad = (0, 0, 0, 0)
        if self.square and (y1 - y0) != (x1 - x0):
            pad = _square_padding(y1 - y0, x1 - x0)
            if pad_value is None:
                if mask is not None and tuple(mask.shape[-2:]) == (h, w):
                    fill = _background_value(img_t, mask.reshape(1, h, w))
                else:
                    fill = torch.zeros(img_t.shape[0])
            else:
                fill = torch.as_tensor(pad_value, dtype=torch.float32).flatten()
                if fill.numel() not in (1, img_t.shape[0]):
                    raise ValueError(
                        f"pad_value must be a scalar or have one value per channel ({img_t.shape[0]}), "
                        f"got {pad_value!r}."
                    )
            fill = fill.expand(img_t.shape[0]) if fill.numel() == 1 else fill
            out = BorderPad(spatial_border=list(pad), mode="constant", value=0)(out)
            top, bottom, left, right = pad
            side = out.shape[-1]
            fill_t = fill.to(device=out.device, dtype=out.dtype).view(-1, 1, 1)
            strips = (
                (slice(0, top), slice(None)),
                (slice(side - bottom, side), slice(None)),
                (slice(None), slice(0, left)),
                (slice(None), slice(side - right, side)),
            )
            for ys, xs in strips:
                out[:, ys, xs] = fill_t
        if isinstance(out, MetaTensor):
            out.meta["fov_crop"] = {"box": [y0, y1, x0, x1], "pad": list(pad), "spatial_shape": [h, w]}
        res, *_ = convert_to_dst_type(out, _dst(img, out))
        return res

    def __call__(self, img: NdarrayOrTensor, box: Sequence[int] | None = None) -> NdarrayOrTensor:
        """Crop ``img`` ``(3, H, W)`` to its FOV (or to the given ``box`` to replay a crop) and pad to square."""
        img_t = convert_to_tensor(img, track_meta=False)
        _check_fundus(img_t)
        mask = None
        if box is None or self.pad_value is None:
            mask = self._mask(img_t)
        if box is None:
            box = self._box(img_t, mask)
            if box is None:
                warnings.warn(
                    "CropFundusFOV: no field of view found (e.g. an all-black image); returning the image unchanged.",
                    stacklevel=2,
                )
                return img
        return self.crop(img, box, mask=mask)


class CropFundusFOVd(MapTransform):
    """Dictionary-based version :py:class:`CropFundusFOV`: the crop box found on ``source_key`` is applied to all keys.

    Other keys (e.g. a lesion mask or a degraded copy) must share the spatial shape of the source image; each is
    padded with its own background (per-channel mean outside the source FOV, i.e. 0 for a mask) unless
    ``pad_value`` is given (one value, or one per key). The crop geometry is written to ``d[box_key]`` as
    ``{"box": [y0, y1, x0, x1], "pad": [top, bottom, left, right], "spatial_shape": [H, W]}`` (and to each
    MetaTensor's ``meta["fov_crop"]``); replay it with ``CropFundusFOV(...).crop(img, d[box_key]["box"])``.

    Fallback: if the source image has no detectable FOV, the dictionary is returned unchanged with a warning.

    Args:
        keys: keys to crop.
        source_key: key of the RGB fundus image the FOV is estimated from (default: the first key).
        margin: see :py:class:`CropFundusFOV`.
        square: see :py:class:`CropFundusFOV`.
        pad_value: scalar, ``None`` (estimated background), or a sequence with one entry per key.
        threshold: see :func:`fov_mask`.
        box_key: where the crop geometry is stored (default ``f"{source_key}_fov_crop"``).
        allow_missing_keys: don't raise if a key is missing.
    """

    backend = CropFundusFOV.backend

    def __init__(
        self,
        keys: KeysCollection,
        source_key: str | None = None,
        margin: int = 0,
        square: bool = True,
        pad_value: float | None | Sequence[float | None] = None,
        threshold: float | None = None,
        box_key: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.source_key = self.keys[0] if source_key is None else source_key
        self.box_key = f"{self.source_key}_fov_crop" if box_key is None else box_key
        if isinstance(pad_value, (list, tuple)):
            if len(pad_value) != len(self.keys):
                raise ValueError(
                    f"pad_value must be a scalar, None or a sequence of {len(self.keys)} entries, got {pad_value!r}."
                )
            self.pad_values = tuple(pad_value)
        else:
            self.pad_values = ensure_tuple_rep(pad_value, len(self.keys))
        self.cropper = CropFundusFOV(margin=margin, square=square, pad_value=None, threshold=threshold)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        if self.source_key not in d:
            if self.allow_missing_keys:
                return d
            raise KeyError(f"source_key {self.source_key!r} is not in the data (keys: {list(d)}).")
        src = convert_to_tensor(d[self.source_key], track_meta=False)
        _check_fundus(src, name=f"data[{self.source_key!r}]")
        mask = self.cropper._mask(src)
        box = self.cropper._box(src, mask)
        if box is None:
            warnings.warn(
                f"CropFundusFOVd: no field of view found in {self.source_key!r} (e.g. an all-black image); "
                "returning the data unchanged.",
                stacklevel=2,
            )
            return d
        shape = tuple(src.shape[-2:])
        geometry: dict[str, Any] = {}
        for key, pad_value in self.key_iterator(d, self.pad_values):
            if tuple(d[key].shape[-2:]) != shape:
                raise ValueError(
                    f"data[{key!r}] must have the spatial shape {shape} of data[{self.source_key!r}], "
                    f"got {tuple(d[key].shape[-2:])}."
                )
            d[key] = self.cropper.crop(d[key], box, pad_value=pad_value, mask=mask)
            if isinstance(d[key], MetaTensor):
                geometry = d[key].meta["fov_crop"]
        if not geometry:
            h, w = box[1] - box[0], box[3] - box[2]
            pad = _square_padding(h, w) if self.cropper.square and h != w else (0, 0, 0, 0)
            geometry = {"box": list(box), "pad": list(pad), "spatial_shape": list(shape)}
        d[self.box_key] = dict(geometry)
        return d


class FundusLocalContrast(Transform):
    """Ben Graham's local-average subtraction ("Kaggle DR 2015" preprocessing) inside the field of view.

    ``out = clip(alpha * I + beta * G + gamma, 0, 1)`` on the 0-1 scale, with ``G`` a Gaussian blur of ``I``
    of standard deviation ``sigma`` (default: ``sigma_fraction`` x FOV radius, i.e. Graham's ``radius / 30``), then
    pixels outside the FOV are set to ``background``. The defaults ``alpha=4, beta=-4, gamma=0.5`` are Graham's
    ``cv2.addWeighted(img, 4, blur, -4, 128)``; ``background=0.5`` is his grey (128) surround (use ``0`` for a
    black one). For 0-255 input, ``gamma``, ``background`` and the clip range are scaled by 255.

    Deviation (documented): with ``masked_blur=True`` (default) the blur is a normalised convolution inside the
    FOV, ``G = blur(I * m) / blur(m)``, so the dark surround does not leak into ``G`` and no bright rim appears at
    the FOV border (Graham instead shrinks the FOV to 90% of its radius).

    Args:
        alpha: weight of the image.
        beta: weight of the blurred image.
        gamma: offset (0-1 scale).
        sigma: blur standard deviation in pixels; ``None``: ``sigma_fraction * FOV radius``.
        sigma_fraction: fraction of the FOV radius used when ``sigma`` is ``None``.
        background: value outside the FOV (0-1 scale).
        masked_blur: blur only inside the FOV (normalised convolution).
        erode: shrink the FOV mask by this many pixels before use.
        threshold: FOV threshold, see :func:`fov_mask`.
        intensity_scale: 1 or 255; ``None``: 255 if the image's maximum exceeds 1.5, else 1.

    Input ``(3, H, W)`` or ``(B, 3, H, W)``; output same shape, container type, dtype and device.
    An optional precomputed FOV ``mask`` ``(1, H, W)`` may be passed to ``__call__``.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        alpha: float = 4.0,
        beta: float = -4.0,
        gamma: float = 0.5,
        sigma: float | None = None,
        sigma_fraction: float = 1.0 / 30.0,
        background: float = 0.5,
        masked_blur: bool = True,
        erode: int = 0,
        threshold: float | None = None,
        intensity_scale: float | None = None,
    ) -> None:
        if sigma is not None and not sigma > 0:
            raise ValueError(f"sigma must be None or a positive number of pixels, got {sigma!r}.")
        if not sigma_fraction > 0:
            raise ValueError(f"sigma_fraction must be positive, got {sigma_fraction!r}.")
        if int(erode) != erode or erode < 0:
            raise ValueError(f"erode must be a non-negative integer number of pixels, got {erode!r}.")
        if intensity_scale is not None and intensity_scale <= 0:
            raise ValueError(f"intensity_scale must be None or positive (1 or 255), got {intensity_scale!r}.")
        if threshold is not None and not 0.0 < float(threshold) < 1.0:
            raise ValueError(f"threshold must be None (automatic) or a fraction in (0, 1), got {threshold!r}.")
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)
        self.sigma = sigma
        self.sigma_fraction = float(sigma_fraction)
        self.background = float(background)
        self.masked_blur = bool(masked_blur)
        self.erode = int(erode)
        self.threshold = threshold
        self.intensity_scale = intensity_scale

    def __call__(self, img: NdarrayOrTensor, mask: NdarrayOrTensor | None = None) -> NdarrayOrTensor:
        """Apply the local-contrast normalisation to ``img`` (optionally with a precomputed FOV ``mask``)."""
        img_t = convert_to_tensor(img, track_meta=get_track_meta())
        _check_fundus(img_t)
        x = _as_batch(img_t)
        b, _, h, w = x.shape
        if mask is None:
            m = fov_mask(x, threshold=self.threshold, erode=self.erode)
        else:
            m = convert_to_tensor(mask, track_meta=False).to(x.device)
            m = m.reshape(-1, 1, *m.shape[-2:]).bool()
            if tuple(m.shape[-2:]) != (h, w) or m.shape[0] not in (1, b):
                raise ValueError(f"mask must have shape (1, {h}, {w}) matching img, got {tuple(mask.shape)}.")
            m = _erode(m.expand(b, -1, -1, -1), self.erode)
        scale = (
            _intensity_scale(x) if self.intensity_scale is None else torch.full((b,), float(self.intensity_scale))
        ).to(x.device)
        out = torch.empty_like(x)
        for i in range(b):
            xi, mi, si = x[i : i + 1], m[i : i + 1].float(), scale[i]
            if self.sigma is not None:
                sigma = float(self.sigma)
            elif bool(mi.any()):
                y0, y1, x0, x1 = fov_bbox(mi[0])
                sigma = self.sigma_fraction * max(y1 - y0, x1 - x0) / 2.0
            else:
                sigma = self.sigma_fraction * min(h, w) / 2.0
            sigma = max(sigma, 0.5)
            if self.masked_blur and bool(mi.any()):
                blur = gaussian_blur(xi * mi, sigma) / gaussian_blur(mi, sigma).clamp_min(1e-6)
            else:
                blur = gaussian_blur(xi, sigma)
            yi = (self.alpha * xi + self.beta * blur + self.gamma * si).clamp(0.0, float(si))
            out[i] = torch.where(mi.bool(), yi, self.background * si)[0]
        out = out[0] if img_t.ndim == 3 else out
        if not img_t.dtype.is_floating_point:
            out = out.round()
        res, *_ = convert_to_dst_type(out, _dst(img, img_t), dtype=img_t.dtype)
        return res


class FundusLocalContrastd(MapTransform):
    """Dictionary-based version :py:class:`FundusLocalContrast`.

    Args:
        keys: keys of the RGB fundus images.
        mask_key: optional key of a precomputed FOV mask (e.g. written by :py:class:`FundusFOVMaskd`); when it is
            ``None`` or missing from the data, the mask is estimated from each image.
        allow_missing_keys: don't raise if a key is missing.
        kwargs: the arguments of :py:class:`FundusLocalContrast`.
    """

    backend = FundusLocalContrast.backend

    def __init__(
        self, keys: KeysCollection, mask_key: str | None = None, allow_missing_keys: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mask_key = mask_key
        self.transform = FundusLocalContrast(**kwargs)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        mask = d.get(self.mask_key) if self.mask_key is not None else None
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key], mask=mask)
        return d


FundusFOVMaskD = FundusFOVMaskDict = FundusFOVMaskd
CropFundusFOVD = CropFundusFOVDict = CropFundusFOVd
FundusLocalContrastD = FundusLocalContrastDict = FundusLocalContrastd
