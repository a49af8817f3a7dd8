# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Images/s of decode + augmentation from full-resolution originals vs the prepared copy (``monai_qmix.data.prepare``).

Without ``--dataset_dir`` it writes synthetic full-resolution fundus JPEGs (the CC0 scikit-image retina photograph on
a 4:3 black canvas, ``--px`` pixels high, colour-jittered per image) into a temporary folder. Both pipelines end in
the same training tensor (``--train_size`` square, random flip / rotation / intensity); the originals' pipeline also
crops the FOV at load time (``CropFundusFOVd``), which the prepared copy did once; a row without that crop and
decode-only rows are shown too. Single process, 1 torch thread; images/s per wall second and per CPU second
(robust on a shared machine)::

    python benchmarks/loading.py --num 16
    python benchmarks/loading.py --dataset aptos --dataset_dir /data/aptos --num 64
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

import numpy as np
import torch
from monai.data import Dataset
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    LoadImaged,
    RandFlipd,
    RandRotated,
    RandScaleIntensityd,
    Resized,
    ScaleIntensityRanged,
)
from PIL import Image

from monai_qmix.data.prepare import prepare_datalist
from monai_qmix.data.readers import load_datalist
from monai_qmix.transforms.fundus import CropFundusFOVd


def synthetic_originals(folder: str, num: int, px: int, seed: int = 0) -> list[dict]:
    """Write ``num`` JPEGs of ``px`` x ``4/3 px`` pixels and return their datalist."""
    from skimage.data import retina

    os.makedirs(folder, exist_ok=True)

    rng = np.random.default_rng(seed)
    photo = Image.fromarray(retina()).resize((px - px // 20, px - px // 20), Image.Resampling.BICUBIC)
    base = np.full((px, px * 4 // 3, 3), 4, dtype=np.uint8)
    top, left = (px - photo.size[1]) // 2, (px * 4 // 3 - photo.size[0]) // 2
    base[top : top + photo.size[1], left : left + photo.size[0]] = np.asarray(photo)
    items = []
    for i in range(num):
        gain = rng.uniform(0.8, 1.2, size=3)
        img = np.clip(base * gain, 0, 255).astype(np.uint8)
        path = os.path.join(folder, f"{i:04d}.jpg")
        Image.fromarray(img).save(path, quality=90)
        items.append({"image": path, "label": i % 5, "index": i, "quality": -1, "id": str(i)})
    return items


def pipeline(train_size: int | None, crop_fov: bool = False, seed: int = 0) -> Compose:
    """Decode (+ FOV crop) (+ resize + the usual random augmentation when ``train_size`` is given)."""
    t = [
        LoadImaged("image", reader="PILReader", image_only=True),
        EnsureChannelFirstd("image", channel_dim=-1),
        ScaleIntensityRanged("image", 0, 255, 0, 1),
    ]
    if crop_fov:
        t.append(CropFundusFOVd("image", pad_value=0.0))
    if train_size:
        t += [
            Resized("image", (train_size, train_size), mode="bilinear"),
            RandFlipd("image", prob=0.5, spatial_axis=1),
            RandRotated("image", range_x=np.pi, prob=1.0, padding_mode="zeros"),
            RandScaleIntensityd("image", factors=0.1, prob=1.0),
        ]
    return Compose(t).set_random_state(seed)


def throughput(items: list[dict], transform: Compose) -> tuple[float, float]:
    """Images per second of ``transform`` over ``items``: per wall-clock second and per CPU second of this process.

    The CPU rate is the robust one on a busy machine (single process, torch limited to one thread).
    """
    ds = Dataset(items, transform)
    assert isinstance(ds[0]["image"], torch.Tensor)  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(len(ds)):
        ds[i]
    return len(ds) / (time.perf_counter() - wall), len(ds) / (time.process_time() - cpu)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset_dir", default=None, help="dataset folder (default: synthetic JPEGs in a temp folder)")
    p.add_argument("--dataset", default="aptos", help="reader name for --dataset_dir (default aptos)")
    p.add_argument("--num", type=int, default=16, help="number of images (default 16)")
    p.add_argument("--px", type=int, default=2400, help="height of the synthetic originals (default 2400)")
    p.add_argument("--size", type=int, default=512, help="side of the prepared copy (default 512)")
    p.add_argument("--train_size", type=int, default=384, help="side of the training tensor (default 384)")
    p.add_argument("--workers", type=int, default=0, help="processes for the preparation step")
    a = p.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        if a.dataset_dir:
            items = load_datalist(a.dataset, a.dataset_dir)[: a.num]
            source = f"{a.dataset} at {a.dataset_dir}"
        else:
            t0 = time.perf_counter()
            items = synthetic_originals(os.path.join(tmp, "orig"), a.num, a.px)
            source = f"{a.num} synthetic {a.px}x{a.px * 4 // 3} JPEGs (written in {time.perf_counter() - t0:.1f} s)"
        mb = sum(os.path.getsize(it["image"]) for it in items) / 2**20
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prepared, _ = prepare_datalist(items, os.path.join(tmp, "prep"), a.size, workers=a.workers, progress=False)
        prep_rate = len(items) / (time.perf_counter() - t0)
        mb_prep = sum(os.path.getsize(it["image"]) for it in prepared) / 2**20
        rows = [
            ("originals: decode", items, pipeline(None)),
            ("originals: decode+resize+aug", items, pipeline(a.train_size)),
            ("originals: decode+FOV crop+resize+aug", items, pipeline(a.train_size, crop_fov=True)),
            (f"prepared {a.size}px PNG: decode", prepared, pipeline(None)),
            (f"prepared {a.size}px PNG: decode+resize+aug", prepared, pipeline(a.train_size)),
        ]
        rates = [(name, *throughput(data, t)) for name, data, t in rows]
    print(f"source: {source}; {mb:.1f} MB originals, {mb_prep:.1f} MB prepared; single process, 1 torch thread")
    print(f"{'pipeline':<46}{'img/s (wall)':>14}{'img/s (CPU)':>13}")
    for name, wall, cpu in rates:
        print(f"{name:<46}{wall:>14.2f}{cpu:>13.2f}")
    print(f"{'one-off preparation (prepare_datalist)':<46}{prep_rate:>14.2f}")
    print(
        f"training-pipeline speed-up of the prepared copy (CPU): {rates[4][2] / rates[2][2]:.1f}x vs FOV-cropped "
        f"originals, {rates[4][2] / rates[1][2]:.1f}x vs uncropped originals"
    )


if __name__ == "__main__":
    main()
