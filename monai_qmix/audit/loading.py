# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Image loading for the audit: decode every image once, keep a small uint8 copy, score its quality.

Unreadable (corrupted) or missing files are recorded as problems and skipped; they never stop the audit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .quality import fundus_quality

__all__ = ["load_images"]


def _read(path: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        im.load()
        small = np.asarray(im.resize((size, size), Image.BILINEAR), dtype=np.uint8)
        q_side = max(size, 128)
        qimg = np.asarray(im.resize((q_side, q_side), Image.BILINEAR), dtype=np.uint8) if q_side != size else small
    return small.transpose(2, 0, 1).copy(), qimg.transpose(2, 0, 1).copy()


def load_images(
    datalist: Sequence[Mapping[str, Any]],
    image_size: int = 64,
    image_key: str = "image",
    batch_size: int = 64,
    quality_options: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, list[int], dict[str, np.ndarray], list[dict[str, str]]]:
    """Load, resize (square ``image_size``) and quality-score every image of a datalist.

    Images are resized to a square without cropping (a rectangular raw photograph is squeezed; crop it to its field
    of view first, e.g. with ``python -m monai_qmix.data.prepare``). The quality score is computed on a square
    copy of at least 128 px (its default working size), in batches.

    Args:
        datalist: items with ``image_key`` paths.
        image_size: side of the kept uint8 copy (model input).
        image_key: item key of the image path.
        batch_size: images per quality-scoring batch.
        quality_options: keyword arguments of :func:`~monai_qmix.audit.quality.fundus_quality`.
        progress: tqdm progress bar.

    Returns:
        ``(images, ok, quality, problems)``: uint8 tensor ``(M, 3, S, S)`` of the readable images, the datalist
        positions ``ok`` (M,) they come from, the quality dict (arrays (M,)), and one ``{"image", "problem"}`` dict
        per missing or unreadable file.
    """
    from tqdm.auto import tqdm

    images: list[np.ndarray] = []
    ok: list[int] = []
    problems: list[dict[str, str]] = []
    qparts: dict[str, list[np.ndarray]] = {}
    pending: list[np.ndarray] = []

    def flush() -> None:
        if not pending:
            return
        q = fundus_quality(torch.from_numpy(np.stack(pending)), **dict(quality_options or {}))
        for k, v in q.items():
            qparts.setdefault(k, []).append(v.reshape(-1).numpy())
        pending.clear()

    for pos, item in enumerate(tqdm(datalist, desc="loading", disable=not progress, leave=False)):
        path = str(item.get(image_key, ""))
        if not os.path.isfile(path):
            problems.append({"image": path, "problem": "missing file"})
            continue
        try:
            small, qimg = _read(path, int(image_size))
        except Exception as e:  # any decoder failure: a corrupted file is reported, never fatal
            problems.append({"image": path, "problem": f"unreadable: {type(e).__name__}: {e}"})
            continue
        images.append(small)
        ok.append(pos)
        pending.append(qimg)
        if len(pending) >= int(batch_size):
            flush()
    flush()
    imgs = (
        torch.from_numpy(np.stack(images)) if images else torch.zeros((0, 3, image_size, image_size), dtype=torch.uint8)
    )
    quality = {k: np.concatenate(v) for k, v in qparts.items()}
    return imgs, ok, quality, problems
