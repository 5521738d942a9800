"""Trajectories out: results files (agents' runs and people's play sessions) as offline-RL data.

A results file keeps each episode compactly: its seed, start hole and exposures (with each
exposure's CTF and the minutes it ended at). That is enough to replay the episode exactly in
the environment the file names, and so to rebuild every observation, reward and termination
without storing them (a full observation is 0.1-1 MB a step).

- ``npz`` (:func:`export_npz`): the compact form, one file, numpy only. Per step: the action, the
  reward, the CTF the exposure revealed (NaN for a costed no-op), termination and truncation;
  per episode: seed, start hole, world and where its steps begin; the environment and sources as
  JSON. :func:`replay_observations` rebuilds an episode's observations and checks that the
  replayed rewards equal the stored ones (so a world that changed is noticed, never mixed in).
- ``minari`` (:func:`export_minari`, extra ``minari``): a Minari dataset with the observations,
  made by replaying; as large as the observations are.

Actions are rebuilt from the exposures. A step that exposed nothing (an agent's choice of a
visited hole or of something that is not a hole) is a costed no-op of the in-patch minutes
(the simulator's rule 4) that results files do not list; the exposure minutes show where they
were, and they are replayed as a choice of the current hole, which gives the same observations.
Staged sessions (squares imaged on demand) are replayed with their imaging actions (``N + square``)
between the exposures: a play journal says after how many exposures each square was imaged; a
results file lists the squares in the order imaged (``squares_imaged``), and each is placed before
the first exposure whose recorded end minute the replay reaches only with it (imaging costs
minutes, so the minutes fix the interleaving). A staged episode with costed no-ops is refused:
its file says neither where they were nor how they interleave with the imaging. A run with
``observation="compact"`` (actions choose candidate slots) is exported as the same session with
the full observation, whose actions are the holes.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cryobench import simulator
from cryobench.errors import InputError
from cryobench.files import write_atomic
from cryobench.registration import make_env

TRAJECTORIES_FORMAT = "cryobench-trajectories/1"
#: cryobench.play.session's journal format (a layer above this one: named, not imported; a test checks it)
JOURNAL_FORMAT = "cryobench-play-journal/1"
FORMATS = ("npz", "minari")


@dataclass
class Episode:
    """One replayed episode: per step the action, reward, revealed CTF, termination, truncation."""

    source: str
    agent: str
    human: bool
    world: int | None
    seed: int
    start: int
    actions: np.ndarray
    rewards: np.ndarray
    revealed_ctf: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray


# ---- reading results -------------------------------------------------------------------------------
def results_files(paths: Sequence[str | Path]) -> list[Path]:
    """The results files named: files, and the ``*.json`` files of folders (sorted)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            inside = sorted(p for p in path.glob("*.json") if p.is_file())
            if not inside:
                raise InputError(f"{path}: a folder without results files (*.json)")
            found.extend(inside)
        elif path.is_file():
            found.append(path)
        else:
            raise InputError(f"{path}: no such results file or folder")
    return found


def _read_episodes(path: Path) -> dict:
    """A results file, or the journal of an unfinished play session as a one-episode document."""
    from cryobench.files import read_json
    from cryobench.results import load_results

    doc = read_json(path, "results file")
    if not (isinstance(doc, dict) and doc.get("format") == JOURNAL_FORMAT):
        return load_results(path)
    seed, exposures, env = doc.get("seed"), doc.get("exposures"), doc.get("env")
    if not (
        isinstance(seed, int)
        and isinstance(exposures, list)
        and all(isinstance(h, int) and not isinstance(h, bool) for h in exposures)
        and isinstance(env, dict)
        and isinstance(env.get("id"), str)
        and isinstance(env.get("kwargs"), dict)
    ):
        raise InputError(f"{path}: a play journal without a seed, its exposures (hole ids) or its environment")
    player = doc.get("player") if isinstance(doc.get("player"), str) else "?"
    row: dict[str, Any] = {"seed": seed, "trajectory": exposures}
    if "squares_imaged" in doc:  # staged: [exposures made before, square] pairs, in order
        pairs = doc["squares_imaged"]
        if not (
            isinstance(pairs, list)
            and all(
                isinstance(pair, list)
                and len(pair) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in pair)
                and 0 <= pair[0] <= len(exposures)
                for pair in pairs
            )
            and all(a[0] <= b[0] for a, b in zip(pairs, pairs[1:], strict=False))
        ):
            raise InputError(f"{path}: 'squares_imaged' must hold [exposures before, square] pairs in order")
        row["squares_imaged_after"] = pairs
    return {
        "env": {"id": env["id"], "kwargs": env["kwargs"]},
        "agent": {"name": f"human:{player}"},
        "human": {"complete": False},
        "journal": True,
        "episodes": [row],
    }


def _env_of(results: list[tuple[Path, dict]]) -> tuple[str, dict]:
    """The one environment (id and arguments) every results file ran; a one-line error when they differ."""
    first_path, first = results[0]
    env_id, kwargs = first["env"]["id"], dict(first["env"]["kwargs"])
    for path, doc in results[1:]:
        if (doc["env"]["id"], doc["env"]["kwargs"]) != (env_id, kwargs):
            raise InputError(
                f"{path}: environment {doc['env']['id']} {doc['env']['kwargs']} differs from {first_path}'s "
                f"{env_id} {kwargs}; export one environment at a time"
            )
    if kwargs.get("observation", "full") != "full":
        # Compact observations' actions choose among candidate slots; the holes exposed are the same
        # session played with the full observation, whose actions are holes: exported that way.
        kwargs["observation"] = "full"
    return env_id, kwargs


def _world_kwargs(kwargs: dict, world: int | None) -> dict:
    return kwargs if world is None else {**kwargs, "world_seed": int(world), "layout_seed": int(world)}


# ---- replaying ------------------------------------------------------------------------------------------
def _steps(env, row: dict, where: str) -> Iterator[tuple[int, float, float, bool, bool, dict, dict]]:
    """Replay one results row: yields (action, reward, revealed CTF, terminated, truncated, obs, info)
    per step, after the reset's (obs, info) as the first item with action -1."""
    inner = env.unwrapped
    seed = int(row["seed"])
    # A journal does not name its start: the reset's own (what the play server did).
    obs, info = env.reset(seed=seed, options=None if row.get("start") is None else {"start_hole": int(row["start"])})
    world = inner.world
    yield -1, 0.0, np.nan, False, False, obs, info
    if world.staged:
        yield from _staged_steps(env, row, where)
        _check_end(inner, row, where)
        return
    exposures = [int(hole) for hole in row["trajectory"]]
    minutes = [float(m) for m in row["good_curve"]["minutes"]] if "good_curve" in row else []
    in_patch = float(world.profile.minutes[0])
    missing_no_ops = int(row.get("invalid_moves", 0))
    terminated = False

    def no_op():
        hole = int(inner.state.current)
        obs, reward, terminated, truncated, info = env.step(hole)
        return hole, reward, np.nan, terminated, truncated, obs, info

    for k, hole in enumerate(exposures):
        if terminated:
            raise InputError(f"{where}: episode seed {seed}: the session ended before exposure {k} of {len(exposures)}")
        if missing_no_ops and world.cassette is None:
            ahead = float(simulator.move_minutes(world, inner.state.current)[hole]) if 0 <= hole < world.n_holes else 0
            gap = minutes[k] - (inner.state.elapsed + ahead)
            for _ in range(max(int(round(gap / in_patch)), 0)):
                step = no_op()
                missing_no_ops -= 1
                terminated = step[3]
                yield step
        elif missing_no_ops:
            raise InputError(f"{where}: episode seed {seed}: a cassette episode with no-op moves cannot be replayed")
        step = _expose(env, hole, k, where, seed)
        terminated = step[3]
        yield step
    while missing_no_ops > 0 and not terminated:  # no-ops after the last exposure
        step = no_op()
        missing_no_ops -= 1
        terminated = step[3]
        yield step
    _check_end(inner, row, where)


def _expose(env, hole: int, k: int, where: str, seed: int) -> tuple[int, float, float, bool, bool, dict, dict]:
    """Exposure ``k`` of a replayed episode (hole ``hole``) as one step's tuple, or an InputError if the
    world does not allow it."""
    obs, reward, terminated, truncated, info = env.step(hole)
    inner = env.unwrapped
    if info["invalid_action"] or inner.state.exposures[-1:] != [hole]:
        raise InputError(f"{where}: episode seed {seed}: exposure {k} (hole {hole}) is not possible in this world")
    return hole, reward, float(inner.world.grid.ctf[hole]), terminated, truncated, obs, info


def _check_end(inner, row: dict, where: str) -> None:
    """The replayed session ends as the file says (its exposures and minutes), or an InputError."""
    state, exposures = inner.state, row["trajectory"]
    if "minutes" in row and (state.n_exposures != len(exposures) or state.elapsed != float(row["minutes"])):
        raise InputError(
            f"{where}: episode seed {row['seed']}: replaying it gives {state.n_exposures} exposures in "
            f"{state.elapsed} minutes, the file records {len(exposures)} in {row['minutes']}; was it made with "
            "another world?"
        )


def _staged_steps(env, row: dict, where: str) -> Iterator[tuple[int, float, float, bool, bool, dict, dict]]:
    """A staged episode's steps: its exposures, each square's imaging (action ``N + square``) before the
    exposure it came before (see the module docstring for how a results file's minutes place it)."""
    inner = env.unwrapped
    world, seed = inner.world, int(row["seed"])
    exposures = [int(hole) for hole in row["trajectory"]]
    if int(row.get("invalid_moves", 0)):
        raise InputError(
            f"{where}: episode seed {seed}: a staged episode with {row['invalid_moves']} costed no-op(s) cannot be "
            "replayed exactly (the file does not record where they were)"
        )
    if "squares_imaged_after" in row:  # a play journal: how many exposures came before each imaging
        pairs = [(int(before), int(square)) for before, square in row["squares_imaged_after"]]
        placed = [[square for before, square in pairs if before == k] for k in range(len(exposures) + 1)]
    elif "squares_imaged" in row and "good_curve" in row:
        order = [int(square) for square in row["squares_imaged"]]
        if order[:1] != list(inner.state.squares_imaged):  # the start's square, imaged for free at the reset
            raise InputError(
                f"{where}: episode seed {seed}: 'squares_imaged' starts with {order[:1]}, the start hole's square "
                f"is {inner.state.squares_imaged}"
            )
        placed = _place_imaging(world, inner.state, exposures, row["good_curve"]["minutes"], order[1:], where, seed)
    else:
        raise InputError(f"{where}: episode seed {seed}: a staged episode without 'squares_imaged'")
    terminated = False
    for k in range(len(exposures) + 1):
        for square in placed[k]:
            if terminated:
                raise InputError(f"{where}: episode seed {seed}: the session ended before imaging square {square}")
            obs, reward, terminated, truncated, info = env.step(world.n_holes + square)
            if info["invalid_action"]:
                raise InputError(f"{where}: episode seed {seed}: square {square} cannot be imaged there")
            yield world.n_holes + square, reward, np.nan, terminated, truncated, obs, info
        if k == len(exposures):
            break
        hole = exposures[k]
        if terminated:
            raise InputError(f"{where}: episode seed {seed}: the session ended before exposure {k} of {len(exposures)}")
        step = _expose(env, hole, k, where, seed)
        terminated = step[3]
        yield step


def _place_imaging(world, start, exposures: list[int], minutes: list, order: list[int], where: str, seed: int):
    """For each exposure (and after the last), the squares of ``order`` imaged just before it: the fewest
    with which exposure k ends at its recorded minute, tried on a scratch copy of the session state."""
    state = _scratch(start)
    placed: list[list[int]] = []
    remaining = list(order)
    for k, hole in enumerate(exposures):
        before = _scratch(state)
        for count in range(len(remaining) + 1):
            if count:
                simulator.step(world, before, world.n_holes + remaining[count - 1])
            trial = _scratch(before)
            simulator.step(world, trial, hole)
            if trial.exposures[-1:] == [hole] and abs(trial.elapsed - float(minutes[k])) <= 1e-9:
                break
        else:
            raise InputError(
                f"{where}: episode seed {seed}: no placing of the squares imaged ends exposure {k} (hole {hole}) at "
                f"minute {minutes[k]}; was it made with another world?"
            )
        placed.append(remaining[:count])
        remaining = remaining[count:]
        state = trial
    placed.append(remaining)  # imaged after the last exposure
    return placed


def _scratch(state):
    """A copy of a session state to try actions on (without the feature cache, which it never needs)."""
    return copy.deepcopy(dataclasses.replace(state, feature_cache=None))


def replay_results(paths: Sequence[str | Path]) -> tuple[str, dict, list[Episode], list[dict]]:
    """Every episode of the results files named, replayed: (env id, arguments, episodes, sources)."""
    loaded = [(path, _read_episodes(path)) for path in results_files(paths)]
    env_id, kwargs = _env_of(loaded)
    envs: dict[int | None, Any] = {}
    episodes, sources = [], []
    try:
        for path, doc in loaded:
            human = "human" in doc
            sources.append(
                {
                    "file": path.name,
                    "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                    "agent": doc["agent"]["name"],
                    "human": human,
                    "complete": bool(doc["human"].get("complete", True)) if human else True,
                    **({"journal": True} if doc.get("journal") else {}),
                }
            )
            for index, row in enumerate(doc["episodes"]):
                world = row.get("world")
                if world not in envs:
                    envs[world] = make_env(env_id, _world_kwargs(kwargs, world))
                steps = list(_steps(envs[world], row, f"{path} episode {index}"))[1:]
                actions, rewards, ctf = [s[0] for s in steps], [s[1] for s in steps], [s[2] for s in steps]
                terms, truncs = [s[3] for s in steps], [s[4] for s in steps]
                if truncs and not terms[-1]:  # stopped before the session's end (a person who finished early)
                    truncs[-1] = True
                recorded = float(row.get("total_reward", np.sum(rewards)))  # (a journal records no reward)
                if not np.isclose(float(np.sum(rewards)), recorded, rtol=0, atol=1e-9):
                    raise InputError(
                        f"{path} episode {index}: replayed rewards sum to {np.sum(rewards)}, "
                        f"the file records {recorded}"
                    )
                episodes.append(
                    Episode(
                        path.name,
                        doc["agent"]["name"],
                        human,
                        None if world is None else int(world),
                        int(row["seed"]),
                        int(envs[world].unwrapped.state.start),
                        np.asarray(actions, dtype=np.int64),
                        np.asarray(rewards, dtype=np.float64),
                        np.asarray(ctf, dtype=np.float64),
                        np.asarray(terms, dtype=bool),
                        np.asarray(truncs, dtype=bool),
                    )
                )
    finally:
        for env in envs.values():
            env.close()
    return env_id, kwargs, episodes, sources


# ---- npz -------------------------------------------------------------------------------------------------
def export_npz(paths: Sequence[str | Path], out: str | Path) -> dict[str, Any]:
    """Write the episodes of ``paths`` as one compact ``.npz`` file; returns its metadata."""
    env_id, kwargs, episodes, sources = replay_results(paths)
    if not episodes:
        raise InputError("no episodes to export")
    lengths = np.array([len(e.actions) for e in episodes], dtype=np.int64)
    metadata = {
        "format": TRAJECTORIES_FORMAT,
        "env": {"id": env_id, "kwargs": kwargs},
        "sources": sources,
        "episodes": len(episodes),
        "steps": int(lengths.sum()),
        "note": "observations are not stored: rebuild them with cryobench.export.replay_observations (exact)",
    }
    arrays = {
        "actions": np.concatenate([e.actions for e in episodes]),
        "rewards": np.concatenate([e.rewards for e in episodes]),
        "revealed_ctf": np.concatenate([e.revealed_ctf for e in episodes]),
        "terminations": np.concatenate([e.terminations for e in episodes]),
        "truncations": np.concatenate([e.truncations for e in episodes]),
        "episode_starts": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        "seeds": np.array([e.seed for e in episodes], dtype=np.int64),
        "start_holes": np.array([e.start for e in episodes], dtype=np.int64),
        "worlds": np.array([-1 if e.world is None else e.world for e in episodes], dtype=np.int64),
        "source_index": np.array([[s["file"] for s in sources].index(e.source) for e in episodes], dtype=np.int64),
        "human": np.array([e.human for e in episodes], dtype=bool),
        "metadata": np.array(json.dumps(metadata, sort_keys=True)),
    }
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_atomic(out, buffer.getvalue())
    return metadata


@dataclass
class Trajectories:
    """An exported ``.npz`` file, read back: the metadata and the per-step and per-episode arrays."""

    metadata: dict
    arrays: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.arrays["seeds"])

    def episode(self, index: int) -> dict[str, np.ndarray]:
        """Episode ``index``'s per-step arrays (actions, rewards, revealed_ctf, terminations, truncations)."""
        if not 0 <= index < len(self):
            raise InputError(f"episode {index}: the file holds episodes 0 to {len(self) - 1}")
        begin, end = self.arrays["episode_starts"][index : index + 2]
        keys = ("actions", "rewards", "revealed_ctf", "terminations", "truncations")
        return {key: self.arrays[key][begin:end] for key in keys}


def load_trajectories(path: str | Path) -> Trajectories:
    """A ``.npz`` file written by :func:`export_npz`; a one-line error for anything else."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable .npz file ({exc})") from None
    try:
        metadata = json.loads(str(arrays.pop("metadata")))
    except (KeyError, json.JSONDecodeError):
        metadata = {}
    if metadata.get("format") != TRAJECTORIES_FORMAT:
        raise InputError(f"{path}: not a cryobench trajectories file (expected format {TRAJECTORIES_FORMAT!r})")
    return Trajectories(metadata, arrays)


def replay_observations(trajectories: Trajectories, index: int, env=None) -> Iterator[tuple[dict, dict]]:
    """Episode ``index``'s observations and infos, rebuilt by replaying its actions: the reset's, then
    one per step. Raises InputError when a replayed reward differs from the stored one (another world)."""
    env_record = trajectories.metadata["env"]
    world = int(trajectories.arrays["worlds"][index])
    own = env is None
    env = make_env(env_record["id"], _world_kwargs(env_record["kwargs"], None if world < 0 else world)) if own else env
    steps = trajectories.episode(index)
    try:
        obs, info = env.reset(
            seed=int(trajectories.arrays["seeds"][index]),
            options={"start_hole": int(trajectories.arrays["start_holes"][index])},
        )
        yield obs, info
        for step, (action, stored) in enumerate(zip(steps["actions"], steps["rewards"], strict=True)):
            obs, reward, terminated, _truncated, info = env.step(int(action))
            if reward != stored or terminated != steps["terminations"][step]:
                raise InputError(
                    f"episode {index}, step {step}: the replay gives reward {reward} (terminated {terminated}), "
                    f"the file stores {stored} ({bool(steps['terminations'][step])}): another world"
                )
            yield obs, info
    finally:
        if own:
            env.close()


# ---- minari ----------------------------------------------------------------------------------------------
def export_minari(paths: Sequence[str | Path], dataset_id: str, out_dir: str | Path | None = None) -> Path:
    """A Minari dataset (``namespace/name-v0``) of the episodes, observations rebuilt by replaying."""
    import os

    try:
        import minari
        from minari.data_collector import EpisodeBuffer
    except ImportError:
        raise InputError("--format minari needs Minari: pip install 'cryobench[minari]'") from None
    if not re.fullmatch(r"([A-Za-z0-9_\-]+/)*[A-Za-z0-9_\-]+-v\d+", dataset_id):
        raise InputError(f"--dataset-id: expected namespace/name-vN (e.g. cryobench/my-run-v0), got {dataset_id!r}")
    env_id, kwargs, episodes, _sources = replay_results(paths)
    if not episodes:
        raise InputError("no episodes to export")
    if any(e.world is not None for e in episodes):
        raise InputError("--format minari: episodes on several test worlds; Minari datasets hold one environment")
    env = make_env(env_id, kwargs)
    compact = {
        "format": TRAJECTORIES_FORMAT,
        "env": {"id": env_id, "kwargs": kwargs},
        "sources": _sources,
        "episodes": len(episodes),
        "steps": sum(len(e.actions) for e in episodes),
    }
    trajectories = Trajectories(
        compact,
        {
            "actions": np.concatenate([e.actions for e in episodes]),
            "rewards": np.concatenate([e.rewards for e in episodes]),
            "revealed_ctf": np.concatenate([e.revealed_ctf for e in episodes]),
            "terminations": np.concatenate([e.terminations for e in episodes]),
            "truncations": np.concatenate([e.truncations for e in episodes]),
            "episode_starts": np.concatenate([[0], np.cumsum([len(e.actions) for e in episodes])]),
            "seeds": np.array([e.seed for e in episodes]),
            "start_holes": np.array([e.start for e in episodes]),
            "worlds": np.full(len(episodes), -1),
        },
    )
    buffers = []
    try:
        for index, episode in enumerate(episodes):
            observations = [obs for obs, _info in replay_observations(trajectories, index, env)]
            buffers.append(
                EpisodeBuffer(
                    id=index,
                    seed=episode.seed,
                    options={"start_hole": episode.start},
                    observations={key: np.stack([o[key] for o in observations]) for key in observations[0]},
                    actions=episode.actions,
                    rewards=list(episode.rewards),
                    terminations=list(episode.terminations),
                    truncations=list(episode.truncations),
                )
            )
        before = os.environ.get("MINARI_DATASETS_PATH")
        if out_dir is not None:  # Minari writes where this variable says (default ~/.minari/datasets)
            os.environ["MINARI_DATASETS_PATH"] = str(Path(out_dir).resolve())
        try:
            dataset = minari.create_dataset_from_buffers(
                dataset_id,
                buffers,
                env=env.spec,
                eval_env=env.spec,
                algorithm_name=", ".join(sorted({e.agent for e in episodes})),
                code_permalink="https://github.com/cryobench/cryobench",
                author="cryobench export",
                author_email="cryobench@example.org",
                description=f"{len(episodes)} episodes replayed from cryobench results files",
                data_format="arrow",
            )
        except ValueError as exc:  # a bad or taken dataset id
            raise InputError(f"--dataset-id {dataset_id!r}: {exc}") from None
        finally:
            if before is None:
                os.environ.pop("MINARI_DATASETS_PATH", None)
            else:
                os.environ["MINARI_DATASETS_PATH"] = before
    finally:
        env.close()
    return Path(dataset.spec.data_path).parent
