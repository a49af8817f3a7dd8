# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Tests of ``CoTrainingTargets``: the configured per-group targets equal the SSL functions they wrap."""

from __future__ import annotations

import unittest

import torch
from parameterized import parameterized

from monai_qmix.losses import CoTrainingTargets, MisLTargetRule, co_guess, co_refine, mixup, pseudo_label
from tests.utils import assert_allclose


def _probs(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(*shape, generator=g), dim=-1)


class TestCoTrainingTargets(unittest.TestCase):
    def setUp(self) -> None:
        self.labels = torch.tensor([0, 2, 1, 3])
        self.views = _probs(0, (2, 4, 4))  # (M, B, C)
        self.post = _probs(1, (4, 3))
        self.weight = self.post[:, 0]

    @parameterized.expand([[r.value] for r in MisLTargetRule])
    def test_equals_the_functions(self, rule: str) -> None:
        t = CoTrainingTargets(sharpen_temperature=0.3, mis_l_rule=rule)
        assert_allclose(
            t.correct(self.labels, self.weight, self.views), co_refine(self.labels, self.weight, self.views, 0.3)
        )
        assert_allclose(
            t.mis_l(self.labels, self.views, self.post), pseudo_label(self.labels, self.views, self.post, rule, 0.3)
        )
        other = _probs(2, (2, 4, 4))
        assert_allclose(t.mis_h(self.views, other), co_guess(self.views, other, 0.3))
        self.assertAlmostEqual(float(t.mis_l(self.labels, self.views, self.post).sum()), 4.0, places=5)

    def test_mix_is_mixup_with_alpha_and_identity_when_off(self) -> None:
        x, y = torch.randn(6, 3, generator=torch.Generator().manual_seed(3)), _probs(4, (6, 5))
        t = CoTrainingTargets(mixup_alpha=0.5)
        mx, my = t.mix(x, y, torch.Generator().manual_seed(7), enabled=True)
        ex, ey, _, _ = mixup(x, y, alpha=0.5, generator=torch.Generator().manual_seed(7))
        assert_allclose(mx, ex)
        assert_allclose(my, ey)
        same_x, same_y = t.mix(x, y, torch.Generator().manual_seed(7), enabled=False)
        self.assertIs(same_x, x)
        self.assertIs(same_y, y)

    def test_defaults_and_repr(self) -> None:
        t = CoTrainingTargets()
        self.assertEqual(
            (t.sharpen_temperature, t.mis_l_rule, t.mixmatch, t.mixup_alpha), (0.5, "posterior_refine", None, 4.0)
        )
        self.assertIn("mis_l_rule='posterior_refine'", repr(t))

    @parameterized.expand(
        [
            [{"sharpen_temperature": 0}, ValueError, "sharpen_temperature"],
            [{"mixup_alpha": -1}, ValueError, "mixup_alpha"],
            [{"mis_l_rule": "magic"}, ValueError, "mis_l_rule must be one of .*'magic'"],
            [{"mixmatch": "yes"}, TypeError, "mixmatch"],
        ]
    )
    def test_invalid(self, kwargs: dict, exc: type, msg: str) -> None:
        with self.assertRaisesRegex(exc, msg):
            CoTrainingTargets(**kwargs)


if __name__ == "__main__":
    unittest.main()
