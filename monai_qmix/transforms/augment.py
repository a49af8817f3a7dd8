# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Weak and strong fundus augmentations of QMix and the multi-view transform that feeds its trainer.

The official QMix loader (``houjunlin/QMix:dataset.py``, method notes §7) builds four views of every training
image: two **weak** (flips + rotation) and two **strong** (flips + colour jitter + random resized crop + rotation +
random grayscale). MONAI has no colour jitter and no random grayscale, so :class:`RandColorJitter` (torchvision
semantics for brightness, contrast and saturation; fixed order instead of torchvision's random order) and
:class:`RandGrayscale` are provided here; torchvision's ``RandomResizedCrop(scale=(0.8, 1.2))`` becomes an
isotropic :class:`~monai.transforms.RandZoom` in ``[0.8, 1.2]`` with ``keep_size=True`` (method notes §7).

:class:`MultiViewd` turns one loaded image into any number of independently augmented views
(``image_w1, image_w2, image_s1, image_s2`` with :func:`fundus_views`), so the image is loaded and decoded once
per epoch. Every random draw goes through the transforms' ``R``; ``set_random_state`` on the multi-view transform
seeds all its children, so a seeded pipeline is reproducible.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data.meta_obj import get_track_meta
from monai.transforms import (
    Compose,
    MapTransform,
    NormalizeIntensity,
    RandFlip,
    Randomizable,
    RandomizableTransform,
    RandRotate,
    RandZoom,
    Resize,
)
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor
from monai.utils.misc import MAX_SEED

__all__ = [
    "FUNDUS_MEAN",
    "FUNDUS_STD",
    "RandGrayscale",
    "RandGrayscaled",
    "RandGrayscaleD",
    "RandGrayscaleDict",
    "RandColorJitter",
    "RandColorJitterd",
    "RandColorJitterD",
    "RandColorJitterDict",
    "MultiViewd",
    "MultiViewD",
    "MultiViewDict",
    "fundus_weak_augment",
    "fundus_strong_augment",
    "fundus_test_transform",
    "fundus_views",
]

#: Fundus channel statistics of the official QMix loader (RGB, images in [0, 1]).
FUNDUS_MEAN: tuple[float, float, float] = (0.426, 0.298, 0.213)
FUNDUS_STD: tuple[float, float, float] = (0.277, 0.203, 0.169)

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as torchvision's rgb_to_grayscale


def _luma(x: torch.Tensor) -> torch.Tensor:
    """Grayscale ``(1, ...)`` of a ``(3, ...)`` RGB tensor."""
    w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).reshape(3, *([1] * (x.ndim - 1)))
    return (x * w).sum(dim=0, keepdim=True)


def _check_rgb(x: torch.Tensor, name: str) -> None:
    if x.ndim < 2 or x.shape[0] != 3:
        raise ValueError(f"{name}: expected a channel-first RGB image (3, H, W), got shape {tuple(x.shape)}.")


class RandGrayscale(RandomizableTransform):
    """Randomly convert a channel-first RGB image to grayscale, kept as 3 identical channels.

    The MONAI counterpart of torchvision's ``RandomGrayscale`` (QMix strong augmentation, ``p = 0.2``); the
    luminance is ``0.299 R + 0.587 G + 0.114 B``.

    Args:
        prob: probability of the conversion.

    Raises:
        ValueError: when the image does not have 3 channels.

    Example:
        >>> img = torch.rand(3, 8, 8)
        >>> out = RandGrayscale(prob=1.0)(img)
        >>> bool((out[0] == out[1]).all() and (out[1] == out[2]).all())
        True
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, prob: float = 0.2) -> None:
        RandomizableTransform.__init__(self, prob)

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)

    def __call__(self, img: Any, randomize: bool = True) -> Any:
        """Apply the transform to ``img`` (C, H[, W]) with C = 3."""
        x = convert_to_tensor(img, track_meta=get_track_meta())
        _check_rgb(x, "img")
        if randomize:
            self.randomize()
        if not self._do_transform:
            return convert_to_dst_type(x, dst=img)[0]
        out = _luma(x.float()).expand_as(x).to(x.dtype).clone()
        return convert_to_dst_type(out, dst=img)[0]


class RandGrayscaled(RandomizableTransform, MapTransform):
    """Dictionary-based version :py:class:`RandGrayscale` (one draw per call, applied to every key).

    Args:
        keys: keys of the images to convert.
        prob: probability of the conversion.
        allow_missing_keys: do not raise for missing keys.
    """

    backend = RandGrayscale.backend

    def __init__(self, keys: KeysCollection, prob: float = 0.2, allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.gray = RandGrayscale(prob=1.0)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandGrayscaled:
        super().set_random_state(seed, state)
        self.gray.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        for key in self.key_iterator(d):
            d[key] = self.gray(d[key], randomize=False) if self._do_transform else d[key]
        return d


class RandColorJitter(RandomizableTransform):
    """Random brightness, contrast and saturation of a channel-first RGB image in ``[0, 1]`` (torchvision semantics).

    Each factor is drawn uniformly in ``[max(0, 1 − v), 1 + v]`` and applied in the fixed order brightness →
    contrast → saturation (torchvision draws a random order; a fixed order keeps the number of draws constant):
    brightness ``x·b``; contrast ``(x − m)·c + m`` with ``m`` the mean luminance; saturation ``(x − g)·s + g``
    with ``g`` the per-pixel luminance; each step clipped to ``[0, 1]`` when ``clip``. QMix's strong augmentation
    uses 0.4 for all three and no hue jitter.

    Args:
        brightness: brightness jitter ``v >= 0`` (0 disables).
        contrast: contrast jitter ``v >= 0``.
        saturation: saturation jitter ``v >= 0``.
        prob: probability of applying the jitter.
        clip: clip to ``[0, 1]`` after each step (torchvision does, for float images).

    Raises:
        ValueError: for a negative jitter or an image that is not RGB.

    Example:
        >>> jitter = RandColorJitter(0.4, 0.4, 0.4).set_random_state(0)
        >>> jitter(torch.rand(3, 8, 8)).shape
        torch.Size([3, 8, 8])
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        prob: float = 1.0,
        clip: bool = True,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        for name, v in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite value >= 0, got {v!r}.")
        self.ranges = [(max(0.0, 1.0 - float(v)), 1.0 + float(v)) for v in (brightness, contrast, saturation)]
        self.clip = bool(clip)
        self.factors: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        if not self._do_transform:
            return
        self.factors = tuple(float(self.R.uniform(lo, hi)) for lo, hi in self.ranges)  # type: ignore[assignment]

    def _clip(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(0.0, 1.0) if self.clip else x

    def __call__(self, img: Any, randomize: bool = True) -> Any:
        """Apply the transform to ``img`` (3, H[, W])."""
        x = convert_to_tensor(img, track_meta=get_track_meta())
        _check_rgb(x, "img")
        if randomize:
            self.randomize()
        if not self._do_transform:
            return convert_to_dst_type(x, dst=img)[0]
        b, c, s = self.factors
        y = x.float()
        y = self._clip(y * b)
        m = _luma(y).mean()
        y = self._clip((y - m) * c + m)
        g = _luma(y)
        y = self._clip((y - g) * s + g)
        return convert_to_dst_type(y.to(x.dtype), dst=img)[0]


class RandColorJitterd(RandomizableTransform, MapTransform):
    """Dictionary-based version :py:class:`RandColorJitter` (one draw per call, applied to every key).

    Args:
        keys: keys of the RGB images.
        brightness: see :class:`RandColorJitter`.
        contrast: see :class:`RandColorJitter`.
        saturation: see :class:`RandColorJitter`.
        prob: probability of applying the jitter.
        clip: see :class:`RandColorJitter`.
        allow_missing_keys: do not raise for missing keys.
    """

    backend = RandColorJitter.backend

    def __init__(
        self,
        keys: KeysCollection,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        prob: float = 1.0,
        clip: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.jitter = RandColorJitter(brightness, contrast, saturation, prob=1.0, clip=clip)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandColorJitterd:
        super().set_random_state(seed, state)
        self.jitter.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        self.jitter.randomize()
        for key in self.key_iterator(d):
            d[key] = self.jitter(d[key], randomize=False)
        return d


class MultiViewd(Randomizable, MapTransform):
    """Make several independently augmented views of one image (e.g. QMix's 2 weak + 2 strong views).

    ``views`` maps each output key to an *array* transform (any callable, typically a :class:`~monai.transforms.
    Compose`); each view gets its own copy of the source image. When one transform object serves several views
    (the two weak views), it is called once per view, so every view has its own random draw.
    :meth:`set_random_state` seeds this transform and then every distinct child (in the order of ``views``) with
    a seed drawn from its ``R``, so a seeded pipeline is reproducible (MONAI's ``DataLoader`` seeds it too).

    :meth:`set_active_views` restricts the computed views to a subset (the others are neither augmented nor
    returned), e.g. the single strong view a cross-entropy warm-up epoch uses; :class:`~monai_qmix.engines.
    QMixTrainer` does this per epoch with ``skip_unused_views=True``. Skipped views make no random draws, so the
    random stream differs from an all-views run (it stays seeded and reproducible).

    Args:
        keys: the source image key (exactly one).
        views: ``{output_key: transform}``; output keys must differ from the source key.
        keep_source: keep the un-augmented source under its key (``False`` drops it, saving memory).
        allow_missing_keys: do nothing when the source key is missing.

    Raises:
        ValueError: for more than one source key, an empty ``views``, a view named like the source or a
            non-callable view transform.

    Example:
        >>> views = MultiViewd("image", {"image_a": RandGrayscale(1.0), "image_b": lambda x: x})
        >>> out = views({"image": torch.rand(3, 8, 8)})
        >>> sorted(out)
        ['image', 'image_a', 'image_b']
    """

    def __init__(
        self,
        keys: KeysCollection,
        views: Mapping[str, Callable[[Any], Any]],
        keep_source: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"keys: MultiViewd takes exactly one source key, got {list(self.keys)}.")
        if not isinstance(views, Mapping) or not views:
            raise ValueError(f"views: expected a non-empty mapping {{output_key: transform}}, got {views!r}.")
        for k, t in views.items():
            if k == self.keys[0]:
                raise ValueError(f"views: output key {k!r} equals the source key; choose another name.")
            if not callable(t):
                raise ValueError(f"views[{k!r}]: expected a callable transform, got {type(t).__name__}.")
        self.views = dict(views)
        self.keep_source = bool(keep_source)
        self.active_views: tuple[str, ...] | None = None

    def set_active_views(self, keys: Sequence[str] | None) -> MultiViewd:
        """Compute only the views ``keys`` from now on (``None``: all views, the default).

        Args:
            keys: output keys of ``views`` to compute, or ``None``.

        Returns:
            This transform.

        Raises:
            ValueError: for an empty selection or a key that is not a view of this transform.
        """
        if keys is None:
            self.active_views = None
            return self
        keys = (keys,) if isinstance(keys, str) else tuple(keys)
        unknown = [k for k in keys if k not in self.views]
        if not keys or unknown:
            raise ValueError(
                f"keys: expected a non-empty subset of the views {list(self.views)} or None, got {list(keys)}."
            )
        self.active_views = keys
        return self

    def _children(self) -> list[Any]:
        seen: dict[int, Any] = {}
        for t in self.views.values():
            if id(t) not in seen and isinstance(t, Randomizable):
                seen[id(t)] = t
        return list(seen.values())

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> MultiViewd:
        super().set_random_state(seed, state)
        for t in self._children():
            t.set_random_state(seed=int(self.R.randint(MAX_SEED, dtype="uint32")))
        return self

    def randomize(self, data: Any = None) -> None:
        """The draws happen inside the view transforms; nothing to draw here."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            src = d[key]
            for out_key, transform in self.views.items():
                if self.active_views is not None and out_key not in self.active_views:
                    continue
                img = src.clone() if isinstance(src, torch.Tensor) else copy.deepcopy(src)
                d[out_key] = transform(img)
            if not self.keep_source:
                del d[key]
        return d


def _resize_and_normalise(
    spatial_size: Sequence[int] | int | None, normalize: bool, mean: Sequence[float], std: Sequence[float]
) -> tuple[list, list]:
    if isinstance(spatial_size, int):
        spatial_size = (spatial_size, spatial_size)  # 2-D fundus images
    head = [Resize(spatial_size)] if spatial_size is not None else []
    tail = [NormalizeIntensity(subtrahend=list(mean), divisor=list(std), channel_wise=True)] if normalize else []
    return head, tail


def fundus_weak_augment(
    spatial_size: Sequence[int] | int | None = None,
    rotate_range: float = np.pi,
    normalize: bool = False,
    mean: Sequence[float] = FUNDUS_MEAN,
    std: Sequence[float] = FUNDUS_STD,
) -> Compose:
    """QMix weak augmentation of a channel-first RGB image: (resize) → H-flip → V-flip → rotation (±180°).

    Args:
        spatial_size: optional resize (``None`` keeps the loaded size).
        rotate_range: maximum rotation in radians (``π`` = the official ``RandomAffine(degrees=(−180, 180))``).
        normalize: append channel-wise normalisation with ``mean`` / ``std`` (official fundus statistics).
        mean: channel means for ``normalize``.
        std: channel standard deviations for ``normalize``.

    Returns:
        A :class:`~monai.transforms.Compose` of array transforms.
    """
    head, tail = _resize_and_normalise(spatial_size, normalize, mean, std)
    return Compose(
        [
            *head,
            RandFlip(prob=0.5, spatial_axis=1),
            RandFlip(prob=0.5, spatial_axis=0),
            RandRotate(range_x=rotate_range, prob=1.0, keep_size=True, padding_mode="zeros"),
            *tail,
        ]
    )


def fundus_strong_augment(
    spatial_size: Sequence[int] | int | None = None,
    jitter: float = 0.4,
    zoom: tuple[float, float] = (0.8, 1.2),
    rotate_range: float = np.pi,
    grayscale_prob: float = 0.2,
    normalize: bool = False,
    mean: Sequence[float] = FUNDUS_MEAN,
    std: Sequence[float] = FUNDUS_STD,
) -> Compose:
    """QMix strong augmentation: (resize) → flips → colour jitter → random zoom → rotation → random grayscale.

    Follows the official loader (method notes §7): ``ColorJitter(0.4, 0.4, 0.4)``, ``RandomResizedCrop(scale=
    (0.8, 1.2))`` (here an isotropic zoom in ``zoom`` keeping the size), ``RandomAffine(±180°)``,
    ``RandomGrayscale(p=0.2)``.

    Args:
        spatial_size: optional resize.
        jitter: brightness, contrast and saturation jitter.
        zoom: ``(min_zoom, max_zoom)``.
        rotate_range: maximum rotation in radians.
        grayscale_prob: probability of the grayscale conversion.
        normalize: append channel-wise normalisation.
        mean: channel means for ``normalize``.
        std: channel standard deviations for ``normalize``.

    Returns:
        A :class:`~monai.transforms.Compose` of array transforms.
    """
    head, tail = _resize_and_normalise(spatial_size, normalize, mean, std)
    return Compose(
        [
            *head,
            RandFlip(prob=0.5, spatial_axis=1),
            RandFlip(prob=0.5, spatial_axis=0),
            RandColorJitter(jitter, jitter, jitter, prob=1.0),
            RandZoom(prob=1.0, min_zoom=zoom[0], max_zoom=zoom[1], keep_size=True, padding_mode="constant"),
            RandRotate(range_x=rotate_range, prob=1.0, keep_size=True, padding_mode="zeros"),
            RandGrayscale(prob=grayscale_prob),
            *tail,
        ]
    )


def fundus_test_transform(
    spatial_size: Sequence[int] | int | None = None,
    normalize: bool = False,
    mean: Sequence[float] = FUNDUS_MEAN,
    std: Sequence[float] = FUNDUS_STD,
) -> Compose:
    """QMix test / separation transform: (resize) → (normalise); deterministic."""
    head, tail = _resize_and_normalise(spatial_size, normalize, mean, std)
    return Compose([*head, *tail])


def fundus_views(
    keys: KeysCollection = "image",
    n_weak: int = 2,
    n_strong: int = 2,
    spatial_size: Sequence[int] | int | None = None,
    normalize: bool = False,
    keep_source: bool = False,
    weak: Callable[[Any], Any] | None = None,
    strong: Callable[[Any], Any] | None = None,
) -> MultiViewd:
    """The QMix trainer's input: ``<key>_w1 … <key>_w<n_weak>`` weak and ``<key>_s1 …`` strong views of one image.

    Args:
        keys: the source image key.
        n_weak: number of weak views (QMix: 2).
        n_strong: number of strong views (QMix: 2; 1 for the trainer's ``strong_views=1``).
        spatial_size: optional resize inside the augmentations.
        normalize: channel-wise normalisation with the fundus statistics.
        keep_source: keep the un-augmented image too.
        weak: a custom weak transform (default :func:`fundus_weak_augment`).
        strong: a custom strong transform (default :func:`fundus_strong_augment`).

    Returns:
        A :class:`MultiViewd`.

    Raises:
        ValueError: for negative view counts or no view at all.
    """
    if n_weak < 0 or n_strong < 0 or n_weak + n_strong == 0:
        raise ValueError(f"n_weak and n_strong must be >= 0 and not both 0, got {n_weak!r} and {n_strong!r}.")
    key = [keys] if isinstance(keys, str) else list(keys)
    if len(key) != 1:
        raise ValueError(f"keys: expected exactly one source key, got {key}.")
    weak = weak if weak is not None else fundus_weak_augment(spatial_size, normalize=normalize)
    strong = strong if strong is not None else fundus_strong_augment(spatial_size, normalize=normalize)
    views: dict[str, Callable[[Any], Any]] = {f"{key[0]}_w{i + 1}": weak for i in range(n_weak)}
    views.update({f"{key[0]}_s{i + 1}": strong for i in range(n_strong)})
    return MultiViewd(key[0], views, keep_source=keep_source)


RandGrayscaleD = RandGrayscaleDict = RandGrayscaled
RandColorJitterD = RandColorJitterDict = RandColorJitterd
MultiViewD = MultiViewDict = MultiViewd
