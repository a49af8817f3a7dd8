# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Render the bundles from the template (:mod:`.template`) and the per-dataset table (:mod:`.specs`), or check them.

CLI::

    python -m monai_qmix.bundles render [--check] [--root bundles] [--only aptos,ddr]

``--check`` writes nothing and exits with status 1 listing every file that differs from its rendering.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from monai_qmix.bundles import template
from monai_qmix.bundles.specs import BUNDLE_SPECS

__all__ = ["render_bundle", "render_all", "check_bundles", "write_bundles", "main"]


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=4, ensure_ascii=False) + "\n"


def render_bundle(name: str) -> dict[str, str]:
    """All files of ``bundles/qmix_<name>/`` as ``{relative path: text}``.

    Raises:
        ValueError: unknown ``name``.
    """
    if name not in BUNDLE_SPECS:
        raise ValueError(f"name: unknown bundle {name!r}; expected one of {sorted(BUNDLE_SPECS)}.")
    spec = BUNDLE_SPECS[name]
    return {
        "configs/train.json": _json(template.train_config(spec)),
        "configs/evaluate.json": _json(template.evaluate_config(spec)),
        "configs/inference.json": _json(template.inference_config(spec)),
        "configs/multi_gpu_train.json": _json(template.multi_gpu_config(spec)),
        "configs/audit.json": _json(template.audit_config(spec)),
        "configs/metadata.json": _json(template.metadata(spec)),
        "configs/schema.json": _json(template.metadata_schema()),
        "configs/logging.conf": template.LOGGING_CONF,
        "docs/README.md": template.readme(spec),
        "LICENSE": template.licence(spec),
    }


def render_all(names: Iterable[str] | None = None) -> dict[str, str]:
    """Files of every bundle (or of ``names``) as ``{"qmix_<name>/<relative path>": text}``."""
    out: dict[str, str] = {}
    for name in names if names is not None else BUNDLE_SPECS:
        out.update({f"qmix_{name}/{p}": t for p, t in render_bundle(name).items()})
    return out


def check_bundles(root: str | os.PathLike, names: Iterable[str] | None = None) -> list[str]:
    """Paths (relative to ``root``) of rendered files that are missing or differ on disk; ``[]`` when up to date."""
    bad = []
    for rel, text in render_all(names).items():
        path = Path(root) / rel
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            bad.append(rel)
    return bad


def write_bundles(root: str | os.PathLike, names: Iterable[str] | None = None) -> list[str]:
    """Write the rendered files under ``root``; returns the paths that changed."""
    changed = check_bundles(root, names)
    files = render_all(names)
    for rel in changed:
        path = Path(root) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[rel], encoding="utf-8")
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m monai_qmix.bundles render [--check]``."""
    ap = argparse.ArgumentParser(prog="python -m monai_qmix.bundles", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="write (or --check) bundles/qmix_<name>/ from the template")
    r.add_argument("--root", default="bundles", help="output folder (default: bundles)")
    r.add_argument("--check", action="store_true", help="write nothing; exit 1 if a committed file differs")
    r.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(BUNDLE_SPECS)}")
    a = ap.parse_args(argv)
    names = None if a.only is None else [n.strip() for n in a.only.split(",") if n.strip()]
    for n in names or []:
        if n not in BUNDLE_SPECS:
            ap.error(f"--only: unknown bundle {n!r}; expected some of {sorted(BUNDLE_SPECS)}")
    if a.check:
        bad = check_bundles(a.root, names)
        if bad:
            print(f"{len(bad)} bundle file(s) differ from the template rendering (run: python -m monai_qmix.bundles "
                  f"render):\n" + "\n".join(f"  {a.root}/{p}" for p in bad))  # fmt: skip
            return 1
        print(f"bundles under {a.root} are up to date")
        return 0
    changed = write_bundles(a.root, names)
    print(f"rendered {len(render_all(names))} files under {a.root} ({len(changed)} changed)")
    return 0
