# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Ω(t), the weight of the Mis-L term of QMix's sample-reweighing loss, the official Ω(0) / λ_c presets and the
DivideMix presets (:data:`DIVIDEMIX_PRESETS`, the argument defaults of the official DivideMix scripts).

QMix (Hou et al., "QMix: Quality-aware Learning with Mixed Noise for Robust Retinal Disease Diagnosis",
IEEE TMI 2025, arXiv:2404.05169) down-weights mislabeled low-quality (Mis-L) samples by Ω(t). The official
repository (README of ``houjunlin/QMix``) gives Ω(0) and the contrastive weight λ_c per setting; those tables are
shipped here as :data:`QMIX_PRESETS`. The *decay* of Ω(t) is not published, so the schedule is an option
(``constant``, ``linear``, ``cosine``, ``step``); the default ``linear`` is the reconstruction
Ω(t) = Ω(0)·(T − t)/(T − T_w) after the warm-up (an unverified third-party reading, see the method notes).

Epoch convention: ``t`` is counted like Ignite's ``engine.state.epoch``, i.e. **1-based**: the first epoch is
``t = 1`` and the last is ``t = T = max_epochs``. Ω(t) = Ω(0) for ``t <= warmup_epochs`` (warm-up epochs do
not use the loss, but keeping Ω constant there makes the value well defined), decays afterwards, and reaches
exactly 0 at ``t = T`` for ``linear`` and ``cosine``. Values past ``T`` are clamped to the value at ``T``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from monai.utils import StrEnum

from ._utils import check_non_negative, check_option, check_positive
from .co_training_targets import CoTrainingTargets

__all__ = [
    "OmegaScheduleType",
    "OmegaSchedule",
    "omega_schedule",
    "QMixPreset",
    "QMIX_PRESETS",
    "get_qmix_preset",
    "DivideMixPreset",
    "DIVIDEMIX_PRESETS",
    "get_dividemix_preset",
]


class OmegaScheduleType(StrEnum):
    """Shapes of Ω(t) after the warm-up."""

    CONSTANT = "constant"
    LINEAR = "linear"
    COSINE = "cosine"
    STEP = "step"


def omega_schedule(
    epoch: float,
    omega0: float,
    max_epochs: int,
    warmup_epochs: int = 0,
    schedule: OmegaScheduleType | str = OmegaScheduleType.LINEAR,
    step_size: int = 10,
    gamma: float = 0.5,
) -> float:
    """Value of Ω(t), the Mis-L weight of QMix's sample-reweighing loss, at epoch ``t``.

    With ``s = clip(t − T_w, 0, T − T_w)`` epochs of decay and ``D = T − T_w``:

    - ``constant``: Ω(0);
    - ``linear``:   Ω(0)·(1 − s/D), i.e. Ω(0)·(T − t)/(T − T_w), 0 at the last epoch;
    - ``cosine``:   Ω(0)·½·(1 + cos(π·s/D)), 0 at the last epoch;
    - ``step``:     Ω(0)·γ^⌊s/step_size⌋.

    Args:
        epoch: the epoch ``t``, 1-based like Ignite's ``engine.state.epoch`` (``t <= warmup_epochs`` gives Ω(0)).
        omega0: Ω(0) >= 0 (see :data:`QMIX_PRESETS`).
        max_epochs: ``T``, the total number of epochs including warm-up; must exceed ``warmup_epochs`` for the
            decaying schedules.
        warmup_epochs: ``T_w``; Ω stays at Ω(0) up to and including this epoch.
        schedule: one of ``constant``, ``linear``, ``cosine``, ``step``.
        step_size: epochs between two decays of ``step``.
        gamma: multiplicative decay of ``step`` in [0, 1].

    Returns:
        Ω(t) as a Python float.

    Raises:
        ValueError: for a negative ``omega0``, an unknown ``schedule``, ``max_epochs <= warmup_epochs`` for a
            decaying schedule, a non-positive ``step_size`` or ``gamma`` outside [0, 1].

    Example:
        >>> omega_schedule(55, omega0=0.3, max_epochs=100, warmup_epochs=10)
        0.15
    """
    return OmegaSchedule(omega0, max_epochs, warmup_epochs, schedule, step_size, gamma)(epoch)


class OmegaSchedule:
    """Callable Ω(t) schedule; see :func:`omega_schedule` for the formulas and the epoch convention.

    Args:
        omega0: Ω(0) >= 0.
        max_epochs: ``T`` (total epochs, warm-up included); may be ``None`` only for ``constant`` and ``step``.
        warmup_epochs: ``T_w``.
        schedule: ``constant`` | ``linear`` | ``cosine`` | ``step``.
        step_size: epochs between decays for ``step``.
        gamma: decay factor in [0, 1] for ``step``.

    Example:
        >>> omega = OmegaSchedule(0.3, max_epochs=100, warmup_epochs=10, schedule="cosine")
        >>> round(omega(55), 6), omega(100)
        (0.15, 0.0)
    """

    def __init__(
        self,
        omega0: float,
        max_epochs: int | None = None,
        warmup_epochs: int = 0,
        schedule: OmegaScheduleType | str = OmegaScheduleType.LINEAR,
        step_size: int = 10,
        gamma: float = 0.5,
    ) -> None:
        self.omega0 = check_non_negative("omega0", omega0)
        self.schedule = OmegaScheduleType(check_option("schedule", schedule, [s.value for s in OmegaScheduleType]))
        if int(warmup_epochs) != warmup_epochs or warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be a non-negative integer, got {warmup_epochs!r}.")
        self.warmup_epochs = int(warmup_epochs)
        if max_epochs is None:
            if self.schedule in (OmegaScheduleType.LINEAR, OmegaScheduleType.COSINE):
                raise ValueError(f"max_epochs is required for schedule={self.schedule.value!r}, got None.")
        elif int(max_epochs) != max_epochs or max_epochs <= self.warmup_epochs:
            if self.schedule != OmegaScheduleType.CONSTANT:
                raise ValueError(
                    f"max_epochs must be an integer > warmup_epochs={self.warmup_epochs}, got {max_epochs!r}."
                )
        self.max_epochs = None if max_epochs is None else int(max_epochs)
        self.step_size = int(check_positive("step_size", step_size))
        if int(step_size) != step_size:
            raise ValueError(f"step_size must be a positive integer, got {step_size!r}.")
        self.gamma = check_non_negative("gamma", gamma)
        if self.gamma > 1:
            raise ValueError(f"gamma must be in [0, 1], got {gamma!r}.")

    def __call__(self, epoch: float) -> float:
        """Return Ω(epoch) (``epoch`` 1-based, see the module docstring)."""
        try:
            t = float(epoch)
        except (TypeError, ValueError):
            raise ValueError(f"epoch must be a number, got {epoch!r}.") from None
        if not math.isfinite(t):
            raise ValueError(f"epoch must be finite, got {epoch!r}.")
        if self.schedule == OmegaScheduleType.CONSTANT:
            return self.omega0
        s = max(t - self.warmup_epochs, 0.0)
        if self.schedule == OmegaScheduleType.STEP:
            if self.max_epochs is not None:
                s = min(s, float(self.max_epochs - self.warmup_epochs))
            return self.omega0 * self.gamma ** math.floor(s / self.step_size)
        span = float(self.max_epochs - self.warmup_epochs)  # type: ignore[operator]
        frac = min(s / span, 1.0)
        if self.schedule == OmegaScheduleType.LINEAR:
            return self.omega0 * (1.0 - frac)
        return self.omega0 * 0.5 * (1.0 + math.cos(math.pi * frac))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(omega0={self.omega0}, max_epochs={self.max_epochs}, "
            f"warmup_epochs={self.warmup_epochs}, schedule={self.schedule.value!r}, step_size={self.step_size}, "
            f"gamma={self.gamma})"
        )


@dataclass(frozen=True)
class QMixPreset:
    """Per-setting QMix hyper-parameters from the official README tables.

    Attributes:
        omega0: Ω(0), the initial weight of the Mis-L term.
        lambda_c: λ_c, the weight of the contrastive enhancement loss (0 switches it off).
        dataset: dataset name.
        noise: ``"sym"``, ``"asym"``, ``"real"`` (inherent noise) or ``"unknown"``.
        mis_l: Mis-L ratio of the setting (``None`` when not stated).
        mis_h: Mis-H ratio of the setting (``None`` when not stated).
        source: where the numbers come from.
    """

    omega0: float
    lambda_c: float
    dataset: str
    noise: str
    mis_l: float | None = None
    mis_h: float | None = None
    source: str = "houjunlin/QMix README"

    def as_dict(self) -> dict:
        """The preset as a plain dict (for configs and logs)."""
        return asdict(self)


def _ddr(noise: str, mis_l: int, mis_h: int, omega0: float, lambda_c: float) -> tuple[str, QMixPreset]:
    return f"ddr_{noise}_L{mis_l}_H{mis_h}", QMixPreset(omega0, lambda_c, "ddr", noise, mis_l / 100, mis_h / 100)


#: Ω(0) and λ_c per setting from the official README (``houjunlin/QMix``), plus ``default`` (our guess).
#: DDR names read ``ddr_<sym|asym>_L<Mis-L %>_H<Mis-H %>``.
QMIX_PRESETS: dict[str, QMixPreset] = dict(
    [
        _ddr("sym", 15, 20, 0.3, 0.0),
        _ddr("sym", 15, 50, 0.3, 0.01),
        _ddr("sym", 15, 80, 0.3, 0.025),
        _ddr("sym", 45, 20, 0.1, 0.025),
        _ddr("sym", 75, 20, 0.0, 0.05),
        _ddr("asym", 15, 30, 0.3, 0.025),
        _ddr("asym", 15, 50, 0.3, 0.025),
        _ddr("asym", 35, 20, 0.1, 0.01),
        _ddr("asym", 55, 20, 0.1, 0.01),
        ("drtid", QMixPreset(0.3, 0.0, "drtid", "real", 0.258, 0.315)),
        ("deepdrid", QMixPreset(0.8, 0.0, "deepdrid", "real", 0.52, None)),
        ("eyeq", QMixPreset(0.8, 0.0, "eyeq", "real", 0.185, None)),
        ("drac", QMixPreset(0.8, 0.05, "drac", "real", 0.075, None)),
        ("odir", QMixPreset(0.8, 0.05, "odir", "real", None, None)),
        (
            "default",
            QMixPreset(
                0.3,
                0.01,
                "any",
                "unknown",
                None,
                None,
                source="monai_qmix guess: the modal Omega(0) and a small lambda_c of the official tables",
            ),
        ),
    ]
)


def get_qmix_preset(name: str) -> QMixPreset:
    """Look up a preset of :data:`QMIX_PRESETS` by name (case-insensitive).

    Args:
        name: e.g. ``"ddr_sym_L15_H50"``, ``"eyeq"`` or ``"default"``.

    Raises:
        ValueError: naming ``name`` and listing the available presets when it is unknown.

    Example:
        >>> get_qmix_preset("ddr_sym_L15_H50").omega0
        0.3
    """
    by_lower = {k.lower(): k for k in QMIX_PRESETS}
    key = check_option("name", str(name).lower(), list(by_lower))
    return QMIX_PRESETS[by_lower[key]]


@dataclass(frozen=True)
class DivideMixPreset:
    """Hyper-parameters of official DivideMix (github ``LiJunnan1992/DivideMix``) for ``method="dividemix"``.

    Attributes:
        lambda_u: λ_u, the weight of the unlabelled MSE term (``SampleReweighingLoss.lambda_m``).
        lambda_u_rampup: epochs of the linear ramp of λ_u after the warm-up (0 = none).
        mixup_alpha: α of MixMatch's Beta(α, α).
        sharpen_temperature: T of co-refinement / co-guessing.
        p_threshold: clean-probability threshold of the 2-component GMM.
        mis_h_loss: the unlabelled loss, ``"mse_mean"`` (``torch.mean((probs_u - targets_u)**2)``, over rows and
            classes).
        prior: the prior of the regulariser (``"uniform"``: DivideMix's ``prior = torch.ones(C)/C``).
        source: where the numbers come from.
    """

    lambda_u: float
    lambda_u_rampup: int
    mixup_alpha: float
    sharpen_temperature: float
    p_threshold: float
    mis_h_loss: str = "mse_mean"
    prior: str = "uniform"
    source: str = "LiJunnan1992/DivideMix"

    def as_dict(self) -> dict:
        """The preset as a plain dict (for configs and logs)."""
        return asdict(self)

    def trainer_kwargs(self, loop: str = "two_loader") -> dict:
        """Keyword arguments of :class:`~monai_qmix.engines.QMixTrainer` (``method="dividemix"``) for this preset.

        ``sample_loss`` is the preset's :class:`~monai_qmix.losses.SampleReweighingLoss` (λ_m = λ_u, the preset's
        ``mis_h_loss``, the group normalisation of ``loop``), ``targets`` its
        :class:`~monai_qmix.losses.CoTrainingTargets` (MixMatch on with the preset's α and T);
        ``separation_handler_kwargs`` is ``{"separation_kwargs": {"p_threshold": ...}}``; merge further separation
        options into the inner dict.

        Args:
            loop: the trainer's ``loop`` (``"two_loader"`` or ``"single"``).
        """
        from .sample_reweighing import SampleReweighingLoss  # the loss module imports this one

        return {
            "sample_loss": SampleReweighingLoss.for_loop(loop, lambda_m=self.lambda_u, mis_h_loss=self.mis_h_loss),
            "lambda_m_rampup": self.lambda_u_rampup,
            "targets": CoTrainingTargets(
                sharpen_temperature=self.sharpen_temperature, mixmatch=True, mixup_alpha=self.mixup_alpha
            ),
            "prior": self.prior,
            "separation_handler_kwargs": {"separation_kwargs": {"p_threshold": self.p_threshold}},
        }


#: Official DivideMix settings: ``dividemix_cifar`` (``Train_cifar.py`` defaults: ``--lambda_u 25`` with the
#: 16-epoch linear ramp ``linear_rampup(..., rampup_length=16)``, ``--alpha 4``, ``--T 0.5``, ``--p_threshold 0.5``)
#: and ``dividemix_realworld`` (``Train_clothing1M.py``: ``--lambda_u 0``, ``--alpha 0.5``, ``--T 0.5``,
#: ``--p_threshold 0.5``), the reference for medical data. Both: MSE averaged over rows and classes, uniform prior.
DIVIDEMIX_PRESETS: dict[str, DivideMixPreset] = {
    "dividemix_cifar": DivideMixPreset(25.0, 16, 4.0, 0.5, 0.5, source="LiJunnan1992/DivideMix Train_cifar.py"),
    "dividemix_realworld": DivideMixPreset(0.0, 0, 0.5, 0.5, 0.5, source="LiJunnan1992/DivideMix Train_clothing1M.py"),
}


def get_dividemix_preset(name: str) -> DivideMixPreset:
    """Look up a preset of :data:`DIVIDEMIX_PRESETS` by name (case-insensitive).

    Args:
        name: ``"dividemix_cifar"`` or ``"dividemix_realworld"``.

    Raises:
        ValueError: naming ``name`` and listing the available presets when it is unknown.

    Example:
        >>> get_dividemix_preset("dividemix_realworld").trainer_kwargs()["targets"].mixup_alpha
        0.5
    """
    key = check_option("name", str(name).lower(), list(DIVIDEMIX_PRESETS))
    return DIVIDEMIX_PRESETS[key]
