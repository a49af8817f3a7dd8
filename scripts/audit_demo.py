# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Audit demo: a SynthDR folder with planted mixed noise, audited with ``python -m monai_qmix.audit``.

Generates SynthDR, plants mixed noise (a ``MIXED_NOISE_PRESETS`` preset: flipped labels = Mis-H, degraded copies =
Mis-L), writes the noisy training list as ``<out>/datalist.json`` (with the true ``noise_group`` of every item, so
the audit reports its own precision) and runs the audit on it; the HTML report is ``<out>/audit/report.html``.

Usage::

    python scripts/audit_demo.py --out /tmp/audit_demo --num 500 --size 96 --folds 3 --epochs 8
"""

from __future__ import annotations

import argparse
import json
import os


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder (SynthDR, degraded copies, datalist, audit)")
    parser.add_argument("--num", type=int, default=500, help="SynthDR images")
    parser.add_argument("--size", type=int, default=96, help="SynthDR image side (px)")
    parser.add_argument("--preset", default="ddr_sym_L15_H50", help="mixed-noise preset")
    parser.add_argument("--folds", type=int, default=3, help="out-of-fold models")
    parser.add_argument("--epochs", type=int, default=8, help="epochs per out-of-fold model")
    parser.add_argument("--image_size", type=int, default=64, help="audit network input side (px)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from monai_qmix.audit.cli import audit_summary, run_audit
    from monai_qmix.data import build_mixed_noise, generate_synthdr, load_datalist, mixed_noise_preset

    synth = os.path.join(args.out, "synthdr")
    if not os.path.isfile(os.path.join(synth, "train.csv")):
        generate_synthdr(synth, num=args.num, size=args.size, seed=args.seed)
    clean = load_datalist("aptos", synth)
    noisy, record = build_mixed_noise(
        clean, cache_dir=os.path.join(args.out, "degraded"), seed=args.seed, **mixed_noise_preset(args.preset)
    )
    print("planted:", {k: record["counts"][k] for k in ("correct", "mis_h", "mis_l")})
    datalist = os.path.join(args.out, "datalist.json")
    with open(datalist, "w") as f:
        json.dump({"train": noisy}, f, default=str)
    out = os.path.join(args.out, "audit")
    table, summary = run_audit(
        "json", datalist, out, folds=args.folds, epochs=args.epochs, image_size=args.image_size, seed=args.seed
    )
    print(audit_summary(table, summary, out))


if __name__ == "__main__":
    main()
