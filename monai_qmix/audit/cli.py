# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""The dataset-audit command::

    python -m monai_qmix.audit --dataset <reader> --dataset_dir D --out O [--checkpoint C] [--folds 5]
        [--epochs 10] [--image_size 64] [--backbone tiny] [--reader_options JSON] [--split train]

Reads the dataset with :func:`~monai_qmix.data.load_datalist` (absent images are reported, not fatal), decodes
every image once (unreadable files are reported and skipped), scores its fundus image quality, obtains
out-of-sample predicted probabilities (from ``--checkpoint``, or from quick out-of-fold models so that no image is
scored by a model that saw its label), runs the 3-group separation and writes ``audit.csv``, ``report.html``,
``suspects_<group>.png`` and ``summary.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from monai_qmix.separation import group_codes, separation_metrics

from .api import AuditTable, find_noisy_samples, precision_at_k
from .loading import load_images
from .oof import AUDIT_BACKBONES, build_audit_network, oof_probs, predict_probs
from .report import write_report

__all__ = ["CHECKPOINT_KEYS", "run_audit", "audit_summary", "low_quality_metrics", "main"]

#: Keys under which a checkpoint dict may hold the network's state dict (first match wins; A of a QMix pair).
CHECKPOINT_KEYS: tuple[str, ...] = ("network", "network_a", "net_a", "model", "net", "state_dict")


def low_quality_metrics(table: AuditTable, low_truth: Any) -> dict[str, dict[str, float]]:
    """Precision / recall / F1 of the low-quality flags against a ground truth (bool, ``True`` = low quality).

    Returns:
        ``{flag column: {"precision", "recall", "f1", "flagged", "positives"}}`` for ``low_quality_model``,
        ``low_quality_fov`` (when present) and ``is_low_quality``.
    """
    t = np.asarray(low_truth, dtype=bool)
    out = {}
    for col in ("low_quality_model", "low_quality_fov", "is_low_quality"):
        if col not in table.columns:
            continue
        f = table[col].astype(bool)
        tp = int((f & t).sum())
        p = tp / f.sum() if f.sum() else float("nan")
        r = tp / t.sum() if t.sum() else float("nan")
        f1 = 2 * p * r / (p + r) if (p + r) > 0 else float("nan")
        out[col] = {"precision": float(p), "recall": float(r), "f1": float(f1), "flagged": int(f.sum()),
                    "positives": int(t.sum())}  # fmt: skip
    return out


class _InputTransformed(torch.nn.Module):
    """``network(transform(x))``: a checkpoint network behind the input transform it was trained with."""

    def __init__(self, network: torch.nn.Module, transform: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.network = network
        self.transform = transform

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(self.transform(x))


def _load_checkpoint(
    path: str, num_classes: int, backbone: str, device: torch.device, network: torch.nn.Module | None = None
) -> torch.nn.Module:
    """Load a state dict (plain, or under one of :data:`CHECKPOINT_KEYS`, e.g. a bundle's ``models/model.pt``) into
    ``network`` (default: :func:`build_audit_network` of ``backbone``)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint: no such file {path!r} (expected a torch checkpoint).")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, Mapping):
        for key in CHECKPOINT_KEYS:
            if key in state and isinstance(state[key], Mapping):
                state = state[key]
                break
    net = build_audit_network(num_classes, backbone) if network is None else network
    what = f"backbone={backbone!r}" if network is None else f"the given {type(network).__name__}"
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError) as e:
        raise ValueError(
            f"checkpoint: {path!r} does not fit a network with {what} and num_classes={num_classes} "
            f"(pass the backbone / network and num_classes it was trained with): {e}"
        ) from e
    return net.to(device).eval()


def run_audit(
    dataset: str,
    dataset_dir: str | os.PathLike,
    out: str | os.PathLike,
    checkpoint: str | None = None,
    split: str = "train",
    reader_options: Mapping[str, Any] | None = None,
    folds: int = 5,
    epochs: int = 10,
    image_size: int = 64,
    backbone: str = "tiny",
    num_classes: int | None = None,
    quality_threshold: float | str = "auto",
    low_quality_rule: str = "fov",
    per_class: bool = False,
    flips: str = "hv",
    top_k: int = 32,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    network: torch.nn.Module | None = None,
    input_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[AuditTable, dict[str, Any]]:
    """Audit a dataset folder and write the report (see the module docstring); returns the table and the summary.

    ``summary["metrics"]`` holds, when the datalist carries them, the separation metrics and precision at k against
    ``noise_group`` (planted noise) and the precision / recall of the low-quality flags against ``quality == 0``.

    With a ``checkpoint`` the state dict (plain, or under one of :data:`CHECKPOINT_KEYS`: network A of a bundle's
    ``models/model.pt``) is loaded into ``network`` (default: :func:`build_audit_network` of ``backbone``), and
    ``input_transform`` (default: none) maps the float ``[0, 1]`` image batches ``(B, 3, image_size, image_size)``
    to the network's input (e.g. the normalisation it was trained with). Both are ignored without a checkpoint.

    Raises:
        ValueError: bad options, no readable image, labels outside ``0..num_classes-1``, or a checkpoint that does
            not fit the network.
        FileNotFoundError: ``checkpoint`` is not a file.
    """
    from monai_qmix.data import load_datalist

    opts = {"missing": "warn", **dict(reader_options or {})}
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        datalist = load_datalist(dataset, dataset_dir, split, **opts)
    problems = [{"image": "(datalist)", "problem": str(w.message)} for w in caught if "absent" in str(w.message)]
    for w in caught:
        if "absent" not in str(w.message):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    ungradable = [it for it in datalist if int(it["label"]) < 0]
    if ungradable:
        problems.append(
            {"image": "(datalist)", "problem": f"{len(ungradable)} items without a grade (label -1) skipped"}
        )
        datalist = [it for it in datalist if int(it["label"]) >= 0]
    all_labels = np.asarray([int(it["label"]) for it in datalist], dtype=np.int64)
    k = int(num_classes) if num_classes else int(all_labels.max()) + 1
    if all_labels.max() >= k:
        raise ValueError(f"num_classes: {k} is too small for labels up to {int(all_labels.max())}.")
    net = _load_checkpoint(checkpoint, k, backbone, dev, network) if checkpoint else None  # fail before the slow part
    if net is not None and input_transform is not None:
        net = _InputTransformed(net, input_transform)
    images, ok, quality, img_problems = load_images(datalist, image_size=image_size, progress=progress)
    problems += img_problems
    if len(ok) < 2 * max(2, int(folds)):
        raise ValueError(f"dataset_dir: only {len(ok)} readable images in {dataset_dir!r}; too few to audit.")
    items = [datalist[i] for i in ok]
    labels = all_labels[np.asarray(ok, dtype=np.int64)]
    if net is not None:
        _, probs = predict_probs(net, images, device=dev)
        source = f"checkpoint {checkpoint}"
    else:
        patients = [it.get("patient") for it in items]
        groups = patients if all(p not in (None, "") for p in patients) else None
        probs = oof_probs(
            images, labels, k, folds=folds, epochs=epochs, backbone=backbone, seed=seed, device=dev, groups=groups,
            flips=flips, progress=progress,
        )  # fmt: skip
        source = f"{folds}-fold out-of-fold {backbone} models, {epochs} epochs, {image_size} px"
    extra = {"image": np.asarray([str(it["image"]) for it in items], dtype=object)}
    for key in ("noise_group", "true_label", "quality"):
        if all(key in it for it in items):
            extra[key] = np.asarray([it[key] for it in items], dtype=object)
    table = find_noisy_samples(
        labels, probs, quality_scores=quality, quality_threshold=quality_threshold, low_quality_rule=low_quality_rule,
        per_class=per_class, extra=extra,
    )  # fmt: skip
    metrics: dict[str, Any] = {}
    if "noise_group" in extra:
        truth = group_codes(extra["noise_group"])
        sm = separation_metrics(table.separation, truth)
        metrics["separation"] = {k2: (v.tolist() if isinstance(v, np.ndarray) else v) for k2, v in sm.items()}
        metrics["precision_at_k"] = {
            "mis_h_by_mis_h_score": precision_at_k(table["mis_h_score"], truth == 1),
            "mis_h_by_p_mis_h": precision_at_k(table["p_mis_h"], truth == 1),
            "mis_l_by_mis_l_score": precision_at_k(table["mis_l_score"], truth == 2),
            "mis_l_by_quality_score": precision_at_k(-table["quality_score"], truth == 2),
        }
    if "quality" in extra:
        q = np.asarray(extra["quality"], dtype=np.int64)
        if (q == 0).any() and (q == 1).any():
            known = q >= 0
            sub = AuditTable({c: v[known] for c, v in table.columns.items()}, table.separation)
            metrics["low_quality_vs_quality_0"] = low_quality_metrics(sub, q[known] == 0)
    summary = {"dataset": str(dataset), "dataset_dir": os.fspath(dataset_dir), "split": split,
               "predictions": source, "metrics": metrics}  # fmt: skip
    write_report(table, out, images=images, problems=problems, summary=summary, top_k=top_k)
    return table, {**summary, "num_problems": len(problems), "problems": problems}


def audit_summary(table: AuditTable, summary: Mapping[str, Any], out: str | os.PathLike) -> str:
    """The console summary of an audit: flagged counts, the report path, counts per grade and the metrics."""
    n_h, n_l = int(table["is_mislabeled"].sum()), int(table["is_low_quality"].sum())
    lines = [
        f"audited {len(table)} images; {n_h} probably mislabelled, {n_l} low quality; "
        f"report: {os.path.join(os.fspath(out), 'report.html')}",
        "grade  n  correct  mis_h  mis_l",
    ]
    for g, c in table.counts_per_grade().items():
        lines.append(f"{g:>5} {c['n']:>3} {c['correct']:>8} {c['mis_h']:>6} {c['mis_l']:>6}")
    if summary.get("metrics"):
        lines.append(json.dumps(summary["metrics"], indent=1, default=str))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m monai_qmix.audit", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True, help="reader name (see monai_qmix.data.READERS), e.g. aptos, csv, json")
    p.add_argument("--dataset_dir", required=True)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--checkpoint", default=None, help="trained network weights (state dict); default: k-fold OOF models"
    )
    p.add_argument("--split", default="train")
    p.add_argument("--reader_options", default="{}", help="JSON dict of reader options")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--image_size", type=int, default=64)
    p.add_argument("--backbone", default="tiny", choices=AUDIT_BACKBONES)
    p.add_argument("--num_classes", type=int, default=None)
    p.add_argument("--quality_threshold", default="auto", help="'auto' or a score in (0, 1)")
    p.add_argument("--low_quality_rule", default="fov", choices=("either", "model", "fov", "both"))
    p.add_argument("--per_class", action="store_true", help="one GMM per given grade")
    p.add_argument("--flips", default="hv", help="training flips of the OOF models: 'hv', 'h', 'v' or ''")
    p.add_argument("--top_k", type=int, default=32, help="images per contact sheet")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--no_progress", action="store_true")
    a = p.parse_args(argv)
    thr: float | str = a.quality_threshold if a.quality_threshold == "auto" else float(a.quality_threshold)
    table, summary = run_audit(
        a.dataset, a.dataset_dir, a.out, checkpoint=a.checkpoint, split=a.split,
        reader_options=json.loads(a.reader_options), folds=a.folds, epochs=a.epochs, image_size=a.image_size,
        backbone=a.backbone, num_classes=a.num_classes, quality_threshold=thr, low_quality_rule=a.low_quality_rule,
        per_class=a.per_class, flips=a.flips, top_k=a.top_k, seed=a.seed, device=a.device, progress=not a.no_progress,
    )  # fmt: skip
    print(audit_summary(table, summary, a.out))
    return 0
