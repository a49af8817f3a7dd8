# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Distributed separation: 2 CPU processes (gloo), each scoring its shard, must equal the single-process result."""

from __future__ import annotations

import glob
import os
import tempfile
import unittest

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from ignite.engine import Engine
from torch.utils.data import DataLoader, DistributedSampler

from monai_qmix.handlers import SampleSeparationHandler
from monai_qmix.separation import SeparationResult
from tests.separation._toy import ToyNet, toy_items

N_ITEMS = 31  # odd: DistributedSampler pads one shard with a duplicate sample


def _run_handler(loader, out_dir):
    engine = Engine(lambda e, b: None)
    SampleSeparationHandler(loader, ToyNet(seed=0), key="A", output_dir=out_dir, save_png=False, progress=False).attach(
        engine
    )
    engine.run([0], max_epochs=1)
    return engine.state.separation["A"]


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        items = toy_items(N_ITEMS, with_group=True)
        sampler = DistributedSampler(items, num_replicas=world, rank=rank, shuffle=False)
        res = _run_handler(DataLoader(items, batch_size=4, sampler=sampler), os.path.join(out_dir, "records"))
        torch.save(res.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


class TestDistributedSeparation(unittest.TestCase):
    def test_ddp_equals_single_process(self):
        with tempfile.TemporaryDirectory() as tmp:
            # "fork" (POSIX) reuses the imported modules: ~10x faster start-up than "spawn" on a small CI machine
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            mp.start_processes(_worker, args=(2, os.path.join(tmp, "init"), tmp), nprocs=2, start_method=method)
            ranks = [
                SeparationResult.from_state_dict(torch.load(os.path.join(tmp, f"rank{r}.pt"), weights_only=True))
                for r in range(2)
            ]
            records = glob.glob(os.path.join(tmp, "records", "*"))
            single = _run_handler(DataLoader(toy_items(N_ITEMS, with_group=True), batch_size=7), None)
        self.assertEqual(len(records), 1)  # only rank 0 writes files
        for res in ranks:
            np.testing.assert_array_equal(res.indices, np.arange(N_ITEMS))  # padding duplicate dropped
            np.testing.assert_array_equal(res.groups, single.groups)
            np.testing.assert_allclose(res.probs, single.probs, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(res.loss, single.loss, rtol=1e-5, atol=1e-6)


if __name__ == "__main__":
    unittest.main()
