# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Tests of the Ω(t) schedules and the official Ω(0) / λ_c presets."""

from __future__ import annotations

import math
import unittest

from parameterized import parameterized

from monai_qmix.losses import QMIX_PRESETS, OmegaSchedule, get_dividemix_preset, get_qmix_preset, omega_schedule

# (schedule, epoch, expected) with omega0 = 0.3, T = 100, T_w = 10
CASES = [
    ["constant", 1, 0.3],
    ["constant", 100, 0.3],
    ["linear", 1, 0.3],
    ["linear", 10, 0.3],
    ["linear", 55, 0.15],
    ["linear", 100, 0.0],
    ["linear", 150, 0.0],
    ["cosine", 10, 0.3],
    ["cosine", 55, 0.15],
    ["cosine", 32.5, 0.3 * 0.5 * (1 + math.cos(math.pi / 4))],
    ["cosine", 100, 0.0],
    ["step", 19, 0.3],
    ["step", 20, 0.15],
    ["step", 35, 0.075],
]


class TestOmegaSchedule(unittest.TestCase):
    @parameterized.expand(CASES)
    def test_values(self, schedule, epoch, expected):
        value = omega_schedule(epoch, omega0=0.3, max_epochs=100, warmup_epochs=10, schedule=schedule)
        self.assertAlmostEqual(value, expected, places=12)

    def test_linear_matches_formula_and_is_monotone(self):
        omega = OmegaSchedule(0.8, max_epochs=30, warmup_epochs=5)
        values = [omega(t) for t in range(1, 31)]
        self.assertTrue(all(a >= b for a, b in zip(values, values[1:])))
        for t in range(6, 31):
            self.assertAlmostEqual(omega(t), 0.8 * (30 - t) / (30 - 5), places=12)
        self.assertIn("linear", repr(omega))

    def test_constant_needs_no_max_epochs(self):
        self.assertEqual(OmegaSchedule(0.2, schedule="constant")(1000), 0.2)

    @parameterized.expand(
        [
            ["omega0", {"omega0": -0.1, "max_epochs": 10}],
            ["schedule", {"omega0": 0.1, "max_epochs": 10, "schedule": "exp"}],
            ["max_epochs", {"omega0": 0.1, "max_epochs": None}],
            ["max_epochs", {"omega0": 0.1, "max_epochs": 10, "warmup_epochs": 10}],
            ["warmup_epochs", {"omega0": 0.1, "max_epochs": 10, "warmup_epochs": -1}],
            ["step_size", {"omega0": 0.1, "max_epochs": 10, "schedule": "step", "step_size": 0}],
            ["gamma", {"omega0": 0.1, "max_epochs": 10, "schedule": "step", "gamma": 1.5}],
        ]
    )
    def test_bad_arguments(self, name, kwargs):
        with self.assertRaisesRegex(ValueError, name):
            OmegaSchedule(**kwargs)

    def test_bad_epoch(self):
        with self.assertRaisesRegex(ValueError, "epoch"):
            OmegaSchedule(0.3, max_epochs=10)(float("nan"))


class TestQMixPresets(unittest.TestCase):
    @parameterized.expand(
        [
            ["ddr_sym_L15_H20", 0.3, 0.0],
            ["ddr_sym_L15_H50", 0.3, 0.01],
            ["ddr_sym_L15_H80", 0.3, 0.025],
            ["ddr_sym_L45_H20", 0.1, 0.025],
            ["ddr_sym_L75_H20", 0.0, 0.05],
            ["ddr_asym_L15_H30", 0.3, 0.025],
            ["ddr_asym_L15_H50", 0.3, 0.025],
            ["ddr_asym_L35_H20", 0.1, 0.01],
            ["ddr_asym_L55_H20", 0.1, 0.01],
            ["drtid", 0.3, 0.0],
            ["deepdrid", 0.8, 0.0],
            ["eyeq", 0.8, 0.0],
            ["drac", 0.8, 0.05],
            ["odir", 0.8, 0.05],
        ]
    )
    def test_official_tables(self, name, omega0, lambda_c):
        preset = get_qmix_preset(name)
        self.assertEqual((preset.omega0, preset.lambda_c), (omega0, lambda_c))
        self.assertIs(get_qmix_preset(name.upper()), preset)
        self.assertEqual(preset.as_dict()["omega0"], omega0)

    def test_table_size_and_default(self):
        self.assertEqual(len(QMIX_PRESETS), 15)
        self.assertEqual(get_qmix_preset("default").noise, "unknown")
        self.assertAlmostEqual(get_qmix_preset("ddr_sym_L45_H20").mis_l, 0.45)

    def test_unknown_name(self):
        with self.assertRaisesRegex(ValueError, "name"):
            get_qmix_preset("ddr_sym_L10_H10")


class TestDivideMixPresets(unittest.TestCase):
    def test_official_defaults(self):
        cifar = get_dividemix_preset("DIVIDEMIX_CIFAR")
        self.assertEqual(
            (cifar.lambda_u, cifar.lambda_u_rampup, cifar.mixup_alpha, cifar.sharpen_temperature, cifar.p_threshold),
            (25.0, 16, 4.0, 0.5, 0.5),
        )
        real = get_dividemix_preset("dividemix_realworld")
        self.assertEqual((real.lambda_u, real.lambda_u_rampup, real.mixup_alpha), (0.0, 0, 0.5))
        for p in (cifar, real):
            self.assertEqual((p.mis_h_loss, p.prior), ("mse_mean", "uniform"))
        kw = cifar.trainer_kwargs()
        self.assertEqual(kw["sample_loss"].lambda_m, 25.0)
        self.assertEqual((kw["sample_loss"].mis_h_loss, kw["sample_loss"].normalization), ("mse_mean", "loader"))
        self.assertEqual(cifar.trainer_kwargs("single")["sample_loss"].normalization, "batch")
        self.assertEqual(kw["lambda_m_rampup"], 16)
        self.assertEqual((kw["targets"].mixmatch, kw["targets"].mixup_alpha), (True, 4.0))
        self.assertEqual(kw["targets"].sharpen_temperature, 0.5)
        self.assertEqual(kw["separation_handler_kwargs"], {"separation_kwargs": {"p_threshold": 0.5}})
        self.assertEqual(real.as_dict()["mixup_alpha"], 0.5)

    def test_trainer_accepts_the_kwargs(self):
        from tests.engines.test_trainer import build

        trainer = build("dividemix", max_epochs=2, **get_dividemix_preset("dividemix_cifar").trainer_kwargs())
        self.assertEqual((trainer.lambda_m, trainer.lambda_m_rampup, trainer.targets.mixup_alpha), (25.0, 16, 4.0))
        self.assertTrue(trainer.mixmatch)
        self.assertEqual(trainer.sample_loss.mis_h_loss, "mse_mean")
        self.assertEqual(trainer.separation_handler.separation_kwargs["p_threshold"], 0.5)

    def test_unknown_name(self):
        with self.assertRaisesRegex(ValueError, "name"):
            get_dividemix_preset("dividemix_webvision")


if __name__ == "__main__":
    unittest.main()
