"""The sealed worker's own copy of a session, built from public data and advanced by the feedback.

Why: in a sealed run (:mod:`cryobench.sealed`) building the observation (the feature matrix,
about 1 MB) is most of a step. Built in the parent, it had to cross to the worker every step,
and the handoff cost several times a fast agent's whole step (measured: 6x the open run for
predict-rank). Instead the worker keeps a *mirror*: an environment on a world made from the
public layout and the rules only, whose ground truth is unknown (``inf``: never good, never
shown). The worker sends its actions; the parent, which alone holds the truth, plays each on
the real world and answers the steps that reveal CTFs (with ``inspection`` every step, the
hole itself; with ``queue:K`` a batch every K exposures; with ``none`` never) with one small
message: the revealed holes, their CTFMaxRes capped at 20 Å and whether each is good, which is
all an open observation shows of them. The mirror writes those in and takes the same step with
the same simulator, so the agent sees the open run's observations bit for bit (tested: sealed
and open sessions are equal move for move), and nothing the feedback did not reveal. An agent
that declared it decides without revealed CTFs gets a blind mirror (``Mirror(..., blind=True)``):
nothing is revealed, nothing awaited.

Mirrored: the full observation of paper sessions on one grid behind gymnasium's own checking
wrappers (every protocol task). Other sessions (staged, cassettes, the compact observation,
other wrappers) still get each step's observation from the parent (:class:`SealedAgent.act`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from cryobench import simulator
from cryobench.env import CryoEMSessionEnv
from cryobench.grid import CTF_CAP, Grid
from cryobench.profiles import InstrumentProfile
from cryobench.rules import Feedback

#: Wrappers that pass observations and actions through unchanged (what ``gym.make`` adds).
TRANSPARENT_WRAPPERS = (gym.wrappers.OrderEnforcing, gym.wrappers.PassiveEnvChecker)

# ---- the per-step messages (fixed-size little-endian headers; no pickling on the hot path) ----
#: worker -> parent: kind, a value, a float. ACTION_HOLE: the hole, the decision's seconds;
#: ACTION_NOT_A_HOLE and ACTION_ERROR: the length of the text that follows (the action's repr, the
#: error); ACTION_END (the mirror's session is over): its exposures and elapsed minutes, which the
#: parent checks against its own; ACTION_ABORTED: the worker left a session the parent stopped.
ACTION = struct.Struct("<Bqd")
ACTION_HOLE, ACTION_NOT_A_HOLE, ACTION_ERROR, ACTION_END, ACTION_ABORTED = 1, 2, 3, 4, 5
ACTION_KINDS = frozenset((ACTION_HOLE, ACTION_NOT_A_HOLE, ACTION_ERROR, ACTION_END, ACTION_ABORTED))
#: parent -> worker: flags and how many holes were revealed (their ids, capped CTFs and good
#: flags follow). Sent only
#: when the worker waits for one: a step that reveals something, the end of the session, an abort.
FEEDBACK = struct.Struct("<BI")
FEEDBACK_REVEAL, FEEDBACK_OVER, FEEDBACK_ABORT = 0, 1, 2
_TILE = simulator.HIERARCHY_LEVELS.index("tile")


@dataclass(frozen=True)
class MirrorRules:
    """The public rules a mirror needs besides the layout (no seed, no name, no provenance)."""

    profile: InstrumentProfile
    mask_dtype: str
    pitch_um: float


def mirror_rules(env: gym.Env) -> MirrorRules | None:
    """The rules to mirror ``env``'s sessions in a worker, or None when they cannot be mirrored."""
    wrapper = env
    while isinstance(wrapper, gym.Wrapper):
        if not isinstance(wrapper, TRANSPARENT_WRAPPERS):
            return None  # it may change observations or actions: the parent's observation is the truth
        wrapper = wrapper.env
    if type(wrapper) is not CryoEMSessionEnv or wrapper.observation_mode != "full":
        return None
    world = wrapper.world
    if world.staged or world.cassette is not None:
        return None
    return MirrorRules(world.profile, wrapper.mask_dtype, float(world.grid.pitch_um))


class Mirror:
    """An environment on a truth-free copy of a world, advanced from the parent's feedback."""

    def __init__(self, layout: Any, rules: MirrorRules, blind: bool = False, features: bool = True) -> None:
        """``blind``: for an agent that declared it decides without revealed CTFs
        (``reads_feedback = False``): the mirror plays the session as with feedback ``none`` (the
        same moves, minutes and rewards; nothing revealed), so the worker never waits for the
        parent, and an agent whose declaration was false plays without the feedback it hid.
        ``features=False``: for an agent that declared it never reads ``obs["features"]``
        (``reads_features = False``): its observations leave the matrix out (one that reads it
        anyway fails on the missing key)."""
        n = len(layout.tile)
        # Unknown until revealed. inf: not good (< threshold is False), a valid Grid value, and
        # never a CTF; this writable array is the only one the feedback writes CTFs into.
        self._ctf = np.full(n, np.inf)
        grid = Grid(
            name="sealed-mirror",
            tile=layout.tile,
            square=layout.square,
            patch=layout.patch,
            x_um=layout.x_um,
            y_um=layout.y_um,
            ctf=self._ctf,
            confidence=np.full(n, np.nan),
            failed=np.zeros(n, dtype=bool),
            hole_names=("",) * n,
            square_xy_um=layout.square_xy_um,
            pitch_um=rules.pitch_um,
        )
        world = simulator.World(
            grid=grid,
            predicted_ctf=layout.predicted_ctf,
            profile=rules.profile,
            threshold=layout.threshold,
            duration=layout.duration,
            feedback=Feedback("none") if blind else Feedback.parse(layout.feedback),
        )
        self.env = CryoEMSessionEnv.from_world(world, mask_dtype=rules.mask_dtype)
        self.env._observe_features = features
        self._revealed = 0

    def reset(self, seed: int, start_hole: int) -> tuple[dict, dict]:
        """The session from the parent's start hole (drawn there from the episode seed)."""
        self._revealed = 0
        return self.env.reset(seed=seed, options={"start_hole": start_hole})

    def step(
        self, hole: int, revealed: np.ndarray, revealed_ctf: np.ndarray, revealed_good: np.ndarray
    ) -> tuple[dict, bool, dict]:
        """Play ``hole`` as the parent did, knowing what its step revealed: the holes, their CTFs
        capped at ``CTF_CAP`` (all an observation shows of them) and whether each is good."""
        world = self.env.world
        if len(revealed):
            # The simulator reads a revealed hole's CTF and whether it is good from the world.
            self._ctf[revealed] = revealed_ctf
            world.true_good[revealed] = revealed_good
            world.reveal_delta[revealed, simulator.COL_REVEALED_GOOD] = revealed_good
            self._revealed += len(revealed)
        obs, _reward, terminated, _truncated, info = self.env.step(hole)
        shown = int(self.env.state.tables[_TILE][:, simulator.COL_REVEALED].sum())
        if shown != self._revealed:  # the same rules on both sides: a difference is a bug, never ignored
            raise RuntimeError(f"sealed mirror out of step: {shown} holes revealed here, {self._revealed} sent")
        return obs, terminated, info


def revealed_by(world: simulator.World, state: simulator.SessionState, hole: int) -> tuple[int, ...]:
    """The holes whose CTFs exposing ``hole`` reveals (rule 6 of :mod:`cryobench.simulator`, paper
    sessions), known before the step: both sides call it, so the worker waits for the parent only
    on the steps that reveal something (every step with ``inspection``, one in K with ``queue:K``,
    none with ``none``). Both sides also check it against what the step then did."""
    if state.visited[hole]:
        return ()  # a costed no-op exposes nothing
    mode = world.feedback.mode
    if mode == "inspection":
        return (hole,)
    if mode == "queue" and len(state.pending) + 1 >= world.feedback.batch:
        return (*state.pending, hole)
    return ()


def feedback_message(flags: int, revealed: tuple[int, ...] = (), world: simulator.World | None = None) -> bytes:
    """The parent's message: flags, the revealed holes, their CTFs capped at ``CTF_CAP`` (float64)
    and whether each is good. What an open run's observation shows of a revealed hole: the capped
    CTF (``revealed_ctf``, the features) and good or not (the revealed-good counts); a failed fit's
    or a 25 Å hole's exact number never crosses."""
    head = FEEDBACK.pack(flags, len(revealed))
    if not revealed:
        return head
    holes = list(revealed)
    capped = np.minimum(world.grid.ctf[holes], CTF_CAP).tolist()
    good = world.true_good[holes].tolist()
    return head + struct.pack(f"<{len(holes)}q{len(holes)}d{len(holes)}?", *holes, *capped, *good)


def read_actions(message: bytes) -> list[tuple[int, int, float, str]]:
    """The worker's records in one message: (kind, value, float, text) each (text for the kinds that carry one)."""
    records, offset = [], 0
    while offset < len(message):
        kind, value, number = ACTION.unpack_from(message, offset)
        if kind not in ACTION_KINDS:
            raise ValueError(f"unknown record kind {kind}")
        offset += ACTION.size
        text = ""
        if kind in (ACTION_NOT_A_HOLE, ACTION_ERROR):
            text = message[offset : offset + value].decode("utf-8", "replace")
            offset += value
        records.append((kind, value, number, text))
    return records


def read_feedback(message: bytes) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """``feedback_message`` read back: (flags, revealed holes, their capped CTFs, good or not)."""
    flags, count = FEEDBACK.unpack_from(message)
    start = FEEDBACK.size
    holes = np.frombuffer(message, dtype="<i8", count=count, offset=start)
    ctf = np.frombuffer(message, dtype="<f8", count=count, offset=start + 8 * count)
    good = np.frombuffer(message, dtype=np.bool_, count=count, offset=start + 16 * count)
    return flags, holes, ctf, good
