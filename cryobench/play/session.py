"""One person's session at the microscope simulator: the state the web page shows, kept on the server.

A :class:`PlaySession` drives a :class:`cryobench.env.CryoEMSessionEnv` (the same simulator
core as every agent: ``cryobench.simulator.start_session``, ``expose``, ``is_over``), so a
person's session follows exactly the rules an agent's does and is scored by the same
``cryobench.metrics.episode_metrics``. Navigating the atlas, squares and patches is free, as
in the paper's human study; only exposures (stage moves) advance the clock.

What the player sees of a hole before exposing it is its *look*: a grey level derived from the
regressor's prediction for that hole (:func:`hole_looks`), never from the truth, so a person
faces the same uncertainty an agent does (the environment's ``noise`` argument sets it). The
true CTFMaxRes appears only when the simulator reveals it (at once in inspection mode, in
batches in queue mode, never with ``feedback=none``).
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from cryobench import metrics, simulator
from cryobench.env import CryoEMSessionEnv
from cryobench.errors import InputError
from cryobench.files import utc_timestamp, write_atomic
from cryobench.grid import CTF_CAP
from cryobench.profiles import MOVE_LEVELS
from cryobench.results import results_document, save_results

#: Format of the journal an unfinished session keeps on disk (see :meth:`PlaySession.save_journal`).
JOURNAL_FORMAT = "cryobench-play-journal/1"
#: The "track" a person's results belong to on leaderboards (agents have none).
HUMAN_TRACK = "human"
#: Player names: short, printable, safe in a file name.
PLAYER_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,39}$")
#: Predicted CTFMaxRes (Å) mapped to the brightest and the darkest hole interior.
LOOK_BEST_CTF, LOOK_WORST_CTF = 3.0, CTF_CAP


class SessionConflict(Exception):
    """A request that is well formed but cannot be done in the session's current state (HTTP 409)."""


#: What a log entry's ``level`` may say: the move levels, then (staged, cassettes) the environment's own names.
LEVEL_NAMES = (*MOVE_LEVELS, "grid_exchange")


def check_player_name(name: Any) -> str:
    """The player's name, stripped; InputError unless 1-40 letters, digits, spaces, ``_ . -``."""
    if not isinstance(name, str) or not PLAYER_NAME_PATTERN.match(name.strip()):
        raise InputError(
            "player name: expected 1-40 characters (letters, digits, space, '_', '.', '-'), "
            f"starting with a letter or digit, got {name!r}"
        )
    return name.strip()


def hole_looks(predicted_ctf: np.ndarray) -> np.ndarray:
    """Brightness (0 dark .. 1 bright) of each hole's low-magnification look, from its prediction.

    Thin ice, which gives good images, looks bright at low magnification; thick ice looks dark.
    The look is a monotone function of the regressor's prediction only: it carries exactly the
    information (and the error) an agent is given, no more.
    """
    span = (np.clip(predicted_ctf, LOOK_BEST_CTF, LOOK_WORST_CTF) - LOOK_BEST_CTF) / (LOOK_WORST_CTF - LOOK_BEST_CTF)
    return 0.92 - 0.78 * np.sqrt(span)


def _listed(values: np.ndarray, digits: int) -> list:
    """A JSON-safe list: NaN (a hole of a square not imaged yet) becomes null."""
    rounded = np.round(np.asarray(values, dtype=np.float64), digits)
    return [None if not np.isfinite(v) else float(v) for v in rounded]


def public_layout(env: CryoEMSessionEnv) -> dict[str, Any]:
    """Everything the page draws that does not change during a session (no ground truth in it).

    Staged sessions: what is known now (``env.layout``'s snapshot): holes of squares not imaged
    yet have null positions and predictions and -1 ids, and the atlas describes every square;
    the page fetches it again when the snapshot's ``layout_version`` changes."""
    layout = env.layout
    grid = env.world.grid
    if layout.staged:
        looks = np.where(np.isnan(layout.predicted_ctf), np.nan, hole_looks(np.nan_to_num(layout.predicted_ctf)))
        shown = layout.square >= 0
        return {
            "n_holes": grid.n_holes,
            "pitch_um": float(grid.pitch_um),
            "hole_names": [name if known else "" for name, known in zip(grid.hole_names, shown, strict=True)],
            "tile": layout.tile.tolist(),
            "square": layout.square.tolist(),
            "patch": layout.patch.tolist(),
            "x_um": _listed(layout.x_um, 2),
            "y_um": _listed(layout.y_um, 2),
            "square_xy_um": np.round(layout.square_xy_um, 2).tolist(),
            "look": _listed(looks, 3),
            "predicted_ctf": _listed(layout.predicted_ctf, 2),
            "minutes": list(layout.minutes),
            "move_levels": list(MOVE_LEVELS),
            "threshold": float(layout.threshold),
            "duration": float(layout.duration),
            "feedback": str(layout.feedback),
            "staged": True,
            "square_tile": layout.square_tile.tolist(),
            "atlas_size_class": layout.atlas_size_class.tolist(),
            "atlas_good_fraction": np.round(layout.atlas_good_fraction, 3).tolist(),
            "imaged": layout.imaged.astype(int).tolist(),
            "square_minutes": float(layout.square_minutes),
        }
    looks = hole_looks(layout.predicted_ctf)
    return {
        "n_holes": grid.n_holes,
        "pitch_um": float(grid.pitch_um),
        "hole_names": list(grid.hole_names),
        "tile": layout.tile.tolist(),
        "square": layout.square.tolist(),
        "patch": layout.patch.tolist(),
        "x_um": np.round(layout.x_um, 2).tolist(),
        "y_um": np.round(layout.y_um, 2).tolist(),
        "square_xy_um": np.round(layout.square_xy_um, 2).tolist(),
        "look": np.round(looks, 3).tolist(),
        "predicted_ctf": np.round(layout.predicted_ctf, 2).tolist(),
        "minutes": list(layout.minutes),
        "move_levels": list(MOVE_LEVELS),
        "threshold": float(layout.threshold),
        "duration": float(layout.duration),
        "feedback": str(layout.feedback),
    }


class PlaySession:
    """One player's session: an environment, its history, a queue of planned holes, results.

    Every mutating method takes the session's lock, validates its input and raises
    :class:`InputError` (bad request) or :class:`SessionConflict` (not now) *before* changing
    anything, so a rejected request leaves the session exactly as it was.
    """

    def __init__(
        self,
        session_id: str,
        player: str,
        env: CryoEMSessionEnv,
        env_record: dict[str, Any],
        seed: int,
        results_path: Path | None,
        read_only: bool = False,
        display_name: str | None = None,
        journal_path: Path | None = None,
    ) -> None:
        self.session_id = session_id
        self.player = check_player_name(player)
        self.display_name = display_name or f"human:{self.player}"
        self.env = env
        self.env_record = env_record
        self.seed = int(seed)
        self.results_path = results_path
        # An unfinished session's journal: rewritten after every change, removed once results are saved,
        # so a restarted server picks the session up where it was (see cryobench.play.journal.restore_session).
        self.journal_path = journal_path
        self.read_only = read_only
        self.lock = threading.RLock()
        self.queue: list[int] = []
        # Per exposure: the move level and whether the predictions overlay was on when it was chosen.
        self.levels: list[int] = []
        self.costs: list[float] = []  # the minutes of each exposure's move, as the simulator charged them
        # Staged: the squares imaged, each with the number of exposures made before it (for the journal).
        self.squares_imaged: list[tuple[int, int]] = []
        self.overlay_flags: list[bool] = []
        self.finished_early = False
        self.started = utc_timestamp()
        self.finished: str | None = None
        self._wall_start = time.perf_counter()
        self._wall_seconds: float | None = None
        env.reset(seed=self.seed)

    # ---- reading ---------------------------------------------------------------------------
    @property
    def world(self) -> simulator.World:
        return self.env.world

    @property
    def state(self) -> simulator.SessionState:
        return self.env.state

    @property
    def is_over(self) -> bool:
        return self.finished_early or simulator.is_over(self.world, self.state)

    def snapshot(self) -> dict[str, Any]:
        """The session's state as the page shows it: only what the player may know."""
        with self.lock:
            state, world = self.state, self.world
            revealed = np.flatnonzero(state.revealed)
            revealed_ctf = {int(h): round(float(state.revealed_ctf[h]), 2) for h in revealed}
            log = []
            for step, (hole, minutes, level, cost) in enumerate(
                zip(state.exposures, state.exposure_minutes, self.levels, self.costs, strict=True), start=1
            ):
                log.append(
                    {
                        "step": step,
                        "hole": int(hole),
                        "level": LEVEL_NAMES[level],
                        "cost": float(cost),
                        "at_minutes": float(minutes),
                        "ctf": revealed_ctf.get(int(hole)),
                    }
                )
            good_known = int(np.sum(state.revealed_ctf[revealed] < world.threshold))
            return {
                "session": self.session_id,
                "player": self.player,
                "display_name": self.display_name,
                "read_only": self.read_only,
                "over": self.is_over,
                "finished_early": self.finished_early,
                "elapsed": float(state.elapsed),
                "duration": float(world.duration),
                "time_left": float(simulator.time_left(world, state)),
                "exposures": state.n_exposures,
                "good_known": good_known,
                "awaiting_ctf": [int(h) for h in state.pending],
                "start_hole": int(state.start),
                "current_hole": int(state.current),
                "queue": list(self.queue),
                "log": log,
                "results_file": str(self.results_path) if self.results_path and self.is_over else None,
                "layout_version": len(state.squares_imaged),
                "stage_square": int(state.stage_square),
            }

    # ---- changing ----------------------------------------------------------------------------
    def _check_can_change(self) -> None:
        if self.read_only:
            raise SessionConflict("this is a replay of a saved session: it cannot be changed")
        if self.is_over:
            raise SessionConflict("the session is over: no more exposures")

    def _check_hole(self, hole: Any) -> int:
        n = self.world.n_holes
        if isinstance(hole, bool) or not isinstance(hole, int):
            raise InputError(f"'hole' must be an integer hole id 0..{n - 1}, got {hole!r}")
        if not 0 <= hole < n:
            raise InputError(f"unknown hole {hole}: hole ids are 0..{n - 1}")
        if self.state.visited[hole]:
            what = "the starting position" if hole == self.state.start else "already exposed"
            raise SessionConflict(f"hole {hole} is {what}; choose another hole")
        if self.state.shown is not None and not self.state.shown[hole]:
            raise SessionConflict(f"hole {hole} lies in a square not imaged yet; image its square first")
        return int(hole)

    def expose(self, hole: Any, overlay: bool = False) -> dict[str, Any]:
        """Move the stage to ``hole`` and expose it (the clock advances by the move's minutes)."""
        with self.lock:
            self._check_can_change()
            hole = self._check_hole(hole)
            if self.world.feedback.mode == "queue":
                raise SessionConflict("queue mode: add holes to the queue, then collect the queue")
            self._expose_checked([hole], overlay)
            self.save_journal()
            return self.snapshot()

    def _check_queue_mode(self) -> None:
        if self.world.feedback.mode != "queue":
            raise SessionConflict(f"{self.world.feedback.mode} mode has no queue: expose holes one at a time")

    def queue_add(self, hole: Any) -> dict[str, Any]:
        """Plan ``hole`` for the next collection (costs no time; queue mode only)."""
        with self.lock:
            self._check_can_change()
            self._check_queue_mode()
            hole = self._check_hole(hole)
            if hole in self.queue:
                raise SessionConflict(f"hole {hole} is already in the queue")
            self.queue.append(hole)
            self.save_journal()
            return self.snapshot()

    def queue_remove(self, hole: Any) -> dict[str, Any]:
        """Take ``hole`` out of the queue."""
        with self.lock:
            self._check_can_change()
            self._check_queue_mode()
            if isinstance(hole, bool) or not isinstance(hole, int):
                raise InputError(f"'hole' must be an integer hole id, got {hole!r}")
            if hole not in self.queue:
                raise SessionConflict(f"hole {hole} is not in the queue")
            self.queue.remove(hole)
            self.save_journal()
            return self.snapshot()

    def collect_queue(self, overlay: bool = False) -> dict[str, Any]:
        """Expose the queued holes in order, stopping when the session's time runs out."""
        with self.lock:
            self._check_can_change()
            self._check_queue_mode()
            if not self.queue:
                raise SessionConflict("the queue is empty: click holes to queue them first")
            holes, self.queue = self.queue, []
            self._expose_checked(holes, overlay)
            self.save_journal()
            return self.snapshot()

    def _expose_checked(self, holes: list[int], overlay: bool) -> None:
        for hole in holes:
            if self.is_over:
                break
            elapsed = self.state.elapsed
            _obs, _reward, _terminated, _truncated, info = self.env.step(hole)
            if info["invalid_action"]:  # validated above; the rules would charge time for it
                raise RuntimeError(f"hole {hole} was rejected by the simulator after validation")
            self.levels.append(LEVEL_NAMES.index(info["level"]))
            self.costs.append(self.state.elapsed - elapsed)
            self.overlay_flags.append(bool(overlay))
        if self.is_over:
            self._finish()

    def image_square(self, square: Any) -> dict[str, Any]:
        """Staged sessions: move the stage to ``square`` and image it (the profile's square minutes)."""
        with self.lock:
            self._check_can_change()
            self._check_square(square)
            self._image_checked(int(square))
            return self.snapshot()

    def _check_square(self, square: Any) -> int:
        if not self.world.staged:
            raise InputError("this session is not staged (acquisition='paper'): every square is imaged already")
        n = self.world.n_squares
        if isinstance(square, bool) or not isinstance(square, int) or not 0 <= square < n:
            raise InputError(f"'square' must be a square id 0..{n - 1}, got {square!r}")
        if self.state.imaged[square]:
            raise SessionConflict(f"square {square} is imaged already")
        return int(square)

    def _image_checked(self, square: int) -> None:
        exposures = self.state.n_exposures
        self.env.step(self.world.n_holes + square)
        self.squares_imaged.append((exposures, square))
        if self.is_over:
            self._finish()

    def finish(self) -> dict[str, Any]:
        """End the session now (the player stops before the duration)."""
        with self.lock:
            self._check_can_change()
            self.finished_early = True
            self.queue = []
            self._finish()
            return self.snapshot()

    def _finish(self) -> None:
        self.finished = utc_timestamp()
        self._wall_seconds = time.perf_counter() - self._wall_start
        if self.results_path is not None:
            save_results(self.results(), self.results_path)
        if self.journal_path is not None:
            self.journal_path.unlink(missing_ok=True)  # the results file now holds the session

    # ---- the journal of an unfinished session ---------------------------------------------------------
    def journal(self) -> dict[str, Any]:
        """What rebuilds this session on a restarted server: who, where, and every choice in order."""
        with self.lock:
            return {
                "format": JOURNAL_FORMAT,
                "session": self.session_id,
                "player": self.player,
                "seed": self.seed,
                "env": dict(self.env_record),
                # The bare file name: a restarted server finds it in its own results folder, and nowhere else.
                "results_path": self.results_path.name if self.results_path is not None else None,
                "started": self.started,
                "seconds_played": time.perf_counter() - self._wall_start,
                "exposures": [int(h) for h in self.state.exposures],
                "overlay_per_exposure": list(self.overlay_flags),
                "queue": list(self.queue),
                **({"squares_imaged": [list(pair) for pair in self.squares_imaged]} if self.world.staged else {}),
            }

    def save_journal(self) -> None:
        """Rewrite the journal atomically (a crash mid-write leaves the previous one)."""
        if self.journal_path is None or self.is_over:
            return
        write_atomic(self.journal_path, json.dumps(self.journal(), indent=1))

    # ---- results ------------------------------------------------------------------------------
    def results(self) -> dict[str, Any]:
        """The session as a results document (``cryobench-results/1``, as ``cryobench run`` writes)."""
        with self.lock:
            row = {"seed": self.seed, **metrics.episode_metrics(self.world, self.state), "invalid_actions": []}
            wall = self._wall_seconds if self._wall_seconds is not None else time.perf_counter() - self._wall_start
            agent = {
                "name": f"human:{self.player}",
                "upper_bound": False,
                "track": HUMAN_TRACK,
                "card": {
                    "kind": "human",
                    "title": f"{self.player}, playing in the cryobench session simulator",
                    "interface": "cryobench play",
                    "feedback": str(self.world.feedback),
                    "exposures_with_predictions_overlay": int(sum(self.overlay_flags)),
                },
            }
            return results_document(
                dict(self.env_record),
                agent,
                [self.seed],
                [row],
                fit_seconds=0.0,
                seconds_per_episode=float(wall),
                timing_note="wall-clock time the player took; everything else is reproducible",
                human={
                    "player": self.player,
                    "started": self.started,
                    "finished": self.finished,
                    "complete": self.is_over,
                    "finished_early": self.finished_early,
                    "overlay_per_exposure": list(self.overlay_flags),
                },
            )
