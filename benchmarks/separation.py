# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Benchmark of QMix sample separation (not a test).

1. GMM fit time of :func:`monai_qmix.separation.separate` at 10k / 100k / 1M samples (target: <= 1 s at 100k),
   with the official settings, plus ``max_fit_samples=100_000`` at 1M.
2. One scoring pass (:func:`score_samples`, entropy and MC dropout) relative to one training epoch
   (forward + backward + SGD step) of the same tiny network on the same data, CPU.

Usage: ``python benchmarks/separation.py [--sizes 10000 100000 1000000] [--n-images 512] [--threads 1]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.utils.data import DataLoader

from monai_qmix.separation import score_samples, separate


def synthetic_scores(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three clouds shaped like the QMix figure (b): 60 % Correct, 20 % Mis-H, 20 % Mis-L."""
    rng = np.random.default_rng(seed)
    sizes = (int(0.6 * n), int(0.2 * n), n - int(0.6 * n) - int(0.2 * n))
    loss = np.concatenate(
        [rng.gamma(2, 0.05, sizes[0]), rng.normal(1.5, 0.3, sizes[1]), rng.normal(0.8, 0.3, sizes[2])]
    )
    unc = np.concatenate(
        [rng.normal(0.3, 0.1, sizes[0]), rng.normal(0.3, 0.1, sizes[1]), rng.normal(0.9, 0.1, sizes[2])]
    )
    return loss, unc


def best_of(fn, repeats: int) -> float:
    """Best wall time of ``repeats`` calls (the machine may be shared; the minimum is the least disturbed)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def cpu_of(fn) -> float:
    """CPU seconds of one call (process time, all threads): a contention-free cost estimate."""
    t = time.process_time()
    fn()
    return time.process_time() - t


def bench_gmm(sizes: list[int]) -> None:
    print("== separate(): GMM fit + posteriors (3 components, max_iter=10, tol=1e-2, reg_covar=5e-4, n_init=5) ==")
    for n in sizes:
        loss, unc = synthetic_scores(n)
        reps = 3 if n <= 100_000 else 1
        t = best_of(lambda loss=loss, unc=unc: separate(loss, unc), reps)
        cpu = cpu_of(lambda loss=loss, unc=unc: separate(loss, unc))
        line = f"N={n:>9,d}  qmix: {t:7.3f} s (cpu {cpu:6.3f} s)"
        t2 = best_of(lambda loss=loss: separate(loss, mode="dividemix"), reps)
        line += f"   dividemix: {t2:7.3f} s"
        if n > 100_000:
            t3 = best_of(lambda loss=loss, unc=unc: separate(loss, unc, max_fit_samples=100_000), reps)
            line += f"   qmix max_fit_samples=100k: {t3:7.3f} s"
        print(line, flush=True)


class TinyNet(torch.nn.Module):
    """Small CNN with a dropout head exposing the features/head protocol."""

    def __init__(self, n_classes: int = 5):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, stride=2, padding=1),
            torch.nn.BatchNorm2d(16),
            torch.nn.ReLU(),
            torch.nn.Conv2d(16, 32, 3, stride=2, padding=1),
            torch.nn.BatchNorm2d(32),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
        )
        self.fc = torch.nn.Sequential(torch.nn.Dropout(0.3), torch.nn.Linear(32, n_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def head(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def bench_scoring(n_images: int, size: int, batch_size: int) -> None:
    g = torch.Generator().manual_seed(0)
    items = [
        {"image": torch.rand(3, size, size, generator=g), "label": int(i % 5), "index": i} for i in range(n_images)
    ]
    loader = DataLoader(items, batch_size=batch_size)
    net = TinyNet()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    ce = torch.nn.CrossEntropyLoss()

    def train_epoch() -> None:
        net.train()
        for b in loader:
            opt.zero_grad()
            ce(net(b["image"]), b["label"]).backward()
            opt.step()

    train_epoch()  # warm-up
    t_train = best_of(train_epoch, 3)
    print(f"== scoring vs training: {n_images} images {size}x{size}, batch {batch_size}, TinyNet, CPU ==")
    print(f"one training epoch                     : {t_train:7.3f} s")
    for kwargs, label in (
        ({}, "entropy (1 pass)"),
        ({"uncertainty": "mutual_information", "mc_samples": 10}, "MC dropout T=10, head re-run only"),
        (
            {"uncertainty": "mutual_information", "mc_samples": 10, "reuse_features": False},
            "MC dropout T=10, full passes",
        ),
    ):
        t = best_of(lambda kwargs=kwargs: score_samples(net, loader, progress=False, **kwargs), 3)
        print(f"score_samples {label:<25s}: {t:7.3f} s  ({t / t_train:5.2f} x one training epoch)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--n-images", type=int, default=512)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    bench_gmm(args.sizes)
    bench_scoring(args.n_images, args.image_size, args.batch_size)


if __name__ == "__main__":
    main()
