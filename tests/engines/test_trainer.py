# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""End-to-end tests of ``QMixTrainer`` (qmix, dividemix, standard) on tiny synthetic ring images."""

from __future__ import annotations

import glob
import math
import os
import tempfile
import unittest

import numpy as np
import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset, set_track_meta
from monai.engines import IterationEvents
from monai.handlers import CheckpointLoader, CheckpointSaver, from_engine
from monai.transforms import Compose, RandFlip, RandGaussianNoise
from monai.utils import set_determinism
from parameterized import parameterized
from torch import nn

from monai_qmix.engines.trainer import QMixTrainer
from monai_qmix.handlers import FixedPartitionHandler, SeparationEvents, ground_truth_partition
from monai_qmix.losses import CoTrainingTargets, OmegaSchedule, SampleReweighingLoss
from monai_qmix.networks import QMixNet
from monai_qmix.separation import SeparationResult
from monai_qmix.transforms.augment import MultiViewd, RandGrayscale

N, SIZE, CLASSES, BATCH = 32, 24, 3, 8


def make_items(seed: int = 0) -> list[dict]:
    """Rings whose radius codes the class (rotation invariant); 6 flipped labels (Mis-H), 6 dark blurs (Mis-L)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2
    r = np.sqrt(yy**2 + xx**2)
    items = []
    for i in range(N):
        c = i % CLASSES
        img = 0.2 * rng.random((3, SIZE, SIZE)) + np.exp(-((r - (3 + 4 * c)) ** 2) / 2.0)[None]
        label = c
        if i % 16 in (3, 9, 12):  # label noise
            label = (c + 1) % CLASSES
        if i % 16 in (5, 14, 15):  # low quality: flat and dark
            img = 0.1 * rng.random((3, SIZE, SIZE))
        items.append({"image": torch.as_tensor(img, dtype=torch.float32), "label": label, "index": i})
    return items


def views() -> MultiViewd:
    weak = Compose([RandFlip(prob=0.5, spatial_axis=0), RandFlip(prob=0.5, spatial_axis=1)])
    strong = Compose([RandFlip(prob=0.5, spatial_axis=1), RandGaussianNoise(prob=1.0, std=0.05), RandGrayscale(0.2)])
    return MultiViewd("image", {"image_w1": weak, "image_w2": weak, "image_s1": strong, "image_s2": strong})


def tiny_net(bn: bool = False) -> QMixNet:
    norm = [nn.BatchNorm2d(8)] if bn else []
    backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), *norm, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return QMixNet(num_classes=CLASSES, backbone=backbone, feature_dim=8, projector_dim=8, projector_hidden=8)


def build(
    method: str = "qmix", max_epochs: int = 3, seed: int = 0, handlers=None, bn: bool = False, **kwargs
) -> QMixTrainer:
    set_determinism(seed)
    items = make_items()
    loader = DataLoader(Dataset(items, transform=views()), batch_size=BATCH, shuffle=True, num_workers=0)
    sep_loader = DataLoader(Dataset(items), batch_size=16, shuffle=False, num_workers=0)
    net_a = tiny_net(bn)
    opt_a = torch.optim.Adam(net_a.parameters(), lr=1e-2)
    two = method != "standard"
    net_b = tiny_net(bn) if two else None
    opt_b = torch.optim.Adam(net_b.parameters(), lr=1e-2) if two else None
    kwargs.setdefault("lambda_c", 0.05 if method == "qmix" else 0.0)
    return QMixTrainer(
        device="cpu",
        max_epochs=max_epochs,
        train_data_loader=loader,
        network=net_a,
        optimizer=opt_a,
        network_b=net_b,
        optimizer_b=opt_b,
        lr_scheduler=torch.optim.lr_scheduler.StepLR(opt_a, step_size=1, gamma=0.9),
        lr_scheduler_b=torch.optim.lr_scheduler.StepLR(opt_b, step_size=1, gamma=0.9) if two else None,
        method=method,
        warmup_epochs=1,
        separation_loader=sep_loader if two else None,
        train_handlers=handlers,
        **kwargs,
    )


class Recorder:
    """Collects per-iteration outputs (after MONAI's decollation) and separation epochs."""

    def __init__(self, trainer: QMixTrainer, keys: list[str]) -> None:
        self.keys, self.rows, self.sep_epochs, self.model_completed, self.losses = keys, [], [], 0, []
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self.on_iter)
        trainer.add_event_handler(
            SeparationEvents.SEPARATION_COMPLETED, lambda e: self.sep_epochs.append(e.state.epoch)
        )

        trainer.add_event_handler(IterationEvents.MODEL_COMPLETED, self.on_model)

    def on_separation(self, engine: QMixTrainer) -> None:
        self.sep_epochs.append(engine.state.epoch)

    def on_model(self, engine: QMixTrainer) -> None:
        self.model_completed += 1

    def on_iter(self, engine: QMixTrainer) -> None:
        out = engine.state.output  # a list of per-sample dicts after MONAI's decollation
        self.losses.append(float(from_engine(["loss"], first=True)(out)))  # StatsHandler's usual transform
        self.rows.append((engine.state.epoch, {k: float(out[0][k]) for k in self.keys if k in out[0]}))

    def epoch_mean(self, key: str, epoch: int) -> float:
        return float(np.mean([r[key] for e, r in self.rows if e == epoch and key in r]))  # two_loader: A or B rows


def weights(trainer: QMixTrainer) -> list[torch.Tensor]:
    return [p.detach().clone() for net in trainer.networks for p in net.state_dict().values()]


def fake_result(group: int) -> SeparationResult:
    probs = np.zeros((N, 3), dtype=np.float32)
    probs[:, group] = 1.0
    z = np.zeros(N, dtype=np.float32)
    labels = np.asarray([i % CLASSES for i in range(N)])
    return SeparationResult(
        np.arange(N), probs, np.full(N, group, dtype=np.int64), z, z, z, z, labels=labels, mode="qmix"
    )


SSL_KEYS = ["loss", "loss_a", "loss_b", "correct_a", "mis_h_a", "mis_l_a", "con_a", "reg_a", "n_mis_l_a", "n_mis_h_b"]


class TestQMixTrainer(unittest.TestCase):
    def setUp(self) -> None:
        set_track_meta(False)

    def tearDown(self) -> None:
        set_track_meta(True)
        set_determinism(None)

    @parameterized.expand([["two_loader"], ["single"]])
    def test_qmix_twin_and_resume(self, loop: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            runs = []
            for run in range(2):  # twin seeded runs, the first one writes a checkpoint per epoch
                handlers = []
                trainer = build("qmix", loop=loop)
                if run == 0:
                    handlers.append(CheckpointSaver(tmp, trainer.checkpoint_dict(), save_interval=1, n_saved=None))
                    handlers[0].attach(trainer)
                rec = Recorder(trainer, SSL_KEYS)
                lengths: list[int] = []
                trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e, n=lengths: n.append(e.state.epoch_length))
                trainer.run()
                runs.append((rec, weights(trainer), trainer))
            rec, final, trainer = runs[0]
            # end to end: finite losses, separation at epochs 2 and 3 (warm-up 1), events fired
            self.assertEqual(rec.sep_epochs, [2, 3])
            if loop == "single":
                self.assertEqual(rec.model_completed, 3 * (N // BATCH))
            else:  # one iteration = one step of one network; warm-up: one pass of batch 2B per network
                self.assertEqual(lengths[0], 2 * math.ceil(N / (2 * BATCH)))
                self.assertEqual(rec.model_completed, sum(lengths))
                self.assertEqual(trainer.state.iteration, sum(lengths))
            self.assertTrue(all(math.isfinite(v) for _, r in rec.rows for v in r.values()))
            self.assertEqual(sorted(trainer.state.separation), ["A", "B"])
            self.assertGreater(rec.epoch_mean("con_a", 3), 0.0)  # lambda_c > 0: contrastive term active
            self.assertAlmostEqual(trainer.optimizer.param_groups[0]["lr"], 1e-2 * 0.9**3, places=8)
            # twin runs are identical
            self.assertEqual([r for _, r in rec.rows], [r for _, r in runs[1][0].rows])
            for a, b in zip(final, runs[1][1]):
                torch.testing.assert_close(a, b, rtol=0, atol=0)
            # resume from the epoch-2 checkpoint reproduces epoch 3 exactly
            ckpt = [f for f in glob.glob(os.path.join(tmp, "*.pt")) if "=2" in os.path.basename(f)]
            self.assertEqual(len(ckpt), 1, os.listdir(tmp))
            resumed = build("qmix", seed=123, loop=loop)  # a different seed: everything must come from the checkpoint
            CheckpointLoader(ckpt[0], resumed.checkpoint_dict(), map_location="cpu").attach(resumed)
            rec2 = Recorder(resumed, SSL_KEYS)
            resumed.run()
            self.assertEqual(rec2.sep_epochs, [3])
            self.assertEqual([r for _, r in rec2.rows], [r for e, r in rec.rows if e == 3])
            for a, b in zip(final, weights(resumed)):
                torch.testing.assert_close(a, b, rtol=0, atol=0)

    @parameterized.expand([["two_loader"], ["single"]])
    def test_partition_crosswise_and_empty_groups(self, loop: str) -> None:
        trainer = build("qmix", max_epochs=2, loop=loop)

        def inject(engine: QMixTrainer) -> None:  # A's split: all Mis-L, B's split: all Mis-H
            engine.state.separation = {"A": fake_result(2), "B": fake_result(1)}

        trainer.add_event_handler(SeparationEvents.SEPARATION_COMPLETED, inject)
        rec = Recorder(trainer, ["n_correct_a", "n_mis_h_a", "n_mis_l_a", "n_correct_b", "n_mis_h_b", "n_mis_l_b"])
        with self.assertLogs(trainer.logger, "INFO") as logs:
            trainer.run()
        rows = [r for e, r in rec.rows if e == 2]
        self.assertTrue(rows)
        # A is trained on B's split (all Mis-H), B on A's (all Mis-L); two_loader: a row is a step of A or of B
        self.assertEqual(sum("n_correct_a" in r for r in rows) > 0, True)
        self.assertEqual(sum("n_correct_b" in r for r in rows) > 0, True)
        for r in rows:
            if "n_correct_a" in r:
                self.assertEqual((r["n_correct_a"], r["n_mis_h_a"], r["n_mis_l_a"]), (0.0, 2.0 * BATCH, 0.0))
            if "n_correct_b" in r:
                self.assertEqual((r["n_correct_b"], r["n_mis_h_b"], r["n_mis_l_b"]), (0.0, 0.0, 2.0 * BATCH))
        text = "\n".join(logs.output)
        self.assertIn("network A trains on the split of network B", text)
        self.assertIn("empty groups skip their term", text)
        self.assertIn("con_a", text)  # contrastive term skipped (a single group without positives: fewer than 2)

    def test_standard_baseline(self) -> None:
        trainer = build("standard", max_epochs=3)
        rec = Recorder(trainer, ["loss", "ce_a"])
        trainer.run()
        self.assertIsNone(trainer.separation_handler)
        self.assertEqual(len(trainer.networks), 1)
        self.assertEqual(len(rec.rows), 3 * (N // BATCH))
        self.assertTrue(all(math.isfinite(r["loss"]) for _, r in rec.rows))
        self.assertLess(rec.epoch_mean("loss", 3), rec.epoch_mean("loss", 1))

    def test_targets_mixmatch_follows_the_method_unless_set(self) -> None:
        self.assertTrue(build("dividemix", max_epochs=2).mixmatch)
        self.assertFalse(build("qmix", max_epochs=2).mixmatch)
        self.assertFalse(build("dividemix", max_epochs=2, targets=CoTrainingTargets(mixmatch=False)).mixmatch)
        targets = CoTrainingTargets(sharpen_temperature=0.3, mis_l_rule="label", mixmatch=True, mixup_alpha=0.5)
        trainer = build("qmix", max_epochs=2, targets=targets)
        self.assertIs(trainer.targets, targets)
        self.assertTrue(trainer.mixmatch)

    @parameterized.expand([["two_loader"], ["single"]])
    def test_dividemix_baseline_one_strong_view(self, loop: str) -> None:
        trainer = build("dividemix", max_epochs=3, strong_views=1, loop=loop)
        rec = Recorder(trainer, ["loss", "loss_a", "n_mis_l_a", "n_mis_l_b", "n_correct_a", "n_mis_h_a"])
        trainer.run()
        self.assertTrue(trainer.mixmatch)
        self.assertEqual(rec.sep_epochs, [2, 3])
        self.assertEqual(trainer.state.separation["A"].mode, "dividemix")
        rows = [r for e, r in rec.rows if e > 1]
        self.assertTrue(all(math.isfinite(r["loss"]) for r in rows))
        self.assertTrue(all(r.get("n_mis_l_a", 0) == 0 and r.get("n_mis_l_b", 0) == 0 for r in rows))
        if loop == "single":  # one strong view, one loader: the groups share the batch
            self.assertTrue(all(r["n_correct_a"] + r["n_mis_h_a"] == BATCH for r in rows))
        else:  # up to B labelled (Correct) + B unlabelled (Mis-H) rows per step
            steps = [r for r in rows if "n_correct_a" in r]
            self.assertTrue(steps)
            self.assertTrue(all(r["n_correct_a"] <= BATCH and r["n_mis_h_a"] <= BATCH for r in steps))

    @parameterized.expand([["qmix", 2], ["qmix", 1], ["standard", 1]])
    def test_skip_unused_views(self, method: str, strong_views: int) -> None:
        trainer = build(method, max_epochs=2, strong_views=strong_views, skip_unused_views=True)
        self.assertEqual(len(trainer.multiview_transforms), 1)
        made: dict[int, set] = {}

        def record(e: QMixTrainer) -> None:  # two_loader: the step holds the labelled / unlabelled batches
            b = e.state.batch
            batches = [b] if method == "standard" else [x for x in (b["labelled"], b["unlabelled"]) if x is not None]
            for x in batches:
                made.setdefault(e.state.epoch, set()).update(k for k in x if "_" in k)

        trainer.add_event_handler(Events.GET_BATCH_COMPLETED, record)
        lengths: list[int] = []
        trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: lengths.append(e.state.epoch_length))
        rec = Recorder(trainer, ["loss"])
        trainer.run()
        self.assertEqual(made[1], {"image_s1"})  # warm-up / CE: only the strong view the loss uses
        after = (
            {"image_s1"} if method == "standard" else {"image_w1", "image_w2", *["image_s1", "image_s2"][:strong_views]}
        )
        self.assertEqual(made[2], after)
        self.assertTrue(all(math.isfinite(r["loss"]) for _, r in rec.rows))
        self.assertEqual(len(rec.rows), sum(lengths) if method != "standard" else 2 * (N // BATCH))

    def test_skip_unused_views_checks_loader(self) -> None:
        net = tiny_net()
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        with self.assertWarnsRegex(UserWarning, "skip_unused_views"):  # no MultiViewd: everything is computed
            QMixTrainer("cpu", 1, [{}], net, opt, method="standard", skip_unused_views=True)
        loader = DataLoader(Dataset(make_items(), views()), batch_size=BATCH, num_workers=1, persistent_workers=True)
        with self.assertRaisesRegex(ValueError, "persistent_workers"):
            QMixTrainer("cpu", 1, loader, net, opt, method="standard", skip_unused_views=True)

    def test_channels_last_same_losses(self) -> None:
        runs = []
        for channels_last in (False, True):
            trainer = build("qmix", max_epochs=2, channels_last=channels_last)
            rec = Recorder(trainer, ["loss", "loss_a", "loss_b"])
            trainer.run()
            runs.append(rec.rows)
        self.assertTrue(trainer.network.backbone[0].weight.is_contiguous(memory_format=torch.channels_last))
        self.assertEqual(len(runs[0]), len(runs[1]))
        for (e0, r0), (e1, r1) in zip(*runs):
            self.assertEqual(e0, e1)
            for k in r0:
                self.assertAlmostEqual(r0[k], r1[k], places=4)

    def test_non_finite_loss_raises(self) -> None:
        trainer = build("standard", max_epochs=1)
        with torch.no_grad():
            trainer.network.classifier.weight.fill_(float("nan"))
        with self.assertRaisesRegex(FloatingPointError, r"epoch 1, iteration 1: term 'ce' of network A"):
            trainer.run()

    def test_amp_on_cpu_warns(self) -> None:
        with self.assertWarnsRegex(UserWarning, "CUDA"):
            trainer = build("standard", max_epochs=1, amp=True)
        self.assertFalse(trainer.amp)

    @parameterized.expand(
        [
            [{"method": "nope"}, "method"],
            [{"strong_views": 3}, "strong_views"],
            [{"method": "dividemix", "lambda_c": 0.1}, "lambda_c"],
            [{"weak_mode": "test"}, "weak_mode"],
            [{"min_group_size": 0}, "min_group_size"],
            [{"prior": "flat"}, "prior"],
            [{"separation_handler_kwargs": {"separation_kwargs": {"mode": "dividemix"}}}, r"\['mode'\]='dividemix'"],
            [{"separation_handler_kwargs": {"warmup_epochs": 3}}, r"separation_handler_kwargs\['warmup_epochs'\]"],
        ]
    )
    def test_invalid_arguments(self, kwargs: dict, name: str) -> None:
        method = kwargs.pop("method", "qmix")
        with self.assertRaisesRegex(ValueError, name):
            build(method, max_epochs=2, **kwargs)

    def test_default_omega_is_the_bundles_linear_schedule(self) -> None:
        trainer = build("qmix", max_epochs=5)
        omega = trainer.sample_loss.omega
        self.assertIsInstance(omega, OmegaSchedule)
        self.assertEqual((omega.omega0, omega.max_epochs, omega.warmup_epochs), (0.3, 5, 1))
        self.assertEqual(omega.schedule, "linear")
        constant = SampleReweighingLoss.for_loop("two_loader", omega=0.2)  # a constant stays possible
        self.assertIs(build("qmix", max_epochs=5, sample_loss=constant).sample_loss, constant)
        self.assertEqual(constant.omega, 0.2)
        two, single = build("qmix", max_epochs=5).sample_loss, build("qmix", max_epochs=5, loop="single").sample_loss
        self.assertEqual((two.mis_h_loss, two.normalization), ("mse_mean", "loader"))
        self.assertEqual((single.mis_h_loss, single.normalization), ("mse", "batch"))
        with self.assertRaisesRegex(TypeError, "sample_loss: expected a SampleReweighingLoss"):
            build("qmix", max_epochs=5, sample_loss=torch.nn.MSELoss())
        with self.assertRaisesRegex(TypeError, "contrastive_loss: expected a ContrastiveEnhancementLoss"):
            build("qmix", max_epochs=5, contrastive_loss=0.07)
        with self.assertRaisesRegex(TypeError, "targets: expected a CoTrainingTargets"):
            build("qmix", max_epochs=5, targets={"sharpen_temperature": 0.5})
        with self.assertRaisesRegex(ValueError, "loop: expected one of"):
            SampleReweighingLoss.for_loop("double")

    def test_separation_handler_kwargs_reach_the_handler(self) -> None:
        kw = {"separation_kwargs": {"n_init": 2}, "scoring_kwargs": {"uncertainty": "variance"}, "progress": False}
        handler = build("qmix", max_epochs=3, separation_handler_kwargs=kw).separation_handler
        self.assertEqual(handler.separation_kwargs, {"mode": "qmix", "n_init": 2})
        self.assertEqual(handler.scoring_kwargs, {"uncertainty": "variance"})
        self.assertEqual(kw["separation_kwargs"], {"n_init": 2})  # the caller's dict is not changed

    def test_missing_separation_source(self) -> None:
        net, net_b = tiny_net(), tiny_net()
        with self.assertRaisesRegex(ValueError, "separation_loader"):
            QMixTrainer(
                "cpu",
                2,
                [{}],
                net,
                torch.optim.SGD(net.parameters(), lr=0.1),
                network_b=net_b,
                optimizer_b=torch.optim.SGD(net_b.parameters(), lr=0.1),
                warmup_epochs=1,
            )


def mixed_result(shift: int) -> SeparationResult:
    """A partition with all three groups: sample i is in group (i + shift) % 3."""
    groups = ((np.arange(N) + shift) % 3).astype(np.int64)
    probs = np.eye(3, dtype=np.float32)[groups] * 0.8 + 0.2 / 3
    z = np.zeros(N, dtype=np.float32)
    labels = np.asarray([it["label"] for it in make_items()])
    return SeparationResult(np.arange(N), probs, groups, z, z, z, z, labels=labels, mode="qmix")


def state_of(net: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers (BN running statistics, num_batches_tracked) of a network."""
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


class TestTwoLoaderLoop(unittest.TestCase):
    """The default loop: per-epoch labelled / unlabelled loaders, one network trained at a time."""

    def setUp(self) -> None:
        set_track_meta(False)

    def tearDown(self) -> None:
        set_track_meta(True)
        set_determinism(None)

    def inject(self, trainer: QMixTrainer) -> None:
        def on_sep(engine: QMixTrainer) -> None:
            engine.state.separation = {"A": mixed_result(0), "B": mixed_result(1)}

        trainer.add_event_handler(SeparationEvents.SEPARATION_COMPLETED, on_sep)

    def test_loaders_hold_the_partition_groups(self) -> None:
        trainer = build("qmix", max_epochs=3, lambda_c=0.0)
        self.inject(trainer)
        seen: dict[tuple[int, str, str], list[int]] = {}

        def record(e: QMixTrainer) -> None:
            step = e.state.batch
            for role in ("labelled", "unlabelled"):
                if step[role] is not None:
                    seen.setdefault((e.state.epoch, step["network"], role), []).extend(step[role]["index"].tolist())

        trainer.add_event_handler(Events.GET_BATCH_COMPLETED, record)
        loaders = {}
        trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: loaders.__setitem__(e.state.epoch, e.epoch_loaders))
        trainer.run()
        # warm-up: each network one pass over all samples in batches of 2B, its own order
        self.assertEqual(sorted(seen[(1, "A", "labelled")]), list(range(N)))
        self.assertEqual(sorted(seen[(1, "B", "labelled")]), list(range(N)))
        self.assertNotEqual(seen[(1, "A", "labelled")], seen[(1, "B", "labelled")])
        self.assertEqual(loaders[1]["A"]["labelled"].batch_size, 2 * BATCH)
        for epoch in (2, 3):
            for net, partner_shift in (("A", 1), ("B", 0)):  # A trains on B's split (shift 1), B on A's
                truth = (np.arange(N) + partner_shift) % 3
                lab, unl = set(np.flatnonzero(truth != 1).tolist()), set(np.flatnonzero(truth == 1).tolist())
                ld = loaders[epoch][net]
                self.assertEqual(set(ld["labelled"].sampler.indices.tolist()), lab)
                self.assertEqual(set(ld["unlabelled"].sampler.indices.tolist()), unl)
                self.assertIs(ld["labelled"].dataset, trainer.train_data_loader.dataset)  # one dataset, no copies
                self.assertEqual((ld["labelled"].batch_size, ld["unlabelled"].batch_size), (BATCH, BATCH))
                # one pass = one pass over the labelled loader; the unlabelled loader restarts when exhausted
                self.assertEqual(sorted(seen[(epoch, net, "labelled")]), sorted(lab))
                u = seen[(epoch, net, "unlabelled")]
                self.assertTrue(set(u) <= unl)
                sizes = [min(BATCH, len(unl) - j) for j in range(0, len(unl), BATCH)]  # unlabelled batches
                self.assertEqual(len(u), sum(sizes[j % len(sizes)] for j in range(len(ld["labelled"]))))

    def test_partner_fixed_during_a_pass(self) -> None:
        trainer = build("qmix", max_epochs=2, bn=True, lambda_c=0.05)
        self.inject(trainer)
        before: dict[str, dict] = {}
        checked = {"A": 0, "B": 0}

        def started(e: QMixTrainer) -> None:
            before.update(A=state_of(e.network), B=state_of(e.network_b))

        def completed(e: QMixTrainer) -> None:
            trained = current["network"]
            partner = "B" if trained == "A" else "A"
            nets = {"A": e.network, "B": e.network_b}
            for k, v in state_of(nets[partner]).items():  # parameters and BN running statistics of the partner
                torch.testing.assert_close(v, before[partner][k], rtol=0, atol=0, msg=f"{partner}.{k} changed")
            changed = [k for k, v in state_of(nets[trained]).items() if not torch.equal(v, before[trained][k])]
            self.assertIn("backbone.1.running_mean", changed)  # the trained network's BN statistics move
            self.assertTrue(any(k.endswith("weight") for k in changed))
            checked[trained] += 1

        current = {}
        trainer.add_event_handler(Events.ITERATION_STARTED, started)
        trainer.add_event_handler(
            Events.GET_BATCH_COMPLETED, lambda e: current.update(network=e.state.batch["network"])
        )
        trainer.add_event_handler(Events.ITERATION_COMPLETED, completed)
        trainer.run()
        self.assertGreater(checked["A"], 2)
        self.assertGreater(checked["B"], 2)

    def test_logged_terms_add_up(self) -> None:
        sample_loss = SampleReweighingLoss.for_loop("two_loader", lambda_m=2.0)
        trainer = build("qmix", max_epochs=2, lambda_c=0.05, sample_loss=sample_loss, decollate=False)
        self.inject(trainer)
        rows = []
        trainer.add_event_handler(
            Events.ITERATION_COMPLETED,
            lambda e: rows.append(
                {k: float(v) for k, v in e.state.output.items() if torch.is_tensor(v) and v.ndim == 0}
            ),
        )
        trainer.run()
        ssl = [r for r in rows if "lx_a" in r or "lx_b" in r]
        self.assertTrue(ssl)
        for r in ssl:
            s = "a" if "lx_a" in r else "b"
            expected = r[f"lx_{s}"] + 2.0 * r[f"lu_{s}"] + 0.05 * r[f"con_{s}"] + r[f"reg_{s}"]
            self.assertAlmostEqual(r["loss"], expected, places=5)
            self.assertEqual(r["loss"], r[f"loss_{s}"])
            self.assertLessEqual(r[f"n_correct_{s}"] + r[f"n_mis_l_{s}"], 2 * BATCH)  # B labelled rows x 2 views
            self.assertLessEqual(r[f"n_mis_h_{s}"], 2 * BATCH)

    @parameterized.expand([["qmix"], ["dividemix"]])
    def test_fixed_oracle_partition(self, method: str) -> None:
        truth = np.asarray(["correct", "mis_h", "mis_l", "correct"] * (N // 4))
        labels = [it["label"] for it in make_items()]
        handler = FixedPartitionHandler(
            ground_truth_partition(truth, labels, mode=method), warmup_epochs=1, noise_group=truth
        )
        trainer = build(method, max_epochs=3, separation_handler=handler, lambda_c=0.0)
        loaders = {}
        trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: loaders.__setitem__(e.state.epoch, e.epoch_loaders))
        rec = Recorder(trainer, ["loss"])
        trainer.run()
        self.assertEqual(rec.sep_epochs, [2, 3])
        self.assertIs(trainer.separation_handler, handler)
        codes = {"correct": 0, "mis_h": 1, "mis_l": 2}
        expected = np.asarray([codes[t] for t in truth])
        if method == "dividemix":
            expected = np.where(expected == 0, 0, 1)
        for k in ("A", "B"):
            np.testing.assert_array_equal(trainer.state.separation[k].groups, expected)
            self.assertEqual(trainer.state.separation_metrics[k]["auc_clean"], 1.0)
            lab = set(loaders[3][k]["labelled"].sampler.indices.tolist())
            self.assertEqual(lab, set(np.flatnonzero(expected != 1).tolist()))
        self.assertTrue(all(math.isfinite(r["loss"]) for _, r in rec.rows))
        with self.assertRaisesRegex(TypeError, "partition"):
            FixedPartitionHandler("truth")
        with self.assertRaisesRegex(ValueError, "mode"):
            ground_truth_partition(truth, mode="coteaching")

    @parameterized.expand([[1], [2], [4]])
    def test_resume_within_an_ssl_epoch(self, into: int) -> None:
        """A checkpoint written ``into`` steps into epoch 2 (1: A's pass, 2: A's unlabelled loader restarted,
        4: B's pass) reproduces the uninterrupted run bit for bit."""

        def make(seed: int) -> QMixTrainer:
            handler = FixedPartitionHandler(lambda k, e: mixed_result(0 if k == "A" else 1), warmup_epochs=1)
            return build("qmix", max_epochs=3, seed=seed, separation_handler=handler, lambda_c=0.05, bn=True)

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "mid.pt")
            trainer = make(0)
            warm = 2 * math.ceil(N / (2 * BATCH))  # steps of the warm-up epoch
            save = {}

            def on_iter(e: QMixTrainer) -> None:
                if e.state.iteration == warm + into:
                    torch.save({k: o.state_dict() for k, o in e.checkpoint_dict().items()}, path)
                    save["lengths"] = (e.state.epoch, e.state.epoch_length)

            trainer.add_event_handler(Events.ITERATION_COMPLETED, on_iter)
            rec = Recorder(trainer, SSL_KEYS)
            trainer.run()
            self.assertEqual(save["lengths"][0], 2)
            self.assertGreater(save["lengths"][1], into)
            resumed = make(123)  # a different seed: everything must come from the checkpoint
            CheckpointLoader(path, resumed.checkpoint_dict(), map_location="cpu").attach(resumed)
            rec2 = Recorder(resumed, SSL_KEYS)
            resumed.run()
        self.assertEqual(rec2.sep_epochs, [3])  # epoch 2's partition comes from the checkpoint, not recomputed
        self.assertEqual(rec2.rows, rec.rows[warm + into :])
        self.assertEqual(resumed.state.iteration, trainer.state.iteration)
        for a, b in zip(weights(trainer), weights(resumed)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)

    @parameterized.expand([["two_loader"], ["single"]])
    def test_resumable_within_epoch(self, loop: str) -> None:
        trainer = build("qmix", max_epochs=2, loop=loop)
        seen = []
        trainer.add_event_handler(
            Events.ITERATION_COMPLETED,
            lambda e: seen.append(
                (e.state.iteration - e._epoch_start_iteration, e.state.epoch_length, e.resumable_within_epoch())
            ),  # fmt: skip
        )
        trainer.run()
        for within, length, ok in seen:  # two-loader: between two steps of an epoch only; single: never
            self.assertEqual(ok, loop == "two_loader" and within < length, (within, length))
        self.assertTrue(any(ok for *_, ok in seen) or loop == "single")

    def test_within_epoch_state_needs_the_loader_seeds(self) -> None:
        trainer = build("qmix", max_epochs=2)
        saved = {}
        trainer.add_event_handler(
            Events.ITERATION_COMPLETED(once=1), lambda e: saved.update(e.state_dict()) or e.terminate()
        )
        trainer.run()
        self.assertEqual(saved["iterations_into_epoch"], 1)
        saved.pop("epoch_loader_seed_state")
        with self.assertRaisesRegex(ValueError, "epoch_loader_seed_state"):
            build("qmix", max_epochs=2).load_state_dict(saved)

    def test_lambda_m_ramp_is_fractional(self) -> None:
        sample_loss = SampleReweighingLoss.for_loop("two_loader", lambda_m=16.0)
        trainer = build("dividemix", max_epochs=3, sample_loss=sample_loss, lambda_m_rampup=16, decollate=False)
        lams = []
        trainer.add_event_handler(
            Events.ITERATION_COMPLETED,
            lambda e: lams.append((e.state.epoch, float(e.state.output["lambda_m"]))) if e.state.epoch > 1 else None,
        )
        trainer.run()
        first = [v for e, v in lams if e == 2]
        self.assertEqual(first[0], 0.0)  # DivideMix: 0 at the first SSL step, then (e + i/n - T_w) / 16 * λ_u
        self.assertTrue(all(0.0 <= v < 1.0 for v in first))
        self.assertTrue(all(1.0 <= v < 2.0 for e, v in lams if e == 3))

    @parameterized.expand([[{"loop": "both"}, "loop"], [{"epoch_length": 3}, "epoch_length"]])
    def test_invalid_loop_arguments(self, kwargs: dict, name: str) -> None:
        with self.assertRaisesRegex(ValueError, name):
            build("qmix", max_epochs=2, **kwargs)

    def test_two_loader_needs_a_dataloader(self) -> None:
        net, net_b = tiny_net(), tiny_net()
        with self.assertRaisesRegex(ValueError, "train_data_loader"):
            QMixTrainer(
                "cpu",
                2,
                [{}],
                net,
                torch.optim.SGD(net.parameters(), lr=0.1),
                network_b=net_b,
                optimizer_b=torch.optim.SGD(net_b.parameters(), lr=0.1),
                warmup_epochs=1,
                separation_loader=[{}],
            )


# ---------------------------------------------------------------------------------------------- regression: collapse
R_N, R_SIZE, R_CLASSES = 200, 20, 5


def ring_image(c: int, rng: np.random.Generator) -> torch.Tensor:
    """An easy, learnable image: a ring whose radius and colour code the class, on uniform noise."""
    yy, xx = np.mgrid[:R_SIZE, :R_SIZE] - (R_SIZE - 1) / 2
    ring = np.exp(-((np.sqrt(yy**2 + xx**2) - (2 + 2.2 * c)) ** 2) / 1.5)
    colour = np.array([1.0, 0.5 + 0.1 * c, 1.0 - 0.2 * c])[:, None, None]
    return torch.as_tensor(0.2 * rng.random((3, R_SIZE, R_SIZE)) + ring[None] * colour, dtype=torch.float32)


def collapse_setup(
    method: str, group_normalization: str | None, loop: str = "single"
) -> tuple[QMixTrainer, list, list, list]:
    """4 CE warm-up epochs on 200 rings with 30 % symmetric label noise, then SSL epochs."""
    set_determinism(0)
    rng = np.random.default_rng(0)
    items = []
    for i in range(R_N):
        c = i % R_CLASSES
        label = int((c + rng.integers(1, R_CLASSES)) % R_CLASSES) if rng.random() < 0.3 else c
        items.append({"image": ring_image(c, rng), "label": label, "index": i})
    test = [{"image": ring_image(i % R_CLASSES, rng), "label": i % R_CLASSES} for i in range(100)]
    weak = Compose([RandFlip(prob=0.5, spatial_axis=0), RandFlip(prob=0.5, spatial_axis=1)])
    strong = Compose([RandFlip(prob=0.5, spatial_axis=1), RandGaussianNoise(prob=1.0, std=0.1)])
    tf = MultiViewd("image", {"image_w1": weak, "image_w2": weak, "image_s1": strong, "image_s2": strong})
    tf.set_random_state(0)
    loader = DataLoader(
        Dataset(items, transform=tf),
        batch_size=16,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(0),
    )

    def net() -> QMixNet:
        bb = nn.Sequential(
            *(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU()),
            *(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU()),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        return QMixNet(num_classes=R_CLASSES, backbone=bb, feature_dim=16, projector_dim=8, projector_hidden=8)

    nets = [net(), net()]
    opts = [torch.optim.AdamW(n.parameters(), lr=1e-2, weight_decay=1e-4) for n in nets]
    truth = np.asarray([int(it["label"] != it["index"] % R_CLASSES) for it in items])
    trainer = QMixTrainer(
        "cpu",
        6,
        loader,
        nets[0],
        opts[0],
        network_b=nets[1],
        optimizer_b=opts[1],
        method=method,
        warmup_epochs=4,
        separation_loader=DataLoader(Dataset(items), batch_size=100),
        separation_handler_kwargs={"noise_group": truth, "progress": False},
        sample_loss=None
        if group_normalization is None
        else SampleReweighingLoss.for_loop(
            loop, omega=OmegaSchedule(0.3, 6, 4, "linear"), normalization=group_normalization
        ),
        loop=loop,
        decollate=False,
    )
    return trainer, nets, test, items


@torch.no_grad()
def accuracy(nets: list, test: list) -> float:
    x = torch.stack([t["image"] for t in test])
    y = torch.as_tensor([t["label"] for t in test])
    for n in nets:
        n.eval()
    p = torch.stack([torch.softmax(n(x), 1) for n in nets]).mean(0)
    return float((p.argmax(1) == y).float().mean())


class TestNoCollapseAfterWarmup(unittest.TestCase):
    """Regression: SSL epochs after warm-up must not collapse the networks (robustness benchmark, first run).

    Root cause: the group terms were averaged over each group's count *in the batch*, so when the partition is
    unbalanced across classes (a short warm-up: Correct holds only the classes the network is already sure of,
    Mis-L whole classes) the 1-3 Correct samples of a batch outweighed everything else and within one epoch the
    networks predicted only the Correct classes.
    """

    def setUp(self) -> None:
        set_track_meta(False)
        torch.set_num_threads(1)

    def tearDown(self) -> None:
        set_track_meta(True)
        set_determinism(None)

    def run_case(
        self, method: str, group_normalization: str | None, inject: bool, loop: str = "single"
    ) -> tuple[float, float, float]:
        trainer, nets, test, items = collapse_setup(method, group_normalization, loop)
        accs = {}
        trainer.add_event_handler(
            Events.EPOCH_COMPLETED, lambda e: accs.__setitem__(e.state.epoch, accuracy(nets, test))
        )
        auc = []

        def on_separation(engine: QMixTrainer) -> None:
            auc.append(engine.state.separation_metrics["A"]["auc_clean"])
            if inject:  # the unbalanced partition seen in the benchmark: Correct = one class, the rest Mis-L
                labels = np.asarray([it["label"] for it in items])
                groups = np.where(labels == 0, 0, 2).astype(np.int64)
                probs = np.eye(3, dtype=np.float32)[groups]
                z = np.zeros(R_N, dtype=np.float32)
                res = SeparationResult(np.arange(R_N), probs, groups, z, z, z, z, labels=labels, mode="qmix")
                engine.state.separation = {"A": res, "B": res}

        trainer.add_event_handler(SeparationEvents.SEPARATION_COMPLETED, on_separation)
        trainer.run()
        return accs[4], min(accs[5], accs[6]), auc[0]

    @parameterized.expand(
        [
            ["qmix", False, "single", "batch"],
            ["dividemix", False, "single", "batch"],
            ["qmix", True, "single", "batch"],
            ["qmix", False, "two_loader", None],
            ["dividemix", False, "two_loader", None],
            ["qmix", True, "two_loader", None],
        ]
    )
    def test_accuracy_kept_after_warmup(self, method: str, inject: bool, loop: str, normalization: str | None) -> None:
        warm, after, auc = self.run_case(method, normalization, inject, loop)
        msg = f"{method} {loop}: accuracy {warm:.2f} at warm-up end, then {after:.2f}"
        if loop == "single":
            self.assertGreaterEqual(warm, 0.7)  # the set is learnable during warm-up
            self.assertGreaterEqual(after, warm - 0.1, msg)
        else:  # warm-up takes half as many steps (batch 2B per network), so only the level after it is checked
            self.assertGreaterEqual(after, max(warm - 0.1, 0.7), msg)
        # separation of network A at its first separation vs the true noisy flags (two_loader: 0.72-0.74 after the
        # shorter warm-up, measured at the commit that introduced it)
        self.assertGreaterEqual(auc, 0.8 if loop == "single" else 0.7)

    def test_group_normalization_collapses_on_unbalanced_partition(self) -> None:
        warm, after, _ = self.run_case("qmix", "group", inject=True)  # the old behaviour, kept as an option
        self.assertLess(after, warm - 0.1)


if __name__ == "__main__":
    unittest.main()
