# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""``QMixNet``: a backbone with a classifier head and a projector head, as QMix needs (Hou et al., TMI 2025).

The framework figure of QMix (panel c) feeds the encoder feature to a classifier (for the SSL losses) and, for the
Correct and Mis-L samples only, to a *projector* whose L2-normalised embedding enters the contrastive enhancement
loss. The projector is a 2-layer MLP (feature → hidden → 128, ReLU) as in the third-party reconstruction
(method doc §6.3, unverified). Optional dropout before the classifier enables MC-dropout uncertainty, and the
``forward_features`` / ``forward_head`` split lets a scorer run the backbone once and re-run only the cheap head
T times.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from monai.networks import nets
from monai.utils import StrEnum, look_up_option
from torch import nn

from .efficientnet_lite import efficientnet_lite, find_pretrained_weights

__all__ = ["Backbone", "QMixNet", "SmallCNN", "build_backbone", "load_pretrained"]


class Backbone(StrEnum):
    """Named backbones (MONAI implementations, built without their classifier)."""

    RESNET10 = "resnet10"
    RESNET18 = "resnet18"
    RESNET34 = "resnet34"
    RESNET50 = "resnet50"
    DENSENET121 = "densenet121"
    EFFICIENTNET_B0 = "efficientnet-b0"
    EFFICIENTNET_LITE0 = "efficientnet_lite0"
    SMALL_CNN = "small_cnn"


class SmallCNN(nn.Module):
    """A small CNN backbone for CPU runs, tests and the synthetic bundle (not from the paper).

    Five conv-BN-ReLU-maxpool blocks of widths ``w, 2w, 4w, 8w, 8w`` followed by global average and max pooling
    (concatenated), so the feature dimension is ``16 * width``. With ``width=12`` it has about 0.1 M parameters and
    reaches a held-out QWK above 0.8 on SynthDR at 128 px (``benchmarks/synthdr_learnability.py``).

    Args:
        in_channels: input channels.
        width: channels of the first block.
    """

    def __init__(self, in_channels: int = 3, width: int = 12) -> None:
        super().__init__()
        if int(width) < 1:
            raise ValueError(f"width must be >= 1, got {width!r}.")
        layers: list[nn.Module] = []
        c_in = in_channels
        for c in (width, width * 2, width * 4, width * 8, width * 8):
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            layers.append(nn.MaxPool2d(2))
            c_in = c
        self.features = nn.Sequential(*layers)
        self.feature_dim = 2 * c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)


def build_backbone(name: str, in_channels: int = 3, spatial_dims: int = 2) -> tuple[nn.Module, int]:
    """Build a named MONAI backbone that maps an image batch to a flat feature vector.

    The ResNets use the torchvision/ImageNet configuration (7×7 stride-2 stem, max-pool, shortcut type B, no
    bias in the downsampling convolutions), so a torchvision ImageNet state dict loads into them unchanged
    (see :func:`load_pretrained`).

    Args:
        name: one of :class:`Backbone` (``resnet10/18/34/50``, ``densenet121``, ``efficientnet-b0``,
            ``efficientnet_lite0`` (see :mod:`monai_qmix.networks.efficientnet_lite`), ``small_cnn``).
        in_channels: number of input channels.
        spatial_dims: 2 for fundus photographs.

    Returns:
        The backbone module and the dimension of its output feature.

    Raises:
        ValueError: unknown ``name``.
    """
    name = look_up_option(name, Backbone)
    if name == Backbone.SMALL_CNN:
        small = SmallCNN(in_channels=in_channels)
        return small, small.feature_dim
    if name.startswith("resnet"):
        factory = getattr(nets, name)
        net = factory(
            spatial_dims=spatial_dims,
            n_input_channels=in_channels,
            conv1_t_size=7,
            conv1_t_stride=2,
            shortcut_type="B",
            bias_downsample=False,
            feed_forward=False,
        )
        feature_dim = 2048 if name == Backbone.RESNET50 else 512
        return net, feature_dim
    if name == Backbone.EFFICIENTNET_LITE0:
        return efficientnet_lite(name, in_channels=in_channels)
    if name == Backbone.DENSENET121:
        net = nets.DenseNet121(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=1)
        feature_dim = net.class_layers.out.in_features
        net.class_layers.out = nn.Identity()
        return net, feature_dim
    net = nets.EfficientNetBN(
        "efficientnet-b0", pretrained=False, spatial_dims=spatial_dims, in_channels=in_channels, num_classes=1
    )
    feature_dim = net._fc.in_features
    net._fc = nn.Identity()
    return net, feature_dim


def load_pretrained(module: nn.Module, path: str | os.PathLike, strict: bool = False) -> tuple[list[str], list[str]]:
    """Load weights from a **local** file into ``module`` (nothing is ever downloaded).

    Accepts a plain state dict or a checkpoint holding one under ``state_dict``, ``model`` or ``network``. A
    module with a ``convert_state_dict(state)`` method (e.g.
    :class:`~monai_qmix.networks.efficientnet_lite.EfficientNetLite`) maps the file's key layout to its own first.
    Classifier weights (``fc.*``, ``classifier.*``, ``_fc.*``, ``class_layers.out.*``) are ignored, since the number
    of classes differs from ImageNet's; tensors whose shapes do not match raise an error.

    Args:
        module: the backbone to load into.
        path: a ``.pt``/``.pth`` file, e.g. torchvision's ``resnet50-*.pth``.
        strict: require every backbone parameter to be present in the file.

    Returns:
        ``(missing, unexpected)`` key lists (after dropping the classifier keys).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a readable torch file (e.g. truncated), holds no state dict, no key matches,
            or a shape differs.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrained_path: no such file '{path}' (expected a local .pt/.pth state dict).")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises RuntimeError / UnpicklingError / EOFError / ... without the path
        raise ValueError(
            f"pretrained_path: cannot read '{path}' as a PyTorch state dict ({type(e).__name__}: {e}); "
            "is the file truncated or of another format?"
        ) from e
    if isinstance(state, Mapping):
        for key in ("state_dict", "model", "network"):
            if key in state and isinstance(state[key], Mapping):
                state = state[key]
                break
    if not isinstance(state, Mapping):
        raise ValueError(f"pretrained_path: '{path}' holds a {type(state).__name__}, expected a state dict.")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    convert = getattr(module, "convert_state_dict", None)
    if callable(convert):
        state = convert(state)
    head_prefixes = ("fc.", "classifier.", "_fc.", "class_layers.out.")
    state = {k: v for k, v in state.items() if not k.startswith(head_prefixes)}
    own = module.state_dict()
    matched = [k for k in state if k in own]
    if not matched:
        raise ValueError(
            f"pretrained_path: no key of '{path}' matches the backbone "
            f"(file keys start {sorted(state)[:3]}, backbone keys start {sorted(own)[:3]})."
        )
    bad = [
        f"{k}: file {tuple(state[k].shape)} vs backbone {tuple(own[k].shape)}"
        for k in matched
        if state[k].shape != own[k].shape
    ]
    if bad:
        raise ValueError(f"pretrained_path: shape mismatch for {len(bad)} tensors of '{path}', e.g. {bad[:3]}.")
    result = module.load_state_dict(state, strict=strict)
    return list(result.missing_keys), list(result.unexpected_keys)


class QMixNet(nn.Module):
    """Backbone + classifier head + projector head.

    ``forward(x)`` returns logits, so the network drops into any MONAI inferer, evaluator or bundle. The trainer
    and the scorer use :meth:`forward_features`, :meth:`head` and :meth:`project` to share one backbone pass.

    Args:
        num_classes: number of classes (5 DR grades by default).
        backbone: a name of :class:`Backbone` (default ``resnet50``, the paper's) or any ``nn.Module`` mapping
            ``(B, C, H, W)`` to ``(B, feature_dim)`` (then ``feature_dim`` is required).
        in_channels: input channels of a named backbone.
        feature_dim: output dimension of a custom backbone module.
        projector_dim: embedding size of the projector (128).
        projector_hidden: hidden width of the projector (default: the feature dimension, 2048 for ResNet-50).
        head_dropout: dropout probability before the classifier (0 disables; > 0 enables MC-dropout scoring).
        pretrained_path: optional local file with backbone weights (see :func:`load_pretrained`), or ``"auto"``
            for a named backbone whose ImageNet weights an installed package ships (``efficientnet_lite0``: the
            ``[pretrained]`` extra, see :func:`~monai_qmix.networks.efficientnet_lite.find_pretrained_weights`).

    Raises:
        ValueError: bad ``num_classes``, ``head_dropout``, ``projector_dim`` or a custom backbone without
            ``feature_dim``.

    Example:
        >>> net = QMixNet(num_classes=5, backbone="resnet10")
        >>> out = net.forward_all(torch.rand(2, 3, 64, 64))
        >>> out["logits"].shape, out["projection"].shape
        (torch.Size([2, 5]), torch.Size([2, 128]))
    """

    __jit_unused_properties__ = ["has_dropout"]  # keeps the network scriptable (torch.jit.script / ckpt_export)

    def __init__(
        self,
        num_classes: int = 5,
        backbone: str | nn.Module = "resnet50",
        in_channels: int = 3,
        feature_dim: int | None = None,
        projector_dim: int = 128,
        projector_hidden: int | None = None,
        head_dropout: float = 0.0,
        pretrained_path: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes!r}.")
        if not 0.0 <= float(head_dropout) < 1.0:
            raise ValueError(f"head_dropout must be in [0, 1), got {head_dropout!r}.")
        if int(projector_dim) < 1:
            raise ValueError(f"projector_dim must be >= 1, got {projector_dim!r}.")
        if isinstance(backbone, nn.Module):
            if feature_dim is None:
                raise ValueError("feature_dim is required when backbone is an nn.Module (its output size).")
            self.backbone, self.feature_dim = backbone, int(feature_dim)
        else:
            self.backbone, self.feature_dim = build_backbone(backbone, in_channels=in_channels)
        if pretrained_path == "auto":
            if not isinstance(backbone, str):
                raise ValueError("pretrained_path='auto' needs a named backbone, got an nn.Module.")
            pretrained_path = find_pretrained_weights(look_up_option(backbone, Backbone))
        if pretrained_path:
            load_pretrained(self.backbone, pretrained_path)
        self.num_classes = int(num_classes)
        self.dropout = nn.Dropout(float(head_dropout)) if head_dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(self.feature_dim, self.num_classes)
        hidden = int(projector_hidden or self.feature_dim)
        self.projector = nn.Sequential(
            nn.Linear(self.feature_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, int(projector_dim))
        )

    @property
    def has_dropout(self) -> bool:
        """Whether the head has dropout (needed for MC-dropout uncertainty)."""
        return isinstance(self.dropout, nn.Dropout)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone feature ``(B, feature_dim)``."""
        feats = self.backbone(x)
        return feats.flatten(1) if feats.ndim > 2 else feats

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Classifier logits from backbone features (dropout applied in train mode or when forced on)."""
        return self.classifier(self.dropout(features))

    #: timm-style name of :meth:`head`, the protocol :func:`monai_qmix.separation.score_samples` looks for to run
    #: the backbone once and only the (dropout) head ``T`` times for MC-dropout uncertainty.
    forward_head = head

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """L2-normalised projector embedding ``(B, projector_dim)``."""
        return F.normalize(self.projector(features), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)``."""
        return self.head(self.forward_features(x))

    def forward_all(self, x: torch.Tensor, with_projection: bool = True) -> dict[str, torch.Tensor]:
        """Logits, features and (optionally) projection from one backbone pass."""
        feats = self.forward_features(x)
        out = {"features": feats, "logits": self.head(feats)}
        if with_projection:
            out["projection"] = self.project(feats)
        return out
