# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""The two-loader loop in 2 CPU processes (gloo, DDP): the same partitions as one process, sharded loaders."""

from __future__ import annotations

import os
import tempfile
import unittest

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from ignite.engine import Events
from monai.data import DataLoader, Dataset, set_track_meta
from monai.utils import set_determinism
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from monai_qmix.engines.trainer import QMixTrainer
from monai_qmix.handlers import CoTrainingDiagnosticsHandler
from tests.engines.test_trainer import BATCH, N, make_items, tiny_net, views


def _run(world: int) -> dict:
    """Two epochs (1 warm-up) with lr 0: the networks stay at their seeded initialisation, so the separation at
    epoch 2 does not depend on how the warm-up batches were split across processes."""
    set_track_meta(False)
    set_determinism(0)
    items = make_items()
    nets = [tiny_net(), tiny_net()]
    opts = [torch.optim.SGD(n.parameters(), lr=0.0) for n in nets]
    sep_ds = Dataset(items)
    sampler = DistributedSampler(sep_ds, shuffle=False) if world > 1 else None
    if world > 1:
        nets = [DistributedDataParallel(n, find_unused_parameters=True) for n in nets]
    trainer = QMixTrainer(
        "cpu",
        2,
        DataLoader(Dataset(items, transform=views()), batch_size=BATCH, num_workers=0),
        nets[0],
        opts[0],
        network_b=nets[1],
        optimizer_b=opts[1],
        warmup_epochs=1,
        lambda_c=0.0,
        separation_loader=DataLoader(sep_ds, batch_size=8, sampler=sampler),
        decollate=False,
    )
    seen: dict[str, list[int]] = {}

    def record(e: QMixTrainer) -> None:
        step = e.state.batch
        for role in ("labelled", "unlabelled"):
            if step[role] is not None:
                key = f"{e.state.epoch}_{step['network']}_{role}"
                seen.setdefault(key, []).extend(step[role]["index"].tolist())

    lengths: list[int] = []
    diagnostics = CoTrainingDiagnosticsHandler(true_labels=[i % 3 for i in range(N)])
    diagnostics.attach(trainer)
    trainer.add_event_handler(Events.GET_BATCH_COMPLETED, record)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: lengths.append(int(e.state.epoch_length)))
    trainer.run()
    return {
        "groups": {k: torch.as_tensor(r.groups) for k, r in trainer.state.separation.items()},
        "seen": {k: torch.as_tensor(v) for k, v in seen.items()},
        "lengths": torch.as_tensor(lengths),
        "local_counts": diagnostics._counts.clone(),  # this rank's rows of the last epoch
        "diag": {k: v for k, v in diagnostics.history[-1].items() if isinstance(v, (int, float))},
    }


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.save(_run(world), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


class TestTwoLoaderDistributed(unittest.TestCase):
    def test_two_processes_match_one(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            mp.start_processes(_worker, args=(2, os.path.join(tmp, "init"), tmp), nprocs=2, start_method=method)
            ranks = [torch.load(os.path.join(tmp, f"rank{r}.pt"), weights_only=True) for r in range(2)]
        single = _run(1)
        set_track_meta(True)
        set_determinism(None)
        for r in ranks:  # the same partitions as one process, on every rank
            for k in ("A", "B"):
                np.testing.assert_array_equal(r["groups"][k].numpy(), single["groups"][k].numpy())
        # the ranks run in lockstep (DDP needs the same number of steps) over disjoint shards of each loader
        torch.testing.assert_close(ranks[0]["lengths"], ranks[1]["lengths"])
        self.assertTrue(bool((ranks[0]["lengths"] <= single["lengths"]).all()))
        for key, idx in single["seen"].items():
            if key.endswith("unlabelled"):
                continue  # restarted within a pass: only its set is fixed
            union = set(ranks[0]["seen"][key].tolist()) | set(ranks[1]["seen"][key].tolist())
            self.assertEqual(union, set(idx.tolist()), key)
            n = len(idx)
            self.assertEqual(len(ranks[0]["seen"][key]) + len(ranks[1]["seen"][key]), n + n % 2, key)  # + padding
        # diagnostics are reduced over the ranks: every rank writes the same row, counting the rows of all ranks
        self.assertEqual(ranks[0]["diag"], ranks[1]["diag"])
        total = ranks[0]["local_counts"] + ranks[1]["local_counts"]
        for j, kind in enumerate(("refined", "guessed", "pseudo")):
            n = int(total[0, j, 0] + total[0, j, 3])
            self.assertEqual(ranks[0]["diag"][f"n_{kind}_A"], n)
        n_rows = sum(ranks[0]["diag"][f"n_{kind}_A"] for kind in ("refined", "guessed", "pseudo"))
        seen_a = sum(len(r["seen"][k]) for r in ranks for k in ("2_A_labelled", "2_A_unlabelled") if k in r["seen"])
        self.assertEqual(n_rows, seen_a)
        self.assertEqual(ranks[0]["diag"]["agreement"], single["diag"]["agreement"])  # the same partitions
        self.assertEqual(sorted(single["seen"]["1_A_labelled"].tolist()), list(range(N)))
        self.assertTrue({"2_A_labelled", "2_B_labelled", "2_A_unlabelled"} <= set(single["seen"]))  # an SSL epoch


if __name__ == "__main__":
    unittest.main()
