# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Generic readers: any CSV with configurable columns, and datalist JSON files (e.g. a prepared copy)."""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

from monai_qmix.data.readers._core import (
    _check_label,
    _Files,
    _finish,
    _item,
    _read_csv,
    _require_dir,
    _require_file,
    _to_int,
    parse_quality,
)
from monai_qmix.data.readers.info import (
    DatalistError,
)

_CSV_LAYOUT = (
    "a CSV with a header row, e.g. labels.csv with columns image,label[,quality]; image paths relative to the CSV's "
    "folder (or image_dir)"
)


def load_csv(
    dataset_dir: str | os.PathLike,
    split: str = "train",
    *,
    csv_file: str = "labels.csv",
    image_column: str = "image",
    label_column: str = "label",
    quality_column: str | None = None,
    patient_column: str | None = None,
    eye_column: str | None = None,
    split_column: str | None = None,
    image_dir: str | os.PathLike | None = None,
    extension: str | None = "auto",
    num_classes: int | None = None,
    quality_map: dict[Any, int] | None = None,
    missing: str = "error",
) -> list[dict]:
    """Generic reader: any CSV with configurable image / label / quality / patient / eye columns.

    ``quality``, ``patient`` and ``eye`` columns are used when named, or when a column of exactly that name exists.
    Quality values are numbers in our convention or words (EyeQ's Good / Usable / Reject, high / low), see
    :func:`parse_quality`; ``quality_map`` remaps other codes.

    Args:
        dataset_dir: the CSV file itself, or the folder holding ``csv_file``.
        split: with ``split_column``, keep the rows whose value equals ``split`` (``"all"`` keeps all); without it,
            only ``"train"`` / ``"all"`` are accepted.
        csv_file: file name inside ``dataset_dir`` when a folder is given.
        image_column: column of image paths (relative to ``image_dir`` or the CSV's folder, or absolute).
        label_column: column of integer labels.
        quality_column: quality column (default: ``"quality"`` if present).
        patient_column: patient column (default: ``"patient"`` if present).
        eye_column: eye column (default: ``"eye"`` if present).
        split_column: column naming each row's split.
        image_dir: base folder for relative image paths (default: the CSV's folder).
        extension: ``"auto"`` looks up a file with the same stem when the listed name does not exist; a string such
            as ``".png"`` is appended to names without a suffix; ``None`` uses names as written.
        num_classes: if given, labels must lie in ``0..num_classes-1``.
        quality_map: passed to :func:`parse_quality`.
        missing: ``"error"`` or ``"warn"`` for listed images that are absent.

    Returns:
        the datalist; ``id`` is the image column's value.

    Raises:
        FileNotFoundError: missing CSV, image folder or images.
        DatalistError: missing columns, bad labels or quality values, duplicate ids, empty selection.
    """
    path = os.path.abspath(os.fspath(dataset_dir))
    if os.path.isdir(path):
        path = os.path.join(path, csv_file)
    table = _read_csv(path, "label CSV", _CSV_LAYOUT)
    quality_column = quality_column or ("quality" if "quality" in table.columns else None)
    patient_column = patient_column or ("patient" if "patient" in table.columns else None)
    eye_column = eye_column or ("eye" if "eye" in table.columns else None)
    optional = [c for c in (quality_column, patient_column, eye_column, split_column) if c]
    table.require([image_column, label_column, *optional], _CSV_LAYOUT)
    if split_column is None and split not in ("train", "all"):
        raise ValueError(f"split={split!r} needs split_column=... (the CSV {path!r} has no split column configured)")
    base = _require_dir(image_dir, "image_dir", _CSV_LAYOUT) if image_dir is not None else os.path.dirname(path)
    files = _Files()
    items = []
    for line, row in table.rows:
        if split_column and split != "all" and row[split_column] != split:
            continue
        where = table.where(line)
        label = _check_label(_to_int(row[label_column], where, label_column), num_classes, where, label_column)
        quality = parse_quality(row[quality_column], quality_map, where, quality_column) if quality_column else -1
        name = row[image_column]
        img = os.path.join(base, name)
        if extension == "auto":
            img = files.resolve(img)
        elif extension and not os.path.splitext(name)[1]:
            img += extension
        patient = row[patient_column] if patient_column else None
        eye = row[eye_column].lower() or None if eye_column else None
        items.append(_item(img, label, quality, name, where, patient, eye))
    source = f"{path}" + (f" (rows with {split_column}={split!r})" if split_column and split != "all" else "")
    return _finish(items, source, _CSV_LAYOUT, missing)


_JSON_LAYOUT = (
    "a datalist JSON: a list of items or {split: [items]}, items with 'image' (relative to the JSON's folder or "
    "absolute) and 'label', as written by monai_qmix.data.prepare"
)


def load_json(dataset_dir: str | os.PathLike, split: str = "train", *, missing: str = "error") -> list[dict]:
    """Read a datalist JSON, e.g. ``datalist.json`` written by :mod:`monai_qmix.data.prepare`.

    Args:
        dataset_dir: the JSON file, or a folder holding ``datalist.json``.
        split: the key to read when the JSON maps split names to lists (ignored for a plain list).
        missing: ``"error"`` or ``"warn"`` for listed images that are absent.

    Returns:
        the datalist with absolute ``image`` paths and ``index`` re-numbered ``0..N-1`` in stored order (a warning
        says so when the stored indices differ).

    Raises:
        FileNotFoundError: missing JSON or images.
        DatalistError: unknown split key, items without ``image`` / ``label``, duplicate ids.
    """
    path = os.path.abspath(os.fspath(dataset_dir))
    if os.path.isdir(path):
        path = os.path.join(path, "datalist.json")
    _require_file(path, "datalist JSON", _JSON_LAYOUT)
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if isinstance(data, dict):
        lists = {k: v for k, v in data.items() if isinstance(v, list)}
        if split not in lists:
            raise DatalistError(f"{path}: no split {split!r}; splits found: {sorted(lists)}")
        data = lists[split]
    base = os.path.dirname(path)
    items, stored = [], []
    for i, raw in enumerate(data):
        where = f"{path}, item {i}"
        if not isinstance(raw, dict) or "image" not in raw or "label" not in raw:
            raise DatalistError(f"{where}: expected a dict with 'image' and 'label', found {raw!r}")
        it = dict(raw)
        stored.append(it.pop("index", None))
        it["image"] = os.path.join(base, it["image"])
        label, quality = int(it.pop("label")), int(it.pop("quality", -1))
        sid = str(it.pop("id", it["image"]))
        image, patient, eye = it.pop("image"), it.pop("patient", None), it.pop("eye", None)
        items.append(_item(image, label, quality, sid, where, patient, eye, **it))
    if stored != list(range(len(stored))) and any(s is not None for s in stored):
        warnings.warn(f"{path}: stored 'index' values are not 0..N-1; re-numbered in stored order.", stacklevel=2)
    return _finish(items, path, _JSON_LAYOUT, missing)
