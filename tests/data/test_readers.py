# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Tests of the dataset readers on tiny generated folders that mimic each dataset's real layout and quirks."""

from __future__ import annotations

import json
import os
import tempfile
import unittest
import warnings
import zipfile
from xml.sax.saxutils import escape

import numpy as np
from parameterized import parameterized
from PIL import Image

from monai_qmix.data.readers import (
    DATASETS,
    READERS,
    UNGRADABLE,
    DatalistError,
    load_datalist,
    parse_quality,
)


def write_image(path: str, size: int = 32, mode: str = "RGB") -> str:
    """Write a tiny image (format from the suffix), creating folders."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    arr = np.random.default_rng(len(path)).integers(0, 255, (size, size, 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    img = img.convert(mode) if mode != "RGB" else img
    img.save(path)
    return path


def write_text(path: str, text: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        f.write(text)
    return path


def write_xlsx(path: str, rows: list[list[object]]) -> str:
    """A minimal .xlsx (first worksheet + shared strings), as Excel writes it, without openpyxl."""
    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    strings: list[str] = []
    xml_rows = []
    for r, row in enumerate(rows, start=1):
        cells = []
        for c, v in enumerate(row):
            ref = f"{chr(65 + c)}{r}"
            if isinstance(v, str):
                strings.append(v)
                cells.append(f'<c r="{ref}" t="s"><v>{len(strings) - 1}</v></c>')
            elif v is not None:
                cells.append(f'<c r="{ref}"><v>{v}</v></c>')
        xml_rows.append(f'<row r="{r}">{"".join(cells)}</row>')
    sheet = (
        f'<?xml version="1.0" encoding="UTF-8"?><worksheet {ns}><sheetData>{"".join(xml_rows)}</sheetData></worksheet>'
    )
    sst = "".join(f"<si><t>{escape(s)}</t></si>" for s in strings)
    shared = f'<?xml version="1.0" encoding="UTF-8"?><sst {ns} count="{len(strings)}">{sst}</sst>'
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("xl/worksheets/sheet1.xml", sheet)
        z.writestr("xl/sharedStrings.xml", shared)
    return path


def make_aptos(root: str, rows: list[tuple[str, int]] | None = None) -> str:
    rows = rows if rows is not None else [("a1", 0), ("b2", 3), ("c3", 4)]
    write_text(os.path.join(root, "train.csv"), "id_code,diagnosis\n" + "".join(f"{i},{g}\n" for i, g in rows))
    for i, _ in rows:
        write_image(os.path.join(root, "train_images", f"{i}.png"))
    return root


class TestAptos(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = make_aptos(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def test_items(self):
        items = load_datalist("aptos", self.root)
        self.assertEqual([it["label"] for it in items], [0, 3, 4])
        self.assertEqual([it["index"] for it in items], [0, 1, 2])
        self.assertEqual({it["quality"] for it in items}, {-1})
        self.assertEqual(items[1]["image"], os.path.join(self.root, "train_images", "b2.png"))
        self.assertTrue(all(os.path.isabs(it["image"]) for it in items))
        self.assertEqual(items, load_datalist("aptos", self.root, "all"))

    def test_missing_dir_and_file(self):
        with self.assertRaisesRegex(FileNotFoundError, "train.csv"):
            load_datalist("aptos", os.path.join(self.root, "nope"))
        os.remove(os.path.join(self.root, "train.csv"))
        with self.assertRaisesRegex(FileNotFoundError, r"train\.csv.*Expected layout"):
            load_datalist("aptos", self.root)

    def test_missing_column(self):
        write_text(os.path.join(self.root, "train.csv"), "id_code,grade\na1,0\n")
        with self.assertRaisesRegex(DatalistError, r"missing column.*'diagnosis'.*found: \['id_code', 'grade'\]"):
            load_datalist("aptos", self.root)

    def test_label_out_of_range(self):
        write_text(os.path.join(self.root, "train.csv"), "id_code,diagnosis\na1,0\nb2,7\n")
        with self.assertRaisesRegex(DatalistError, r"line 3.*'diagnosis'.*label 7.*0\.\.4"):
            load_datalist("aptos", self.root)
        write_text(os.path.join(self.root, "train.csv"), "id_code,diagnosis\na1,x\n")
        with self.assertRaisesRegex(DatalistError, r"line 2.*'x'.*integer"):
            load_datalist("aptos", self.root)

    def test_duplicate_id(self):
        write_text(os.path.join(self.root, "train.csv"), "id_code,diagnosis\na1,0\nb2,1\na1,2\n")
        with self.assertRaisesRegex(DatalistError, r"duplicate id 'a1'.*line 4.*line 2"):
            load_datalist("aptos", self.root)

    def test_absent_images(self):
        os.remove(os.path.join(self.root, "train_images", "b2.png"))
        with self.assertRaisesRegex(FileNotFoundError, r"1 of 3 images.*b2\.png.*line 3.*missing='warn'"):
            load_datalist("aptos", self.root)
        with self.assertWarnsRegex(UserWarning, r"1 of 3 images.*b2\.png.*dropping these 1"):
            items = load_datalist("aptos", self.root, missing="warn")
        self.assertEqual([it["id"] for it in items], ["a1", "c3"])
        self.assertEqual([it["index"] for it in items], [0, 1])
        with self.assertRaisesRegex(ValueError, "missing"):
            load_datalist("aptos", self.root, missing="ignore")

    def test_warn_lists_first_few(self):
        make_aptos(self.root, [(f"x{i}", 0) for i in range(8)] + [("keep", 1)])
        write_text(os.path.join(self.root, "train.csv"), "id_code,diagnosis\n" + "".join(f"m{i},0\n" for i in range(8)))
        with open(os.path.join(self.root, "train.csv"), "a") as f:
            f.write("keep,1\n")
        with self.assertWarnsRegex(UserWarning, r"8 of 9 images.*and 3 more.*dropping these 8"):
            items = load_datalist("aptos", self.root, missing="warn")
        self.assertEqual(len(items), 1)

    def test_empty(self):
        write_text(os.path.join(self.root, "train.csv"), "id_code,diagnosis\n")
        with self.assertRaisesRegex(DatalistError, "no samples listed"):
            load_datalist("aptos", self.root)
        write_text(os.path.join(self.root, "train.csv"), "")
        with self.assertRaisesRegex(DatalistError, "empty"):
            load_datalist("aptos", self.root)

    def test_bad_name_and_split(self):
        with self.assertRaises(ValueError):
            load_datalist("aptoz", self.root)
        with self.assertRaises(ValueError):
            load_datalist("aptos", self.root, split="valid")


class TestDDR(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = os.path.join(self.tmp.name, "DDR-dataset", "DR_grading")
        lists = {"train": [("007-0004-000.jpg", 2), ("007-0005-000.jpg", 5)], "valid": [("v1.jpg", 0)], "test": []}
        lists["test"] = [("t1.jpg", 4)]
        for split, rows in lists.items():
            # stray whitespace and a blank line: parse with split()
            write_text(os.path.join(self.root, f"{split}.txt"), "".join(f"{n}  {g} \n" for n, g in rows) + "\n")
            for n, _ in rows:
                write_image(os.path.join(self.root, split, n))

    def tearDown(self):
        self.tmp.cleanup()

    def test_layouts_and_ungradable(self):
        for d in (self.tmp.name, os.path.dirname(self.root), self.root):
            items = load_datalist("ddr", d)
            self.assertEqual([(it["label"], it["quality"]) for it in items], [(2, 1), (UNGRADABLE, 0)])
        self.assertEqual(items[0]["id"], "train/007-0004-000.jpg")
        gradable = load_datalist("ddr", self.tmp.name, include_ungradable=False)
        self.assertEqual([it["id"] for it in gradable], ["train/007-0004-000.jpg"])

    def test_all(self):
        items = load_datalist("ddr", self.tmp.name, "all")
        self.assertEqual([it["id"].split("/")[0] for it in items], ["train", "train", "valid", "test"])
        self.assertEqual([it["index"] for it in items], [0, 1, 2, 3])

    def test_errors(self):
        write_text(os.path.join(self.root, "valid.txt"), "v1.jpg\n")
        with self.assertRaisesRegex(DatalistError, r"valid\.txt, line 1.*'<name>\.jpg <grade>'"):
            load_datalist("ddr", self.tmp.name, "valid")
        write_text(os.path.join(self.root, "valid.txt"), "v1.jpg 6\n")
        with self.assertRaisesRegex(DatalistError, r"label 6"):
            load_datalist("ddr", self.tmp.name, "valid")
        with self.assertRaisesRegex(FileNotFoundError, "DR_grading"):
            load_datalist("ddr", os.path.join(self.root, "train"))


class TestEyePACS(unittest.TestCase):
    def test_patient_eye_and_test_split(self):
        with tempfile.TemporaryDirectory() as root:
            write_text(os.path.join(root, "trainLabels.csv"), "image,level\n10_left,0\n10_right,2\n13_left,4\n")
            write_text(os.path.join(root, "retinopathy_solution.csv"), "image,level,Usage\n1_left,1,Public\n")
            for n in ("10_left", "10_right", "13_left"):
                write_image(os.path.join(root, "train", n + ".jpeg"))
            write_image(os.path.join(root, "test", "1_left.jpeg"))
            items = load_datalist("eyepacs", root)
            self.assertEqual(
                [(it["patient"], it["eye"], it["label"]) for it in items][:2], [("10", "left", 0), ("10", "right", 2)]
            )
            items = load_datalist("eyepacs", root, "all")
            self.assertEqual(len(items), 4)
            self.assertEqual(items[-1]["id"], "test/1_left")
            with self.assertRaisesRegex(FileNotFoundError, "EyePACS test image folder"):
                os.rename(os.path.join(root, "test"), os.path.join(root, "tst"))
                load_datalist("eyepacs", root, "test")


class TestMessidor2(unittest.TestCase):
    def test_mixed_extensions_gradable_and_exams(self):
        with tempfile.TemporaryDirectory() as root:
            csv = "image_id, adjudicated_dr_grade, adjudicated_dme, adjudicated_gradable\n"
            csv += "a_PP.png,0,0,1\nb_PP.jpg,3,1,1\nc_PP.png,,,0\n"
            write_text(os.path.join(root, "messidor_data.csv"), csv)
            write_image(os.path.join(root, "IMAGES", "a_PP.png"))
            write_image(os.path.join(root, "IMAGES", "b_PP.JPG"))  # extension differs in case
            write_image(os.path.join(root, "IMAGES", "c_PP.tif"))  # listed as .png, stored as .tif
            write_text(os.path.join(root, "messidor-2.csv"), "a_PP.png;b_PP.jpg\nc_PP.png;d.png\n")
            items = load_datalist("messidor2", root)
            self.assertEqual([os.path.basename(it["image"]) for it in items], ["a_PP.png", "b_PP.JPG", "c_PP.tif"])
            self.assertEqual(
                [(it["label"], it["quality"], it["dme"]) for it in items], [(0, 1, 0), (3, 1, 1), (-1, 0, -1)]
            )
            self.assertEqual([it["patient"] for it in items], ["a_PP", "a_PP", "c_PP"])
            self.assertEqual(len(load_datalist("messidor2", root, include_ungradable=False)), 2)
            write_text(os.path.join(root, "messidor_data.csv"), csv.replace("b_PP.jpg,3", "b_PP.jpg,"))
            with self.assertRaisesRegex(DatalistError, "gradable image 'b_PP.jpg' has no adjudicated_dr_grade"):
                load_datalist("messidor2", root)


class TestIDRiD(unittest.TestCase):
    def test_trailing_space_header_and_shared_names(self):
        with tempfile.TemporaryDirectory() as tmp:
            root = os.path.join(tmp, "B. Disease Grading")
            gt = os.path.join(root, "2. Groundtruths")
            header = "Image name,Retinopathy grade,Risk of macular edema ,,,\n"
            write_text(
                os.path.join(gt, "a. IDRiD_Disease Grading_Training Labels.csv"),
                header + "IDRiD_001,3,2,,,\nIDRiD_002,0,0,,,\n,,,,,\n",
            )
            write_text(os.path.join(gt, "b. IDRiD_Disease Grading_Testing Labels.csv"), header + "IDRiD_001,4,1,,,\n")
            for s, n in (
                ("a. Training Set", "IDRiD_001"),
                ("a. Training Set", "IDRiD_002"),
                ("b. Testing Set", "IDRiD_001"),
            ):
                write_image(os.path.join(root, "1. Original Images", s, n + ".jpg"))
            items = load_datalist("idrid", tmp, "all")
            self.assertEqual([it["id"] for it in items], ["train/IDRiD_001", "train/IDRiD_002", "test/IDRiD_001"])
            self.assertEqual(
                [(it["label"], it["dme"], it["quality"]) for it in items], [(3, 2, 1), (0, 0, 1), (4, 1, 1)]
            )
            self.assertEqual(len(load_datalist("idrid", root, "test")), 1)


class TestDeepDRiD(unittest.TestCase):
    def test_empty_eye_column_per_row(self):
        with tempfile.TemporaryDirectory() as tmp:
            folder = os.path.join(tmp, "regular_fundus_images", "regular-fundus-training")
            header = "patient_id,image_id,image_path,Overall quality,left_eye_DR_Level,right_eye_DR_Level,"
            header += "patient_DR_Level,Clarity,Field definition,Artifact\n"
            rows = [
                "1,1_l1,\\regular-fundus-training\\1\\1_l1.jpg,1,2,,2,10,10,0",
                "1,1_r1,\\regular-fundus-training\\1\\1_r1.jpg,0,,1,2,4,10,0",
                "56,56_r3,\\regular-fundus-training\\56\\56_r3.jpg,1,3,,3,8,10,0",
            ]
            write_text(os.path.join(folder, "regular-fundus-training.csv"), header + "\n".join(rows) + "\n")
            for p, i in (("1", "1_l1"), ("1", "1_r1"), ("56", "56_r3")):
                write_image(os.path.join(folder, "Images", p, i + ".jpg"))
            items = load_datalist("deepdrid", tmp)
            got = [(it["patient"], it["eye"], it["label"], it["quality"]) for it in items]
            self.assertEqual(
                got, [("1", "left", 2, 1), ("1", "right", 1, 0), ("56", "left", 3, 1)]
            )  # 56_r3: left grade
            self.assertIn(os.path.join("Images", "56", "56_r3.jpg"), items[2]["image"])
            write_text(
                os.path.join(folder, "regular-fundus-training.csv"),
                header + rows[0].replace(",2,,2,", ",2,1,2,") + "\n",
            )
            with self.assertRaisesRegex(DatalistError, r"line 2: expected exactly one of left_eye_DR_Level"):
                load_datalist("deepdrid", tmp)
            with self.assertRaisesRegex(FileNotFoundError, "regular-fundus-validation"):
                load_datalist("deepdrid", tmp, "valid")


class TestEyeQ(unittest.TestCase):
    def test_unnamed_index_and_quality(self):
        with tempfile.TemporaryDirectory() as root:
            csv = ",image,quality,DR_grade\n0,10009_left.jpeg,0,0\n1,10009_right.jpeg,2,1\n2,11_left.jpeg,1,4\n"
            write_text(os.path.join(root, "data", "Label_EyeQ_train.csv"), csv)
            for n in ("10009_left", "10009_right", "11_left"):
                write_image(os.path.join(root, "train", n + ".jpeg"))
            items = load_datalist("eyeq", root)
            self.assertEqual(
                [(it["quality"], it["quality_grade"], it["label"]) for it in items], [(1, 0, 0), (0, 2, 1), (1, 1, 4)]
            )
            self.assertEqual((items[1]["patient"], items[1]["eye"]), ("10009", "right"))
            self.assertEqual(load_datalist("eyeq", root, image_dir=os.path.join(root, "train")), items)
            with self.assertRaisesRegex(FileNotFoundError, "image_dir"):
                load_datalist("eyeq", root, image_dir=os.path.join(root, "nope"))
            write_text(
                os.path.join(root, "data", "Label_EyeQ_train.csv"), csv.replace("11_left.jpeg,1", "11_left.jpeg,3")
            )
            with self.assertRaisesRegex(DatalistError, r"line 4.*'quality' holds 3"):
                load_datalist("eyeq", root)


class TestODIR(unittest.TestCase):
    def test_xlsx_keywords(self):
        with tempfile.TemporaryDirectory() as root:
            cols = ["ID", "Patient Age", "Patient Sex", "Left-Fundus", "Right-Fundus", "Left-Diagnostic Keywords"]
            cols += ["Right-Diagnostic Keywords", *"NDGCAHMO"]
            rows = [
                cols,
                [0, 69, "Female", "0_left.jpg", "0_right.jpg", "cataract", "normal fundus", 0, 0, 0, 1, 0, 0, 0, 0],
                [
                    1,
                    57,
                    "Male",
                    "1_left.jpg",
                    "1_right.jpg",
                    "normal fundus，lens dust",
                    "moderate non proliferative retinopathy，drusen",
                    0,
                    1,
                    0,
                    0,
                    0,
                    0,
                    0,
                    1,
                ],
                [
                    2,
                    40,
                    "Male",
                    "2_left.jpg",
                    "2_right.jpg",
                    "low image quality",
                    "pathological myopia",
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    1,
                    0,
                ],
            ]
            write_xlsx(os.path.join(root, "ODIR-5K_Training_Annotations(Updated)_V2.xlsx"), rows)
            for i in range(3):
                for eye in ("left", "right"):
                    write_image(os.path.join(root, "Training Images", f"{i}_{eye}.jpg"))
            items = load_datalist("odir", root)
            got = [(it["patient"], it["eye"], it["label"], it["quality"]) for it in items]
            c = "NDGCAHMO".index
            expected = [("0", "left", c("C"), 1), ("0", "right", c("N"), 1), ("1", "left", c("N"), 0)]
            expected += [("1", "right", c("D"), 1), ("2", "left", UNGRADABLE, 0), ("2", "right", c("M"), 1)]
            self.assertEqual(got, expected)
            self.assertEqual(items[3]["labels"], [0, 1, 0, 0, 0, 0, 0, 1])  # D + O (drusen)
            self.assertEqual(len(load_datalist("odir", root, include_ungradable=False)), 5)
            with self.assertRaisesRegex(DatalistError, "missing column"):
                write_xlsx(os.path.join(root, "bad.xlsx"), [["ID", "Left-Fundus"], [0, "0_left.jpg"]])
                load_datalist("odir", root, annotation_file=os.path.join(root, "bad.xlsx"))


class TestDRTiDAndDRAC(unittest.TestCase):
    def test_drtid_pairs(self):
        with tempfile.TemporaryDirectory() as tmp:
            root = os.path.join(tmp, "DRTiD")
            write_text(
                os.path.join(root, "Ground Truths", "DR_grade", "a. DR_grade_Training.csv"),
                "ID,Grade,Macula,Disc\n1,2,1_m.jpg,1_d.jpg\n2,0,2_m.jpg,2_d.jpg\n",
            )
            for n in ("1_m", "1_d", "2_m", "2_d"):
                write_image(os.path.join(root, "Original Images", "sub", n + ".jpg"))
            items = load_datalist("drtid", tmp)
            self.assertEqual(
                [(it["patient"], it["field"], it["label"]) for it in items],
                [("train/1", "Macula", 2), ("train/1", "Disc", 2), ("train/2", "Macula", 0), ("train/2", "Disc", 0)],
            )
            write_text(
                os.path.join(root, "Ground Truths", "DR_grade", "b. DR_grade_Testing.csv"), "ID,Grade,Note\n1,2,x\n"
            )
            with self.assertRaisesRegex(
                DatalistError, r"no image-name column detected among \['ID', 'Grade', 'Note'\]"
            ):
                load_datalist("drtid", tmp, "test")

    def test_drac_quality_join(self):
        with tempfile.TemporaryDirectory() as root:
            task = os.path.join(root, "C. Diabetic Retinopathy Grading")
            write_text(
                os.path.join(task, "2. Groundtruths", "a. DRAC2022_ Diabetic Retinopathy Grading_Training Labels.csv"),
                "image name,DR grade\n1.png,0\n2.png,2\n3.png,1\n",
            )
            iqa = os.path.join(root, "B. Image Quality Assessment", "2. Groundtruths")
            write_text(
                os.path.join(iqa, "a. DRAC2022_ Image Quality Assessment_Training Labels.csv"),
                "image name,image quality level\n1.png,0\n2.png,2\n",
            )
            for n in ("1", "2", "3"):
                write_image(os.path.join(task, "1. Original Images", "a. Training Set", n + ".png"), mode="L")
            items = load_datalist("drac", root)
            self.assertEqual([(it["label"], it["quality"]) for it in items], [(0, 0), (2, 1), (1, -1)])
            self.assertEqual(DATASETS["drac"].num_classes, 3)


class TestCSV(unittest.TestCase):
    def test_generic(self):
        with tempfile.TemporaryDirectory() as root:
            csv = "image,label,quality,patient,fold\nimg/a.png,0,Good,p1,train\nimg/b,1,Reject,p1,val\n"
            csv += "img/c.png,4,usable,p2,train\n"
            write_text(os.path.join(root, "labels.csv"), csv)
            for n in ("a", "b", "c"):
                write_image(os.path.join(root, "img", n + ".png"))
            items = load_datalist("csv", root)
            self.assertEqual(
                [(it["label"], it["quality"], it["patient"]) for it in items],
                [(0, 1, "p1"), (1, 0, "p1"), (4, 1, "p2")],
            )
            self.assertTrue(items[1]["image"].endswith("b.png"))  # extension inferred
            self.assertEqual(load_datalist("csv", os.path.join(root, "labels.csv")), items)
            val = load_datalist("csv", root, "val", split_column="fold")
            self.assertEqual([it["id"] for it in val], ["img/b"])
            with self.assertRaisesRegex(ValueError, "split_column"):
                load_datalist("csv", root, "val")
            with self.assertRaisesRegex(DatalistError, r"line 4.*label 4.*0\.\.2"):
                load_datalist("csv", root, num_classes=3)
            with self.assertRaisesRegex(DatalistError, r"missing column.*'grade'.*found"):
                load_datalist("csv", root, label_column="grade")
            with self.assertRaisesRegex(FileNotFoundError, "b'"):
                load_datalist("csv", root, extension=None)

    def test_image_dir_and_quality_map(self):
        with tempfile.TemporaryDirectory() as root:
            write_text(os.path.join(root, "meta", "l.csv"), "file,grade,q\nx,1,2\ny,0,0\n")
            for n in ("x", "y"):
                write_image(os.path.join(root, "pics", n + ".jpg"))
            kw = {"csv_file": "l.csv", "image_column": "file", "label_column": "grade", "quality_column": "q"}
            items = load_datalist(
                "csv",
                os.path.join(root, "meta"),
                image_dir=os.path.join(root, "pics"),
                extension=".jpg",
                quality_map={0: 1, 1: 1, 2: 0},
                **kw,
            )
            self.assertEqual([it["quality"] for it in items], [0, 1])
            with self.assertRaisesRegex(DatalistError, r"line 2.*quality '2'"):
                load_datalist("csv", os.path.join(root, "meta"), image_dir=os.path.join(root, "pics"), **kw)

    def test_json(self):
        with tempfile.TemporaryDirectory() as root:
            write_image(os.path.join(root, "i", "a.png"))
            write_image(os.path.join(root, "i", "b.png"))
            data = {
                "train": [
                    {"image": "i/a.png", "label": 1, "index": 5},
                    {"image": "i/b.png", "label": 0, "patient": "7"},
                ],
                "prepare": {},
            }
            write_text(os.path.join(root, "datalist.json"), json.dumps(data))
            with self.assertWarnsRegex(UserWarning, "re-numbered"):
                items = load_datalist("json", root)
            self.assertEqual(
                [(it["index"], it["quality"], it.get("patient")) for it in items], [(0, -1, None), (1, -1, "7")]
            )
            with self.assertRaisesRegex(DatalistError, r"no split 'valid'; splits found: \['train'\]"):
                load_datalist("json", root, "valid")


class TestParseQuality(unittest.TestCase):
    @parameterized.expand(
        [("1", 1), ("0", 0), ("-1", -1), ("1.0", 1), ("Good", 1), ("usable", 1), ("REJECT", 0), ("", -1)]
    )
    def test_values(self, value, expected):
        self.assertEqual(parse_quality(value), expected)

    def test_bad(self):
        with self.assertRaisesRegex(DatalistError, "quality '2'"):
            parse_quality("2")
        self.assertEqual(parse_quality("2", {2: 0}), 0)

    def test_registry(self):
        self.assertEqual(set(READERS), {*DATASETS, "csv", "json"})
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            self.assertEqual(DATASETS["ddr"].num_classes, 5)


if __name__ == "__main__":
    unittest.main()
