#!/usr/bin/env bash
# Copyright (c) monai_qmix contributors. Licensed under the Apache License, Version 2.0.
# What changes the numbers of a seeded run: the same toy synthetic-bundle run (96 SynthDR images, 48 px, small CNN,
# 3 epochs) repeated, with other torch threads, other CPU kernels (torch's / oneDNN's ISA switches) and DataLoader
# workers. Prints the mean training loss and the validation QWK of each epoch (from training_curves.csv).
# Usage: bash benchmarks/reproducibility.sh [OUT_DIR]   (about 3 minutes on 2 cores)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-/tmp/qmix_reproducibility}"
cd "$ROOT"
source scripts/setup_env.sh
COMMON=(--synthdr_num 96 --synthdr_size 48 --image_size 48 --epochs 3 --warmup_epochs 1 --batch_size 8
        --network small_cnn --progress false)
one() {  # tag "workers threads" [VAR=value ...] (environment of the run)
    local tag=$1 wt=($2)
    shift 2
    rm -rf "$OUT/$tag" && mkdir -p "$OUT/$tag"
    env "$@" python -m monai.bundle run --config_file bundles/qmix_synthetic/configs/train.json \
        --bundle_root "$OUT/$tag" --dataset_dir "$OUT/data" "${COMMON[@]}" \
        --num_workers "${wt[0]}" --num_threads "${wt[1]}" > "$OUT/$tag.log" 2>&1
    python - "$tag" "$OUT/$tag/eval/training_curves.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[2])))
loss = " ".join(f"{float(r['train_loss']):.9f}" for r in rows)
print(f"{sys.argv[1]:<28} loss {loss} | val QWK", " ".join(f"{float(r['val_qwk']):.3f}" for r in rows))
PY
}
one workers0_threads1 "0 1"
one workers0_threads1_again "0 1"
one workers0_threads2 "0 2"
one avx2_kernels "0 1" ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
one sse41_kernels "0 1" ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41
one workers2_threads1 "2 1"
