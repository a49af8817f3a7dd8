# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Readers of the DR-grading datasets: APTOS, DDR, EyePACS, Messidor-2, IDRiD, DeepDRiD, EyeQ, DRTiD, DRAC."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from monai_qmix.data.readers._core import (
    _check_label,
    _eye_from_name,
    _Files,
    _find_image_dir,
    _finish,
    _first_existing,
    _index_tree,
    _item,
    _keep_gradable,
    _lookup,
    _read_csv,
    _read_text,
    _require_dir,
    _require_file,
    _splits,
    _Table,
    _to_int,
    parse_quality,
)
from monai_qmix.data.readers.info import (
    DATASETS,
    IMAGE_EXTENSIONS,
    UNGRADABLE,
    DatalistError,
)

# ------------------------------------------------------------------------------------------------------ readers


def load_aptos(dataset_dir: str | os.PathLike, split: str = "train", *, missing: str = "error") -> list[dict]:
    """APTOS 2019 (and SynthDR, written in the same layout): ``train.csv`` + ``train_images/<id_code>.png``.

    Args:
        dataset_dir: the competition folder.
        split: ``"train"`` (the only labelled split) or ``"all"``.
        missing: ``"error"`` or ``"warn"`` for listed images that are absent.

    Returns:
        the datalist; ``quality=-1`` (APTOS has no quality label), no patient key.

    Raises:
        FileNotFoundError: missing folder, ``train.csv`` or images.
        DatalistError: missing columns, labels outside 0..4, duplicate ids.
    """
    info = DATASETS["aptos"]
    root = _require_dir(dataset_dir, "APTOS dataset_dir", info.layout)
    _splits(split, info)
    table = _read_csv(os.path.join(root, "train.csv"), "APTOS label file", info.layout)
    table.require(["id_code", "diagnosis"], info.layout)
    image_dir = _require_dir(os.path.join(root, "train_images"), "APTOS image folder", info.layout)
    items = []
    for line, row in table.rows:
        where = table.where(line)
        label = _check_label(_to_int(row["diagnosis"], where, "diagnosis"), info.num_classes, where, "diagnosis")
        items.append(_item(os.path.join(image_dir, row["id_code"] + ".png"), label, -1, row["id_code"], where))
    return _finish(items, table.path, info.layout, missing)


def load_ddr(
    dataset_dir: str | os.PathLike, split: str = "train", *, include_ungradable: bool = True, missing: str = "error"
) -> list[dict]:
    """DDR DR grading: ``DR_grading/<split>.txt`` lines ``"<name>.jpg <grade>"`` and ``DR_grading/<split>/<name>``.

    Grade 5 means *ungradable*: such images get ``label=-1`` (:data:`UNGRADABLE`) and ``quality=0``; every other
    image gets ``quality=1`` (DDR's graders assessed quality). QMix uses the grade-5 images of all three lists as
    natural Mis-L with random grades (``split="all"``).

    Args:
        dataset_dir: the ``DDR-dataset`` folder, its parent, or the ``DR_grading`` folder itself.
        split: ``"train"``, ``"valid"``, ``"test"`` or ``"all"`` (the three lists concatenated in that order).
        include_ungradable: keep the grade-5 images (label -1); set ``False`` for plain supervised use.
        missing: ``"error"`` or ``"warn"`` for listed images that are absent.

    Returns:
        the datalist; ``id`` is ``"<split>/<name>"``.

    Raises:
        FileNotFoundError: missing folder, list or images.
        DatalistError: malformed lines, grades outside 0..5, duplicate ids.
    """
    info = DATASETS["ddr"]
    base = _require_dir(dataset_dir, "DDR dataset_dir", info.layout)
    splits = _splits(split, info)
    candidates = [os.path.join(base, "DR_grading"), os.path.join(base, "DDR-dataset", "DR_grading"), base]
    root = os.path.dirname(
        _first_existing([os.path.join(c, f"{splits[0]}.txt") for c in candidates], "DDR list", info.layout)
    )
    items = []
    for s in splits:
        path = _require_file(os.path.join(root, f"{s}.txt"), "DDR list", info.layout)
        with open(path, encoding="utf-8-sig") as f:
            for line, text in enumerate(f, start=1):
                parts = text.split()
                if not parts:
                    continue
                where = f"{path}, line {line}"
                if len(parts) != 2:
                    raise DatalistError(f"{where}: expected '<name>.jpg <grade>', found {text.strip()!r}")
                grade = _check_label(_to_int(parts[1], where, "grade"), 6, where, "grade")
                label, quality = (UNGRADABLE, 0) if grade == 5 else (grade, 1)
                items.append(_item(os.path.join(root, s, parts[0]), label, quality, f"{s}/{parts[0]}", where))
    items = _keep_gradable(items, include_ungradable)
    return _finish(items, f"{root}/{{{','.join(splits)}}}.txt", info.layout, missing)


def load_eyepacs(
    dataset_dir: str | os.PathLike, split: str = "train", *, extension: str = ".jpeg", missing: str = "error"
) -> list[dict]:
    """EyePACS / Kaggle DR 2015: ``trainLabels.csv`` (``image,level``) + ``train/<image>.jpeg``.

    The test split reads ``retinopathy_solution.csv`` (``image,level,Usage``) + ``test/``. ``patient`` is the number
    before ``_left``/``_right`` and ``eye`` the side, so :func:`~monai_qmix.data.split.split_by_patient` keeps both
    eyes of a person together.

    Args:
        dataset_dir: the competition folder.
        split: ``"train"``, ``"test"`` or ``"all"``.
        extension: appended to the ``image`` column (``"auto"`` looks the file up by name).
        missing: ``"error"`` or ``"warn"`` for listed images that are absent.

    Returns:
        the datalist; ``quality=-1``; ``id`` is ``"<split>/<image>"``.

    Raises:
        FileNotFoundError: missing folder, label file or images.
        DatalistError: missing columns, labels outside 0..4, duplicate ids.
    """
    info = DATASETS["eyepacs"]
    root = _require_dir(dataset_dir, "EyePACS dataset_dir", info.layout)
    files = _Files()
    items = []
    for s in _splits(split, info):
        name = "trainLabels.csv" if s == "train" else "retinopathy_solution.csv"
        table = _read_csv(os.path.join(root, name), f"EyePACS {s} label file", info.layout)
        table.require(["image", "level"], info.layout)
        image_dir = _require_dir(os.path.join(root, s), f"EyePACS {s} image folder", info.layout)
        for line, row in table.rows:
            where = table.where(line)
            label = _check_label(_to_int(row["level"], where, "level"), info.num_classes, where, "level")
            img = row["image"]
            path = os.path.join(image_dir, img)
            path = files.resolve(path) if extension == "auto" else path + extension
            patient = img.split("_")[0] if _eye_from_name(img) else None
            items.append(_item(path, label, -1, f"{s}/{img}", where, patient, _eye_from_name(img)))
    return _finish(items, f"EyePACS {split} label file(s) in {root}", info.layout, missing)


def _messidor_exams(root: str) -> dict[str, str]:
    """Map image stem -> exam id (first image of the pair) from ``messidor-2.csv`` when present."""
    path = os.path.join(root, "messidor-2.csv")
    if not os.path.isfile(path):
        return {}
    exams: dict[str, str] = {}
    for text in _read_text(path).splitlines():
        names = [n for n in re.split(r"[;,\s]+", text.strip()) if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS]
        for n in names:
            exams[os.path.splitext(n)[0].lower()] = os.path.splitext(names[0])[0]
    return exams


def load_messidor2(
    dataset_dir: str | os.PathLike, split: str = "train", *, include_ungradable: bool = True, missing: str = "error"
) -> list[dict]:
    """Messidor-2 with the adjudicated grades: ``messidor_data.csv`` + ``IMAGES/`` (mixed extensions).

    The file extension is looked up per image. ``adjudicated_gradable = 0`` gives ``quality=0``, and
    ``label=-1`` when the grade is empty. ``patient`` is the exam (first image name of the pair in
    ``messidor-2.csv``) when that file is present.

    Args:
        dataset_dir: the folder holding ``messidor_data.csv`` and ``IMAGES/``.
        split: ``"train"`` (Messidor-2 has no official split) or ``"all"``.
        include_ungradable: keep images without a grade (label -1).
        missing: ``"error"`` or ``"warn"`` for listed images that are absent.

    Returns:
        the datalist, with ``dme`` (adjudicated DME, -1 if empty).

    Raises:
        FileNotFoundError: missing folder, label file or images.
        DatalistError: missing columns, labels outside 0..4, duplicate ids.
    """
    info = DATASETS["messidor2"]
    root = _require_dir(dataset_dir, "Messidor-2 dataset_dir", info.layout)
    _splits(split, info)
    table = _read_csv(os.path.join(root, "messidor_data.csv"), "Messidor-2 label file", info.layout)
    cols = ["image_id", "adjudicated_dr_grade", "adjudicated_dme", "adjudicated_gradable"]
    table.require(cols, info.layout)
    image_dir = _first_existing(
        [os.path.join(root, d) for d in ("IMAGES", "images", "Images")], "Messidor-2 image folder", info.layout, True
    )
    files, exams = _Files(), _messidor_exams(root)
    items = []
    for line, row in table.rows:
        where = table.where(line)
        gradable = _to_int(row["adjudicated_gradable"] or "1", where, "adjudicated_gradable")
        grade = row["adjudicated_dr_grade"]
        label = _check_label(_to_int(grade, where, cols[1]), 5, where, cols[1]) if grade else UNGRADABLE
        if label == UNGRADABLE and gradable:
            raise DatalistError(f"{where}: gradable image {row['image_id']!r} has no adjudicated_dr_grade")
        dme = _to_int(row["adjudicated_dme"], where, cols[2]) if row["adjudicated_dme"] else -1
        img = row["image_id"]
        patient = exams.get(os.path.splitext(img)[0].lower())
        path = files.resolve(os.path.join(image_dir, img))
        items.append(_item(path, label, 1 if gradable else 0, img, where, patient, dme=dme))
    return _finish(_keep_gradable(items, include_ungradable), table.path, info.layout, missing)


_IDRID = {
    "train": ("a. IDRiD_Disease Grading_Training Labels.csv", "a. Training Set"),
    "test": ("b. IDRiD_Disease Grading_Testing Labels.csv", "b. Testing Set"),
}


def load_idrid(dataset_dir: str | os.PathLike, split: str = "train", *, missing: str = "error") -> list[dict]:
    """IDRiD "B. Disease Grading": ground-truth CSVs + ``1. Original Images/<set>/<name>.jpg``.

    Header whitespace (``'Risk of macular edema '``) and the empty trailing columns are stripped. Training and test
    sets reuse file names, so ``id`` is ``"<split>/<Image name>"``. All IDRiD images were verified as adequate
    quality, so ``quality=1``.

    Args:
        dataset_dir: the ``B. Disease Grading`` folder or its parent.
        split: ``"train"``, ``"test"`` or ``"all"``.
        missing: ``"error"`` or ``"warn"`` for listed images that are absent.

    Returns:
        the datalist, with ``dme`` (risk of macular edema 0..2).

    Raises:
        FileNotFoundError: missing folder, label file or images.
        DatalistError: missing columns, labels outside 0..4, duplicate ids.
    """
    info = DATASETS["idrid"]
    base = _require_dir(dataset_dir, "IDRiD dataset_dir", info.layout)
    sub = os.path.join(base, "B. Disease Grading")
    root = sub if os.path.isdir(sub) else base
    cols = ["Image name", "Retinopathy grade", "Risk of macular edema"]
    items = []
    for s in _splits(split, info):
        csv_name, set_name = _IDRID[s]
        table = _read_csv(os.path.join(root, "2. Groundtruths", csv_name), f"IDRiD {s} label file", info.layout)
        table.require(cols, info.layout)
        image_dir = _require_dir(
            os.path.join(root, "1. Original Images", set_name), f"IDRiD {s} image folder", info.layout
        )
        for line, row in table.rows:
            where = table.where(line)
            label = _check_label(_to_int(row[cols[1]], where, cols[1]), info.num_classes, where, cols[1])
            dme = _to_int(row[cols[2]], where, cols[2])
            name = row[cols[0]]
            path = os.path.join(image_dir, name if os.path.splitext(name)[1] else name + ".jpg")
            items.append(_item(path, label, 1, f"{s}/{name}", where, dme=dme))
    return _finish(items, f"IDRiD {split} label file(s) in {root}", info.layout, missing)


_DEEPDRID = {"train": "regular-fundus-training", "valid": "regular-fundus-validation"}


def load_deepdrid(dataset_dir: str | os.PathLike, split: str = "train", *, missing: str = "error") -> list[dict]:
    """DeepDRiD regular fundus images with the overall quality label.

    On every CSV row exactly one of ``left_eye_DR_Level`` / ``right_eye_DR_Level`` is filled: it gives ``label``
    and ``eye`` (not the file name, which is sometimes wrong, e.g. ``56_r3`` with a left-eye grade). The image path
    is built from ``patient_id`` and ``image_id`` (``Images/<patient_id>/<image_id>.jpg``, falling back to
    ``<patient_id>/<image_id>.jpg``); the CSV's Windows-style ``image_path`` is not used. ``quality`` is
    ``Overall quality`` (0 low, 1 high).

    Args:
        dataset_dir: the repository root, or its ``regular_fundus_images`` folder.
        split: ``"train"``, ``"valid"`` or ``"all"``.
        missing: ``"error"`` or ``"warn"`` for listed images that are absent.

    Returns:
        the datalist with ``patient`` and ``eye``.

    Raises:
        FileNotFoundError: missing folder, CSV or images.
        DatalistError: missing columns, rows with zero or two grades, labels outside 0..4, quality not 0/1.
    """
    info = DATASETS["deepdrid"]
    base = _require_dir(dataset_dir, "DeepDRiD dataset_dir", info.layout)
    sub = os.path.join(base, "regular_fundus_images")
    root = sub if os.path.isdir(sub) else base
    cols = ["patient_id", "image_id", "Overall quality", "left_eye_DR_Level", "right_eye_DR_Level"]
    files = _Files()
    items = []
    for s in _splits(split, info):
        folder = os.path.join(root, _DEEPDRID[s])
        table = _read_csv(os.path.join(folder, f"{_DEEPDRID[s]}.csv"), f"DeepDRiD {s} CSV", info.layout)
        table.require(cols, info.layout)
        for line, row in table.rows:
            where = table.where(line)
            filled = [(eye, row[f"{eye}_eye_DR_Level"]) for eye in ("left", "right") if row[f"{eye}_eye_DR_Level"]]
            if len(filled) != 1:
                raise DatalistError(
                    f"{where}: expected exactly one of left_eye_DR_Level/right_eye_DR_Level to be filled, found "
                    f"{len(filled)} ({dict(filled)})"
                )
            eye, value = filled[0]
            col = f"{eye}_eye_DR_Level"
            label = _check_label(_to_int(value, where, col), info.num_classes, where, col)
            quality = _to_int(row["Overall quality"], where, "Overall quality")
            if quality not in (0, 1):
                raise DatalistError(f"{where}: column 'Overall quality' holds {quality}, expected 0 or 1")
            pid, iid = row["patient_id"], row["image_id"]
            name = iid if os.path.splitext(iid)[1] else iid + ".jpg"
            path = os.path.join(folder, "Images", pid, name)
            if not files.exists(path) and files.exists(os.path.join(folder, pid, name)):
                path = os.path.join(folder, pid, name)
            items.append(_item(path, label, quality, f"{s}/{iid}", where, pid, eye))
    return _finish(items, f"DeepDRiD {split} CSV(s) in {root}", info.layout, missing)


def load_eyeq(
    dataset_dir: str | os.PathLike,
    split: str = "train",
    *,
    image_dir: str | os.PathLike | None = None,
    missing: str = "error",
) -> list[dict]:
    """EyeQ quality labels + EyePACS DR grades: ``Label_EyeQ_<split>.csv`` (``,image,quality,DR_grade``).

    The unnamed first column (pandas index) is ignored. EyeQ quality 0 (Good) and 1 (Usable) become ``quality=1``
    and 2 (Reject) ``quality=0``, the arithmetic that matches QMix's 18.5 % Mis-L; the raw value is kept as
    ``quality_grade``. ``patient`` and ``eye`` come from the file name (``10009_left.jpeg``).

    Args:
        dataset_dir: the folder holding ``data/Label_EyeQ_*.csv`` (or the CSVs directly).
        split: ``"train"``, ``"test"`` or ``"all"``.
        image_dir: folder of the (pre-processed) images; default: the first of ``<dataset_dir>/<split>``,
            ``<dataset_dir>/images``, ``<dataset_dir>`` that holds the first listed image.
        missing: ``"error"`` or ``"warn"`` for listed images that are absent.

    Returns:
        the datalist with ``patient``, ``eye`` and ``quality_grade``.

    Raises:
        FileNotFoundError: missing folder, CSV or images.
        DatalistError: missing columns, labels outside 0..4, quality not 0/1/2, duplicate ids.
    """
    info = DATASETS["eyeq"]
    root = _require_dir(dataset_dir, "EyeQ dataset_dir", info.layout)
    files = _Files()
    items = []
    for s in _splits(split, info):
        name = f"Label_EyeQ_{s}.csv"
        path = _first_existing([os.path.join(root, "data", name), os.path.join(root, name)], "EyeQ CSV", info.layout)
        table = _read_csv(path, f"EyeQ {s} CSV", info.layout)
        table.require(["image", "quality", "DR_grade"], info.layout)
        if not table.rows:
            continue
        if image_dir is not None:
            folder = _require_dir(image_dir, "EyeQ image_dir", info.layout)
        else:
            cands = [os.path.join(root, d) for d in (s, "images", ".")]
            folder = _find_image_dir(cands, table.rows[0][1]["image"], "EyeQ image folder", info.layout)
        for line, row in table.rows:
            where = table.where(line)
            label = _check_label(_to_int(row["DR_grade"], where, "DR_grade"), info.num_classes, where, "DR_grade")
            q = _to_int(row["quality"], where, "quality")
            if q not in (0, 1, 2):
                raise DatalistError(f"{where}: column 'quality' holds {q}, expected 0 (Good), 1 (Usable), 2 (Reject)")
            img = row["image"]
            patient = img.split("_")[0] if _eye_from_name(img) else None
            path = files.resolve(os.path.join(folder, img))
            eye = _eye_from_name(img)
            items.append(_item(path, label, 0 if q == 2 else 1, f"{s}/{img}", where, patient, eye, quality_grade=q))
    return _finish(items, f"EyeQ {split} CSV(s) in {root}", info.layout, missing)


_DRTID = {"train": "a. DR_grade_Training.csv", "test": "b. DR_grade_Testing.csv"}


def load_drtid(
    dataset_dir: str | os.PathLike,
    split: str = "train",
    *,
    label_column: str | None = None,
    image_columns: Sequence[str] | None = None,
    quality_column: str | None = None,
    missing: str = "error",
) -> list[dict]:
    """DRTiD two-field fundus pairs: ``Ground Truths/DR_grade/*.csv`` + ``Original Images/``.

    The CSV columns are not published, so they are detected: ``label_column`` defaults to the first column whose
    name contains "grade", "label" or "level"; ``image_columns`` to every other column whose first value names a
    file found under ``Original Images`` (by name or stem). Each row (a pair) yields one item per image column, all
    with the row's grade, ``patient`` = the pair (first column's value) and ``field`` = the column name.

    Args:
        dataset_dir: the ``DRTiD`` folder or its parent.
        split: ``"train"``, ``"test"`` or ``"all"``.
        label_column: the grade column (auto-detected when ``None``).
        image_columns: the image-name columns (auto-detected when ``None``).
        quality_column: optional quality column (values as in :func:`parse_quality`); else ``quality=-1``.
        missing: ``"error"`` or ``"warn"`` for listed images that are absent.

    Returns:
        the datalist with ``patient`` (pair id) and ``field``.

    Raises:
        FileNotFoundError: missing folder, CSV or images.
        DatalistError: undetectable or missing columns, labels outside 0..4, duplicate ids.
    """
    info = DATASETS["drtid"]
    base = _require_dir(dataset_dir, "DRTiD dataset_dir", info.layout)
    sub = os.path.join(base, "DRTiD")
    root = sub if os.path.isdir(sub) else base
    image_root = _require_dir(os.path.join(root, "Original Images"), "DRTiD image folder", info.layout)
    index = _index_tree(image_root)
    items = []
    for s in _splits(split, info):
        table = _read_csv(os.path.join(root, "Ground Truths", "DR_grade", _DRTID[s]), f"DRTiD {s} CSV", info.layout)
        lab = label_column or next(
            (c for c in table.columns if any(k in c.lower() for k in ("grade", "label", "level"))), None
        )
        if lab is None:
            raise DatalistError(f"{table.path}: no grade column detected among {table.columns}; pass label_column=...")
        first = table.rows[0][1] if table.rows else {}
        imgs = list(image_columns) if image_columns is not None else []
        if image_columns is None:
            imgs = [c for c in table.columns if c != lab and first.get(c) and _lookup(index, first[c])]
        if not imgs:
            raise DatalistError(
                f"{table.path}: no image-name column detected among {table.columns} (no value of the first row names a "
                f"file under {image_root!r}); pass image_columns=[...]"
            )
        table.require([lab, *imgs, *([quality_column] if quality_column else [])], info.layout)
        for line, row in table.rows:
            where = table.where(line)
            label = _check_label(_to_int(row[lab], where, lab), info.num_classes, where, lab)
            quality = parse_quality(row[quality_column], where=where, column=quality_column) if quality_column else -1
            pair = row[table.columns[0]]
            for c in imgs:
                name = row[c]
                path = _lookup(index, name) or os.path.join(image_root, name)
                items.append(_item(path, label, quality, f"{s}/{name}", where, f"{s}/{pair}", field=c))
    return _finish(items, f"DRTiD {split} CSV(s) in {root}", info.layout, missing)


def _glob_csv(root: str, *words: str) -> list[str]:
    out = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        out += [os.path.join(folder, f) for f in sorted(files) if f.lower().endswith(".csv")]
    return [p for p in out if all(w in os.path.basename(p).lower() for w in words)]


def _column(table: _Table, *words: str) -> str:
    for c in table.columns:
        if all(w in c.lower() for w in words):
            return c
    raise DatalistError(f"{table.path}: no column containing {list(words)}; columns found: {table.columns}")


def load_drac(
    dataset_dir: str | os.PathLike,
    split: str = "train",
    *,
    grading_csv: str | os.PathLike | None = None,
    quality_csv: str | os.PathLike | None = None,
    missing: str = "error",
) -> list[dict]:
    """DRAC 2022 DR grading (UW-OCTA, 3 classes NDR/NPDR/PDR) joined with the image-quality task labels.

    Only the training labels were published. The grading CSV (``image name``, ``DR grade``) and the IQA CSV
    (``image name``, ``image quality level``) are found by name under ``dataset_dir``; images are looked up by name
    under the grading task's folders whose path contains "train". IQA level 0 (poor) gives ``quality=0``, 1/2
    ``quality=1``, images absent from the IQA set ``quality=-1``. Images are single-channel: replicate to 3
    channels for RGB backbones.

    Args:
        dataset_dir: the challenge data folder.
        split: ``"train"`` or ``"all"``.
        grading_csv: the grading label CSV (default: the CSV whose name contains "grading" and "train").
        quality_csv: the IQA label CSV (default: the CSV whose name contains "quality" and "train", if any).
        missing: ``"error"`` or ``"warn"`` for listed images that are absent.

    Returns:
        the datalist.

    Raises:
        FileNotFoundError: missing folder, CSV or images.
        DatalistError: ambiguous CSVs, missing columns, labels outside 0..2, duplicate ids.
    """
    info = DATASETS["drac"]
    root = _require_dir(dataset_dir, "DRAC dataset_dir", info.layout)
    _splits(split, info)
    if grading_csv is None:
        found = _glob_csv(root, "grading", "train")
        if len(found) != 1:
            raise (FileNotFoundError if not found else DatalistError)(
                f"DRAC grading CSV: found {len(found)} candidates {found} under {root!r}; pass grading_csv=... . "
                f"Expected layout: {info.layout}"
            )
        grading_csv = found[0]
    table = _read_csv(os.fspath(grading_csv), "DRAC grading CSV", info.layout)
    img_col, lab_col = _column(table, "image"), _column(table, "grade")
    qualities: dict[str, int] = {}
    if quality_csv is None:
        found = _glob_csv(root, "quality", "train")
        quality_csv = found[0] if len(found) == 1 else None
    if quality_csv is not None:
        qt = _read_csv(os.fspath(quality_csv), "DRAC quality CSV", info.layout)
        q_img, q_col = _column(qt, "image"), _column(qt, "quality")
        for line, row in qt.rows:
            level = _to_int(row[q_col], qt.where(line), q_col)
            qualities[row[q_img]] = 0 if level == 0 else 1
    rel = os.path.relpath(os.path.abspath(os.fspath(grading_csv)), root).split(os.sep)
    task_dir = os.path.join(root, rel[0]) if len(rel) > 1 and rel[0] != ".." else root  # the grading task's folder
    index = _index_tree(task_dir, keep=lambda d: "train" in os.path.relpath(d, task_dir).lower())
    items = []
    for line, row in table.rows:
        where = table.where(line)
        label = _check_label(_to_int(row[lab_col], where, lab_col), info.num_classes, where, lab_col)
        name = row[img_col]
        path = _lookup(index, name) or os.path.join(task_dir, name)
        items.append(_item(path, label, qualities.get(name, -1), name, where))
    return _finish(items, table.path, info.layout, missing)
