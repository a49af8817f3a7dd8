# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
r"""Epoch cost of QMix and DivideMix relative to standard CE, against their pass floors (not a test).

Everything is measured in **one process** on the same in-memory data, batch size, image size and network
architecture, with ``torch.set_num_threads(--threads)``:

* the *pass costs* per sample: ``f`` = one no-grad forward (train mode, batch ``--batch``) and ``F`` = one
  forward+backward (train mode, batch ``--batch``); also at the batch sizes the trainer really uses (weak and
  strong views are concatenated: ``2·batch``, two-loader strong views ``4·batch``, the fixed partner in eval mode at
  ``2·batch``; scoring: eval mode, the separation loader's ``4·batch``);
* the *pass floor* of an epoch, in the two loops of :class:`~monai_qmix.engines.QMixTrainer`:

  - ``loop="single"`` (methods ``qmix_single``, ``qmix_sv1_single``, ``dividemix_single``, ``warmup_*_single``),
    per sample of the ``n'`` samples it iterates (``drop_last``): QMix / DivideMix ``6f + 4F`` (2 scoring forwards,
    4 weak forwards and 4 strong forward+backwards: two networks, 2 weak + 2 strong views), ``strong_views=1``:
    ``6f + 2F``, warm-up (CE on both networks, the same batch) ``2F``;
  - ``loop="two_loader"``, the default (methods ``qmix``, ``qmix_sv1``, ``dividemix``, ``warmup_*``): per epoch
    ``2·N·f + Σ_k [R_x,k·(2f + vF) + R_u,k·(4f + vF)]`` over the networks ``k = A, B``: ``N`` samples scored by each
    network (separation), ``v`` strong views; network ``k`` makes one pass over its labelled loader (QMix:
    Correct ∪ Mis-L, DivideMix: Correct, of the partner's partition; ``N_x,k`` samples, ``steps_k = len(loader)``
    batches of ``B``: ``⌊N_x,k / B⌋`` with the benchmark's ``drop_last``, ``⌈N_x,k / B⌉`` without), drawing
    ``R_x,k`` labelled rows and ``R_u,k`` unlabelled rows (``B`` per step from the ``N_u,k`` Mis-H samples, the
    loader restarting when exhausted). Per labelled row: the trained network's no-grad forward of the 2 weak views
    (co-refinement / pseudo-label) and ``v`` strong forward+backwards; per unlabelled row: the 2 weak views through
    the trained network **and** the fixed partner (co-guess) and ``v`` strong forward+backwards (the step's
    ``v·2B`` strong rows go through one forward+backward). With full batches ``R_x,k = R_u,k = B·steps_k ≈ N_x,k``,
    so per sample of the epoch ``2f + (B·(steps_A + steps_B) / N)·(6f + 2vF)``. Warm-up: one pass per network over
    all samples at batch ``2B``, CE on one strong view: ``Σ_k R_x,k·F = 2F`` per sample. ``N_x``, ``N_u``, steps and
    rows are read, per network and round, from the loaders the trainer built for that epoch (:func:`epoch_plan`);
    the rows the trainer's forward callables really received are counted and compared with the floor's
    (*rows match*);
  - CE (``standard``): ``F``;

* the wall time of one post-warm-up epoch of every method (``standard``, the methods above, and the *warm-up*
  epochs of the two-network trainer: ``warmup_4v`` with the 4-view loader it is normally given and ``warmup_1v``
  with a loader producing only the strong view the CE warm-up uses). Each method has its own
  :class:`~monai_qmix.engines.QMixTrainer`; after its own warm-up the trainers run **one epoch each in turn**
  (``A B C … A B C …``, Ignite's ``Engine.interrupt`` at ``EPOCH_COMPLETED`` and ``run()`` to resume), so that
  machine-load drift hits every method alike; the first ``--discard`` rounds are not timed, the medians of the
  next ``--repeats`` rounds are reported; the pass costs are re-measured in every round and every epoch is set
  against the floor of its own round (its pass costs and, two-loader, its partition): *epoch / floor* is the
  median over rounds of these ratios;
* a breakdown of every epoch, hooked without touching the library: separation = :func:`score_samples` (scoring
  pass) + :func:`separate` (GMM fit) timed by wrapping the two functions the separation handler calls;
  data loading = Ignite's ``GET_BATCH_STARTED`` → ``GET_BATCH_COMPLETED``; weak forwards / strong (or CE)
  forwards = the trainer's forward callables wrapped and split by ``torch.is_grad_enabled()``; backward =
  ``LOSS_COMPLETED`` → ``BACKWARD_COMPLETED``; optimiser steps = ``BACKWARD_COMPLETED`` → ``MODEL_COMPLETED``;
  ``other`` = the rest of the epoch (targets, losses, batch to device, Ignite). All of them also hold in the
  two-loader loop, where an iteration is one step of one network: *data* covers the step's labelled and unlabelled
  batches, *weak forwards* the trained network's and the fixed partner's no-grad forwards, and the per-epoch
  loader construction (``EPOCH_STARTED``) falls in ``other``;
* peak memory: CUDA ``max_memory_allocated`` per epoch; CPU: the peak RSS of a fresh subprocess per method
  (building the same setup and running its warm-up + one epoch) and its increase over the RSS before training.

``--data cached`` (default) pre-computes every method's views once (loading = collation only, so that data loading
does not dominate); ``--data augment`` augments on the fly in the main process (``num_workers=0``), i.e. measures the
augmentation cost on purpose. Apart from the timed epochs, the per-sample cost of the view transforms (2 weak +
2 strong vs the single strong view of CE) is measured, which is the *warm-up waste* of a 4-view loader.

Usage: the committed CPU result of the default (two-loader) loop, beside the former loop and CE; the older results
``cost_cpu_*_t1*.md`` were measured when ``qmix``, ``qmix_sv1``, ``dividemix`` and ``warmup_*`` named the single loop
(today's ``*_single`` methods)::

    python benchmarks/cost.py --n 192 --size 64 --batch 16 --backbone small_cnn --threads 1 --repeats 4 --discard 1 \
        --data cached --tag cost_cpu_cached_t1_two_loader \
        --methods standard,qmix,qmix_sv1,dividemix,warmup_4v,qmix_single,dividemix_single,warmup_4v_single
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset, set_track_meta
from monai.engines.utils import IterationEvents
from monai.utils import set_determinism

import monai_qmix.handlers.separation as separation_module
from monai_qmix.engines.trainer import QMixTrainer
from monai_qmix.networks import QMixNet
from monai_qmix.transforms.augment import fundus_views

METHODS = (
    "standard",
    "qmix",
    "qmix_sv1",
    "dividemix",
    "warmup_4v",
    "warmup_1v",
    "qmix_single",
    "qmix_sv1_single",
    "dividemix_single",
    "warmup_4v_single",
    "warmup_1v_single",
)
PARTS = ("separation", "scoring", "gmm", "data", "fwd_nograd", "fwd_grad", "backward", "step", "other")
#: per method: (trainer method, strong_views, views of the training loader (n_weak, n_strong), warm-up only, loop)
SPECS: dict[str, tuple[str, int, tuple[int, int], bool, str]] = {
    "standard": ("standard", 1, (0, 1), False, "two_loader"),  # the loop is ignored by method="standard"
    "qmix": ("qmix", 2, (2, 2), False, "two_loader"),
    "qmix_sv1": ("qmix", 1, (2, 1), False, "two_loader"),
    "dividemix": ("dividemix", 2, (2, 2), False, "two_loader"),
    "warmup_4v": ("qmix", 2, (2, 2), True, "two_loader"),
    "warmup_1v": ("qmix", 2, (0, 1), True, "two_loader"),
    "qmix_single": ("qmix", 2, (2, 2), False, "single"),
    "qmix_sv1_single": ("qmix", 1, (2, 1), False, "single"),
    "dividemix_single": ("dividemix", 2, (2, 2), False, "single"),
    "warmup_4v_single": ("qmix", 2, (2, 2), True, "single"),
    "warmup_1v_single": ("qmix", 2, (0, 1), True, "single"),
}


# ------------------------------------------------------------------------------------------------------- helpers
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_items(n: int, size: int, classes: int) -> list[dict]:
    """``n`` seeded random RGB images in [0, 1] with labels and indices (the cost does not depend on content)."""
    g = torch.Generator().manual_seed(0)
    return [{"image": torch.rand(3, size, size, generator=g), "label": int(i % classes), "index": i} for i in range(n)]


def make_net(args: argparse.Namespace, device: torch.device) -> torch.nn.Module:
    return QMixNet(args.classes, backbone=args.backbone).to(device)


def pass_costs(net: torch.nn.Module, batch: int, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """Seconds per sample-view of the passes: no-grad forward (train and eval mode) and forward+backward."""
    out: dict[str, float] = {}

    def timed(fn: Callable[[], Any], x: torch.Tensor, reps: int) -> float:
        fn()  # not timed
        sync(device)
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        sync(device)
        return (time.perf_counter() - t) / reps / x.shape[0]

    def fwd(x: torch.Tensor) -> None:
        with torch.no_grad():
            net(x)

    def fwd_bwd(x: torch.Tensor) -> None:
        net.zero_grad(set_to_none=False)
        net(x).float().sum().backward()

    for b in (batch, 2 * batch):
        x = torch.rand(b, 3, args.size, args.size, device=device)
        net.train()
        out[f"f_train_b{b}"] = timed(lambda x=x: fwd(x), x, args.pass_reps)
        out[f"F_b{b}"] = timed(lambda x=x: fwd_bwd(x), x, args.pass_reps)
    x = torch.rand(4 * batch, 3, args.size, args.size, device=device)
    out[f"F_b{4 * batch}"] = timed(lambda: fwd_bwd(x), x, max(1, args.pass_reps // 2))  # two-loader strong views
    net.eval()
    out[f"f_eval_b{4 * batch}"] = timed(lambda: fwd(x), x, max(1, args.pass_reps // 2))
    x2 = torch.rand(2 * batch, 3, args.size, args.size, device=device)
    out[f"f_eval_b{2 * batch}"] = timed(lambda: fwd(x2), x2, args.pass_reps)  # two-loader: the fixed partner
    net.train()
    return out


def view_costs(items: list[dict], args: argparse.Namespace) -> dict[str, float]:
    """Seconds per sample of the view transforms: 2 weak + 2 strong, 2 weak + 1 strong, and the CE strong view."""
    out = {}
    sample = items[: min(len(items), args.view_samples)]
    for name, (nw, ns) in (("views_2w2s", (2, 2)), ("views_2w1s", (2, 1)), ("views_0w1s", (0, 1))):
        tf = fundus_views("image", n_weak=nw, n_strong=ns).set_random_state(0)
        tf(dict(sample[0]))
        t = time.perf_counter()
        for it in sample:
            tf(dict(it))
        out[name] = (time.perf_counter() - t) / len(sample)
    return out


class Recorder:
    """Accumulates the breakdown of the epoch currently run by one trainer."""

    current: Recorder | None = None

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.parts = dict.fromkeys(PARTS, 0.0)
        self.rows = {"fwd_nograd": 0, "fwd_grad": 0}
        self.marks: dict[str, float] = {}

    def reset(self) -> None:
        self.parts = dict.fromkeys(PARTS, 0.0)
        self.rows = {"fwd_nograd": 0, "fwd_grad": 0}

    def mark(self, name: str) -> Callable[[Any], None]:
        def _f(engine: Any) -> None:
            sync(self.device)
            self.marks[name] = time.perf_counter()

        return _f

    def add(self, part: str, start: str) -> Callable[[Any], None]:
        def _f(engine: Any) -> None:
            sync(self.device)
            self.parts[part] += time.perf_counter() - self.marks[start]

        return _f

    def wrap_forward(self, fn: Callable) -> Callable:
        def _f(*a: Any, **k: Any) -> Any:
            sync(self.device)
            t = time.perf_counter()
            out = fn(*a, **k)
            sync(self.device)
            part = "fwd_grad" if torch.is_grad_enabled() else "fwd_nograd"
            self.parts[part] += time.perf_counter() - t
            if a and isinstance(a[0], torch.Tensor):
                self.rows[part] += int(a[0].shape[0])
            return out

        return _f


def _timed_module_function(name: str, part: str) -> None:
    """Wrap ``monai_qmix.handlers.separation.<name>`` so that its time is added to the current recorder."""
    fn = getattr(separation_module, name)

    def _f(*a: Any, **k: Any) -> Any:
        rec = Recorder.current
        if rec is not None:
            sync(rec.device)
        t = time.perf_counter()
        out = fn(*a, **k)
        if rec is not None:
            sync(rec.device)
            rec.parts[part] += time.perf_counter() - t
        return out

    setattr(separation_module, name, _f)


def build(
    method: str, args: argparse.Namespace, items: list[dict], device: torch.device, max_epochs: int
) -> tuple[QMixTrainer, Recorder]:
    """One trainer of ``method`` (see :data:`SPECS`) with the timing hooks attached (library code untouched)."""
    kind, strong_views, (nw, ns), warmup_only, loop = SPECS[method]
    set_determinism(args.seed)
    views = fundus_views("image", n_weak=nw, n_strong=ns).set_random_state(args.seed)
    if args.data == "cached":
        train_ds = Dataset([views(dict(it)) for it in items])  # views computed once: loading = collation
    else:
        train_ds = Dataset(items, transform=views)
    loader = DataLoader(
        train_ds, batch_size=args.batch, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(0)
    )
    two = kind != "standard"
    nets = [make_net(args, device) for _ in range(2 if two else 1)]
    opts = [torch.optim.Adam(n.parameters(), lr=1e-4) for n in nets]
    trainer = QMixTrainer(
        device,
        max_epochs=max_epochs,
        train_data_loader=loader,
        network=nets[0],
        optimizer=opts[0],
        network_b=nets[1] if two else None,
        optimizer_b=opts[1] if two else None,
        method=kind,
        warmup_epochs=max_epochs if warmup_only else 1,
        separation_loader=DataLoader(Dataset(items), batch_size=4 * args.batch) if two and not warmup_only else None,
        lambda_c=args.lambda_c if kind == "qmix" else 0.0,
        strong_views=strong_views,
        strong_keys=("image_s1", "image_s2")[:ns] if ns >= strong_views else ("image_s1", "image_s2"),
        weak_keys=("image_w1", "image_w2")[: max(nw, 1)],
        amp=device.type == "cuda",
        decollate=False,
        loop=loop,
    )
    rec = Recorder(device)
    for fns in trainer._forwards.values():  # the trainer's forward callables (weak = no-grad, strong = grad)
        for name in list(fns):
            fns[name] = rec.wrap_forward(fns[name])
    trainer.add_event_handler(Events.GET_BATCH_STARTED, rec.mark("gb"))
    trainer.add_event_handler(Events.GET_BATCH_COMPLETED, rec.add("data", "gb"))
    trainer.add_event_handler(IterationEvents.LOSS_COMPLETED, rec.mark("loss"))
    trainer.add_event_handler(IterationEvents.BACKWARD_COMPLETED, rec.add("backward", "loss"))
    trainer.add_event_handler(IterationEvents.BACKWARD_COMPLETED, rec.mark("bwd"))
    trainer.add_event_handler(IterationEvents.MODEL_COMPLETED, rec.add("step", "bwd"))
    # one epoch per run() call; the last epoch is not interrupted, so that every run ends normally
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: e.interrupt() if e.state.epoch < max_epochs else None)
    return trainer, rec


def run_epoch(trainer: QMixTrainer, rec: Recorder, device: torch.device) -> dict[str, float]:
    """Run the next epoch of ``trainer`` and return its wall time, breakdown and (CUDA) peak memory."""
    rec.reset()
    Recorder.current = rec
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    t = time.perf_counter()
    trainer.run()
    sync(device)
    wall = time.perf_counter() - t
    Recorder.current = None
    p = dict(rec.parts)
    p["separation"] = p["scoring"] + p["gmm"]
    p["epoch"] = wall
    p["other"] = wall - sum(p[k] for k in ("separation", "data", "fwd_nograd", "fwd_grad", "backward", "step"))
    p["rows_fwd_nograd"], p["rows_fwd_grad"] = float(rec.rows["fwd_nograd"]), float(rec.rows["fwd_grad"])
    if device.type == "cuda":
        p["peak_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return p


def _batch_sizes(loader: Any) -> list[int]:
    """Rows of every batch of one pass of a ``DataLoader`` over its sampler (``drop_last`` honoured)."""
    n, b = len(loader.sampler), int(loader.batch_size)
    sizes = [b] * (n // b)
    if n % b and not loader.drop_last:
        sizes.append(n % b)
    return sizes


def epoch_plan(trainer: QMixTrainer) -> dict[str, dict[str, int]]:
    """Per network, what the two-loader epoch just run did, read from the trainer's epoch loaders.

    ``n_x`` / ``n_u``: sizes of the labelled / unlabelled group (of the partition the network trained on; warm-up:
    ``n_x`` = all samples), ``steps``: its optimiser steps (one pass over the primary loader: the labelled one, the
    unlabelled one when the labelled group is empty), ``rows_x`` / ``rows_u``: labelled / unlabelled samples drawn
    over the pass (the unlabelled loader restarts when exhausted).
    """
    plan = {}
    for k, loaders in trainer.epoch_loaders.items():
        lab, unl = loaders.get("labelled"), loaders.get("unlabelled")
        sizes = {r: _batch_sizes(ld) if ld is not None else [] for r, ld in (("labelled", lab), ("unlabelled", unl))}
        primary = "labelled" if sizes["labelled"] else "unlabelled"
        secondary = "unlabelled" if primary == "labelled" else "labelled"
        steps = len(sizes[primary])
        rows = {primary: sum(sizes[primary]), secondary: 0}
        if sizes[secondary]:
            rows[secondary] = sum(sizes[secondary][i % len(sizes[secondary])] for i in range(steps))
        plan[k] = {
            "n_x": len(lab.sampler) if lab is not None else 0,
            "n_u": len(unl.sampler) if unl is not None else 0,
            "steps": steps,
            "rows_x": rows["labelled"],
            "rows_u": rows["unlabelled"],
        }
    return plan


def floor_seconds(
    method: str,
    pc: dict[str, float],
    args: argparse.Namespace,
    n_used: int,
    plan: dict[str, dict[str, int]] | None,
    used_batches: bool = False,
) -> tuple[float, dict[str, float]]:
    """The pass floor of one epoch of ``method`` (seconds) and the forward rows it assumes (``fwd_nograd``,
    ``fwd_grad``: the rows the trainer's forward callables get, scoring excluded), see the module docstring.

    ``pc``: pass costs (seconds per sample-view) of the round; ``plan``: :func:`epoch_plan` of the epoch (two-loader
    methods); ``used_batches``: cost each pass at the batch size the trainer runs it at instead of ``--batch``.
    """
    kind, v, (nw, _), warmup_only, loop = SPECS[method]
    b, n = args.batch, args.n
    m = max(nw, 1)  # weak views of the trainer (its weak_keys)
    f, big_f = pc[f"f_train_b{b}"], pc[f"F_b{b}"]
    if kind == "standard":
        return n_used * big_f, {"fwd_nograd": 0.0, "fwd_grad": float(n_used)}
    if loop == "single":
        if warmup_only:  # CE on both networks, the same batch B
            return 2 * n_used * big_f, {"fwd_nograd": 0.0, "fwd_grad": 2.0 * n_used}
        rows = {"fwd_nograd": 2.0 * m * n_used, "fwd_grad": 2.0 * v * n_used}
        if not used_batches:
            return n_used * (6 * f + 2 * v * big_f), rows
        f_s, f_w, f_g = pc[f"f_eval_b{4 * b}"], pc[f"f_train_b{m * b}"], pc[f"F_b{v * b}"]
        return n_used * (2 * f_s + 2 * m * f_w + 2 * v * f_g), rows
    if plan is None:
        raise ValueError(f"{method}: the two-loader floor needs the epoch's plan (partition sizes).")
    if warmup_only:  # per network one pass at batch 2B, CE on the first strong view
        rows_w = float(sum(p["rows_x"] for p in plan.values()))
        return rows_w * (pc[f"F_b{2 * b}"] if used_batches else big_f), {"fwd_nograd": 0.0, "fwd_grad": rows_w}
    if used_batches:  # scoring at 4B (eval); weak forwards at m*B (trained: train mode, partner: eval); strong at 2vB
        f_s, f_t, f_p, f_g = (
            pc[f"f_eval_b{4 * b}"],
            pc[f"f_train_b{m * b}"],
            pc[f"f_eval_b{m * b}"],
            pc[f"F_b{2 * v * b}"],
        )
    else:
        f_s = f_t = f_p = f
        f_g = big_f
    total = 2 * n * f_s  # separation: both networks score all n samples
    rows = {"fwd_nograd": 0.0, "fwd_grad": 0.0}
    for p in plan.values():
        rx, ru = p["rows_x"], p["rows_u"]
        total += rx * (m * f_t + v * f_g) + ru * (m * f_t + m * f_p + v * f_g)
        rows["fwd_nograd"] += m * rx + 2 * m * ru
        rows["fwd_grad"] += v * (rx + ru)
    return total, rows


def proc_status_mb(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` (peak RSS of this process image; unlike ``ru_maxrss`` not inherited across exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def memory_probe(method: str, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """(Subprocess) peak RSS of the setup of ``method``: its warm-up epoch(s) and one measured epoch."""
    items = make_items(args.n, args.size, args.classes)
    trainer, rec = build(method, args, items, device, max_epochs=2)
    before = proc_status_mb("VmRSS")
    run_epoch(trainer, rec, device)
    run_epoch(trainer, rec, device)
    peak = proc_status_mb("VmHWM")
    return {"rss_before_mb": before, "peak_rss_mb": peak, "peak_increase_mb": peak - before}


def probe_in_subprocess(method: str, argv: Sequence[str]) -> dict[str, float] | None:
    cmd = [sys.executable, os.path.abspath(__file__), *argv, "--probe", method]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    for line in res.stdout.splitlines():
        if line.startswith("PROBE "):
            return json.loads(line[6:])
    print(f"memory probe of {method} failed:\n{res.stderr[-2000:]}", file=sys.stderr)
    return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def two_loader(method: str) -> bool:
    """Whether ``method`` runs the two-loader loop (``standard`` ignores the loop)."""
    return SPECS[method][0] != "standard" and SPECS[method][4] == "two_loader"


def median_dict(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


# ---------------------------------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=192, help="training images (held in memory)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels")
    p.add_argument("--batch", type=int, default=16, help="training batch size (separation loader: 4x)")
    p.add_argument("--classes", type=int, default=5)
    p.add_argument("--backbone", default="small_cnn", help="QMixNet backbone")
    p.add_argument("--lambda_c", type=float, default=0.01, help="QMix contrastive weight (projector on when > 0)")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--repeats", type=int, default=4, help="timed rounds (medians reported)")
    p.add_argument("--discard", type=int, default=1, help="post-warm-up rounds run but not timed")
    p.add_argument("--pass_reps", type=int, default=6, help="batches per pass-cost measurement")
    p.add_argument("--view_samples", type=int, default=64, help="samples of the view-transform cost measurement")
    p.add_argument("--data", choices=("cached", "augment"), default="cached", help="pre-computed or on-the-fly views")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {list(METHODS)}")
    p.add_argument("--no_memory", action="store_true", help="skip the CPU peak-memory subprocesses")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="benchmarks/results", help="output folder")
    p.add_argument("--tag", default=None, help="file stem (default cost_<device>_<data>_t<threads>)")
    p.add_argument("--probe", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or "standard" not in methods:
        p.error(f"--methods: expected a subset of {list(METHODS)} including 'standard', got {methods}")
    args.methods = methods
    if args.n < args.batch:
        p.error(f"--n {args.n} must be >= --batch {args.batch}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(raw_argv)
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    set_track_meta(False)
    device = torch.device(args.device)
    if args.probe:
        print("PROBE " + json.dumps(memory_probe(args.probe, args, device)), flush=True)
        return
    _timed_module_function("score_samples", "scoring")
    _timed_module_function("separate", "gmm")
    load_start = os.getloadavg()
    t_start = time.perf_counter()
    items = make_items(args.n, args.size, args.classes)
    n_used = (args.n // args.batch) * args.batch  # the single loop's samples per epoch (drop_last)
    rounds = args.discard + args.repeats
    print(
        f"device={device} threads={args.threads} n={args.n} size={args.size} batch={args.batch} "
        f"backbone={args.backbone} data={args.data} load={load_start}",
        flush=True,
    )
    views = view_costs(items, args)
    runs = {m: build(m, args, items, device, max_epochs=1 + rounds) for m in args.methods}
    for trainer, rec in runs.values():  # each trainer's own warm-up / first epoch, not timed
        run_epoch(trainer, rec, device)
    pass_net = make_net(args, device)
    pass_costs(pass_net, args.batch, args, device)  # warm-up of the pass measurement
    epochs: dict[str, list[dict[str, float]]] = {m: [] for m in args.methods}
    plans: dict[str, list[dict[str, dict[str, int]]]] = {m: [] for m in args.methods if two_loader(m)}
    passes: list[dict[str, float]] = []
    loads = []
    b = args.batch
    for r in range(rounds):
        timed = r >= args.discard
        pc = pass_costs(pass_net, args.batch, args, device)
        row = {}
        for m, (trainer, rec) in runs.items():
            row[m] = run_epoch(trainer, rec, device)
            plan = epoch_plan(trainer) if two_loader(m) else None
            for used in (False, True):
                fl, rows = floor_seconds(m, pc, args, n_used, plan, used_batches=used)
                row[m]["floor_used_batches_s" if used else "floor_s"] = fl
            row[m]["expected_rows_fwd_nograd"], row[m]["expected_rows_fwd_grad"] = rows["fwd_nograd"], rows["fwd_grad"]
            row[m]["floor_x_ce"] = row[m]["floor_s"] / (pc[f"F_b{b}"] * n_used)
            row[m]["epoch_over_floor"] = row[m]["epoch"] / row[m]["floor_s"]
            row[m]["epoch_over_floor_used_batches"] = row[m]["epoch"] / row[m]["floor_used_batches_s"]
            # the separation's GMM fit is no pass: the epoch without it, against the same floors
            row[m]["no_gmm_over_floor"] = (row[m]["epoch"] - row[m]["gmm"]) / row[m]["floor_s"]
            row[m]["no_gmm_over_floor_used_batches"] = (row[m]["epoch"] - row[m]["gmm"]) / row[m][
                "floor_used_batches_s"
            ]
            if timed and plan is not None:
                plans[m].append(plan)
        loads.append(os.getloadavg()[0])
        if timed:
            passes.append(pc)
            for m in args.methods:
                epochs[m].append(row[m])
        msg = " ".join(f"{m}={row[m]['epoch']:.2f}s ({row[m]['epoch_over_floor']:.2f}x floor)" for m in args.methods)
        print(f"round {r + 1}/{rounds}{'' if timed else ' (discarded)'}: {msg} load1={loads[-1]:.2f}", flush=True)
    med = {m: median_dict(v) for m, v in epochs.items()}
    pc = median_dict(passes)
    f, big_f = pc[f"f_train_b{b}"], pc[f"F_b{b}"]
    ce = med["standard"]["epoch"]
    table = {}
    for m in args.methods:
        e = med[m]
        table[m] = {
            "loop": SPECS[m][4] if SPECS[m][0] != "standard" else "-",
            "epoch_s": e["epoch"],
            "x_ce": e["epoch"] / ce,
            "floor_x_ce": e["floor_x_ce"],
            "floor_s": e["floor_s"],
            "floor_per_sample_ms": e["floor_s"] / args.n * 1e3,
            "epoch_over_floor": e["epoch_over_floor"],
            "epoch_over_floor_used_batches": e["epoch_over_floor_used_batches"],
            "epoch_minus_gmm_over_floor": e["no_gmm_over_floor"],
            "epoch_minus_gmm_over_floor_used_batches": e["no_gmm_over_floor_used_batches"],
            "x_ce_over_floor_x_ce": (e["epoch"] / ce) / e["floor_x_ce"],
            "epoch_s_all_rounds": [r["epoch"] for r in epochs[m]],
            "epoch_over_floor_all_rounds": [r["epoch_over_floor"] for r in epochs[m]],
            "rows_fwd_nograd": e["rows_fwd_nograd"],
            "rows_fwd_grad": e["rows_fwd_grad"],
            "rows_match_floor": all(
                r["rows_fwd_nograd"] == r["expected_rows_fwd_nograd"]
                and r["rows_fwd_grad"] == r["expected_rows_fwd_grad"]
                for r in epochs[m]
            ),
            **{k: e[k] for k in PARTS if k in e},
        }
        if m in plans:
            table[m]["partition_per_round"] = plans[m]
        if "peak_mem_mb" in e:
            table[m]["peak_mem_mb"] = e["peak_mem_mb"]
    memory: dict[str, Any] = {}
    if device.type != "cuda" and not args.no_memory:
        for m in args.methods:
            memory[m] = probe_in_subprocess(m, raw_argv)
    warm = {
        "views_per_sample_ms": {k: v * 1e3 for k, v in views.items()},
        "waste_per_sample_ms": (views["views_2w2s"] - views["views_0w1s"]) * 1e3,
        "waste_fraction_of_warmup_epoch_estimate": (views["views_2w2s"] - views["views_0w1s"])
        / (2 * big_f + views["views_2w2s"]),
    }
    if "warmup_4v" in table and "warmup_1v" in table:
        warm["measured_warmup_4v_over_1v"] = table["warmup_4v"]["epoch_s"] / table["warmup_1v"]["epoch_s"]
    result = {
        "command": "python benchmarks/cost.py " + " ".join(shlex.quote(a) for a in raw_argv),
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "machine": {
            "cpu": cpu_model(),
            "logical_cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "loadavg_start": load_start,
            "loadavg_end": os.getloadavg(),
            "load1_per_round": loads,
        },
        "config": {k: v for k, v in vars(args).items() if k not in ("probe",)},
        "n_used_per_epoch": n_used,
        "pass_costs_ms_per_sample": {k: v * 1e3 for k, v in pc.items()},
        "f_over_F": f / big_f,
        "methods": table,
        "peak_memory_cpu": memory,
        "warmup_views": warm,
        "wall_s": time.perf_counter() - t_start,
    }
    os.makedirs(args.out, exist_ok=True)
    tag = args.tag or f"cost_{device.type}_{args.data}_t{args.threads}"
    stem = os.path.join(args.out, tag)
    with open(stem + ".json", "w") as fh:
        json.dump(result, fh, indent=1)
    md = markdown(result)
    with open(stem + ".md", "w") as fh:
        fh.write(md)
    print(md)


def markdown(res: dict[str, Any]) -> str:
    """The Markdown report of a :func:`main` result."""
    c, mach, pc, warm = res["config"], res["machine"], res["pass_costs_ms_per_sample"], res["warmup_views"]
    b = c["batch"]
    lines = [
        "# Epoch cost: QMix and DivideMix vs standard CE, and their pass floors",
        "",
        f"- command: `{res['command']}`",
        f"- date (UTC): {res['date_utc']}; machine: {mach['cpu']}, {mach['logical_cpus']} logical CPUs, "
        f"torch threads {mach['torch_threads']}, device {mach['device']}; torch {mach['torch']}, "
        f"Python {mach['python']}",
        f"- load average (1/5/15 min) at start {tuple(round(x, 2) for x in mach['loadavg_start'])}, at end "
        f"{tuple(round(x, 2) for x in mach['loadavg_end'])}; 1-min load after each round "
        f"{[round(x, 2) for x in mach['load1_per_round']]} (machine shared with other jobs)",
        f"- data: {c['n']} random {c['size']} px RGB images in memory ({res['n_used_per_epoch']} per epoch, batch "
        f"{b}, drop_last), views {c['data']}; network QMixNet({c['backbone']}); Adam; QMix λ_c = {c['lambda_c']}",
        f"- protocol: one process; each method's trainer runs its warm-up first; then the methods' epochs are "
        f"interleaved ({', '.join(c['methods'])}, repeated); {c['discard']} round(s) discarded, medians of "
        f"{c['repeats']} rounds; pass costs re-measured each round (median); total wall {res['wall_s']:.0f} s",
        "",
        "## Pass costs (ms per sample-view, median)",
        "",
        f"- f (no-grad forward, train mode, batch {b}) = {pc[f'f_train_b{b}']:.3f}; "
        f"F (forward+backward, batch {b}) = {pc[f'F_b{b}']:.3f}; **f/F = {res['f_over_F']:.2f}**",
        f"- at the batch sizes the trainer uses: f (batch {2 * b}) = {pc[f'f_train_b{2 * b}']:.3f}, "
        f"F (batch {2 * b}) = {pc[f'F_b{2 * b}']:.3f}, scoring f (eval, batch {4 * b}) = {pc[f'f_eval_b{4 * b}']:.3f}",
        f"- two-loader passes: F (batch {4 * b}, the strong views of B labelled + B unlabelled) = "
        f"{pc[f'F_b{4 * b}']:.3f}, f of the fixed partner (eval, batch {2 * b}) = {pc[f'f_eval_b{2 * b}']:.3f}",
        "",
        "## Pass floors",
        "",
        "- single loop (`*_single`), per sample and epoch of the n' = "
        f"{res['n_used_per_epoch']} samples it iterates: QMix / DivideMix 6f + 4F (2 scoring, 4 weak forwards, 4 "
        "strong forward+backwards), `strong_views=1` 6f + 2F, warm-up (CE on both networks) 2F; CE F",
        "- two-loader loop (the default; `qmix`, `qmix_sv1`, `dividemix`): per epoch "
        "**2·N·f + Σ_k [R_x,k·(2f + vF) + R_u,k·(4f + vF)]** over the networks k = A, B, with N = "
        f"{c['n']} scored samples per network, v the strong views, R_x,k = the labelled rows of k's pass (one pass "
        "over its labelled loader: steps_k = len(loader) batches of B of the N_x,k labelled samples) and R_u,k = "
        "the unlabelled rows it draws (B per step, the Mis-H loader restarting); per row: 2 weak forwards of the "
        "trained network (labelled and unlabelled rows) + 2 of the fixed partner (unlabelled rows only, co-guess) "
        "and v strong forward+backwards. With full batches R_x,k = R_u,k = B·steps_k ≈ N_x,k, i.e. per sample "
        "2f + (B·(steps_A + steps_B)/N)·(6f + 2vF). Warm-up (`warmup_*`): one pass per network at batch 2B, "
        "Σ_k R_x,k·F = 2F per sample. Expressed per sample of the epoch: the floor over N",
        "- *at used batches*: each pass costed at the batch the trainer runs it at (single: weak 2B, strong vB, "
        "scoring 4B eval; two-loader: weak 2B (trained: train mode, partner: eval), strong 2vB, warm-up 2B)",
        "- floors are computed per round (that round's pass costs and partition), the ratios are medians over "
        "rounds; *rows match* = the rows the trainer's forward callables received equal the rows the floor assumes "
        "(scoring excluded)",
        "",
        "## Epochs (median seconds)",
        "",
        "| method | loop | epoch s | × CE | floor ms/sample | floor × CE | epoch / floor | (× CE) / (floor × CE) | "
        "epoch / floor at used batches | (epoch − GMM) / floor (at used batches) | rows match | scoring | GMM | "
        "data | weak fwd | strong (CE) fwd | backward | opt. step | other |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m, r in res["methods"].items():
        lines.append(
            f"| {m} | {r['loop']} | {r['epoch_s']:.2f} | {r['x_ce']:.2f} | {r['floor_per_sample_ms']:.2f} | "
            f"{r['floor_x_ce']:.2f} | **{r['epoch_over_floor']:.2f}** | {r['x_ce_over_floor_x_ce']:.2f} | "
            f"{r['epoch_over_floor_used_batches']:.2f} | {r['epoch_minus_gmm_over_floor']:.2f} "
            f"({r['epoch_minus_gmm_over_floor_used_batches']:.2f}) | {'yes' if r['rows_match_floor'] else 'NO'} | "
            f"{r['scoring']:.2f} | {r['gmm']:.3f} | {r['data']:.2f} | {r['fwd_nograd']:.2f} | {r['fwd_grad']:.2f} | "
            f"{r['backward']:.2f} | {r['step']:.2f} | {r['other']:.2f} |"
        )
    lines += [
        "",
        "*epoch / floor* = the epoch's seconds over its pass floor, the issue's target (QMix ≤ 1.1); *(× CE) / "
        "(floor × CE)* compares with the measured CE epoch instead (CE's own overhead cancels); *(epoch − GMM) / "
        "floor* leaves out the separation's GMM fit (no network pass, a cost per epoch that does not grow with the "
        "passes). Strong "
        "forward+backward = *strong fwd* + *backward*. Breakdown in both loops: *data* = Ignite's GET_BATCH "
        "events (two-loader: the labelled and the unlabelled batch of a step; the per-epoch loader construction "
        "is in *other*), *weak fwd* = every no-grad forward (two-loader: trained network and fixed partner), "
        "*backward* / *opt. step* = MONAI's iteration events (once per step of one network). All rounds (s): "
        + "; ".join(f"{m} {[round(x, 2) for x in r['epoch_s_all_rounds']]}" for m, r in res["methods"].items()),
        "",
    ]
    two = {m: r for m, r in res["methods"].items() if r.get("partition_per_round")}
    if two:
        lines += [
            "## Two-loader partitions (per timed round; per network: N_x labelled / N_u unlabelled samples, steps, "
            "rows R_x / R_u)",
            "",
            "| method | round | A: N_x / N_u, steps, R_x / R_u | B: N_x / N_u, steps, R_x / R_u | epoch / floor |",
            "|---|---|---|---|---|",
        ]
        for m, r in two.items():
            for i, (plan, ratio) in enumerate(zip(r["partition_per_round"], r["epoch_over_floor_all_rounds"])):
                cells = [
                    f"{p['n_x']} / {p['n_u']}, {p['steps']}, {p['rows_x']} / {p['rows_u']}"
                    for p in (plan["A"], plan["B"])
                ]
                lines.append(f"| {m} | {i + 1} | {cells[0]} | {cells[1]} | {ratio:.2f} |")
        lines.append("")
    mem = res.get("peak_memory_cpu") or {}
    if mem:
        lines += ["## Peak memory (CPU: fresh subprocess per method, warm-up + 1 epoch)", ""]
        lines += ["| method | RSS before training MB | peak RSS MB | increase MB |", "|---|---|---|---|"]
        for m, v in mem.items():
            if v:
                row = (v["rss_before_mb"], v["peak_rss_mb"], v["peak_increase_mb"])
                lines.append(f"| {m} | " + " | ".join(f"{x:.0f}" for x in row) + " |")
        lines.append("")
    elif any("peak_mem_mb" in r for r in res["methods"].values()):
        lines += ["## Peak memory (CUDA max_memory_allocated per epoch, MB)", ""]
        lines += [f"- {m}: {r['peak_mem_mb']:.0f}" for m, r in res["methods"].items()] + [""]
    v = warm["views_per_sample_ms"]
    lines += [
        "## Warm-up views",
        "",
        f"- view transforms per sample (ms): 2 weak + 2 strong {v['views_2w2s']:.2f}, 2 weak + 1 strong "
        f"{v['views_2w1s']:.2f}, 1 strong (what CE uses) {v['views_0w1s']:.2f}",
        f"- a warm-up epoch on a 4-view loader augments {warm['waste_per_sample_ms']:.2f} ms per sample for nothing: "
        f"≈ {100 * warm['waste_fraction_of_warmup_epoch_estimate']:.0f} % of a warm-up epoch (estimate 2F + views)",
    ]
    if "measured_warmup_4v_over_1v" in warm:
        lines.append(
            f"- measured warm-up epoch, 4-view / 1-view loader ({c['data']} views): "
            f"{warm['measured_warmup_4v_over_1v']:.2f}×"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
