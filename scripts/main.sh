#!/usr/bin/env bash
# Copyright (c) monai_qmix contributors. Licensed under the Apache License, Version 2.0.
# The project's main job on a fresh machine (creates the virtual environment first if needed):
# trains QMix end to end with the synthetic bundle on the CPU (or GPU). On the first run the bundle generates
# SynthDR (procedural, licence-free fundus images) into bundles/qmix_synthetic/data/synthdr.
# Extra arguments are passed to `python -m monai.bundle run`, e.g. `bash scripts/main.sh --epochs 4`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
QMIX_EXTRAS="" source scripts/setup_env.sh
python -m monai.bundle run --config_file bundles/qmix_synthetic/configs/train.json "$@"
