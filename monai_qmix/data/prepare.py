# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""One-off preparation of a dataset: crop every image to its field of view, pad to square, resize, write PNG.

Full-resolution fundus photographs (2-4k px JPEG) are slow to decode at every epoch; the prepared copy is decoded
many times faster (see ``benchmarks/loading.py``). Command line::

    python -m monai_qmix.data.prepare --dataset ddr --dataset_dir /data/DDR-dataset --out /data/ddr_512 --size 512 \\
        --split all --workers 2

writes ``<out>/images/<path of the original relative to dataset_dir, suffix .png>``, and ``<out>/datalist.json``
mapping each prepared split to its datalist (the reader's fields, ``image`` relative to ``<out>``, plus
``original_image``). Read it back with ``load_datalist("json", "<out>", split="train")``. The run is resumable:
outputs are written atomically and existing ones are skipped. Images that cannot be read are listed in
``<out>/failures_<split>.json`` and left out of the datalist (with a warning); they do not stop the run.

Check a dataset before training (writes nothing; exit status 1 when an image is unusable)::

    python -m monai_qmix.data.prepare --check --dataset aptos --dataset_dir /data/aptos [--split all]
    python -m monai_qmix.data.prepare --check --dataset_dir /path/to/images      # every image file below

prints one ``<path><TAB><reason>`` line per missing, empty, unreadable (corrupt, truncated, not an image),
wrong-mode (e.g. CMYK) or wrong-depth (32-bit integer / float) image (:func:`monai_qmix.data.check_image`).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from monai_qmix.data.readers import load_datalist
from monai_qmix.transforms.fundus import fov_bbox, fov_mask

__all__ = ["crop_to_fov", "main", "prepare_datalist", "prepare_image"]


def crop_to_fov(img: np.ndarray, size: int, threshold: float | None = None) -> tuple[np.ndarray, bool]:
    """Crop an RGB image to its FOV bounding box, zero-pad it to a centred square and resize it to ``size``.

    Args:
        img: ``(H, W, 3)`` uint8 array.
        size: output side in pixels.
        threshold: passed to :func:`monai_qmix.transforms.fundus.fov_mask` (``None``: automatic).

    Returns:
        the ``(size, size, 3)`` uint8 array, and whether a FOV was found (if not, the whole image is used).
    """
    found = True
    try:
        chw = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)
        y0, y1, x0, x1 = fov_bbox(fov_mask(chw, threshold=threshold))
    except ValueError:  # no FOV pixel (e.g. an all-black image): keep the whole frame
        found, (y0, y1, x0, x1) = False, (0, img.shape[0], 0, img.shape[1])
    crop = img[y0:y1, x0:x1]
    h, w = crop.shape[:2]
    side = max(h, w)
    square = np.zeros((side, side, 3), dtype=np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    square[top : top + h, left : left + w] = crop
    out = Image.fromarray(square).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(out), found


def prepare_image(src: str, dst: str, size: int, threshold: float | None = None) -> bool:
    """Read ``src``, :func:`crop_to_fov` it and write ``dst`` as PNG atomically (temporary file + rename).

    JPEGs are decoded at a reduced scale (libjpeg DCT scaling) when that still leaves at least ``2 * size`` pixels.

    Args:
        src: input image (any format PIL reads; grey images are replicated to RGB).
        dst: output ``.png`` path (folders are created).
        size: output side in pixels.
        threshold: FOV threshold, see :func:`crop_to_fov`.

    Returns:
        whether a FOV was found.

    Raises:
        OSError: unreadable or corrupt input.
    """
    with Image.open(src) as im:
        im.draft("RGB", (2 * size, 2 * size))
        arr = np.asarray(im.convert("RGB"))
    out, found = crop_to_fov(arr, size, threshold)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    tmp = f"{dst}.tmp{os.getpid()}.png"
    Image.fromarray(out).save(tmp, format="PNG")
    os.replace(tmp, dst)
    return found


def _work(task: tuple[str, str, int, float | None]) -> tuple[str, str | None, bool]:
    src, dst, size, threshold = task
    if os.path.exists(dst):
        return "skipped", None, True
    try:
        found = prepare_image(src, dst, size, threshold)
    except Exception as e:  # noqa: BLE001 - any decoding failure is reported, never fatal
        return "failed", f"{type(e).__name__}: {e}", True
    return "written", None, found


def _init_worker() -> None:
    torch.set_num_threads(1)


def _outputs(datalist: Sequence[dict[str, Any]], root: str) -> list[str]:
    rels = []
    for it in datalist:
        rel = os.path.relpath(it["image"], root)
        rels.append(rel if not rel.startswith("..") else os.path.basename(it["image"]))
    stems = [os.path.splitext(r)[0] + ".png" for r in rels]
    clash = {s for s, n in Counter(stems).items() if n > 1}
    return [os.path.join("images", r + ".png" if s in clash else s) for r, s in zip(rels, stems)]


def prepare_datalist(
    datalist: Sequence[dict[str, Any]],
    out_dir: str | os.PathLike,
    size: int = 512,
    split: str = "train",
    root: str | os.PathLike | None = None,
    workers: int = 0,
    threshold: float | None = None,
    progress: bool = True,
    info: dict[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Prepare every image of a datalist and write ``<out_dir>/datalist.json`` (key ``split``).

    Args:
        datalist: items with an absolute ``image`` path (any reader's output).
        out_dir: output folder.
        size: output side in pixels.
        split: key of this datalist in ``datalist.json`` (other keys already there are kept).
        root: outputs mirror the images' paths relative to this folder (default: their common folder).
        workers: worker processes (``0``: in this process).
        threshold: FOV threshold, see :func:`crop_to_fov`.
        progress: show a tqdm progress bar.
        info: extra facts stored under ``"prepare"`` in the JSON (dataset name, reader options, ...).

    Returns:
        the prepared datalist (``image`` absolute, ``original_image`` added, ``index`` re-numbered ``0..N-1`` if
        some images failed) and the failures (``image``, ``id``, ``error``), also saved as
        ``failures_<split>.json``.

    Raises:
        ValueError: empty datalist, ``size < 16`` or ``workers < 0``.
    """
    if not datalist:
        raise ValueError("datalist is empty, nothing to prepare")
    if int(size) != size or size < 16:
        raise ValueError(f"size must be an integer >= 16, got {size!r}")
    if int(workers) != workers or workers < 0:
        raise ValueError(f"workers must be an integer >= 0, got {workers!r}")
    out_dir = os.path.abspath(os.fspath(out_dir))
    os.makedirs(out_dir, exist_ok=True)
    if root is None:
        root = os.path.commonpath([os.path.dirname(it["image"]) for it in datalist])
    rel_out = _outputs(datalist, os.path.abspath(os.fspath(root)))
    tasks = [(it["image"], os.path.join(out_dir, r), int(size), threshold) for it, r in zip(datalist, rel_out)]
    from tqdm.auto import tqdm

    bar = tqdm(total=len(tasks), desc=f"prepare {split}", unit="img", disable=not progress)
    results = []
    if workers:
        with multiprocessing.get_context().Pool(int(workers), initializer=_init_worker) as pool:
            for r in pool.imap(_work, tasks, chunksize=4):
                results.append(r)
                bar.update()
    else:
        for t in tasks:
            results.append(_work(t))
            bar.update()
    bar.close()
    prepared, failures, no_fov = [], [], []
    for it, rel, (status, error, found) in zip(datalist, rel_out, results):
        if status == "failed":
            failures.append({"image": it["image"], "id": it.get("id"), "error": error})
            continue
        if not found:
            no_fov.append(it["image"])
        item = {**it, "image": os.path.join(out_dir, rel), "original_image": it["image"]}
        prepared.append(item)
    if failures:
        warnings.warn(
            f"{len(failures)} of {len(datalist)} images could not be read and are left out of the prepared "
            f"datalist (listed in failures_{split}.json), e.g. {failures[0]['image']!r}: {failures[0]['error']}",
            stacklevel=2,
        )
        prepared = [{**it, "index": n} for n, it in enumerate(prepared)]
    if no_fov:
        msg = f"no field of view found in {len(no_fov)} image(s), kept uncropped, e.g. {no_fov[0]!r}"
        warnings.warn(msg, stacklevel=2)
    path = os.path.join(out_dir, "datalist.json")
    data: dict[str, Any] = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    data[split] = [{**it, "image": os.path.relpath(it["image"], out_dir)} for it in prepared]
    meta = {"size": int(size), "images": len(datalist), "failed": len(failures), "no_fov": len(no_fov), **(info or {})}
    data.setdefault("prepare", {})[split] = meta
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)
    with open(os.path.join(out_dir, f"failures_{split}.json"), "w", encoding="utf-8") as f:
        json.dump(failures, f, indent=1)
    return prepared, failures


def _option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--option expects key=value, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _check(a: argparse.Namespace, options: dict[str, Any]) -> int:
    from monai_qmix.data.image_check import check_images
    from monai_qmix.data.readers import IMAGE_EXTENSIONS

    if a.dataset is not None:
        paths = [it["image"] for it in load_datalist(a.dataset, a.dataset_dir, a.split, missing=a.missing, **options)]
    else:
        if not os.path.isdir(a.dataset_dir):
            print(f"--dataset_dir: no such folder '{a.dataset_dir}'")
            return 1
        paths = sorted(
            os.path.join(r, f)
            for r, _, files in os.walk(a.dataset_dir)
            for f in files
            if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS
        )
    bad = check_images(paths, progress=not a.no_progress)
    for b in bad:
        print(f"{b['image']}\t{b['reason']}")
    print(f"checked {len(paths)} images under {os.path.abspath(a.dataset_dir)}: {len(bad)} unusable")
    return 1 if bad else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m monai_qmix.data.prepare", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default=None, help="reader name (aptos, ddr, eyepacs, ..., csv)")
    p.add_argument("--dataset_dir", required=True, help="dataset folder as distributed (or the CSV for 'csv')")
    p.add_argument("--out", default=None, help="output folder")
    p.add_argument(
        "--check",
        action="store_true",
        help="write nothing: list every unusable image (path, reason) of the split (or, without --dataset, every "
        "image file under dataset_dir); exit status 1 if there is one",
    )
    p.add_argument("--size", type=int, default=512, help="output side in pixels (default 512)")
    p.add_argument("--split", default="train", help="split to prepare (default train; 'all' for every split)")
    p.add_argument("--workers", type=int, default=0, help="worker processes (default 0: in-process)")
    p.add_argument("--threshold", type=float, default=None, help="FOV threshold fraction (default automatic)")
    p.add_argument("--missing", default="error", choices=("error", "warn"), help="listed images that are absent")
    p.add_argument("--option", type=_option, action="append", default=[], help="reader option key=value (repeat)")
    p.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    a = p.parse_args(argv)
    options = dict(a.option)
    if a.check:
        return _check(a, options)
    if a.dataset is None or a.out is None:
        p.error("--dataset and --out are required (unless --check)")
    datalist = load_datalist(a.dataset, a.dataset_dir, a.split, missing=a.missing, **options)
    root = a.dataset_dir if os.path.isdir(a.dataset_dir) else os.path.dirname(os.path.abspath(a.dataset_dir))
    info = {"dataset": a.dataset, "dataset_dir": os.path.abspath(a.dataset_dir), "options": options}
    prepared, failures = prepare_datalist(
        datalist, a.out, a.size, a.split, root, a.workers, a.threshold, not a.no_progress, info
    )
    print(f"prepared {len(prepared)} of {len(datalist)} images into {os.path.abspath(a.out)} ({len(failures)} failed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
