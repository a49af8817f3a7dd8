#!/usr/bin/env bash
# Copyright (c) monai_qmix contributors. Licensed under the Apache License, Version 2.0.
# The project's main job on a fresh machine, creating the virtual environment first if needed.
# Until the synthetic QMix bundle lands, the main job is the degradation demo: it writes
# docs/images/degradations.png (each fundus degradation at three severities) from the CC0 retina
# photograph that ships with scikit-image.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/setup_env.sh
python scripts/degradation_gallery.py "$@"
