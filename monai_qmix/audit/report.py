# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Audit outputs: ``audit.csv``, a self-contained ``report.html`` (thumbnails as base64 data URIs), PNG contact
sheets of the top suspects per group and ``summary.json`` (counts per grade, problems, metrics)."""

from __future__ import annotations

import base64
import html
import io
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .api import AuditTable

__all__ = ["SUSPECT_LISTS", "contact_sheet", "write_report"]

#: The suspect lists of the report: name → (table flag column, rank key, title).
SUSPECT_LISTS: dict[str, tuple[str, str, str]] = {
    "mis_h": ("is_mislabeled", "mis_h", "Probably mislabelled (Mis-H): re-grade"),
    "mis_l": ("low_quality_model", "mis_l", "Low quality by the model (Mis-L): re-acquire or exclude"),
    "low_quality_fov": ("low_quality_fov", "quality", "Low quality by the FOV image-quality score"),
}


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _hwc(img: Any) -> np.ndarray:
    x = img.numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    if x.dtype != np.uint8:
        x = (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)
    return x.transpose(1, 2, 0)


def contact_sheet(images: Sequence[Any], path: str | os.PathLike, columns: int = 8) -> str:
    """Tile ``(3, H, W)`` images (uint8 or float 0-1) into one PNG; returns the path (a 1x1 black PNG when empty)."""
    from PIL import Image

    if len(images) == 0:
        Image.new("RGB", (1, 1)).save(path)
        return os.fspath(path)
    tiles = [_hwc(im) for im in images]
    h, w = tiles[0].shape[:2]
    cols = min(int(columns), len(tiles))
    rows = -(-len(tiles) // cols)
    sheet = np.zeros((rows * (h + 2), cols * (w + 2), 3), dtype=np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet[r * (h + 2) : r * (h + 2) + h, c * (w + 2) : c * (w + 2) + w] = t
    Image.fromarray(sheet).save(path)
    return os.fspath(path)


def _fmt(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.3f}"
    return html.escape(str(v))


def _table_html(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(
    table: AuditTable,
    out_dir: str | os.PathLike,
    images: torch.Tensor | None = None,
    problems: Sequence[Mapping[str, str]] = (),
    summary: Mapping[str, Any] | None = None,
    top_k: int = 32,
    class_names: Sequence[str] | None = None,
) -> dict[str, str]:
    """Write ``audit.csv``, ``report.html``, ``summary.json`` and ``suspects_<group>.png`` into ``out_dir``.

    Args:
        table: the audit table.
        out_dir: output folder (created).
        images: optional ``(N, 3, S, S)`` images aligned with the table rows (thumbnails, contact sheets).
        problems: missing / unreadable files (``{"image", "problem"}``), listed in the report.
        summary: extra entries for ``summary.json`` and the report header (e.g. dataset, metrics).
        top_k: images per contact sheet.
        class_names: optional names of the grades.

    Returns:
        name → path of every file written.
    """
    out = os.fspath(out_dir)
    os.makedirs(out, exist_ok=True)
    files = {"csv": table.to_csv(os.path.join(out, "audit.csv"))}
    names = table["image"] if "image" in table.columns else np.asarray([str(i) for i in table["index"]], dtype=object)
    counts = table.counts_per_grade()
    flagged = {k: int(table[col].sum()) for k, (col, _, _) in SUSPECT_LISTS.items() if col in table.columns}
    summ: dict[str, Any] = {
        "num_samples": len(table),
        "num_problems": len(problems),
        "groups": table.separation.counts(),
        "flagged": flagged,
        "num_mislabeled": int(table["is_mislabeled"].sum()),
        "num_low_quality": int(table["is_low_quality"].sum()),
        "low_quality_rule": table.low_quality_rule,
        "quality_threshold": None if np.isnan(table.quality_threshold) else table.quality_threshold,
        "separation_fallback": table.separation.fallback,
        "counts_per_grade": {str(k): v for k, v in counts.items()},
        "problems": [dict(p) for p in problems],
        **dict(summary or {}),
    }
    files["summary"] = os.path.join(out, "summary.json")
    with open(files["summary"], "w", encoding="utf-8") as f:
        json.dump(summ, f, indent=1, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))

    def grade(g: int) -> str:
        return f"{g} ({class_names[g]})" if class_names and 0 <= g < len(class_names) else str(g)

    def thumb(i: int) -> str:
        if images is None:
            return ""
        b64 = base64.b64encode(_png(_hwc(images[i]))).decode("ascii")
        return f'<img src="data:image/png;base64,{b64}" alt="{html.escape(str(names[i]))}" width="96" height="96">'

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>monai_qmix dataset audit</title>',
        "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;margin-bottom:1em}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px}th{background:#eee}</style></head><body>",
        "<h1>Dataset audit</h1>",
    ]
    info = [(k, v) for k, v in (summary or {}).items() if isinstance(v, (str, int, float))]
    info += [("samples scored", len(table)), ("missing / unreadable files", len(problems))]
    info += [("mislabelled (Mis-H)", summ["num_mislabeled"]), ("low quality", summ["num_low_quality"])]
    parts.append(_table_html(["item", "value"], [(html.escape(str(k)), _fmt(v)) for k, v in info]))
    parts.append("<h2>Counts per given grade</h2>")
    keys = ["n", "correct", "mis_h", "mis_l", "mislabeled", "low_quality"]
    parts.append(
        _table_html(["grade", *keys], [(html.escape(grade(g)), *(c[k] for k in keys)) for g, c in counts.items()])
    )
    cols = ["index", "given_label", "predicted_label", "p_mis_h", "p_mis_l", "loss", "uncertainty"]
    cols += [c for c in ("quality_score",) if c in table.columns]
    for key, (col, by, title) in SUSPECT_LISTS.items():
        if col not in table.columns:
            continue
        order = [int(i) for i in table.ranked(by) if table[col][int(i)]]
        parts.append(f'<h2 id="{key}">{html.escape(title)}: {len(order)} flagged</h2>')
        rows = [(thumb(i), html.escape(str(names[i])), *(_fmt(table[c][i]) for c in cols)) for i in order]
        parts.append(_table_html(["thumbnail", "image", *cols], rows))
        if images is not None:
            path = os.path.join(out, f"suspects_{key}.png")
            files[f"sheet_{key}"] = contact_sheet([images[i] for i in order[: int(top_k)]], path)
    parts.append(f'<h2 id="problems">Missing or unreadable files: {len(problems)}</h2>')
    parts.append(
        _table_html(["image", "problem"], [(html.escape(p["image"]), html.escape(p["problem"])) for p in problems])
    )
    parts.append("</body></html>")
    files["html"] = os.path.join(out, "report.html")
    with open(files["html"], "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    return files
