# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Reader of OIA-ODIR / ODIR-5K, mapped to a per-eye single-label task."""

from __future__ import annotations

import os
import re

from monai_qmix.data.readers._core import (
    _find_image_dir,
    _finish,
    _item,
    _keep_gradable,
    _read_table,
    _require_dir,
    _splits,
)
from monai_qmix.data.readers.info import (
    DATASETS,
    ODIR_CLASSES,
    UNGRADABLE,
    DatalistError,
)

#: Per-eye ODIR keywords that describe the photograph, not the eye: they make ``quality=0`` and carry no class.
ODIR_QUALITY_KEYWORDS = (
    "low image quality",
    "lens dust",
    "optic disk photographically invisible",
    "image offset",
    "anterior segment image",
    "no fundus image",
)
# keyword substring -> ODIR class; first match wins; any other keyword is "O" (other)
_ODIR_KEYWORD_CLASSES = (
    ("normal fundus", "N"),
    ("diabetic retinopathy", "D"),
    ("proliferative retinopathy", "D"),
    ("nonproliferative retinopathy", "D"),
    ("glaucoma", "G"),
    ("cataract", "C"),
    ("macular degeneration", "A"),
    ("hypertensive", "H"),
    ("myopi", "M"),
)
# a disease wins over "other", which wins over "normal"
_ODIR_PRIORITY = ("D", "G", "C", "A", "H", "M", "O", "N")


def _odir_eye(keywords: str) -> tuple[int, int, list[int]]:
    """Per-eye ODIR keywords -> (label, quality, multi-hot over ODIR_CLASSES)."""
    words = [w.strip().lower() for w in re.split(r"[,，;；]", keywords) if w.strip()]
    quality, found = 1, set()
    for w in words:
        if any(q in w for q in ODIR_QUALITY_KEYWORDS):
            quality = 0
            continue
        found.add(next((c for key, c in _ODIR_KEYWORD_CLASSES if key in w), "O"))
    if len(found) > 1:
        found.discard("N")  # "normal fundus" next to a finding: the finding wins
    multi = [int(c in found) for c in ODIR_CLASSES]
    if not found:
        return UNGRADABLE, quality, multi
    label = ODIR_CLASSES.index(next(c for c in _ODIR_PRIORITY if c in found))
    return label, quality, multi


def load_odir(
    dataset_dir: str | os.PathLike,
    split: str = "train",
    *,
    annotation_file: str | os.PathLike | None = None,
    image_dir: str | os.PathLike | None = None,
    include_ungradable: bool = True,
    missing: str = "error",
) -> list[dict]:
    """OIA-ODIR / ODIR-5K as a per-eye, single-label 8-class task (``ODIR_CLASSES`` = N D G C A H M O).

    ODIR's N..O flags are per *patient*; QMix trains per image, so each eye's label comes from its own diagnostic
    keywords (comma or full-width comma separated): each keyword maps to a class by substring (``normal fundus``
    N, ``... diabetic retinopathy`` / ``proliferative retinopathy`` D, ``glaucoma`` G, ``cataract`` C,
    ``macular degeneration`` A, ``hypertensive`` H, ``myopi...`` M, anything else O). ``label`` is the first class
    present in the priority D, G, C, A, H, M, O, N (a finding beats "other" beats "normal"); all classes are kept
    as the multi-hot ``labels``. The quality phrases of :data:`ODIR_QUALITY_KEYWORDS` set ``quality=0`` and carry
    no class; an eye described only by them gets ``label=-1``. (How QMix mapped ODIR to a single task is not
    published; this is our documented choice.) The xlsx is read with the standard library.

    Args:
        dataset_dir: the dataset folder.
        split: ``"train"`` or ``"all"``; other sets via ``annotation_file`` / ``image_dir``.
        annotation_file: the ``.xlsx`` (or ``.csv``) annotation; default: the single ``*.xlsx`` in ``dataset_dir``
            (searched two levels deep), preferring names containing "annotation" and not "chinese".
        image_dir: folder of ``<ID>_left.jpg`` etc.; default: the first candidate folder holding the images.
        include_ungradable: keep eyes without a class (label -1).
        missing: ``"error"`` or ``"warn"`` for listed images that are absent.

    Returns:
        the datalist with ``patient`` (ID), ``eye``, ``labels`` (multi-hot) and ``keywords``.

    Raises:
        FileNotFoundError: missing folder, annotation or images.
        DatalistError: missing columns, ambiguous annotation files, duplicate ids.
    """
    info = DATASETS["odir"]
    root = _require_dir(dataset_dir, "ODIR dataset_dir", info.layout)
    _splits(split, info)
    if annotation_file is None:
        found = sorted(
            os.path.join(d, f)
            for d in {root, *[os.path.join(root, x) for x in os.listdir(root) if os.path.isdir(os.path.join(root, x))]}
            if os.path.isdir(d)
            for f in os.listdir(d)
            if f.lower().endswith(".xlsx") and not f.startswith("~$")
        )
        preferred = [f for f in found if "annotation" in f.lower() and "chinese" not in f.lower()]
        found = preferred or found
        if len(found) != 1:
            raise (FileNotFoundError if not found else DatalistError)(
                f"ODIR annotation: found {len(found)} .xlsx candidates {found} under {root!r}; pass "
                f"annotation_file=... . Expected layout: {info.layout}"
            )
        annotation_file = found[0]
    table = _read_table(os.fspath(annotation_file), "ODIR annotation", info.layout)
    cols = ["ID", "Left-Fundus", "Right-Fundus", "Left-Diagnostic Keywords", "Right-Diagnostic Keywords"]
    table.require(cols, info.layout)
    if not table.rows:
        raise DatalistError(f"no samples listed in {table.path}. Expected layout: {info.layout}")
    if image_dir is not None:
        folder = _require_dir(image_dir, "ODIR image_dir", info.layout)
    else:
        cands = [
            os.path.join(root, d)
            for d in ("Training Images", "Training Set/Images", "ODIR-5K/Training Images", "Images", "images", ".")
        ]
        folder = _find_image_dir(cands, table.rows[0][1]["Left-Fundus"], "ODIR image folder", info.layout)
    items = []
    for line, row in table.rows:
        where = table.where(line)
        pid = row["ID"]
        pid = str(int(float(pid))) if re.fullmatch(r"\d+(\.0+)?", pid) else pid
        for eye in ("Left", "Right"):
            label, quality, multi = _odir_eye(row[f"{eye}-Diagnostic Keywords"])
            name = row[f"{eye}-Fundus"]
            item = _item(os.path.join(folder, name), label, quality, name, where, pid, eye.lower(), labels=multi)
            item["keywords"] = row[f"{eye}-Diagnostic Keywords"]
            items.append(item)
    return _finish(_keep_gradable(items, include_ungradable), table.path, info.layout, missing)
