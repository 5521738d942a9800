"""Seeds drawn from seeds: every random choice in cryobench flows from one the user gave."""

from __future__ import annotations

import numpy as np

#: Seeds are drawn below this bound (the largest signed 32-bit integer), so they fit every
#: library's seed type and read the same in results files on any machine.
SEED_BOUND = 2**31 - 1


def draw_seed(rng: np.random.Generator) -> int:
    """One new seed from ``rng``, in [0, SEED_BOUND)."""
    return int(rng.integers(SEED_BOUND))


def draw_seeds(rng: np.random.Generator, count: int, low: int = 0) -> np.ndarray:
    """``count`` new seeds from ``rng``, in [low, SEED_BOUND)."""
    return rng.integers(low, SEED_BOUND, size=count)
