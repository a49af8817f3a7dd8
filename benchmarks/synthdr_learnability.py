# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Is SynthDR learnable but not trivial? A small CNN vs a colour-histogram logistic regression, on clean labels.

Generates a SynthDR set (APTOS layout) in a temporary folder, reads it back with ``load_datalist("aptos", ...)``
when the reader is available, splits it 80/20 (stratified, seeded) and reports held-out quadratic weighted kappa
(QWK) and accuracy of

* a small CNN (5 conv blocks, ~0.3 M parameters) trained on clean labels at 128 px (target: QWK >= 0.8), and
* a multinomial logistic regression on per-channel colour histograms + channel mean/std inside the field of view
  (must score far lower: the grade is not readable from global colour statistics).

Usage (about 5-8 min on 2 CPU cores with the defaults)::

    python benchmarks/synthdr_learnability.py --num 1200 --size 128 --epochs 14 --threads 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, cohen_kappa_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from monai_qmix.data.synthetic import generate_synthdr
from monai_qmix.networks import QMixNet


def load_set(out: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W, 3) uint8 and labels, via the APTOS reader if present, else straight from train.csv."""
    try:
        from monai_qmix.data.readers import load_datalist

        items = load_datalist("aptos", str(out))
        paths, labels = [d["image"] for d in items], [int(d["label"]) for d in items]
        print(f"read {len(items)} items with load_datalist('aptos', ...)")
    except ImportError:
        import csv

        with open(out / "train.csv") as f:
            rows = list(csv.DictReader(f))
        paths = [str(out / "train_images" / f"{r['id_code']}.png") for r in rows]
        labels = [int(r["diagnosis"]) for r in rows]
        print("monai_qmix.data.readers not available: read train.csv directly")
    x = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])
    return x, np.asarray(labels)


def histogram_features(x: np.ndarray, bins: int = 32) -> np.ndarray:
    """Per-channel FOV colour histograms (normalised) + channel mean/std: global colour statistics only."""
    feats = []
    for img in x:
        fov = img.max(axis=2) > 20
        px = img[fov].astype(np.float64)
        h = [np.histogram(px[:, c], bins=bins, range=(0, 255))[0] / max(len(px), 1) for c in range(3)]
        feats.append(np.concatenate(h + [px.mean(0) / 255, px.std(0) / 255]))
    return np.asarray(feats)


def to_tensor(x: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W), standardised per image and channel (colour-cast invariant)."""
    t = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0
    mean = t.mean(dim=(2, 3), keepdim=True)
    std = t.std(dim=(2, 3), keepdim=True) + 1e-3
    return (t - mean) / std


def train_cnn(xtr, ytr, xte, epochs: int, seed: int, batch: int = 32, lr: float = 2e-3) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # benchmark script (not library code): weight init
    net = QMixNet(num_classes=5, backbone="small_cnn")  # SmallCNN backbone + linear head (projector unused)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * int(np.ceil(len(xtr) / batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    ttr, yt = to_tensor(xtr), torch.as_tensor(ytr)
    for ep in range(epochs):
        net.train()
        perm = torch.randperm(len(ttr), generator=g)
        t0, tot = time.perf_counter(), 0.0
        for k in range(0, len(perm), batch):
            idx = perm[k : k + batch]
            xb = ttr[idx]
            if torch.rand(1, generator=g) < 0.5:
                xb = xb.flip(3)
            if torch.rand(1, generator=g) < 0.5:
                xb = xb.flip(2)
            loss = nn.functional.cross_entropy(net(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
        print(f"  epoch {ep + 1}/{epochs}: loss {tot / len(ttr):.3f} ({time.perf_counter() - t0:.1f}s)", flush=True)
    net.eval()
    with torch.no_grad():
        tte = to_tensor(xte)
        logits = torch.cat([net(tte[k : k + 128]) for k in range(0, len(tte), 128)])
    return logits.argmax(1).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--num", type=int, default=1200)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=14)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="keep the generated set here (default: temporary folder)")
    ap.add_argument("--json", default=None, help="write the results to this JSON file")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    res: dict = {"num": a.num, "size": a.size, "epochs": a.epochs, "seed": a.seed}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(a.out or tmp)
        t0 = time.perf_counter()
        generate_synthdr(out, a.num, a.size, a.seed, workers=a.threads, overwrite=True)
        res["generate_s"] = round(time.perf_counter() - t0, 1)
        print(f"generated {a.num} images at {a.size}px in {res['generate_s']}s")
        x, y = load_set(out)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, stratify=y, random_state=a.seed)

    t0 = time.perf_counter()
    lr = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=3000))
    lr.fit(histogram_features(xtr), ytr)
    p_lr = lr.predict(histogram_features(xte))
    res["histogram_lr"] = {
        "qwk": round(float(cohen_kappa_score(yte, p_lr, weights="quadratic")), 3),
        "acc": round(float(accuracy_score(yte, p_lr)), 3),
        "time_s": round(time.perf_counter() - t0, 1),
    }
    print("colour-histogram logistic regression:", res["histogram_lr"], flush=True)

    t0 = time.perf_counter()
    p_cnn = train_cnn(xtr, ytr, xte, a.epochs, a.seed)
    res["cnn"] = {
        "qwk": round(float(cohen_kappa_score(yte, p_cnn, weights="quadratic")), 3),
        "acc": round(float(accuracy_score(yte, p_cnn)), 3),
        "time_s": round(time.perf_counter() - t0, 1),
    }
    cm = np.zeros((5, 5), dtype=int)
    np.add.at(cm, (yte, p_cnn), 1)
    res["cnn"]["confusion"] = cm.tolist()
    print("small CNN:", {k: v for k, v in res["cnn"].items() if k != "confusion"})
    print("CNN confusion (rows = true grade):\n", cm)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
