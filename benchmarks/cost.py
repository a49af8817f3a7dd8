# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Epoch cost of QMix and DivideMix relative to standard CE, against QMix's pass floor (not a test).

Measures, in one process on the same synthetic data, batch size, image size and network:

* ``f`` = one no-grad forward and ``F`` = one forward+backward per sample (train mode, same batch size);
* the wall time of one post-warm-up epoch for ``standard``, ``qmix`` (``strong_views`` 2 and 1) and ``dividemix``,
  split into separation (scoring + GMM, the ``EPOCH_STARTED`` handlers), data loading (``GET_BATCH_*``) and the
  training step (weak forwards + strong forward/backward + steps);
* the pass floor per sample and epoch: QMix ``6f + 4F`` (2 scoring, 4 weak forwards, 4 strong fwd+bwd),
  ``strong_views=1``: ``6f + 2F``; CE: ``F``;
* peak memory (CUDA: ``max_memory_allocated``; CPU: the process' max RSS, monotonic over the run).

Usage: ``python benchmarks/cost.py --n 256 --size 64 --batch 16 --backbone resnet10``.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset, set_track_meta
from monai.utils import set_determinism

from monai_qmix.engines.trainer import QMixTrainer
from monai_qmix.networks import QMixNet
from monai_qmix.transforms.augment import fundus_views


def make_items(n: int, size: int, classes: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    return [{"image": torch.rand(3, size, size, generator=g), "label": i % classes, "index": i} for i in range(n)]


def pass_costs(net: torch.nn.Module, x: torch.Tensor, reps: int = 3) -> tuple[float, float]:
    """Seconds per sample of a no-grad forward (f) and of a forward+backward (F), train mode."""
    net.train()
    with torch.no_grad():
        net(x)
    t = time.perf_counter()
    for _ in range(reps):
        with torch.no_grad():
            net(x)
    f = (time.perf_counter() - t) / reps / x.shape[0]
    t = time.perf_counter()
    for _ in range(reps):
        net(x).sum().backward()
    big_f = (time.perf_counter() - t) / reps / x.shape[0]
    return f, big_f


def run(method: str, args: argparse.Namespace, device: torch.device, strong_views: int = 2) -> dict:
    set_determinism(0)
    items = make_items(args.n, args.size, args.classes)
    loader = DataLoader(Dataset(items, transform=fundus_views("image")), batch_size=args.batch, shuffle=True)
    sep_loader = DataLoader(Dataset(items), batch_size=4 * args.batch)
    nets = [QMixNet(args.classes, backbone=args.backbone).to(device) for _ in range(2 if method != "standard" else 1)]
    opts = [torch.optim.Adam(n.parameters(), lr=1e-4) for n in nets]
    trainer = QMixTrainer(
        device,
        max_epochs=2,
        train_data_loader=loader,
        network=nets[0],
        optimizer=opts[0],
        network_b=nets[1] if len(nets) > 1 else None,
        optimizer_b=opts[1] if len(opts) > 1 else None,
        method=method,
        warmup_epochs=1,
        separation_loader=sep_loader if method != "standard" else None,
        strong_views=strong_views,
        amp=device.type == "cuda",
    )
    times = {"separation": 0.0, "data": 0.0, "epoch": 0.0}
    marks: dict[str, float] = {}

    def mark(name: str):
        return lambda e: marks.__setitem__(name, time.perf_counter())

    def add(name: str, start: str):
        def _f(e):
            if e.state.epoch == 2:
                times[name] += time.perf_counter() - marks[start]

        return _f

    # registered first/last around the trainer's own EPOCH_STARTED handlers (separation)
    trainer._event_handlers[Events.EPOCH_STARTED].insert(0, (mark("es"), (trainer,), {}))
    trainer.add_event_handler(Events.EPOCH_STARTED, add("separation", "es"))
    trainer.add_event_handler(Events.GET_BATCH_STARTED, mark("gb"))
    trainer.add_event_handler(Events.GET_BATCH_COMPLETED, add("data", "gb"))
    trainer.add_event_handler(Events.EPOCH_COMPLETED, add("epoch", "es"))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.run()
    times["step"] = times["epoch"] - times["separation"] - times["data"]
    if device.type == "cuda":
        times["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        times["peak_mem_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--classes", type=int, default=5)
    p.add_argument("--backbone", default="resnet10")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    set_track_meta(False)
    net = QMixNet(args.classes, backbone=args.backbone).to(device)
    f, big_f = pass_costs(net, torch.rand(args.batch, 3, args.size, args.size, device=device))
    print(f"device={device} n={args.n} size={args.size} batch={args.batch} backbone={args.backbone}")
    print(f"f={f * 1e3:.2f} ms/sample  F={big_f * 1e3:.2f} ms/sample  f/F={f / big_f:.2f}")
    res = {
        "standard": run("standard", args, device),
        "qmix": run("qmix", args, device),
        "qmix_sv1": run("qmix", args, device, strong_views=1),
        "dividemix": run("dividemix", args, device),
    }
    ce = res["standard"]["epoch"]
    floors = {
        "standard": big_f,
        "qmix": 6 * f + 4 * big_f,
        "qmix_sv1": 6 * f + 2 * big_f,
        "dividemix": 6 * f + 4 * big_f,
    }
    print(
        f"{'method':10s} {'epoch s':>8s} {'xCE':>6s} {'floor xCE':>9s} {'/floor':>7s} {'sep s':>7s} {'data s':>7s} "
        f"{'step s':>7s} {'peak MB':>8s}"
    )
    for k, r in res.items():
        floor = floors[k] / big_f
        ratio = r["epoch"] / ce
        print(
            f"{k:10s} {r['epoch']:8.2f} {ratio:6.2f} {floor:9.2f} {ratio / floor:7.2f} {r['separation']:7.2f} "
            f"{r['data']:7.2f} {r['step']:7.2f} {r['peak_mem_mb']:8.0f}"
        )


if __name__ == "__main__":
    main()
