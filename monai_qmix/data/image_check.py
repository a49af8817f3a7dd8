# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Images that cannot be used: find them up front, load the others, and say which file failed and why.

* :func:`check_image`: why an image file cannot be used (missing, empty, not an image / corrupt / truncated, a mode
  or bit depth that is not a photograph), or ``None``; ``python -m monai_qmix.data.prepare --check`` lists them all.
* :func:`to_rgb`: PIL image → 8-bit RGB, 16-bit grey images scaled by their bit depth (``/ 65535``) rather than
  clipped at 255.
* :class:`LoadFundusImaged`: MONAI's ``LoadImaged`` (``PILReader``, :func:`to_rgb`) that never raises a 300-line
  traceback from a DataLoader worker: an unreadable image becomes a small black placeholder with the reason in
  ``load_error`` (``""`` when it loaded), or raises :class:`UnreadableImageError` (``on_error="raise"``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImaged, MapTransform
from PIL import Image

__all__ = ["LoadFundusImaged", "UnreadableImageError", "check_image", "check_images", "to_rgb", "IMAGE_MODES"]

#: PIL modes of usable photographs: 8-bit grey / palette / RGB(A) and 16-bit grey.
IMAGE_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "I;16", "I;16B", "I;16L", "I;16N")
_16BIT = ("I;16", "I;16B", "I;16L", "I;16N")
_DEPTH = {"I": "32-bit integer", "F": "32-bit float", "I;32": "32-bit integer"}


class UnreadableImageError(OSError):
    """An image file that cannot be used; the message is ``unreadable image '<path>': <reason>``.

    Args:
        path: the file.
        reason: why (see :func:`check_image`).
    """

    def __init__(self, path: str | os.PathLike, reason: str = "unreadable") -> None:
        self.path, self.reason = os.fspath(path), str(reason)
        super().__init__(f"unreadable image '{self.path}': {self.reason}")

    def __reduce__(self):  # picklable across DataLoader workers
        return (type(self), (self.path, self.reason))


def _mode_problem(mode: str) -> str | None:
    if mode in IMAGE_MODES:
        return None
    if mode in _DEPTH:
        return f"unsupported bit depth: {_DEPTH[mode]} (PIL mode {mode!r}); expected 8-bit or 16-bit images"
    return f"unsupported mode {mode!r}; expected one of {', '.join(IMAGE_MODES)}"


def to_rgb(im: Image.Image) -> Image.Image:
    """An 8-bit RGB copy of a PIL image (the ``converter`` of :class:`LoadFundusImaged`).

    16-bit grey images (``I;16*``) are scaled by their bit depth (``value * 255 / 65535``), not clipped at 255 as
    ``Image.convert`` does; 8-bit modes are converted by PIL.

    Raises:
        ValueError: a mode of :func:`check_image`'s "unsupported" kind (CMYK, 32-bit integer or float, ...).
    """
    problem = _mode_problem(im.mode)
    if problem is not None:
        raise ValueError(problem)
    if im.mode in _16BIT:
        arr = np.asarray(im, dtype=np.float64)
        grey = np.clip(np.rint(arr * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    return im.convert("RGB")


def check_image(path: str | os.PathLike) -> str | None:
    """Why an image file cannot be used for training or inference, or ``None`` when it can.

    Checks, in order: the file exists, is not empty, is an image PIL can identify and verify, decodes completely
    (truncated files fail here) and has a usable mode / bit depth (:data:`IMAGE_MODES`).

    Args:
        path: the image file.

    Returns:
        ``None``, or the reason (one line).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        return "missing file"
    if os.path.getsize(path) == 0:
        return "empty file (0 bytes)"
    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            mode = im.mode
            im.load()
            size = im.size
    except Exception as e:  # noqa: BLE001 - any decoding failure is a reason
        text = " ".join(str(e).split()) or type(e).__name__
        return f"not a readable image ({type(e).__name__}: {text})"
    if min(size) < 1:
        return f"empty image ({size[0]} x {size[1]} px)"
    return _mode_problem(mode)


def check_images(paths: Sequence[str | os.PathLike], progress: bool = False) -> list[dict[str, str]]:
    """:func:`check_image` for every path; returns ``[{"image": path, "reason": ...}]`` of the unusable ones."""
    from tqdm.auto import tqdm

    out = []
    for p in tqdm(list(paths), desc="check images", unit="img", disable=not progress):
        reason = check_image(p)
        if reason is not None:
            out.append({"image": os.fspath(p), "reason": reason})
    return out


class LoadFundusImaged(MapTransform):
    """Load fundus photographs as MONAI's ``LoadImaged(reader="PILReader", converter=to_rgb, image_only=True)``,
    with unreadable images reported instead of crashing the loader.

    For each key, a file that fails to load becomes (``on_error="mark"``) a black ``(placeholder, placeholder, 3)``
    ``MetaTensor`` with the file in its ``filename_or_obj`` metadata, and ``error_key`` holds the reason (one line,
    from :func:`check_image`); ``error_key`` is ``""`` for images that loaded, so batches always collate. With
    ``on_error="raise"`` an :class:`UnreadableImageError` naming the file is raised. The bundles mark in the
    loaders and stop the run in the main process (``monai_qmix.bundles.scripts.ImageErrorGuard``), so the message
    is one line even with DataLoader workers; inference predicts the others and lists the failures.

    Args:
        keys: keys of the image paths.
        error_key: key of the reason (``""``: loaded).
        on_error: ``"mark"`` or ``"raise"``.
        placeholder: side of the placeholder image in pixels.
        allow_missing_keys: as ``MapTransform``.

    Raises:
        ValueError: unknown ``on_error``.
    """

    def __init__(
        self,
        keys: Hashable | Sequence[Hashable],
        error_key: str = "load_error",
        on_error: str = "mark",
        placeholder: int = 32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if on_error not in ("mark", "raise"):
            raise ValueError(f"on_error: expected 'mark' or 'raise', got {on_error!r}.")
        self.error_key, self.on_error, self.placeholder = error_key, on_error, int(placeholder)
        self.loader = LoadImaged(keys, reader="PILReader", converter=to_rgb, image_only=True, allow_missing_keys=True)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        reasons = []
        for key in self.key_iterator(d):
            path = d[key]
            quiet = logging.getLogger("LoadImage")  # MONAI logs every reader's failure at INFO: one reason is enough
            level = quiet.level
            quiet.setLevel(logging.WARNING)
            try:
                d[key] = self.loader({key: path})[key]
            except Exception as e:  # noqa: BLE001 - reported with the file's name
                reason = check_image(path) or " ".join(f"{type(e).__name__}: {e}".split())
                if self.on_error == "raise":
                    raise UnreadableImageError(path, reason) from None
                d[key] = MetaTensor(
                    torch.zeros(self.placeholder, self.placeholder, 3), meta={"filename_or_obj": str(path)}
                )
                reasons.append(reason)
            finally:
                quiet.setLevel(level)
        d[self.error_key] = "; ".join(reasons)
        return d
