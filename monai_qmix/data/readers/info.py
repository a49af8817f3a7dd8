# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Dataset facts shared by the readers, bundles and error messages (one table), and the label constants."""

from __future__ import annotations

from dataclasses import dataclass

UNGRADABLE = -1
QUALITY_HIGH, QUALITY_LOW, QUALITY_UNKNOWN = 1, 0, -1
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
MISSING_MODES = ("error", "warn")
DR_GRADES = ("No DR", "Mild NPDR", "Moderate NPDR", "Severe NPDR", "PDR")
ODIR_CLASSES = ("N", "D", "G", "C", "A", "H", "M", "O")


class DatalistError(ValueError):
    """A label file exists but its content does not match the expected layout (columns, values, ids, files)."""


@dataclass(frozen=True)
class DatasetInfo:
    """Facts about one dataset that readers, bundles and error messages share.

    Attributes:
        name: reader name for :func:`load_datalist`.
        classes: class names, ``label`` indexes into them.
        splits: concrete split names in index order; ``"all"`` concatenates them.
        layout: the on-disk layout the reader expects (quoted in error messages).
        quality: where ``quality`` comes from.
        modality: image modality.
    """

    name: str
    classes: tuple[str, ...]
    splits: tuple[str, ...]
    layout: str
    quality: str
    modality: str = "colour fundus photograph"

    @property
    def num_classes(self) -> int:
        """Number of classes of the task the reader returns."""
        return len(self.classes)


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            "aptos",
            DR_GRADES,
            ("train",),
            "<dataset_dir>/train.csv (columns id_code,diagnosis) and <dataset_dir>/train_images/<id_code>.png",
            "none (-1)",
        ),
        DatasetInfo(
            "ddr",
            DR_GRADES,
            ("train", "valid", "test"),
            "<dataset_dir>[/DDR-dataset]/DR_grading/{train,valid,test}.txt (lines '<name>.jpg <grade>') and "
            "DR_grading/{train,valid,test}/<name>.jpg",
            "grade 5 (ungradable) -> quality 0, label -1; other images quality 1",
        ),
        DatasetInfo(
            "eyepacs",
            DR_GRADES,
            ("train", "test"),
            "<dataset_dir>/trainLabels.csv (columns image,level) + train/<image>.jpeg; "
            "retinopathy_solution.csv (image,level,Usage) + test/<image>.jpeg",
            "none (-1)",
        ),
        DatasetInfo(
            "messidor2",
            DR_GRADES,
            ("train",),
            "<dataset_dir>/messidor_data.csv (columns image_id,adjudicated_dr_grade,adjudicated_dme,"
            "adjudicated_gradable) and <dataset_dir>/IMAGES/<image> (mixed extensions); optional messidor-2.csv "
            "(exam pairs) for the patient key",
            "adjudicated_gradable (0 -> quality 0)",
        ),
        DatasetInfo(
            "idrid",
            DR_GRADES,
            ("train", "test"),
            "<dataset_dir>[/B. Disease Grading]/2. Groundtruths/{a. IDRiD_Disease Grading_Training Labels.csv,"
            "b. IDRiD_Disease Grading_Testing Labels.csv} (columns 'Image name','Retinopathy grade','Risk of macular "
            "edema') and 1. Original Images/{a. Training Set,b. Testing Set}/<Image name>.jpg",
            "all images verified adequate (1)",
        ),
        DatasetInfo(
            "deepdrid",
            DR_GRADES,
            ("train", "valid"),
            "<dataset_dir>[/regular_fundus_images]/regular-fundus-{training,validation}/"
            "regular-fundus-{training,validation}.csv (columns patient_id,image_id,Overall quality,"
            "left_eye_DR_Level,right_eye_DR_Level, ...) and regular-fundus-*/Images/<patient_id>/<image_id>.jpg",
            "Overall quality (0 -> quality 0)",
        ),
        DatasetInfo(
            "eyeq",
            DR_GRADES,
            ("train", "test"),
            "<dataset_dir>[/data]/Label_EyeQ_{train,test}.csv (columns ,image,quality,DR_grade) and the "
            "images in image_dir (default: the first of <dataset_dir>/{<split>,images,.} holding them)",
            "quality 0 Good / 1 Usable -> 1, 2 Reject -> 0 (raw value kept as quality_grade)",
        ),
        DatasetInfo(
            "odir",
            ODIR_CLASSES,
            ("train",),
            "<dataset_dir>/<annotation>.xlsx or .csv (columns ID,Left-Fundus,Right-Fundus,Left-Diagnostic Keywords,"
            "Right-Diagnostic Keywords) and the images in image_dir (default: the first of <dataset_dir>/"
            "{Training Images,Training Set/Images,ODIR-5K/Training Images,Images,images,.} holding them)",
            "per-eye quality keywords (ODIR_QUALITY_KEYWORDS) -> 0, otherwise 1",
        ),
        DatasetInfo(
            "drtid",
            DR_GRADES,
            ("train", "test"),
            "<dataset_dir>[/DRTiD]/Ground Truths/DR_grade/{a. DR_grade_Training.csv,b. DR_grade_Testing.csv} "
            "(a grade column and one or two image-name columns) and Original Images/**/<name>",
            "none (-1) unless quality_column is given (released images are all gradable)",
        ),
        DatasetInfo(
            "drac",
            ("NDR", "NPDR", "PDR"),
            ("train",),
            "<dataset_dir>/**/*Grading*Training*Labels*.csv (columns 'image name','DR grade') with the images under "
            "the same task folder (**/*Training*/<image name>); optional **/*Quality*Training*Labels*.csv "
            "('image name','image quality level')",
            "IQA level 0 (poor) -> 0, 1/2 -> 1, not in the IQA set -> -1",
            modality="ultra-wide OCT angiography (single channel)",
        ),
    )
}
