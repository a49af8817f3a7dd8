# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Tiny datasets in each dataset's real on-disk layout, for the bundle smoke tests.

Built on the file writers of ``tests/data/test_readers.py`` (``write_image``, ``write_text``, ``write_xlsx``,
``make_aptos``): those tests pin each reader's quirks on 1-3 rows; :func:`make_dataset` scales the same layouts
to ``n`` labelled images per split, with every class present and a patient key where the dataset has one, so a
bundle can split, train, validate and evaluate on them.
"""

from __future__ import annotations

import os

from monai_qmix.data import DATASETS
from tests.data.test_readers import make_aptos, write_image, write_text, write_xlsx

__all__ = ["DATASET_MAKERS", "make_dataset"]


def _grades(name: str, n: int, offset: int = 0) -> list[int]:
    k = DATASETS[name].num_classes
    return [(i + offset) % k for i in range(n)]


def _aptos(root: str, n: int, size: int) -> str:
    return make_aptos(root, [(f"img{i:03d}", g) for i, g in enumerate(_grades("aptos", n))])


def _ddr(root: str, n: int, size: int) -> str:
    base = os.path.join(root, "DDR-dataset", "DR_grading")
    for split, m in (("train", n), ("valid", 4), ("test", 5)):
        rows = [(f"{split}-{i:03d}.jpg", g) for i, g in enumerate(_grades("ddr", m))]
        if split == "train":
            rows.append((f"{split}-ungradable.jpg", 5))  # natural Mis-L
        write_text(os.path.join(base, f"{split}.txt"), "".join(f"{f} {g}\n" for f, g in rows))
        for f, _ in rows:
            write_image(os.path.join(base, split, f), size)
    return root


def _eyepacs(root: str, n: int, size: int) -> str:
    rows = [(f"{i // 2}_{'left' if i % 2 == 0 else 'right'}", g) for i, g in enumerate(_grades("eyepacs", n))]
    write_text(os.path.join(root, "trainLabels.csv"), "image,level\n" + "".join(f"{a},{g}\n" for a, g in rows))
    test = [(f"9{i}_left", g) for i, g in enumerate(_grades("eyepacs", 5))]
    write_text(
        os.path.join(root, "retinopathy_solution.csv"),
        "image,level,Usage\n" + "".join(f"{a},{g},Public\n" for a, g in test),
    )
    for a, _ in rows:
        write_image(os.path.join(root, "train", a + ".jpeg"), size)
    for a, _ in test:
        write_image(os.path.join(root, "test", a + ".jpeg"), size)
    return root


def _messidor2(root: str, n: int, size: int) -> str:
    csv = "image_id, adjudicated_dr_grade, adjudicated_dme, adjudicated_gradable\n"
    names = []
    for i, g in enumerate(_grades("messidor2", n)):
        names.append(f"m{i:03d}.{'png' if i % 2 else 'jpg'}")
        csv += f"{names[-1]},{g},0,1\n"
    names.append("ungradable.png")
    csv += "ungradable.png,,,0\n"
    write_text(os.path.join(root, "messidor_data.csv"), csv)
    for f in names:
        write_image(os.path.join(root, "IMAGES", f), size)
    return root


def _idrid(root: str, n: int, size: int) -> str:
    base = os.path.join(root, "B. Disease Grading")
    header = "Image name,Retinopathy grade,Risk of macular edema ,,,\n"
    for _split, csv, folder, m in (
        ("train", "a. IDRiD_Disease Grading_Training Labels.csv", "a. Training Set", n),
        ("test", "b. IDRiD_Disease Grading_Testing Labels.csv", "b. Testing Set", 5),
    ):
        rows = [(f"IDRiD_{i + 1:03d}", g) for i, g in enumerate(_grades("idrid", m))]
        write_text(os.path.join(base, "2. Groundtruths", csv), header + "".join(f"{a},{g},0,,,\n" for a, g in rows))
        for a, _ in rows:
            write_image(os.path.join(base, "1. Original Images", folder, a + ".jpg"), size)
    return root


def _deepdrid(root: str, n: int, size: int) -> str:
    header = "patient_id,image_id,image_path,Overall quality,left_eye_DR_Level,right_eye_DR_Level,"
    header += "patient_DR_Level,Clarity,Field definition,Artifact\n"
    for split, m in (("training", n), ("validation", 6)):
        folder = os.path.join(root, "regular_fundus_images", f"regular-fundus-{split}")
        rows = []
        for i, g in enumerate(_grades("deepdrid", m)):
            p, eye = i // 2 + 1, "l" if i % 2 == 0 else "r"
            img = f"{p}_{eye}1"
            grades = f"{g}," if eye == "l" else f",{g}"
            rows.append(f"{p},{img},\\x\\{p}\\{img}.jpg,{i % 3 and 1},{grades},{g},8,10,0")
            write_image(os.path.join(folder, "Images", str(p), img + ".jpg"), size)
        write_text(os.path.join(folder, f"regular-fundus-{split}.csv"), header + "\n".join(rows) + "\n")
    return root


def _eyeq(root: str, n: int, size: int) -> str:
    for split, m in (("train", n), ("test", 5)):
        rows = [(f"{i // 2 + 100 * (split == 'test')}_{'left' if i % 2 == 0 else 'right'}.jpeg", g)
                for i, g in enumerate(_grades("eyeq", m))]  # fmt: skip
        csv = ",image,quality,DR_grade\n" + "".join(f"{i},{a},{i % 3},{g}\n" for i, (a, g) in enumerate(rows))
        write_text(os.path.join(root, "data", f"Label_EyeQ_{split}.csv"), csv)
        for a, _ in rows:
            write_image(os.path.join(root, split, a), size)
    return root


def _odir(root: str, n: int, size: int) -> str:
    cols = ["ID", "Patient Age", "Patient Sex", "Left-Fundus", "Right-Fundus", "Left-Diagnostic Keywords"]
    cols += ["Right-Diagnostic Keywords", *"NDGCAHMO"]
    words = ["normal fundus", "moderate non proliferative retinopathy", "glaucoma", "cataract"]
    words += ["dry age-related macular degeneration", "hypertensive retinopathy", "pathological myopia", "drusen"]
    rows: list[list[object]] = [cols]
    for p in range((n + 1) // 2):
        left, right = words[(2 * p) % 8], words[(2 * p + 1) % 8]
        if p == 0:
            left = "low image quality"
        flags = [int(w in (left, right)) for w in words]
        rows.append([p, 50, "Male", f"{p}_left.jpg", f"{p}_right.jpg", left, right, *flags])
        for eye in ("left", "right"):
            write_image(os.path.join(root, "Training Images", f"{p}_{eye}.jpg"), size)
    write_xlsx(os.path.join(root, "ODIR-5K_Training_Annotations(Updated)_V2.xlsx"), rows)
    return root


def _drtid(root: str, n: int, size: int) -> str:
    base = os.path.join(root, "DRTiD")
    for split, csv, m in (("train", "a. DR_grade_Training.csv", n), ("test", "b. DR_grade_Testing.csv", 6)):
        rows = [(f"{split}{i}", g) for i, g in enumerate(_grades("drtid", (m + 1) // 2))]
        text = "ID,Grade,Macula,Disc\n" + "".join(f"{i},{g},{i}_m.jpg,{i}_d.jpg\n" for i, g in rows)
        write_text(os.path.join(base, "Ground Truths", "DR_grade", csv), text)
        for i, _ in rows:
            for f in ("m", "d"):
                write_image(os.path.join(base, "Original Images", split, f"{i}_{f}.jpg"), size)
    return root


def _drac(root: str, n: int, size: int) -> str:
    task = os.path.join(root, "C. Diabetic Retinopathy Grading")
    rows = [(f"{i}.png", g) for i, g in enumerate(_grades("drac", n))]
    write_text(
        os.path.join(task, "2. Groundtruths", "a. DRAC2022_ Diabetic Retinopathy Grading_Training Labels.csv"),
        "image name,DR grade\n" + "".join(f"{a},{g}\n" for a, g in rows),
    )
    for a, _ in rows:
        write_image(os.path.join(task, "1. Original Images", "a. Training Set", a), size, mode="L")
    return root


DATASET_MAKERS = {
    "aptos": _aptos,
    "synthetic": _aptos,  # SynthDR is written in APTOS layout
    "ddr": _ddr,
    "eyepacs": _eyepacs,
    "messidor2": _messidor2,
    "idrid": _idrid,
    "deepdrid": _deepdrid,
    "eyeq": _eyeq,
    "odir": _odir,
    "drtid": _drtid,
    "drac": _drac,
}


def make_dataset(name: str, root: str, n: int = 12, size: int = 32) -> str:
    """Write a tiny ``name`` dataset (``n`` labelled training images, plus test splits) under ``root``.

    Returns:
        the folder to pass as ``dataset_dir``.
    """
    os.makedirs(root, exist_ok=True)
    return DATASET_MAKERS[name](root, n, size)
