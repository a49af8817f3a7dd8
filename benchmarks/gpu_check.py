# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""One-command GPU check for the day a CUDA machine is at hand (not a test; ≤ 8 minutes on one recent GPU).

Steps (each recorded, any failure makes the exit status 1):

1. ``cuda_tests``: the test-suite cases that only run on CUDA (found by scanning ``tests/`` for
   ``skipUnless(torch.cuda.is_available()``), run with pytest; none may fail or be skipped.
2. ``amp``: for every ``--backbones`` (default ResNet-50 and EfficientNet-Lite0, with the ImageNet weights of the
   ``[pretrained]`` extra when installed), a bounded :class:`~monai_qmix.engines.QMixTrainer` run at ``--size`` px
   under AMP on ``--batch`` × ``--steps`` images: one CE warm-up epoch and one QMix epoch (the trainer's default
   two-loader loop: one iteration = one optimiser step of one network), the separation in between.
   Every loss must be finite, and the hot loop (the QMix iterations after the first two) is run under
   ``torch.cuda.set_sync_debug_mode("warn")``: every host-device synchronisation warning is counted with the
   file and line that caused it (any one fails the step).
3. ``cost``: ``benchmarks/cost.py`` at ``--size`` px for CE and QMix (cached views, AMP): images/s of a CE epoch and
   of a QMix epoch (the default two-loader loop), the QMix epoch over its pass floor (the two-loader floor of
   ``cost.py``: ``2·N·f + Σ_k [R_x,k·(2f + vF) + R_u,k·(4f + vF)]`` from the epoch's partition), and the peak GPU
   memory.

Outputs: ``<out>/<tag>.json`` and ``<tag>.md``. Usage (on the GPU machine, from the repository root)::

    python benchmarks/gpu_check.py --out benchmarks/results

``--device cpu`` runs the same code at toy sizes (``--size 32 --steps 2 --backbones small_cnn``) to test this
script; the CUDA tests are then recorded as not run, and the result says it is no GPU check.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import shlex
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset, set_track_meta

from monai_qmix.engines.trainer import QMixTrainer
from monai_qmix.networks import QMixNet
from monai_qmix.transforms.augment import fundus_views

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------------ step 1
def cuda_test_ids(tests_dir: Path = REPO / "tests") -> list[str]:
    """pytest node ids of the test methods decorated ``@unittest.skipUnless(torch.cuda.is_available(), ...)``."""
    ids = []
    for path in sorted(tests_dir.rglob("test_*.py")):
        lines = path.read_text().splitlines()
        cls = None
        for i, line in enumerate(lines):
            m = re.match(r"class (\w+)\(", line)
            if m:
                cls = m.group(1)
            if "skipUnless(torch.cuda.is_available()" in line.replace(" ", "").replace("skipUnless(", "skipUnless("):
                for nxt in lines[i + 1 : i + 4]:
                    t = re.match(r"\s+def (test\w*)\(", nxt)
                    if t:
                        rel = path.relative_to(REPO)
                        ids.append(f"{rel}::{cls}::{t.group(1)}" if cls else f"{rel}::{t.group(1)}")
                        break
    return ids


def run_cuda_tests(device: torch.device) -> dict[str, Any]:
    ids = cuda_test_ids()
    if device.type != "cuda":
        return {"ok": True, "run": False, "reason": f"device {device} is not CUDA", "tests": ids}
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *ids]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
    tail = res.stdout.strip().splitlines()[-15:]
    skipped = [line for line in res.stdout.splitlines() if line.startswith("SKIPPED")]
    return {"ok": res.returncode == 0 and not skipped, "run": True, "returncode": res.returncode,
            "tests": ids, "skipped": skipped, "tail": tail}  # fmt: skip


# ------------------------------------------------------------------------------------------------------ step 2
def _items(n: int, size: int, classes: int, seed: int) -> list[dict]:
    """Disc images whose radius codes the class (no data needed), labels with some noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    r = np.sqrt(yy**2 + xx**2) / (size / 2)
    items = []
    for i in range(n):
        c = i % classes
        img = 0.15 * rng.random((3, size, size)) + np.exp(-(((r - 0.2 - 0.15 * c) / 0.05) ** 2))[None]
        label = c if i % 5 else int(rng.integers(classes))
        items.append({"image": torch.as_tensor(img, dtype=torch.float32), "label": label, "index": i})
    return items


def _net(backbone: str) -> QMixNet:
    pretrained = None
    if backbone == "efficientnet_lite0":
        with contextlib.suppress(FileNotFoundError):
            from monai_qmix.networks import find_pretrained_weights

            pretrained = str(find_pretrained_weights(backbone))
    return QMixNet(num_classes=5, backbone=backbone, pretrained_path=pretrained)


def run_amp(backbone: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """A bounded warm-up + QMix epoch under AMP, with finite-loss and host-device-sync checks."""
    torch.manual_seed(0)
    items = _items(args.batch * args.steps, args.size, 5, 0)
    views = fundus_views("image").set_random_state(0)
    loader = DataLoader(Dataset(items, transform=views), batch_size=args.batch, shuffle=True, drop_last=True,
                        num_workers=args.workers, generator=torch.Generator().manual_seed(0))  # fmt: skip
    sep_loader = DataLoader(Dataset(items), batch_size=4 * args.batch, num_workers=args.workers)
    nets = [_net(backbone).to(device) for _ in range(2)]
    opts = [torch.optim.AdamW(n.parameters(), lr=1e-4) for n in nets]
    trainer = QMixTrainer(device, max_epochs=2, train_data_loader=loader, network=nets[0], optimizer=opts[0],
                          network_b=nets[1], optimizer_b=opts[1], method="qmix", warmup_epochs=1,
                          separation_loader=sep_loader, lambda_c=0.01, amp=device.type == "cuda",
                          decollate=False)  # fmt: skip
    loss_tensors: list[torch.Tensor] = []
    syncs: dict[str, int] = {}
    window: dict[str, Any] = {"cm": None, "rec": [], "hot_from": None}

    def qmix_epoch_started(engine: QMixTrainer) -> None:
        if engine.state.epoch == 2:  # the QMix epoch: checked from its third iteration on
            window["hot_from"] = engine.state.iteration + 3

    def hot_start(engine: QMixTrainer) -> None:
        if device.type == "cuda" and engine.state.iteration == window["hot_from"] and window["cm"] is None:
            window["cm"] = warnings.catch_warnings(record=True)
            window["rec"] = window["cm"].__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")

    def hot_end(engine: QMixTrainer | None = None) -> None:
        if window["cm"] is not None:
            torch.cuda.set_sync_debug_mode("default")
            caught = list(window["rec"])
            window["cm"].__exit__(None, None, None)
            window["cm"] = None
            for w in caught:
                if "synchroniz" in str(w.message).lower():
                    where = f"{os.path.relpath(w.filename, REPO)}:{w.lineno}"
                    syncs[where] = syncs.get(where, 0) + 1

    def iteration_done(engine: QMixTrainer) -> None:
        loss_tensors.append(engine.state.output["loss"].detach())  # no .item(): that would sync in the window

    trainer.add_event_handler(Events.EPOCH_STARTED, qmix_epoch_started)
    trainer.add_event_handler(Events.ITERATION_STARTED, hot_start)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, iteration_done)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, hot_end)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t = time.perf_counter()
    error = None
    try:
        trainer.run()
    except Exception as e:  # recorded and reported, the other steps still run
        error = f"{type(e).__name__}: {e}"
        traceback.print_exc()
    finally:
        hot_end()
    losses = [float(v) for v in loss_tensors]
    finite = bool(losses) and all(math.isfinite(v) for v in losses)
    out = {
        "ok": error is None and finite and not syncs,
        "error": error,
        "iterations": len(losses),
        "losses_finite": finite,
        "loss_first_last": [losses[0], losses[-1]] if losses else None,
        "sync_warnings": syncs,
        "pretrained": backbone == "efficientnet_lite0" and getattr(nets[0], "backbone", None) is not None,
        "wall_s": round(time.perf_counter() - t, 1),
    }
    if device.type == "cuda":
        out["peak_gpu_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


# ------------------------------------------------------------------------------------------------------ step 3
def run_cost(backbone: str, args: argparse.Namespace, device: torch.device, tmp: str) -> dict[str, Any]:
    tag = f"gpu_check_cost_{backbone}"
    cmd = [sys.executable, str(REPO / "benchmarks" / "cost.py"), "--device", str(device), "--size", str(args.size),
           "--batch", str(args.batch), "--n", str(args.cost_n), "--backbone", backbone, "--methods", "standard,qmix",
           "--repeats", "2", "--discard", "1", "--threads", str(args.threads), "--no_memory", "--out", tmp,
           "--tag", tag]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
    path = os.path.join(tmp, tag + ".json")
    if res.returncode != 0 or not os.path.isfile(path):
        return {
            "ok": False,
            "returncode": res.returncode,
            "stderr_tail": res.stderr[-3000:],
            "command": shlex.join(cmd),
        }
    with open(path) as f:
        cost = json.load(f)
    n = cost["n_used_per_epoch"]
    m = cost["methods"]
    return {
        "ok": True,
        "command": shlex.join(cmd),
        "ce_images_per_s": n / m["standard"]["epoch_s"],
        "qmix_images_per_s": n / m["qmix"]["epoch_s"],
        "qmix_x_ce": m["qmix"]["x_ce"],
        "qmix_epoch_over_floor": m["qmix"]["epoch_over_floor"],
        "qmix_epoch_over_floor_used_batches": m["qmix"]["epoch_over_floor_used_batches"],
        "peak_gpu_mem_mb": {k: m[k].get("peak_mem_mb") for k in ("standard", "qmix")},
    }


# -------------------------------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python benchmarks/gpu_check.py", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    p.add_argument("--device", default="cuda", help="cuda (the check); cpu only tests this script at toy sizes")
    p.add_argument("--size", type=int, default=384, help="image side in pixels (the paper's 384)")
    p.add_argument("--batch", type=int, default=16, help="batch size (the paper's 16)")
    p.add_argument("--steps", type=int, default=12, help="the AMP step trains on --batch x --steps images")
    p.add_argument("--cost_n", type=int, default=256, help="images of the cost benchmark's epochs")
    p.add_argument("--backbones", default="resnet50,efficientnet_lite0", help="comma-separated QMixNet backbones")
    p.add_argument("--steps_to_run", default="cuda_tests,amp,cost", help="comma-separated subset of the steps")
    p.add_argument("--threads", type=int, default=8, help="torch CPU threads")
    p.add_argument("--workers", type=int, default=4, help="DataLoader workers of the AMP step")
    p.add_argument("--out", default="benchmarks/results", help="output folder")
    p.add_argument("--tag", default="gpu_check", help="file stem of the JSON / Markdown outputs")
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is visible (use --device cpu to test this script at toy sizes).")
    bad = set(args.steps_to_run.split(",")) - {"cuda_tests", "amp", "cost"}
    if bad:
        p.error(f"--steps_to_run: unknown steps {sorted(bad)}; expected a subset of cuda_tests,amp,cost.")
    if args.steps < 4:
        p.error(f"--steps: at least 4 iterations are needed (the hot loop starts at the third), got {args.steps}.")
    return args


def markdown(res: dict[str, Any]) -> str:
    lines = [f"# GPU check ({res['date_utc']})", "", f"Device: {res['device']}; torch {res['torch']}; "
             f"command `{res['command']}`; {res['wall_s']:.0f} s in all. Result: **{'PASS' if res['ok'] else 'FAIL'}**",
             ""]  # fmt: skip
    ct = res["steps"].get("cuda_tests")
    if ct:
        if not ct["run"]:
            verdict = "not run: " + ct["reason"]
        else:
            verdict = "passed" if ct["ok"] else f"FAILED (rc {ct['returncode']}, skipped {len(ct['skipped'])})"
        lines.append(f"- CUDA-only tests ({len(ct['tests'])}): {verdict}")
    for b, a in res["steps"].get("amp", {}).items():
        verdict = "ok" if a["ok"] else "FAILED"
        lines.append(
            f"- AMP bounded run, {b}: {verdict}; {a['iterations']} iterations, losses finite {a['losses_finite']}, "
            f"sync warnings {a['sync_warnings'] or 0}, error {a['error']}"
        )
    rows = res["steps"].get("cost", {})
    if rows:
        lines += ["", "| backbone | CE images/s | QMix images/s | QMix / CE | QMix epoch / pass floor | peak GPU MiB "
                  "(CE / QMix) |", "|---|---|---|---|---|---|"]  # fmt: skip
        for b, c in rows.items():
            if not c["ok"]:
                lines.append(f"| {b} | failed (rc {c['returncode']}) | | | | |")
                continue
            mem = c["peak_gpu_mem_mb"]
            lines.append(f"| {b} | {c['ce_images_per_s']:.1f} | {c['qmix_images_per_s']:.1f} | {c['qmix_x_ce']:.2f} | "
                         f"{c['qmix_epoch_over_floor']:.2f} | {mem.get('standard')} / {mem.get('qmix')} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    set_track_meta(False)
    steps = args.steps_to_run.split(",")
    backbones = [b.strip() for b in args.backbones.split(",") if b.strip()]
    t0 = time.perf_counter()
    res: dict[str, Any] = {
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "command": "python benchmarks/gpu_check.py " + shlex.join(sys.argv[1:] if argv is None else list(argv)),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"{device} (NOT a GPU check)",
        "platform": platform.platform(),
        "torch": torch.__version__,
        "config": vars(args),
        "steps": {},
    }
    if "cuda_tests" in steps:
        print("== CUDA-only tests", flush=True)
        res["steps"]["cuda_tests"] = run_cuda_tests(device)
    if "amp" in steps:
        res["steps"]["amp"] = {}
        for b in backbones:
            print(f"== AMP bounded run: {b} at {args.size} px", flush=True)
            res["steps"]["amp"][b] = run_amp(b, args, device)
    if "cost" in steps:
        res["steps"]["cost"] = {}
        os.makedirs(args.out, exist_ok=True)
        for b in backbones:
            print(f"== cost: {b} at {args.size} px", flush=True)
            res["steps"]["cost"][b] = run_cost(b, args, device, args.out)
    oks = [res["steps"]["cuda_tests"]["ok"]] if "cuda_tests" in res["steps"] else []
    oks += [a["ok"] for a in res["steps"].get("amp", {}).values()]
    oks += [c["ok"] for c in res["steps"].get("cost", {}).values()]
    res["ok"] = all(oks)
    res["wall_s"] = time.perf_counter() - t0
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, args.tag)
    with open(stem + ".json", "w") as f:
        json.dump(res, f, indent=1)
    md = markdown(res)
    with open(stem + ".md", "w") as f:
        f.write(md)
    print(md, flush=True)
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
