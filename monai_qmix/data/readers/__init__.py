# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Readers that turn retinal datasets, in the layout in which they are distributed, into MONAI datalists.

Every reader returns a list of dicts (a MONAI datalist)::

    {"image": "/abs/path.png", "label": 2, "index": 0, "quality": 1, "id": "train/xyz", "patient": "17", "eye": "left"}

* ``image``: absolute path of the file.
* ``label``: the class index, or :data:`UNGRADABLE` (``-1``) for images that have no grade (DDR grade 5,
  Messidor-2 ungradable, ODIR eyes described by quality keywords only); those are only returned when the
  reader's ``include_ungradable`` option is true (its default: nothing is dropped silently). Give them a grade
  (e.g. the mixed-noise builder's random grades) or pass ``include_ungradable=False`` before plain supervised
  training or evaluation.
* ``index``: ``0 .. N-1``, the position in the returned list. The order is the order of the rows of the dataset's
  label file(s) as distributed (splits concatenated in the order of :attr:`DatasetInfo.splits` for
  ``split="all"``), so it is stable as long as the label files and the options are unchanged.
* ``quality``: ``1`` high, ``0`` low, ``-1`` unknown.
* ``id``: the dataset's own sample id (prefixed with the split where names repeat across splits), unique.
* ``patient`` / ``eye`` (``"left"``/``"right"``): only where the dataset provides them.

Errors name the file, the row (``line N``) or column and the expected layout: a missing folder or label file raises
``FileNotFoundError``; everything wrong inside a label file raises :class:`DatalistError` (a ``ValueError``).
Images listed but absent raise by default; ``missing="warn"`` drops them explicitly with a warning that counts
them and lists the first few.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from monai_qmix.data.readers._core import _choice, parse_quality
from monai_qmix.data.readers.generic import load_csv, load_json
from monai_qmix.data.readers.grading import (
    load_aptos,
    load_ddr,
    load_deepdrid,
    load_drac,
    load_drtid,
    load_eyepacs,
    load_eyeq,
    load_idrid,
    load_messidor2,
)
from monai_qmix.data.readers.info import (
    DATASETS,
    DR_GRADES,
    IMAGE_EXTENSIONS,
    ODIR_CLASSES,
    QUALITY_HIGH,
    QUALITY_LOW,
    QUALITY_UNKNOWN,
    UNGRADABLE,
    DatalistError,
    DatasetInfo,
)
from monai_qmix.data.readers.odir import ODIR_QUALITY_KEYWORDS, load_odir

__all__ = [
    "DATASETS",
    "DR_GRADES",
    "IMAGE_EXTENSIONS",
    "ODIR_CLASSES",
    "ODIR_QUALITY_KEYWORDS",
    "QUALITY_HIGH",
    "QUALITY_LOW",
    "QUALITY_UNKNOWN",
    "READERS",
    "UNGRADABLE",
    "DatalistError",
    "DatasetInfo",
    "load_aptos",
    "load_csv",
    "load_datalist",
    "load_ddr",
    "load_deepdrid",
    "load_drac",
    "load_drtid",
    "load_eyepacs",
    "load_eyeq",
    "load_idrid",
    "load_json",
    "load_messidor2",
    "load_odir",
    "parse_quality",
]

READERS: dict[str, Callable[..., list[dict]]] = {
    "aptos": load_aptos,
    "ddr": load_ddr,
    "eyepacs": load_eyepacs,
    "messidor2": load_messidor2,
    "idrid": load_idrid,
    "deepdrid": load_deepdrid,
    "eyeq": load_eyeq,
    "odir": load_odir,
    "drtid": load_drtid,
    "drac": load_drac,
    "csv": load_csv,
    "json": load_json,
}


def load_datalist(name: str, dataset_dir: str | os.PathLike, split: str = "train", **options: Any) -> list[dict]:
    """Read dataset ``name`` from ``dataset_dir`` into a MONAI datalist (see the module docstring for the items).

    Args:
        name: one of :data:`READERS` (``aptos``, ``ddr``, ``eyepacs``, ``messidor2``, ``idrid``, ``deepdrid``,
            ``eyeq``, ``odir``, ``drtid``, ``drac``, ``csv``, ``json``).
        dataset_dir: the dataset folder (for ``csv`` / ``json`` also the file itself).
        split: the split; see the reader (``"all"`` concatenates a dataset's splits).
        options: reader-specific keyword options (``missing``, ``include_ungradable``, ``image_dir``, ...).

    Returns:
        the datalist.

    Raises:
        ValueError: unknown ``name`` or ``split``.
        FileNotFoundError: missing folder, label file or images.
        DatalistError: bad label-file content.

    Example:
        >>> items = load_datalist("aptos", "/data/aptos2019")  # doctest: +SKIP
        >>> items[0]["image"], items[0]["label"], items[0]["index"], items[0]["quality"]  # doctest: +SKIP
    """
    reader = READERS[_choice(name, READERS, "name")]
    return reader(dataset_dir, split, **options)
