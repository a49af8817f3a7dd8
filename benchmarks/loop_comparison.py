# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Side-by-side comparison of co-training variants from ``robustness.py`` result JSONs (issue 14, deliverable 7).

Each ``--variant NAME=a.json,b.json`` names one variant of the co-training loop (e.g. ``new`` = the two-loader
loop, ``old`` = ``--loop single --omega_schedule constant --dividemix_preset none``, ``oracle`` =
``--oracle_partition``) and the runs (one per seed) that made it; the runs of all variants must share data, preset,
network and schedule. CE (``standard``) is taken from whichever variant ran it. Writes ``<out>/<tag>.md`` (last /
best QWK, target accuracies of network A against the true labels, partition agreement, per seed and mean ± sd),
``<tag>.json`` and two plots: QWK per epoch and target accuracy per epoch, one panel per method.

    python benchmarks/loop_comparison.py --variant new=new_s0.json,new_s1.json --variant old=old_s0.json,old_s1.json \\
        --variant oracle=oracle_s0.json,oracle_s1.json --out benchmarks/results --tag loop_comparison
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np

_SAME = ("data", "num", "synth_size", "image_size", "backbone", "width", "epochs", "warmup_epochs", "batch_size", "lr")
KINDS = ("refined", "guessed", "pseudo")
KIND_NAMES = {"refined": "co-refined (Correct)", "guessed": "co-guessed (Mis-H)", "pseudo": "pseudo-label (Mis-L)"}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--variant", action="append", required=True, help="NAME=run1.json,run2.json (one per seed)")
    p.add_argument("--out", default="benchmarks/results", help="output folder")
    p.add_argument("--tag", default="loop_comparison", help="file stem of the outputs")
    p.add_argument("--preset", default=None, help="preset block of the JSONs (default: the only one)")
    return p.parse_args(argv)


def _load(spec: str) -> tuple[str, list[str], list[dict]]:
    if "=" not in spec:
        raise SystemExit(f"--variant {spec!r}: expected NAME=run1.json[,run2.json...].")
    name, paths = spec.split("=", 1)
    files = [p for p in paths.split(",") if p]
    runs = []
    for path in files:
        if not os.path.isfile(path):
            raise SystemExit(f"--variant {name}: {path} does not exist.")
        with open(path) as f:
            runs.append(json.load(f))
    return name, files, runs


def collect(variants: list[tuple[str, list[str], list[dict]]], preset: str | None) -> dict[str, Any]:
    """``{variant: {method: [record per seed]}}`` plus the CE records, after checking the runs are comparable.

    Raises:
        SystemExit: runs that differ in a setting of ``_SAME``, a missing preset, or one seed twice in a variant.
    """
    base = variants[0][2][0]["config"]
    out: dict[str, dict[str, list[dict]]] = {}
    for name, files, runs in variants:
        for path, r in zip(files, runs):
            diff = [k for k in _SAME if r["config"].get(k) != base.get(k)]
            if diff:
                raise SystemExit(f"{path}: settings {diff} differ from {variants[0][1][0]}; not comparable.")
            blocks = r["presets"]
            key = preset or (next(iter(blocks)) if len(blocks) == 1 else None)
            if key not in blocks:
                raise SystemExit(f"{path}: preset {preset!r} not found (has {sorted(blocks)}); pass --preset.")
            for method, recs in blocks[key]["methods"].items():
                have = out.setdefault(name, {}).setdefault(method, [])
                for rec in recs:
                    if any(x["seed"] == rec["seed"] for x in have):
                        raise SystemExit(f"{path}: {name} / {method} / seed {rec['seed']} appears twice.")
                    have.append(rec)
    for methods in out.values():
        for recs in methods.values():
            recs.sort(key=lambda rec: rec["seed"])
    return out


def _agg(values: Sequence[float | None]) -> str:
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return "–"
    return f"{np.mean(v):.3f}" if len(v) == 1 else f"{np.mean(v):.3f} ± {np.std(v, ddof=1):.3f}"


def _diag(rec: dict[str, Any], epoch: int | None = None) -> dict[str, Any]:
    rows = [e for e in rec["epochs"] if epoch is None or e["epoch"] == epoch]
    return (rows[-1].get("diagnostics") or {}) if rows else {}


def _acc(d: dict[str, Any], kind: str, net: str = "A") -> float | None:
    return d.get(f"acc_{kind}_{net}") if d.get(f"n_{kind}_{net}") else None


def summary(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (variant, method): last / best QWK and the last epoch's diagnostics, per seed and mean."""
    rows = []
    for variant, methods in data.items():
        for method, recs in methods.items():
            ds = [_diag(r) for r in recs]
            rows.append(
                {
                    "variant": variant,
                    "method": method,
                    "seeds": [r["seed"] for r in recs],
                    "qwk_last": [r["last"]["test"]["qwk"] for r in recs],
                    "qwk_best": [r["best"]["test"]["qwk"] for r in recs],
                    "best_epoch": [r["best"]["epoch"] for r in recs],
                    **{f"acc_{k}": [_acc(d, k) for d in ds] for k in KINDS},
                    "agreement": [d.get("agreement") for d in ds],
                    "correct_overlap": [d.get("correct_overlap") for d in ds],
                    "auc_clean": [
                        ((r["epochs"][-1].get("separation") or {}).get("A") or {}).get("auc_clean") for r in recs
                    ],  # fmt: skip
                }
            )
    return rows


def markdown(rows: list[dict[str, Any]], variants: list[tuple[str, list[str], list[dict]]], pngs: list[str]) -> str:
    cfg = variants[0][2][0]["config"]
    lines = [
        "# Co-training variants side by side",
        "",
        f"- made (UTC): {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M')} by "
        f"`python benchmarks/loop_comparison.py {' '.join(sys.argv[1:])}`",
        f"- setting: {cfg['data']} {cfg['num']} images at {cfg['image_size']} px, network `{cfg['backbone']}`, "
        f"{cfg['epochs']} epochs ({cfg['warmup_epochs']} warm-up), batch {cfg['batch_size']}, lr {cfg['lr']}, "
        f"preset {cfg['preset']}",
        "- runs:",
    ]
    for name, files, runs in variants:
        for path, r in zip(files, runs):
            lines.append(f"  - {name}: `{os.path.basename(path)}` ({r['date']}, {r['wall_s'] / 60:.1f} min, "
                         f"{r['hardware']}): `{r['command']}`")  # fmt: skip
    lines += [
        "- QWK: test set (clean labels), two-network methods predict with the A+B ensemble; best = at the epoch of "
        "the best validation QWK. Target accuracy: the arg-max of network A's training targets against the true "
        "labels over the last epoch's rows (co-refined on Correct rows, co-guessed on Mis-H rows, pseudo-label on "
        "Mis-L rows; natural Mis-L rows of unknown truth excluded). Mean ± sd over seeds.",
        "",
        "| variant | method | seeds | QWK last | QWK best | best − last | co-refined acc | co-guessed acc | "
        "pseudo-label acc | partition agreement | Correct overlap | AUC_clean (A, last) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        drop = [b - a for a, b in zip(r["qwk_last"], r["qwk_best"])]
        lines.append(
            f"| {r['variant']} | {r['method']} | {','.join(map(str, r['seeds']))} | {_agg(r['qwk_last'])} | "
            f"{_agg(r['qwk_best'])} | {_agg(drop)} | {_agg(r['acc_refined'])} | {_agg(r['acc_guessed'])} | "
            f"{_agg(r['acc_pseudo'])} | {_agg(r['agreement'])} | {_agg(r['correct_overlap'])} | "
            f"{_agg(r['auc_clean'])} |"
        )
    lines += ["", "Per seed (QWK last / best):", "", "| variant | method | " + " | ".join(
        f"seed {s}" for s in sorted({s for r in rows for s in r["seeds"]})) + " |"]  # fmt: skip
    seeds = sorted({s for r in rows for s in r["seeds"]})
    lines.append("|---|---|" + "---|" * len(seeds))
    for r in rows:
        cells = []
        for s in seeds:
            if s in r["seeds"]:
                i = r["seeds"].index(s)
                cells.append(f"{r['qwk_last'][i]:.3f} / {r['qwk_best'][i]:.3f}")
            else:
                cells.append("–")
        lines.append(f"| {r['variant']} | {r['method']} | " + " | ".join(cells) + " |")
    lines += [""] + [f"![{os.path.splitext(p)[0]}]({p})" for p in pngs] + [""]
    return "\n".join(lines)


def _curve(recs: list[dict], get: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    epochs = sorted({e["epoch"] for r in recs for e in r["epochs"]})
    vals = np.full((len(recs), len(epochs)), np.nan)
    for i, r in enumerate(recs):
        for e in r["epochs"]:
            v = get(e)
            vals[i, epochs.index(e["epoch"])] = np.nan if v is None else float(v)
    with warnings.catch_warnings():  # an epoch with no value in any seed (warm-up): NaN, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(epochs), np.nanmean(vals, 0), np.nanstd(vals, 0)


def plots(data: dict[str, Any], stem: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [m for m in ("dividemix", "qmix") if any(m in v for v in data.values())]
    ce = next((v["standard"] for v in data.values() if "standard" in v), None)
    colours = dict(zip(data, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    out = []
    fig, axes = plt.subplots(1, len(methods), figsize=(5.5 * len(methods), 4), squeeze=False)
    for ax, m in zip(axes[0], methods):
        for variant, ms in data.items():
            if m in ms:
                x, mu, sd = _curve(ms[m], lambda e: e["test"]["qwk"])
                ax.plot(x, mu, label=f"{variant} ({len(ms[m])} seeds)", color=colours[variant])
                ax.fill_between(x, mu - sd, mu + sd, alpha=0.15, color=colours[variant])
        if ce:
            x, mu, _ = _curve(ce, lambda e: e["test"]["qwk"])
            ax.plot(x, mu, "k--", label="CE")
        ax.set(title=f"{m}: test QWK per epoch", xlabel="epoch", ylabel="QWK")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out.append(f"{stem}_qwk.png")
    fig.savefig(out[-1], dpi=110)
    plt.close(fig)
    fig, axes = plt.subplots(1, len(methods), figsize=(5.5 * len(methods), 5), squeeze=False)
    styles = {"refined": "-", "guessed": "--", "pseudo": ":"}
    for ax, m in zip(axes[0], methods):
        for variant, ms in data.items():
            for kind in KINDS:
                if m not in ms:
                    continue
                x, mu, _ = _curve(ms[m], lambda e, k=kind: _acc(e.get("diagnostics") or {}, k))
                if np.isfinite(mu).any():
                    ax.plot(x, mu, styles[kind], color=colours[variant], label=f"{variant}: {KIND_NAMES[kind]}")
        ax.set(title=f"{m}: accuracy of network A's targets vs true labels", xlabel="epoch", ylabel="accuracy")
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)
        else:
            ax.text(0.5, 0.5, "no diagnostics in these runs", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    out.append(f"{stem}_targets.png")
    fig.savefig(out[-1], dpi=110)
    plt.close(fig)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    variants = [_load(v) for v in args.variant]
    data = collect(variants, args.preset)
    rows = summary(data)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, args.tag)
    pngs = [os.path.basename(p) for p in plots(data, stem)]
    with open(stem + ".md", "w") as f:
        f.write(markdown(rows, variants, pngs))
    with open(stem + ".json", "w") as f:
        json.dump({"variants": {n: [os.path.basename(p) for p in files] for n, files, _ in variants}, "rows": rows},
                  f, indent=1)  # fmt: skip
    print(f"wrote {stem}.md, {stem}.json, {', '.join(pngs)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
