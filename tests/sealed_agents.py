"""Agents that try to cheat, for tests/test_sealed.py (loaded by "module:Class" in a sealed worker)."""

from __future__ import annotations

import gc

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


class SearchesMemory(Agent):
    """Searches every object in its process for the simulator's world or a grid with the truth."""

    name = "searches-memory"

    def act(self, obs, info):
        from cryobench.grid import Grid
        from cryobench.simulator import World

        found = [type(o).__name__ for o in gc.get_objects() if isinstance(o, Grid | World)]
        if found:
            raise RuntimeError(f"found the truth in memory: {found[:3]}")
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
