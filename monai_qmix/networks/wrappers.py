# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Networks wrapped by ``DistributedDataParallel`` (or ``DataParallel``): reach the wrapped module, and run one of
its methods other than ``forward`` *through* the wrapper.

DDP synchronises gradients only for computations that went through its own ``forward`` (that call prepares the
reducer and broadcasts the buffers). QMix needs ``QMixNet.forward_all`` (logits and the contrastive projection from
one backbone pass) in its training step; calling ``ddp.module.forward_all`` directly would leave those gradients
unsynchronised, so :func:`wrapped_method` routes the call through the wrapper's ``forward``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["is_wrapped", "unwrap_network", "wrapped_method"]

_WRAPPERS = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)


def is_wrapped(network: torch.nn.Module) -> bool:
    """Whether ``network`` is a ``DistributedDataParallel`` / ``DataParallel`` wrapper."""
    return isinstance(network, _WRAPPERS)


def unwrap_network(network: torch.nn.Module) -> torch.nn.Module:
    """The module inside a ``DistributedDataParallel`` / ``DataParallel`` wrapper (``network`` itself otherwise)."""
    return network.module if is_wrapped(network) else network


def wrapped_method(network: torch.nn.Module, name: str) -> Callable[..., Any]:
    """A callable running ``unwrap_network(network).<name>(*args, **kwargs)``; for a wrapper, through its forward.

    For a plain module this is just the bound method. For a DDP / DataParallel wrapper, each call makes the inner
    module's ``forward`` the requested method for the duration of one ``network(*args, **kwargs)`` call, so DDP's
    gradient synchronisation and buffer broadcast apply to it exactly as to ``forward``.

    Args:
        network: a module or a wrapper.
        name: the method of the (inner) module, e.g. ``"forward_all"``.

    Raises:
        AttributeError: the (inner) module has no callable ``name``.

    Example:
        >>> from monai_qmix.networks import QMixNet
        >>> net = QMixNet(num_classes=5, backbone="small_cnn")
        >>> out = wrapped_method(net, "forward_all")(torch.zeros(2, 3, 32, 32), with_projection=True)
        >>> sorted(out)
        ['features', 'logits', 'projection']
    """
    inner = unwrap_network(network)
    method = getattr(inner, name, None)
    if not callable(method):
        raise AttributeError(f"{type(inner).__name__} has no method {name!r} (network={type(network).__name__}).")
    if inner is network:
        return method

    def call(*args: Any, **kwargs: Any) -> Any:
        had = "forward" in inner.__dict__
        saved = inner.__dict__.get("forward")
        inner.forward = method  # an instance attribute shadows the class's forward for this one call
        try:
            return network(*args, **kwargs)
        finally:
            if had:
                inner.forward = saved
            else:
                del inner.forward

    return call
