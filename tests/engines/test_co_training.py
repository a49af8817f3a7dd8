# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Tests of the per-epoch loaders of the two-loader loop: ``GroupSampler`` and ``CoTrainingPass``."""

from __future__ import annotations

import unittest

from parameterized import parameterized

from monai_qmix.engines.co_training import CoTrainingPass, CoTrainingSteps, GroupSampler


class TestGroupSampler(unittest.TestCase):
    def test_subset_seeded_and_new_order_per_iteration(self) -> None:
        idx = [2, 3, 5, 7, 11, 13, 17]
        a, b = GroupSampler(idx, seed=4), GroupSampler(idx, seed=4)
        first, second = list(a), list(a)
        self.assertEqual(sorted(first), idx)
        self.assertEqual(sorted(second), idx)
        self.assertNotEqual(first, second)  # a restarted loader draws a new order
        self.assertEqual([first, second], [list(b), list(b)])  # same seed, same orders
        self.assertEqual(list(GroupSampler(idx, shuffle=False)), idx)
        self.assertEqual(len(GroupSampler([], seed=0)), 0)
        self.assertEqual(list(GroupSampler([], seed=0)), [])

    def test_fast_forward(self) -> None:
        idx = list(range(9))
        a, b = GroupSampler(idx, seed=2), GroupSampler(idx, seed=2)
        orders = [list(a) for _ in range(3)]
        b.fast_forward(1, 4)  # as after one full iteration and 4 positions of the second
        self.assertEqual(list(b), orders[1][4:])
        self.assertEqual(list(b), orders[2])  # the skip applies once
        with self.assertRaisesRegex(ValueError, "draws"):
            b.fast_forward(-1)

    @parameterized.expand([[2], [3]])
    def test_shards_cover_the_subset_like_distributed_sampler(self, world: int) -> None:
        idx = list(range(10, 21))  # 11 positions: padded to a multiple of the world size
        shards = [list(GroupSampler(idx, seed=1, num_replicas=world, rank=r)) for r in range(world)]
        self.assertEqual({len(s) for s in shards}, {-(-len(idx) // world)})
        flat = [i for s in shards for i in s]
        self.assertEqual(set(flat), set(idx))
        self.assertEqual(len(flat) - len(set(flat)), len(flat) - len(idx))  # only the padding repeats

    @parameterized.expand([[{"indices": [[1, 2]]}, "indices"], [{"indices": [-1]}, "indices"],
                           [{"indices": [1], "num_replicas": 0}, "num_replicas"],
                           [{"indices": [1], "num_replicas": 2, "rank": 2}, "rank"]])  # fmt: skip
    def test_invalid(self, kwargs: dict, name: str) -> None:
        with self.assertRaisesRegex(ValueError, name):
            GroupSampler(**kwargs)


class TestCoTrainingPass(unittest.TestCase):
    def test_secondary_restarts_and_steps_follow_the_plan(self) -> None:
        lab = [["l0"], ["l1"], ["l2"], ["l3"], ["l4"]]
        unl = [["u0"], ["u1"]]
        steps = CoTrainingSteps()
        n = steps.set_plan(
            [
                CoTrainingPass("A", {"labelled": lab, "unlabelled": unl}),
                CoTrainingPass("B", {"labelled": None, "unlabelled": unl}, "unlabelled"),
            ]
        )
        self.assertEqual(n, 7)
        it = iter(steps)
        got = [next(it) for _ in range(n)]
        self.assertEqual([s["network"] for s in got], ["A"] * 5 + ["B"] * 2)
        self.assertEqual([s["unlabelled"][0] for s in got[:5]], ["u0", "u1", "u0", "u1", "u0"])
        self.assertEqual([s["labelled"][0] for s in got[:5]], ["l0", "l1", "l2", "l3", "l4"])
        self.assertTrue(all(s["labelled"] is None for s in got[5:]))
        self.assertEqual([s["step"] for s in got[:5]], list(range(5)))
        with self.assertRaisesRegex(RuntimeError, "no epoch plan"):
            next(it)  # the next epoch's plan is set at EPOCH_STARTED


if __name__ == "__main__":
    unittest.main()
