# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Benchmark of the dataset audit's "low quality" flags against quality labels (not a test).

Runs the audit (:func:`monai_qmix.audit.cli.run_audit`: quick out-of-fold models or ``--checkpoint``, 3-group
separation, FOV image-quality score) on a labelled folder whose items carry ``quality`` (``1`` high / ``0`` low),
e.g. an EyePACS folder with EyeQ quality codes (0 Good / 1 Usable / 2 Reject) read with
``--reader_options '{"quality_column": "quality", "quality_map": {"0": 1, "1": 1, "2": 0}}'`` (the default), so
that "low quality" means EyeQ *Reject*. Reports, for the model-based flag (group Mis-L, i.e. P(Mis-L) is the
largest posterior), the FOV-score flag and their union: precision, recall, F1, the number flagged; and, threshold
free, the ROC AUC of P(Mis-L) and of ``1 - quality score`` against Reject and the precision among the top-n
(n = number of Reject images). Prints a Markdown table and writes JSON.

``--synthdr N`` instead builds a self-check folder: N SynthDR images (APTOS grades), 15% degraded with
``RandFundusDegradation`` and labelled Reject (code 2), in the same CSV layout.

Usage::

    python benchmarks/audit_realdata.py --dataset_dir D [--dataset csv] [--reader_options JSON] [--out O]
        [--folds 5] [--epochs 10] [--image_size 64] [--backbone tiny] [--checkpoint C] [--device cuda]
    python benchmarks/audit_realdata.py --synthdr 300 --image_size 48 --epochs 3
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
import warnings

import numpy as np

from monai_qmix.audit import precision_at_k
from monai_qmix.audit.cli import low_quality_metrics, run_audit

EYEQ_READER_OPTIONS = {"quality_column": "quality", "quality_map": {"0": 1, "1": 1, "2": 0}}


def make_synthdr_folder(root: str, num: int, size: int, seed: int = 0) -> str:
    """SynthDR in CSV layout (``labels.csv``: image, label, quality with EyeQ codes; degraded = 2 Reject)."""
    from monai_qmix.data import build_mixed_noise, generate_synthdr, load_datalist

    src = os.path.join(root, "synthdr")
    generate_synthdr(src, num=num, size=size, seed=seed)
    clean = load_datalist("aptos", src)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train, _ = build_mixed_noise(
            clean,
            mis_h=0.0,
            mis_l=0.15,
            seed=seed,
            cache_dir=os.path.join(root, "cache"),
            degradation={"blur_kernel_rule": "full_gaussian"},
        )
    path = os.path.join(root, "labels.csv")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "label", "quality"])
        for it in train:
            w.writerow([it["image"], it["true_label"], 2 if it["noise_group"] == "mis_l" else 0])
    return root


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="csv")
    p.add_argument("--dataset_dir", default=None)
    p.add_argument("--split", default="train")
    p.add_argument("--reader_options", default=json.dumps(EYEQ_READER_OPTIONS))
    p.add_argument("--out", default="audit_realdata_out")
    p.add_argument("--json", default=None, help="results JSON (default: <out>/audit_realdata.json)")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--image_size", type=int, default=64)
    p.add_argument("--backbone", default="tiny")
    p.add_argument("--num_classes", type=int, default=5)
    p.add_argument("--quality_threshold", default="auto")
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--synthdr", type=int, default=0, help="self-check: build a SynthDR folder of this many images")
    a = p.parse_args()
    tmp = None
    if a.synthdr:
        tmp = tempfile.TemporaryDirectory()
        a.dataset_dir = make_synthdr_folder(tmp.name, a.synthdr, a.image_size, a.seed)
        a.dataset = "csv"
    if not a.dataset_dir:
        p.error("--dataset_dir is required (or --synthdr N)")
    thr = a.quality_threshold if a.quality_threshold == "auto" else float(a.quality_threshold)
    t0 = time.time()
    table, summary = run_audit(
        a.dataset,
        a.dataset_dir,
        a.out,
        checkpoint=a.checkpoint,
        split=a.split,
        reader_options=json.loads(a.reader_options),
        folds=a.folds,
        epochs=a.epochs,
        image_size=a.image_size,
        backbone=a.backbone,
        num_classes=a.num_classes,
        quality_threshold=thr,
        low_quality_rule="either",
        seed=a.seed,
        device=a.device,
    )
    elapsed = time.time() - t0
    if "quality" not in table.columns:
        raise SystemExit("the datalist has no 'quality' values: pass --reader_options with a quality_column.")
    q = np.asarray(table["quality"], dtype=np.int64)
    known = q >= 0
    reject = q[known] == 0
    if not reject.any() or reject.all():
        raise SystemExit(f"need both quality classes; got {int(reject.sum())} low of {int(known.sum())} known.")
    from sklearn.metrics import roc_auc_score

    from monai_qmix.audit.api import AuditTable

    sub = AuditTable({c: v[known] for c, v in table.columns.items()}, table.separation)
    flags = low_quality_metrics(sub, reject)
    p_l, qs = sub["p_mis_l"].astype(np.float64), sub["quality_score"].astype(np.float64)
    free = {
        "auc_p_mis_l": float(roc_auc_score(reject, p_l)),
        "auc_fov_score": float(roc_auc_score(reject, -qs)),
        "precision_at_n_p_mis_l": precision_at_k(p_l, reject),
        "precision_at_n_fov_score": precision_at_k(-qs, reject),
    }
    result = {
        "dataset": a.dataset,
        "dataset_dir": "synthdr (self-check)" if a.synthdr else a.dataset_dir,
        "n_images": int(known.sum()),
        "n_reject": int(reject.sum()),
        "predictions": summary["predictions"],
        "quality_threshold": table.quality_threshold,
        "flags": flags,
        "threshold_free": free,
        "problems": len(summary.get("problems", [])),
        "seconds": round(elapsed, 1),
    }
    names = {"low_quality_model": "model P(Mis-L) flag", "low_quality_fov": "FOV-score flag",
             "is_low_quality": "either (union)"}  # fmt: skip
    print(f"\n{result['n_images']} images, {result['n_reject']} Reject; {result['predictions']}; {elapsed:.0f} s\n")
    print("| flag | flagged | precision | recall | F1 |")
    print("|---|---|---|---|---|")
    for k, m in flags.items():
        print(f"| {names[k]} | {m['flagged']} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} |")
    print("\n| score | ROC AUC vs Reject | precision at n = #Reject |")
    print("|---|---|---|")
    print(f"| P(Mis-L) | {free['auc_p_mis_l']:.3f} | {free['precision_at_n_p_mis_l']:.3f} |")
    print(f"| 1 - FOV quality score | {free['auc_fov_score']:.3f} | {free['precision_at_n_fov_score']:.3f} |")
    out_json = a.json or os.path.join(a.out, "audit_realdata.json")
    with open(out_json, "w") as f:
        json.dump(result, f, indent=1)
    print(f"\nwritten {out_json}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
