"""Agents that try to cheat, for tests/test_sealed.py (loaded by "module:Class" in a sealed worker)."""

from __future__ import annotations

import gc
import os
import tempfile
from pathlib import Path

import numpy as np

from cryobench.agents.base import Agent


class ReadsTheWorld(Agent):
    """Walks from the environment to the simulator's world, as a cheat would."""

    name = "reads-the-world"

    def act(self, obs, info):
        return int(np.argmin(self.env.world.grid.ctf))


class WritesTheLayout(Agent):
    """Zeroes the public tile ids so every move would look cheap."""

    name = "writes-the-layout"

    def reset(self, env, seed):
        super().reset(env, seed)
        self.layout.tile[:] = 0

    def act(self, obs, info):
        return int(np.flatnonzero(obs["action_mask"])[0])


class AsksForTheTruth(Agent):
    """Calls the upper bounds' interface without being one."""

    name = "asks-for-the-truth"

    def act(self, obs, info):
        return int(np.argmin(self.env.ground_truth_ctf()))


def memory_dump_path(pid: int) -> Path:
    """Where SearchesMemory, run by process ``pid``, writes the arrays it found."""
    return Path(tempfile.gettempdir()) / f"cryobench-test-memory-{pid}.npz"


class SearchesMemory(Agent):
    """Searches every object in its process for arrays of one entry per hole, as a cheat looking for
    the truth would (the worker's own mirror of the session included), and writes what it found to
    ``memory_dump_path(its pid)`` for the test to compare with the truth."""

    name = "searches-memory"

    def act(self, obs, info):
        if int(info["exposures"]) % 20 == 0:  # a walk of the whole heap is slow: every 20 steps
            n = len(obs["revealed"])
            found: dict[int, np.ndarray] = {}
            for holder in gc.get_objects():
                for item in gc.get_referents(holder):
                    if isinstance(item, np.ndarray) and item.shape == (n,) and item.dtype.kind in "fb":
                        found[id(item)] = item
            np.savez(memory_dump_path(os.getpid()), *found.values())
        return int(np.flatnonzero(obs["action_mask"])[0])


class KeepsLastObservation(Agent):
    """Keeps last step's arrays and checks they were not changed under it (sealed runs copy)."""

    name = "keeps-last-observation"

    def act(self, obs, info):
        if hasattr(self, "last"):
            if not np.array_equal(self.last, self.copy):
                raise RuntimeError("last step's observation changed after it was handed over")
        self.last, self.copy = obs["revealed"], obs["revealed"].copy()
        return int(np.flatnonzero(obs["action_mask"])[0])


class InformedAsksForTheTruth(Agent):
    """An informed bound (latent knowledge only) that also asks for the CTFs."""

    name = "informed-asks-for-the-truth"
    uses_ground_truth = True
    uses_latent_quality = True

    def act(self, obs, info):
        self.env.informed_good_probability()  # what it is given
        return int(np.argmin(self.env.ground_truth_ctf()))  # what it is not


class AsksForTheLatent(Agent):
    """Calls the informed bound's interface without being one."""

    name = "asks-for-the-latent"

    def act(self, obs, info):
        return int(np.argmax(self.env.informed_good_probability()))


class SometimesInvalid(Agent):
    """Plays the first free hole, but every 4th call the visited current hole, every 7th a string and
    every 9th a hole out of range."""

    name = "sometimes-invalid"

    def reset(self, env, seed):
        super().reset(env, seed)
        self.calls = 0

    def act(self, obs, info):
        self.calls += 1
        if self.calls % 9 == 0:
            return 10**6
        if self.calls % 7 == 0:
            return "hole 3"
        if self.calls % 4 == 0:
            return np.int64(obs["current_hole"])
        return int(np.flatnonzero(obs["action_mask"])[0])


class FailsAtStep(Agent):
    """Raises at its 8th decision of the first session it plays (seed 0), plays the first free hole otherwise."""

    name = "fails-at-step"

    def reset(self, env, seed):
        super().reset(env, seed)
        self.seed, self.calls = seed, 0

    def act(self, obs, info):
        self.calls += 1
        if self.seed == 0 and self.calls == 8:
            raise RuntimeError("step 7 fails, as asked")
        return int(np.flatnonzero(obs["action_mask"])[0])


class FollowsFeedback(Agent):
    """Decides from the revealed CTFs: stays in the patch while its last exposure was good, else
    goes to the unvisited hole with the best prediction (a feedback reader for the mirror tests)."""

    name = "follows-feedback"

    def act(self, obs, info):
        unvisited = obs["action_mask"].astype(bool)
        last = self.last if hasattr(self, "last") else -1
        if last >= 0 and obs["revealed"][last] and obs["revealed_ctf"][last] < self.layout.threshold:
            here = unvisited & (self.layout.patch == self.layout.patch[last])
            if here.any():
                unvisited = here
        candidates = np.flatnonzero(unvisited)
        self.last = int(candidates[np.argmin(self.layout.predicted_ctf[candidates])])
        return self.last


class ClaimsBlindButReads(FollowsFeedback):
    """Declares that it decides without revealed CTFs, and reads them: a sealed run blinds it."""

    name = "claims-blind-but-reads"
    reads_feedback = False


class ClaimsNoFeaturesButReads(Agent):
    """Declares that it never reads the feature matrix, and reads it: a sealed run leaves it out."""

    name = "claims-no-features-but-reads"
    reads_features = False

    def act(self, obs, info):
        return int(np.argmin(obs["features"][:, 0] + 10 * (1 - obs["action_mask"])))
