#!/usr/bin/env bash
# Copyright (c) monai_qmix contributors. Licensed under the Apache License, Version 2.0.
# Runs the test suite (and ruff) in the project's virtual environment, creating it first if needed.
# Usage: bash scripts/test.sh [extra pytest arguments]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/setup_env.sh
ruff check monai_qmix tests benchmarks scripts
ruff format --check monai_qmix tests benchmarks scripts
python -m pytest -n 2 "$@"
