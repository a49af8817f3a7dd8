# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Throughput (images/s) of the fundus quality degradations, for single images and for batches, on CPU and CUDA.

The FOV mask is computed once and passed to the transforms (as a ``fov_key`` does in a pipeline); the cost of
estimating it with :func:`monai_qmix.transforms.fundus.fov_mask` is reported on its own row. Prints a Markdown
table.

Usage::

    python benchmarks/transforms.py --size 512 --batch 32 --repeats 3
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from monai_qmix.transforms.degradation import (
    RandFundusBlur,
    RandFundusDegradation,
    RandFundusIllumination,
    RandFundusSpot,
)
from monai_qmix.transforms.fundus import fov_mask

CASES: dict[str, Callable[[], RandFundusDegradation]] = {
    "illumination (colour+halo+hole)": lambda: RandFundusIllumination(),
    "illumination: colour": lambda: RandFundusIllumination(halo=False, hole=False),
    "illumination: halo": lambda: RandFundusIllumination(color=False, hole=False),
    "illumination: hole": lambda: RandFundusIllumination(color=False, halo=False),
    "spot": lambda: RandFundusSpot(),
    "blur (official kernel)": lambda: RandFundusBlur(),
    "blur (full Gaussian)": lambda: RandFundusBlur(blur_kernel_rule="full_gaussian"),
    "combined '111' (official)": lambda: RandFundusDegradation("111"),
    "combined '111' (full Gaussian)": lambda: RandFundusDegradation("111", blur_kernel_rule="full_gaussian"),
}


def retina_batch(size: int, batch: int) -> torch.Tensor:
    """``batch`` copies (with flips) of the scikit-image retina photograph, float32 ``(B, 3, size, size)``."""
    from skimage.data import retina
    from skimage.transform import resize

    img = resize(retina().astype(np.float32) / 255.0, (size, size), order=1, anti_aliasing=True)
    x = torch.as_tensor(np.ascontiguousarray(img.transpose(2, 0, 1)), dtype=torch.float32)
    return torch.stack([x.flip(-1) if i % 2 else x for i in range(batch)])


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median wall time (s) of ``fn`` over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_device(device: torch.device, cpu_images: torch.Tensor, repeats: int) -> list[tuple[str, float, float]]:
    """Return rows ``(case, single images/s, batched images/s)`` on ``device``."""
    images = cpu_images.to(device)
    n = images.shape[0]
    fov = fov_mask(images)
    rows = [
        (
            "fov_mask (FOV estimation)",
            n / timed(lambda: [fov_mask(im) for im in images], device, repeats),
            n / timed(lambda: fov_mask(images), device, repeats),
        )
    ]
    for name, make in CASES.items():
        t = make().set_random_state(0)
        t_single = timed(lambda t=t: [t(im, fov=m) for im, m in zip(images, fov)], device, repeats)
        t_batch = timed(lambda t=t: t(images, fov=fov), device, repeats)
        rows.append((name, n / t_single, n / t_batch))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="image side in pixels (RGB, square)")
    parser.add_argument("--batch", type=int, default=32, help="batch size (single-image rows loop over as many)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement (median)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--cpu-only", action="store_true", help="skip CUDA even when available")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and not args.cpu_only:
        devices.append(torch.device("cuda"))
    cpu_images = retina_batch(args.size, args.batch)
    rows = [(d.type, *row) for d in devices for row in bench_device(d, cpu_images, args.repeats)]
    print(
        f"Fundus degradations, {args.size}x{args.size} RGB float32, batch {args.batch}, median of {args.repeats}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
        f"{platform.processor() or platform.machine()}"
    )
    print()
    print(f"| device | degradation | single images/s | batch-{args.batch} images/s |")
    print("|---|---|---:|---:|")
    for device, name, single, batched in rows:
        print(f"| {device} | {name} | {single:.1f} | {batched:.1f} |")


if __name__ == "__main__":
    main()
