"""The DQN's candidate holes at test time (``act_candidates_per_patch``): the set kept between steps is
the set recomputed from scratch after every change of availability, taken or given back."""

from __future__ import annotations

import numpy as np
import pytest

from cryobench.agents.dqn import PatchCandidates


def from_scratch(hole_patch: np.ndarray, predicted: np.ndarray, mask: np.ndarray, per_patch: int) -> np.ndarray:
    chosen = []
    for patch in np.unique(hole_patch):
        holes = np.flatnonzero((hole_patch == patch) & mask)
        chosen.extend(holes[np.lexsort((holes, predicted[holes]))][:per_patch])
    return np.sort(np.array(chosen, dtype=np.int64))


@pytest.mark.parametrize("per_patch", [1, 2, 4])
def test_kept_candidates_equal_the_recomputed_ones_as_holes_are_taken_and_given_back(per_patch):
    rng = np.random.default_rng(per_patch)
    hole_patch = np.repeat(np.arange(7), rng.integers(1, 9, 7))
    rng.shuffle(hole_patch)  # a patch's holes need not be contiguous
    predicted = rng.choice([4.0, 5.0, 5.5, 6.0, 9.0], len(hole_patch))  # ties: broken by hole index
    mask = np.ones(len(hole_patch), dtype=bool)
    candidates = PatchCandidates(hole_patch, predicted, per_patch)
    for step in range(60):
        if step % 9 == 8:  # a staged session images a square: holes become available again
            mask[rng.choice(len(mask), 3)] = True
        else:  # usually the hole just exposed, sometimes one that is no candidate (a start hole, the plan's)
            available = np.flatnonzero(mask)
            if not len(available):
                break
            mask[rng.choice(available)] = False
        np.testing.assert_array_equal(candidates.update(mask), from_scratch(hole_patch, predicted, mask, per_patch))


def test_the_best_predicted_holes_of_each_patch_on_a_hand_made_grid():
    hole_patch = np.array([0, 0, 0, 1, 1, 1, 1])
    predicted = np.array([6.0, 4.0, 5.0, 7.0, 3.0, 3.0, 8.0])
    candidates = PatchCandidates(hole_patch, predicted, 2)
    mask = np.ones(7, dtype=bool)
    assert candidates.update(mask).tolist() == [1, 2, 4, 5]
    mask[4] = False  # taken: patch 1's next best (7.0 at hole 3) replaces it
    assert candidates.update(mask).tolist() == [1, 2, 3, 5]
    mask[[0, 1, 2]] = False  # patch 0 exhausted
    assert candidates.update(mask).tolist() == [3, 5]
