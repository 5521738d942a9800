"""Seeds drawn from seeds, and which world seeds are for training and which for testing.

Every random choice in cryobench flows from a seed the user gave. World seeds (a twin's
``world_seed`` and ``layout_seed``) are split in two disjoint ranges so that protocol v2's
test worlds are never trained or tuned on:

- training worlds: seeds below :data:`TEST_SEED_START` (every card's own world lies there,
  and ``new_world_each_reset`` and the DQN's extra worlds draw only from there);
- test worlds: seeds from :data:`TEST_SEED_START` on, used only by the leaderboard's protocol
  runs (see DEVELOPERS.md, "Training and test worlds").
"""

from __future__ import annotations

import numpy as np

from cryobench.errors import InputError

#: Seeds are drawn below this bound (the largest signed 32-bit integer), so they fit every
#: library's seed type and read the same in results files on any machine.
SEED_BOUND = 2**31 - 1
#: The first test world seed: seeds from here on are protocol v2's test worlds.
TEST_SEED_START = 2**30


def draw_seed(rng: np.random.Generator) -> int:
    """One new seed from ``rng``, in [0, SEED_BOUND)."""
    return int(rng.integers(SEED_BOUND))


def draw_training_seed(rng: np.random.Generator) -> int:
    """One new training world seed from ``rng``, in [0, TEST_SEED_START)."""
    return int(rng.integers(TEST_SEED_START))


def draw_training_seeds(rng: np.random.Generator, count: int, low: int = 0) -> np.ndarray:
    """``count`` new training world seeds from ``rng``, in [low, TEST_SEED_START)."""
    return rng.integers(low, TEST_SEED_START, size=count)


def is_test_world_seed(seed: int) -> bool:
    return int(seed) >= TEST_SEED_START


def refuse_test_world(seed: int | None, what: str) -> None:
    """Raise when a training path is given a test world seed (the train/test rule)."""
    if seed is not None and is_test_world_seed(seed):
        raise InputError(
            f"{what}: seed {seed} is a test world (seeds from {TEST_SEED_START} on are protocol v2's test "
            "worlds and may not be used for training or selection)"
        )
