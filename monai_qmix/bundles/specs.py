# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Per-dataset parameters of the rendered bundles: one row per ``bundles/qmix_<name>/`` (the only dataset facts
that the bundle template needs besides :data:`monai_qmix.data.DATASETS`, which holds classes and layouts).

Ω(0) / λ_c come from the official presets (:data:`monai_qmix.losses.QMIX_PRESETS`); datasets that QMix did not use
(APTOS, EyePACS, Messidor-2, IDRiD, SynthDR) take the ``default`` preset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["BundleSpec", "BUNDLE_SPECS", "SYNTHETIC_COMMAND", "QMIX_REFERENCE"]

#: The README's main command; quoted in every "dataset not found" message.
SYNTHETIC_COMMAND = "python -m monai.bundle run --config_file bundles/qmix_synthetic/configs/train.json"

QMIX_REFERENCE = (
    "Hou J, et al. QMix: Quality-aware Learning with Mixed Noise for Robust Retinal Disease Diagnosis. "
    "IEEE Transactions on Medical Imaging, 2025. arXiv:2404.05169"
)


@dataclass(frozen=True)
class BundleSpec:
    """What differs between two bundles.

    Attributes:
        name: bundle suffix (``bundles/qmix_<name>``) and reader name of :func:`monai_qmix.data.load_datalist`.
        title: human-readable dataset name.
        download: where to download the dataset.
        licence: the dataset's licence / terms (the bundle's own code is Apache-2.0).
        preset: name of the Ω(0) / λ_c preset of :data:`monai_qmix.losses.QMIX_PRESETS`.
        eval_split: reader split used by ``evaluate.json`` (``None``: the held-out validation part of ``train``).
        reference: the dataset's citation.
        used_by_qmix: whether the QMix paper used it (its results are quoted in the README when so).
        notes: extra README lines (gotchas).
        overrides: template values replaced for this bundle (e.g. the synthetic bundle's CPU defaults).
    """

    name: str
    title: str
    download: str
    licence: str
    preset: str = "default"
    eval_split: str | None = None
    reference: str = ""
    used_by_qmix: bool = False
    notes: tuple[str, ...] = ()
    overrides: dict[str, Any] = field(default_factory=dict)


BUNDLE_SPECS: dict[str, BundleSpec] = {
    s.name: s
    for s in (
        BundleSpec(
            "synthetic",
            "SynthDR (procedural, licence-free DR grading set generated on first run)",
            "generated locally by monai_qmix.data.generate_synthdr (nothing to download)",
            "generated data: no restriction (CC0)",
            reference="monai_qmix.data.synthetic (procedural fundus renderer, APTOS layout)",
            notes=(
                "On the first run the SynthDR images are generated into `dataset_dir` (default "
                "`<bundle_root>/data/synthdr`) unless that folder already holds a `train.csv`.",
                "The defaults are small CPU settings (see the table); they finish in a few minutes on 2 cores.",
            ),
            overrides={
                "image_size": 96,
                "batch_size": 16,
                "epochs": 8,
                "warmup_epochs": 3,
                "network": "small_cnn",
                "lr": 0.002,
                "num_workers": 2,
                "num_threads": 1,
                "normalization": "per_image",
                "synthdr_num": 800,
                "synthdr_size": 96,
                "val_fraction": 0.2,
            },
        ),
        BundleSpec(
            "aptos",
            "APTOS 2019 Blindness Detection",
            "https://www.kaggle.com/competitions/aptos2019-blindness-detection/data",
            "Kaggle competition rules (no redistribution)",
            reference="APTOS 2019 Blindness Detection, Asia Pacific Tele-Ophthalmology Society, Kaggle 2019",
        ),
        BundleSpec(
            "ddr",
            "DDR (DR grading part)",
            "https://github.com/nkicsl/DDR-dataset (Google Drive / Baidu links in the README)",
            "see the DDR download page (repository code is MIT)",
            preset="ddr_sym_L15_H20",
            eval_split="test",
            reference="Li T, et al. Diagnostic assessment of deep learning algorithms for diabetic retinopathy "
            "screening. Information Sciences 2019;501:511-522",
            used_by_qmix=True,
            notes=(
                "Grade 5 (ungradable) images are natural Mis-L: they get a uniformly random grade for training "
                "(as the official QMix code) and are left out of validation and evaluation.",
                "The paper's settings add synthetic noise: e.g. `--noise_preset ddr_sym_L15_H50 --omega0 0.3 "
                "--lambda_c 0.01` (presets: `monai_qmix.losses.QMIX_PRESETS`).",
            ),
        ),
        BundleSpec(
            "eyepacs",
            "EyePACS (Kaggle Diabetic Retinopathy Detection 2015)",
            "https://www.kaggle.com/competitions/diabetic-retinopathy-detection/data",
            "Kaggle competition rules (no redistribution)",
            eval_split="test",
            reference="Cuadros J, Bresnick G. EyePACS: an adaptable telemedicine system for diabetic retinopathy "
            "screening. J Diabetes Sci Technol 2009;3(3):509-516",
        ),
        BundleSpec(
            "messidor2",
            "Messidor-2 (with the adjudicated grades of Krause et al.)",
            "https://www.adcis.net/en/third-party/messidor2/ (grades: "
            "https://www.kaggle.com/datasets/google-brain/messidor2-dr-grades)",
            "ADCIS / LaTIM licence (no redistribution)",
            reference="Decencière E, et al. Feedback on a publicly distributed image database: the Messidor "
            "database. Image Anal Stereol 2014;33(3):231-234",
            notes=("Ungradable images (`adjudicated_gradable = 0`) are Mis-L with a random training grade.",),
        ),
        BundleSpec(
            "idrid",
            "IDRiD (B. Disease Grading)",
            "https://ieee-dataport.org/open-access/indian-diabetic-retinopathy-image-dataset-idrid",
            "IEEE DataPort open access (CC BY 4.0, unverified)",
            eval_split="test",
            reference="Porwal P, et al. Indian Diabetic Retinopathy Image Dataset (IDRiD). Data 2018;3(3):25",
        ),
        BundleSpec(
            "deepdrid",
            "DeepDRiD (regular fundus images)",
            "https://github.com/deepdrdoc/DeepDRiD",
            "no licence file in the repository; cite the challenge paper",
            preset="deepdrid",
            eval_split="valid",
            reference="Liu R, et al. DeepDRiD: Diabetic Retinopathy-Grading and Image Quality Estimation "
            "Challenge. Patterns 2022;3(6):100512",
            used_by_qmix=True,
        ),
        BundleSpec(
            "eyeq",
            "EyeQ (EyePACS subset with quality labels)",
            "labels: https://github.com/HzFu/EyeQ ; images: "
            "https://www.kaggle.com/competitions/diabetic-retinopathy-detection/data",
            "labels CC BY-NC-SA 4.0 (non-commercial); images under the Kaggle EyePACS terms",
            preset="eyeq",
            eval_split="test",
            reference="Fu H, et al. Evaluation of Retinal Image Quality Assessment Networks in Different "
            "Color-spaces. MICCAI 2019",
            used_by_qmix=True,
        ),
        BundleSpec(
            "odir",
            "OIA-ODIR (ODIR-5K)",
            "https://github.com/nkicsl/OIA-ODIR (Google Drive / Baidu links in the README)",
            "see the ODIR download page; research use",
            preset="odir",
            reference="Li N, et al. A Benchmark of Ocular Disease Intelligent Recognition: One Shot for "
            "Multi-disease Detection. BenchCouncil 2020",
            used_by_qmix=True,
            notes=(
                "Single label per eye (N, D, G, C, A, H, M, O) from the keywords; QWK is not meaningful for "
                "these unordered classes, so the key metric is macro-F1 (`key_metric`).",
                "Eyes described only by quality keywords are Mis-L with a random training label.",
                "Reading the .xlsx annotation needs `openpyxl` (or convert it to .csv).",
            ),
            overrides={"key_metric": "macro_f1"},
        ),
        BundleSpec(
            "drtid",
            "DRTiD (two-field fundus images)",
            "https://github.com/FDU-VTS/DRTiD (application form, then a download link)",
            "research use only; cite the paper",
            preset="drtid",
            eval_split="test",
            reference="Hou J, et al. Cross-Field Transformer for Diabetic Retinopathy Grading on Two-field Fundus "
            "Images. IEEE BIBM 2022:985-990",
            used_by_qmix=True,
            notes=("Each field image is one sample; both fields of a pair share the patient key (same split).",),
        ),
        BundleSpec(
            "drac",
            "DRAC 2022 (DR grading task, UW-OCTA)",
            "https://drac22.grand-challenge.org/",
            "DRAC 2022 challenge terms (registration required)",
            preset="drac",
            reference="Qian B, et al. DRAC 2022: A public benchmark for diabetic retinopathy analysis on "
            "ultra-wide optical coherence tomography angiography images. Patterns 2024",
            used_by_qmix=True,
            notes=(
                "UW-OCTA, not colour fundus: the single channel is replicated to RGB; the fundus normalisation "
                "statistics are kept for simplicity (override `norm_mean` / `norm_std`).",
            ),
        ),
    )
}
