# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Test-time evaluation of the two co-trained networks: softmax ensemble or either network alone.

Whether QMix ensembles its two networks at test time is not confirmed (method doc §3.2), so it is an option,
``mode = "ensemble" | "net_a" | "net_b"``; ``"ensemble"`` (default) averages the two networks' softmax
probabilities. ``combine="logit"`` instead averages the logits and takes the softmax of the mean, which has the
same argmax as DivideMix's sum of logits.

The ensemble is a MONAI :class:`~monai.inferers.Inferer` (:class:`EnsembleInferer`): a plain
:class:`~monai.engines.SupervisedEvaluator` with ``network = net A`` and ``inferer = EnsembleInferer(net B)``
evaluates the ensemble, so a bundle needs no custom engine (``"inferer": {"_target_":
"monai_qmix.engines.evaluator.EnsembleInferer", "network_b": "@network_b"}``), and AMP, ``decollate``,
postprocessing and handlers keep their MONAI behaviour. :class:`QMixEvaluator` is only a convenience subclass
that builds the inferer and keeps ``network_b`` as an attribute (e.g. for ``CheckpointLoader``). MONAI's own
``monai.engines.EnsembleEvaluator`` writes one ``pred_i`` key per network and needs ``MeanEnsembled`` /
``Activationsd`` post-processing before a metric can see ``pred``; the inferer yields the averaged probabilities
in ``pred`` directly, so the grading metrics work with ``postprocessing`` absent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from monai.engines import SupervisedEvaluator
from monai.inferers import Inferer, SimpleInferer
from monai.networks.utils import eval_mode as _eval_mode
from monai.utils import StrEnum
from torch import nn

from .utils import choose_option

__all__ = ["EnsembleCombine", "EnsembleInferer", "EnsembleMode", "QMixEvaluator", "ensemble_probabilities"]


class EnsembleMode(StrEnum):
    """Which network(s) predict at test time."""

    ENSEMBLE = "ensemble"
    NET_A = "net_a"
    NET_B = "net_b"


class EnsembleCombine(StrEnum):
    """How two networks' outputs are combined: mean of softmaxes (``prob``) or softmax of mean logits (``logit``)."""

    PROB = "prob"
    LOGIT = "logit"


def ensemble_probabilities(logits: Sequence[torch.Tensor], combine: str = EnsembleCombine.PROB) -> torch.Tensor:
    """Class probabilities of an ensemble from each member's logits (classes along dim 1).

    Args:
        logits: one tensor ``(B, C, ...)`` per network, all of the same shape.
        combine: ``"prob"`` (mean of the softmaxes) or ``"logit"`` (softmax of the mean logits).

    Returns:
        float32 probabilities ``(B, C, ...)`` summing to 1 along dim 1.

    Raises:
        ValueError: no logits, mismatched shapes or unknown ``combine``.

    Example:
        >>> p = ensemble_probabilities([torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 2.0]])])
        >>> p
        tensor([[0.5000, 0.5000]])
    """
    combine = choose_option(combine, EnsembleCombine, "combine")
    if len(logits) == 0:
        raise ValueError("logits: need at least one network output.")
    shapes = {tuple(t.shape) for t in logits}
    if len(shapes) != 1:
        raise ValueError(f"logits: all network outputs must have the same shape, got {sorted(shapes)}.")
    if logits[0].ndim < 2:
        raise ValueError(f"logits: expected (B, C, ...) with classes along dim 1, got shape {tuple(logits[0].shape)}.")
    if len(logits) == 1:
        return torch.softmax(logits[0].float(), dim=1)
    if combine == EnsembleCombine.LOGIT:
        return torch.softmax(torch.stack([t.float() for t in logits]).mean(0), dim=1)
    return torch.stack([torch.softmax(t.float(), dim=1) for t in logits]).mean(0)


class EnsembleInferer(Inferer):
    """Inferer returning the softmax ensemble of the evaluator's network (net A) and ``network_b`` (net B).

    ``inferer(inputs, network)`` runs ``network`` and/or ``network_b`` (per :attr:`mode`) through the wrapped
    ``inferer`` and returns class probabilities (float32), which become ``pred`` in a ``SupervisedEvaluator``.

    Args:
        network_b: the second network; required unless ``mode="net_a"``. It must be on the inputs' device.
        mode: ``"ensemble"`` (both), ``"net_a"`` (the network passed by the engine) or ``"net_b"``.
        combine: ``"prob"`` (mean of softmaxes, default) or ``"logit"`` (softmax of mean logits).
        inferer: how each network is run (default :class:`~monai.inferers.SimpleInferer`).
        eval_mode: run the networks in eval mode under ``torch.no_grad()`` and restore their previous mode
            afterwards (default). ``False`` leaves mode and autograd to the caller, e.g. MC-dropout evaluation
            with ``SupervisedEvaluator(mode="train")`` (then put ``network_b`` in the wanted mode yourself).

    Raises:
        ValueError: invalid ``mode`` / ``combine``, or ``network_b`` missing for a mode that needs it.
        TypeError: ``network_b`` or ``inferer`` not callable.

    Example:
        >>> net_a, net_b = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
        >>> probs = EnsembleInferer(net_b)(torch.rand(2, 4), net_a)
        >>> probs.shape, bool(torch.allclose(probs.sum(1), torch.ones(2)))
        (torch.Size([2, 3]), True)
    """

    def __init__(
        self,
        network_b: nn.Module | Callable | None = None,
        mode: str = EnsembleMode.ENSEMBLE,
        combine: str = EnsembleCombine.PROB,
        inferer: Inferer | None = None,
        eval_mode: bool = True,
    ) -> None:
        super().__init__()
        if network_b is not None and not callable(network_b):
            raise TypeError(f"network_b: expected an nn.Module or callable, got {type(network_b).__name__}.")
        if inferer is not None and not callable(inferer):
            raise TypeError(f"inferer: expected a MONAI Inferer or callable, got {type(inferer).__name__}.")
        self.network_b = network_b
        self.combine = choose_option(combine, EnsembleCombine, "combine")
        self.inferer = SimpleInferer() if inferer is None else inferer
        self.eval_mode = bool(eval_mode)
        self.mode = mode  # validated by the setter

    @property
    def mode(self) -> str:
        """``"ensemble"``, ``"net_a"`` or ``"net_b"``; may be switched between runs (validated)."""
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        value = choose_option(value, EnsembleMode, "mode")
        if value != EnsembleMode.NET_A and self.network_b is None:
            raise ValueError(f"network_b: required for mode={value!r} (only mode='net_a' works without it).")
        self._mode = value

    def _networks(self, network: Callable) -> list[Callable]:
        if self.mode == EnsembleMode.NET_A:
            return [network]
        if self.mode == EnsembleMode.NET_B:
            return [self.network_b]  # type: ignore[list-item]
        return [network, self.network_b]  # type: ignore[list-item]

    def __call__(self, inputs: torch.Tensor, network: Callable, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Class probabilities ``(B, C, ...)`` of the selected network(s) for ``inputs``.

        Args:
            inputs: input batch.
            network: network A (the engine's ``network``).
            args: positional arguments passed on to each network.
            kwargs: keyword arguments passed on to each network.
        """
        nets = self._networks(network)
        modules = [n for n in nets if isinstance(n, nn.Module)]
        ctx = _eval_mode(*modules) if self.eval_mode else nullcontext()
        with ctx:
            logits = [self.inferer(inputs, n, *args, **kwargs) for n in nets]
        return ensemble_probabilities(logits, self.combine)


class QMixEvaluator(SupervisedEvaluator):
    """``SupervisedEvaluator`` of the two QMix networks whose ``pred`` is their softmax ensemble (or one of them).

    Equivalent to ``SupervisedEvaluator(network=network, inferer=EnsembleInferer(network_b, ensemble_mode, combine,
    inferer))``; all other keyword arguments (``key_val_metric``, ``additional_metrics``, ``val_handlers``,
    ``amp``, ``postprocessing``, ``decollate``, ``compile``, …) are those of
    :class:`~monai.engines.SupervisedEvaluator`. With ``compile=True`` ``network_b`` is compiled too.

    Args:
        device: device of the evaluation.
        val_data_loader: the validation or test loader (``image`` and ``label`` keys by default).
        network: network A.
        network_b: network B (required unless ``mode="net_a"``).
        ensemble_mode: ``"ensemble"``, ``"net_a"`` or ``"net_b"``; switchable later through :attr:`ensemble_mode`.
            (Named so because ``mode`` is ``SupervisedEvaluator``'s eval/train forward mode.)
        combine: ``"prob"`` (mean of softmaxes) or ``"logit"`` (softmax of mean logits).
        inferer: how each network is run (default ``SimpleInferer``).
        kwargs: the other arguments of ``SupervisedEvaluator``.

    Raises:
        ValueError: invalid ``ensemble_mode`` / ``combine``, or ``network_b`` missing for a mode that needs it.

    Example:
        >>> from monai_qmix.handlers.grading_metrics import QuadraticWeightedKappa
        >>> # QMixEvaluator(device, loader, net_a, net_b, key_val_metric={"val_qwk": QuadraticWeightedKappa()}).run()
    """

    def __init__(
        self,
        device: torch.device | str,
        val_data_loader: Iterable,
        network: nn.Module,
        network_b: nn.Module | None = None,
        ensemble_mode: str = EnsembleMode.ENSEMBLE,
        combine: str = EnsembleCombine.PROB,
        inferer: Inferer | None = None,
        **kwargs: Any,
    ) -> None:
        ensemble_mode = choose_option(ensemble_mode, EnsembleMode, "ensemble_mode")
        if network_b is not None and kwargs.get("compile", False):
            network_b = torch.compile(network_b, **(kwargs.get("compile_kwargs") or {}))  # type: ignore[assignment]
        ensemble = EnsembleInferer(network_b=network_b, mode=ensemble_mode, combine=combine, inferer=inferer)
        super().__init__(
            device=torch.device(device), val_data_loader=val_data_loader, network=network, inferer=ensemble, **kwargs
        )
        self.network_b = network_b

    @property
    def ensemble_mode(self) -> str:
        """Current test-time mode (``"ensemble"``, ``"net_a"`` or ``"net_b"``); assignable, validated."""
        return self.inferer.mode

    @ensemble_mode.setter
    def ensemble_mode(self, value: str) -> None:
        self.inferer.mode = choose_option(value, EnsembleMode, "ensemble_mode")
