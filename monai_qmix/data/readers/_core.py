# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Shared machinery of the readers: label tables (CSV / xlsx), value parsing, file look-up and the final checks."""

from __future__ import annotations

import csv
import io
import os
import re
import warnings
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

from monai.utils import look_up_option

from monai_qmix.data.readers.info import (
    IMAGE_EXTENSIONS,
    MISSING_MODES,
    UNGRADABLE,
    DatalistError,
    DatasetInfo,
)

_MAX_LISTED = 5


# ----------------------------------------------------------------------------------------------- small helpers


def _require_dir(path: str | os.PathLike, what: str, layout: str) -> str:
    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{what} not found: directory {path!r} does not exist. Expected layout: {layout}")
    return path


def _require_file(path: str, what: str, layout: str) -> str:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: file {path!r} does not exist. Expected layout: {layout}")
    return path


def _first_existing(candidates: Sequence[str], what: str, layout: str, isdir: bool = False) -> str:
    check = os.path.isdir if isdir else os.path.isfile
    for c in candidates:
        if check(c):
            return c
    tried = ", ".join(repr(c) for c in candidates)
    raise FileNotFoundError(f"{what} not found; tried {tried}. Expected layout: {layout}")


def _choice(value: Any, options: Iterable[str], name: str) -> Any:
    """``look_up_option`` with a message that names the parameter."""
    options = tuple(options)
    try:
        return look_up_option(value, options)
    except ValueError as e:
        raise ValueError(f"{name}={value!r} is not supported; expected one of {list(options)}. ({e})") from None


def _splits(split: str, info: DatasetInfo) -> tuple[str, ...]:
    split = _choice(split, (*info.splits, "all"), f"split (dataset {info.name!r})")
    return info.splits if split == "all" else (split,)


def _to_int(value: str, where: str, column: str) -> int:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise DatalistError(f"{where}: column {column!r} holds {value!r}, expected an integer") from None
    if f != int(f):
        raise DatalistError(f"{where}: column {column!r} holds {value!r}, expected an integer")
    return int(f)


def _check_label(label: int, num_classes: int | None, where: str, column: str) -> int:
    if label < 0 or (num_classes is not None and label >= num_classes):
        rng = f"0..{num_classes - 1}" if num_classes is not None else "a non-negative integer"
        raise DatalistError(f"{where}: column {column!r} holds label {label}, outside the class range {rng}")
    return label


def _eye_from_name(name: str) -> str | None:
    m = re.search(r"(?:^|[_\-\s])(left|right)(?:$|[_\-.\s])", name.lower())
    return m.group(1) if m else None


_QUALITY_WORDS = {"good": 1, "usable": 1, "high": 1, "reject": 0, "low": 0, "poor": 0, "unknown": -1, "": -1}


def parse_quality(
    value: Any, quality_map: dict[Any, int] | None = None, where: str = "", column: str = "quality"
) -> int:
    """Turn a quality annotation into ``1`` (high), ``0`` (low) or ``-1`` (unknown).

    Args:
        value: a number already in this convention (``1``/``0``/``-1``), or a word (case-insensitive): EyeQ's
            ``Good``/``Usable`` (high) and ``Reject`` (low), ``high``/``low``, ``poor``, ``unknown``; empty is unknown.
        quality_map: optional explicit mapping applied first, e.g. ``{0: 1, 1: 1, 2: 0}`` for EyeQ's numeric codes
            (keys may be ints or strings).
        where: location named in the error message.
        column: column named in the error message.

    Returns:
        ``1``, ``0`` or ``-1``.

    Raises:
        DatalistError: when the value is none of the above.
    """
    text = str(value).strip()
    if quality_map is not None:
        for key in (value, text):
            if key in quality_map:
                return int(quality_map[key])
        try:
            if int(float(text)) in quality_map:
                return int(quality_map[int(float(text))])
        except ValueError:
            pass
    if text.lower() in _QUALITY_WORDS:
        return _QUALITY_WORDS[text.lower()]
    try:
        q = float(text)
    except ValueError:
        q = None
    if q is not None and q in (1.0, 0.0, -1.0):
        return int(q)
    raise DatalistError(
        f"{where}: column {column!r} holds quality {value!r}; expected 1 (high), 0 (low), -1 (unknown), one of "
        f"{sorted(k for k in _QUALITY_WORDS if k)} or a key of quality_map"
    )


class _Files:
    """Directory listings cached per folder (existence checks and extension look-up without a stat per file)."""

    def __init__(self) -> None:
        self._cache: dict[str, dict[str, str]] = {}

    def listing(self, folder: str) -> dict[str, str]:
        if folder not in self._cache:
            try:
                names = [e.name for e in os.scandir(folder) if e.is_file()]
            except OSError:
                names = []
            self._cache[folder] = {n: n for n in names}
        return self._cache[folder]

    def exists(self, path: str) -> bool:
        folder, name = os.path.split(path)
        return name in self.listing(folder)

    def resolve(self, path: str) -> str:
        """``path`` if it exists, else the unique file in its folder with the same stem and an image extension."""
        if self.exists(path):
            return path
        folder, name = os.path.split(path)
        stem = name.lower()
        found = [
            n
            for n in self.listing(folder)
            if os.path.splitext(n)[0].lower() == stem and os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS
        ]
        if not found:  # name given with an extension that differs from the file's
            stem = os.path.splitext(name)[0].lower()
            found = [
                n
                for n in self.listing(folder)
                if os.path.splitext(n)[0].lower() == stem and os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS
            ]
        return os.path.join(folder, sorted(found)[0]) if len(found) == 1 else path


def _index_tree(root: str, keep: Callable[[str], bool] = lambda d: True) -> dict[str, str]:
    """Map file name and lower-case stem of every image under ``root`` (folders filtered by ``keep``) to its path."""
    index: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        if not keep(folder):
            continue
        for f in sorted(files):
            if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS:
                p = os.path.join(folder, f)
                index.setdefault(f, p)
                index.setdefault(os.path.splitext(f)[0].lower(), p)
    return index


def _lookup(index: dict[str, str], name: str) -> str | None:
    return index.get(name) or index.get(os.path.splitext(name)[0].lower()) or index.get(name.lower())


# ------------------------------------------------------------------------------------------------ label tables


@dataclass
class _Table:
    """A label table: ``rows`` are ``(line_number, {column: stripped value})``."""

    path: str
    columns: list[str]
    rows: list[tuple[int, dict[str, str]]]

    def where(self, line: int) -> str:
        return f"{self.path}, line {line}"

    def require(self, names: Iterable[str], layout: str) -> None:
        absent = [n for n in names if n not in self.columns]
        if absent:
            raise DatalistError(
                f"{self.path}: missing column(s) {absent}; columns found: {self.columns}. Expected layout: {layout}"
            )


def _table_from_rows(path: str, rows: Iterable[tuple[int, list[str]]], layout: str) -> _Table:
    rows = iter(rows)
    header: list[str] | None = None
    for _, row in rows:
        if any(c.strip() for c in row):
            header = [c.strip().lstrip("\ufeff") for c in row]
            break
    if header is None:
        raise DatalistError(f"{path}: the label file is empty. Expected layout: {layout}")
    # drop unnamed columns (EyeQ's pandas index, IDRiD's trailing empty columns)
    keep = [(i, h) for i, h in enumerate(header) if h and not h.startswith("Unnamed:")]
    names = [h for _, h in keep]
    dups = sorted({h for h in names if names.count(h) > 1})
    if dups:
        raise DatalistError(f"{path}: duplicate column name(s) {dups} in the header {header}")
    out = []
    for line, row in rows:
        if not any(c.strip() for c in row):
            continue  # blank or all-empty row (e.g. IDRiD's trailing ',,,,' lines)
        out.append((line, {h: (row[i].strip() if i < len(row) else "") for i, h in keep}))
    return _Table(path, names, out)


def _read_text(path: str) -> str:
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _read_csv(path: str, what: str, layout: str) -> _Table:
    _require_file(path, what, layout)
    text = _read_text(path)
    first = text.split("\n", 1)[0]
    delimiter = ","
    if "," not in first:
        delimiter = ";" if ";" in first else ("\t" if "\t" in first else ",")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    return _table_from_rows(path, ((reader.line_num, row) for row in reader), layout)


_XLSX_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"


def _col_number(ref: str) -> int:
    n = 0
    for ch in re.match(r"[A-Za-z]*", ref).group(0).upper():
        n = n * 26 + ord(ch) - 64
    return n - 1


def _read_xlsx(path: str, what: str, layout: str) -> _Table:
    """Read the first worksheet of an ``.xlsx`` file with the standard library (no ``openpyxl`` needed)."""
    _require_file(path, what, layout)
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            shared: list[str] = []
            if "xl/sharedStrings.xml" in names:
                root = ElementTree.fromstring(z.read("xl/sharedStrings.xml"))
                shared = ["".join(t.text or "" for t in si.iter(f"{_XLSX_NS}t")) for si in root.iter(f"{_XLSX_NS}si")]
            sheets = sorted(n for n in names if re.fullmatch(r"xl/worksheets/sheet\d+\.xml", n))
            sheets.sort(key=lambda n: int(re.search(r"(\d+)\.xml$", n).group(1)))
            if not sheets:
                raise DatalistError(f"{path}: no worksheet found in the workbook")
            sheet = ElementTree.fromstring(z.read(sheets[0]))
    except zipfile.BadZipFile as e:
        raise DatalistError(f"{path}: not a readable .xlsx workbook ({e}). Expected layout: {layout}") from e
    rows = []
    for r, row in enumerate(sheet.iter(f"{_XLSX_NS}row"), start=1):
        line = int(row.get("r", r))
        cells: dict[int, str] = {}
        for j, c in enumerate(row.iter(f"{_XLSX_NS}c")):
            col = _col_number(c.get("r")) if c.get("r") else j
            t, v = c.get("t"), c.find(f"{_XLSX_NS}v")
            if t == "s" and v is not None:
                val = shared[int(v.text)]
            elif t == "inlineStr":
                val = "".join(x.text or "" for x in c.iter(f"{_XLSX_NS}t"))
            else:
                val = v.text if v is not None and v.text is not None else ""
            cells[col] = val
        rows.append((line, [cells.get(i, "") for i in range(max(cells, default=-1) + 1)]))
    return _table_from_rows(path, rows, layout)


def _read_table(path: str, what: str, layout: str) -> _Table:
    if path.lower().endswith((".xlsx", ".xlsm")):
        return _read_xlsx(path, what, layout)
    return _read_csv(path, what, layout)


# ------------------------------------------------------------------------------------------ building datalists


def _item(
    image: str, label: int, quality: int, sid: str, where: str, patient: Any = None, eye: str | None = None, **extra
) -> dict[str, Any]:
    d: dict[str, Any] = {"image": os.path.abspath(image), "label": int(label), "index": -1, "quality": int(quality)}
    d["id"] = sid
    if patient is not None and str(patient) != "":
        d["patient"] = str(patient)
    if eye:
        d["eye"] = eye
    d.update(extra)
    d["_where"] = where
    return d


def _finish(items: list[dict[str, Any]], source: str, layout: str, missing: str = "error") -> list[dict[str, Any]]:
    """Check ids and files, drop absent images when ``missing="warn"``, assign ``index`` and strip internals."""
    missing = _choice(missing, MISSING_MODES, "missing")
    if not items:
        raise DatalistError(f"no samples listed in {source}. Expected layout: {layout}")
    seen: dict[str, str] = {}
    for it in items:
        if it["id"] in seen:
            raise DatalistError(f"duplicate id {it['id']!r}: {it['_where']} (first listed at {seen[it['id']]})")
        seen[it["id"]] = it["_where"]
    files = _Files()
    absent = [it for it in items if not files.exists(it["image"])]
    if absent:
        listed = "; ".join(f"{it['image']!r} ({it['_where']})" for it in absent[:_MAX_LISTED])
        more = f" and {len(absent) - _MAX_LISTED} more" if len(absent) > _MAX_LISTED else ""
        msg = f"{len(absent)} of {len(items)} images listed in {source} are absent: {listed}{more}"
        if missing == "error":
            raise FileNotFoundError(f"{msg}. Expected layout: {layout}. Pass missing='warn' to drop them.")
        warnings.warn(f"{msg}; dropping these {len(absent)} items (missing='warn').", stacklevel=3)
        gone = {id(it) for it in absent}
        items = [it for it in items if id(it) not in gone]
        if not items:
            raise DatalistError(f"no images of {source} exist. Expected layout: {layout}")
    out = []
    for i, it in enumerate(items):
        it = {k: v for k, v in it.items() if k != "_where"}
        it["index"] = i
        out.append(it)
    return out


def _keep_gradable(items: list[dict[str, Any]], include_ungradable: bool) -> list[dict[str, Any]]:
    return items if include_ungradable else [it for it in items if it["label"] != UNGRADABLE]


def _find_image_dir(candidates: Sequence[str], first_name: str, what: str, layout: str) -> str:
    files = _Files()
    for c in candidates:
        if os.path.isdir(c) and files.exists(files.resolve(os.path.join(c, first_name))):
            return c
    tried = ", ".join(repr(c) for c in candidates)
    raise FileNotFoundError(
        f"{what} not found: none of {tried} holds {first_name!r}; pass image_dir=... . Expected layout: {layout}"
    )
