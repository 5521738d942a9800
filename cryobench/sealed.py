"""Sealed evaluation: the agent runs in a worker process that never receives the ground truth.

Threat model: an agent's own Python code trying to reach the truth during a protocol run
(attribute walks such as ``env.unwrapped.world.grid.ctf``, ``gc``, ``inspect``) or to change
the rules (writing the layout arrays). In a sealed run the simulator stays in the parent;
the worker is a fork of a fork server (a fresh interpreter that only imported modules: no
copy of the parent's memory) that receives only what the environment publishes: the public
layout (read-only copies), observations (built in the worker from the public layout and the
revealed CTFs, :mod:`cryobench.sealed_mirror`) and ``info``. Whatever the agent does to its
copies cannot change the parent's session, and the parent records the trajectory and scores
itself.

Upper bounds (``uses_ground_truth``) get the truth through one explicit, privileged message
at reset, and stay labelled as upper bounds in every table. The informed bound
(``uses_latent_quality``, also an upper bound) gets, in the same message, only each hole's
P(good) given the twin generator's latent patch quality, never the CTFs, in the calibration
it declares (``latent_calibration``, default ``"logistic"``; :mod:`cryobench.informed`).

:class:`SealedAgent` has the agent interface (``fit``, ``reset``, ``act``), so
:func:`cryobench.evaluate.play_episode` runs it like any agent; it hands whole sessions it
can mirror to :meth:`SealedAgent.sealed_play_episode`, and plays the others step by step with
each observation sent from the parent. The worker's environment variables are those of the
fork server (the parent's when its first worker started).

An agent that declares it decides without revealed CTFs (``reads_feedback = False``) gets a
blind mirror (no feedback): its worker streams its actions and never waits for the parent. Its
sessions are the open ones (the declaration is tested per agent); a false declaration only hides
the feedback from the agent that made it. An agent that declares it never reads the feature
matrix (``reads_features = False``) gets observations without it (most of a step's cost).
"""

from __future__ import annotations

import collections
import multiprocessing as mp
import os
import select
import shutil
import struct
import tempfile
import time
import traceback
from dataclasses import fields, is_dataclass, replace
from typing import Any

import numpy as np

from cryobench import metrics, simulator
from cryobench.errors import InputError
from cryobench.sealed_mirror import (
    ACTION,
    ACTION_ABORTED,
    ACTION_END,
    ACTION_ERROR,
    ACTION_HOLE,
    ACTION_NOT_A_HOLE,
    FEEDBACK_ABORT,
    FEEDBACK_OVER,
    FEEDBACK_REVEAL,
    Mirror,
    feedback_message,
    mirror_rules,
    read_actions,
    read_feedback,
    revealed_by,
)

#: Observation and info arrays of at least this many entries cross through memory-mapped files.
MAPPED_MIN_SIZE = 256
#: What the fork server imports before forking workers: a worker then starts in milliseconds, not
#: the 0.3 s (1.4 s with torch) of a fresh interpreter importing numpy, gymnasium and cryobench
#: (measured), which each protocol task paid once. ``__main__`` as multiprocessing does by default.
WORKER_PRELOAD = ("__main__", "cryobench.sealed", "cryobench.agents.registry")
#: A mirrored session's worker sends its actions at the latest after this many, or seconds.
ACTIONS_PER_MESSAGE = 64
SECONDS_PER_MESSAGE = 0.5
#: Seconds the parent waits for a worker's answer before calling the agent hung.
ANSWER_TIMEOUT_SECONDS = 600.0


_preload_set = False  # whether this process chose its fork server's modules (the server starts once)


def _worker_context(agent_name: str) -> Any:
    """Where workers come from: forks of a fork server, a fresh interpreter that imported the
    modules in ``WORKER_PRELOAD`` (and the first worker's agent module: a sweep runs one agent)
    once and never holds anything of the parent's (no world, no truth); fresh interpreters
    (``spawn``) where there is no fork server (Windows)."""
    global _preload_set
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    context = mp.get_context("forkserver")
    if not _preload_set:  # read when the server starts, with the first worker (entry points: 10-20 ms)
        from importlib.metadata import entry_points

        from cryobench.agents.registry import GROUP

        modules = [ep.module for ep in entry_points(group=GROUP, name=agent_name)]
        context.set_forkserver_preload([*WORKER_PRELOAD, *modules])
        _preload_set = True
    return context


class SealedEnv:
    """What an agent holds as ``env`` in a sealed run: the public view of the environment, nothing else."""

    def __init__(
        self,
        layout: Any,
        feature_names: tuple[str, ...],
        observation_space,
        action_space,
        truth=None,
        informed=None,
        calibration: str = "logistic",
    ):
        self.layout = layout
        self.feature_names = feature_names
        self.observation_space = observation_space
        self.action_space = action_space
        self._privileged_truth = truth
        self._privileged_informed = informed
        self._informed_calibration = calibration

    @property
    def unwrapped(self) -> SealedEnv:
        return self

    def ground_truth_ctf(self) -> np.ndarray:
        """The truth, for upper bounds only (sent to them explicitly; never to a real agent)."""
        if self._privileged_truth is None:
            raise PermissionError(
                "sealed evaluation: the ground truth is given only to upper bounds (agents with uses_ground_truth)"
            )
        return self._privileged_truth.copy()

    def informed_good_probability(self, calibration: str = "logistic") -> np.ndarray:
        """The informed bound's knowledge (sent to it explicitly; never to a real agent), in the
        calibration its ``latent_calibration`` declared."""
        if self._privileged_informed is None:
            raise PermissionError(
                "sealed evaluation: the latent patch quality is given only to the informed bound "
                "(agents with uses_latent_quality)"
            )
        if calibration != self._informed_calibration:
            raise ValueError(
                f"sealed evaluation: the informed probabilities were sent in calibration "
                f"{self._informed_calibration!r} (the agent's latent_calibration), not {calibration!r}"
            )
        return self._privileged_informed.copy()


def public_layout_copy(layout: Any) -> Any:
    """A copy of a public layout whose arrays are read-only (what crosses to the worker)."""
    values = {}
    for item in fields(layout):
        value = getattr(layout, item.name)
        if isinstance(value, np.ndarray):
            value = value.copy()
            value.flags.writeable = False
        values[item.name] = value
    return replace(layout, **values)


def _read_only(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        value.flags.writeable = False
    elif isinstance(value, dict):
        for item in value.values():
            _read_only(item)
    elif is_dataclass(value):
        for item in fields(value):
            _read_only(getattr(value, item.name))
    return value


def _worker(conn, agent_name: str, hyperparameters: dict[str, Any] | None) -> None:
    """The worker's loop: load the agent, then answer fit / reset / act messages until closed."""
    # Imported here: the worker is a fresh interpreter and needs nothing of the parent's.
    from cryobench.agents.external import as_agent, is_policy_spec
    from cryobench.agents.registry import agent_version, load_agent

    def answer(kind: str, *payload: Any) -> None:
        try:
            conn.send((kind, *payload))
        except BrokenPipeError:  # the parent is gone (a stopped or killed sweep): so is the worker, quietly
            os._exit(0)

    try:
        if is_policy_spec(agent_name):  # "module:attr" or "file.py:attr": code that is not a registered package
            agent, card = as_agent(agent_name), {}
        else:
            agent, card = load_agent(agent_name, hyperparameters)
    except BaseException as exc:  # reported to the parent, which raises it as one line
        answer("error", f"{type(exc).__name__}: {exc}", "")
        return
    answer(
        "loaded",
        {
            "uses_ground_truth": bool(getattr(agent, "uses_ground_truth", False)),
            "uses_latent_quality": bool(getattr(agent, "uses_latent_quality", False)),
            "latent_calibration": str(getattr(agent, "latent_calibration", "logistic")),
            "needs_feedback": bool(getattr(agent, "needs_feedback", False)),
            "reads_feedback": _reads_feedback(agent),
            "card": card,
            "version": agent_version(agent, card) if card else {"card_sha256": None, "checkpoint_sha256": None},
            "pid": os.getpid(),
        },
    )
    env: SealedEnv | None = None
    mirror: Mirror | None = None
    views: dict[str, np.ndarray] = {}
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the parent is gone: so is the worker
            return
        kind = message[0]
        try:
            if kind == "close":
                return
            if kind == "env":  # a new public view (a new world or task)
                _, layout, feature_names, observation_space, action_space, truth, informed, rules = message
                mirror = (
                    None
                    if rules is None
                    else Mirror(
                        layout,
                        rules,
                        blind=not _reads_feedback(agent),
                        features=bool(getattr(agent, "reads_features", True)),
                    )
                )
                env = SealedEnv(
                    _read_only(layout),
                    feature_names,
                    observation_space,
                    action_space,
                    _read_only(truth),
                    _read_only(informed),
                    str(getattr(agent, "latent_calibration", "logistic")),
                )
                answer("ok")
            elif kind == "fit":
                agent.fit(env, seed=message[1])
                answer("ok")
            elif kind == "reset":
                agent.reset(env, message[1])
                answer("ok")
            elif kind == "episode":  # a whole session, observations from the mirror (no answer but its actions)
                _play_mirrored(conn, agent, env, mirror, seed=message[1], start_hole=message[2])
            elif kind == "act":
                _, obs, info, mapped = message
                # Fresh arrays every step: agents may keep last step's observation to compare.
                for (where, key), (path, dtype, shape) in mapped.items():
                    if path not in views:
                        views[path] = np.memmap(path, dtype=dtype, mode="r", shape=shape)
                    (obs if where == "obs" else info)[key] = np.array(views[path])
                action, seconds = _timed_action(agent, obs, info)
                hole = action if isinstance(action, int) and not isinstance(action, bool) else None
                answer("action", hole, seconds, repr(action))
            else:
                answer("error", f"unknown message {kind!r}", "")
        except BaseException as exc:
            answer("error", f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=-3))


def _reads_feedback(agent: Any) -> bool:
    """Whether the agent's decisions may depend on revealed CTFs (what it did not declare otherwise
    does; an agent that needs feedback reads it)."""
    return bool(getattr(agent, "reads_feedback", True)) or bool(getattr(agent, "needs_feedback", False))


def _timed_action(agent, obs: dict, info: dict) -> tuple[Any, float]:
    """The agent's action (an integer index as a Python int) and the seconds it took to decide."""
    start = time.perf_counter()
    action = agent.act(_read_only(obs), info)
    seconds = time.perf_counter() - start
    if isinstance(action, np.ndarray) and action.shape == () and action.dtype.kind in "iu":
        action = action[()]
    if isinstance(action, np.integer) and not isinstance(action, np.bool_):
        action = int(action)
    return action, seconds


def _play_mirrored(conn, agent, env: SealedEnv, mirror: Mirror | None, seed: int, start_hole: int) -> None:
    """The worker's side of one mirrored session: act on the mirror's observation, advance the
    mirror, until its session is over and the parent agrees, or the parent stops it.

    Actions go out in batches: the worker sends what it has when it must wait for the parent (a
    step that reveals CTFs: every step with ``inspection``, one in K with ``queue:K``; the end),
    or every ``ACTIONS_PER_MESSAGE`` actions or ``SECONDS_PER_MESSAGE`` seconds; without feedback
    the two processes then run side by side instead of waking each other every step."""
    outbox: list[bytes] = []
    last_sent = time.perf_counter()

    def send(record: bytes, now: bool) -> None:
        nonlocal last_sent
        outbox.append(record)
        if now or len(outbox) >= ACTIONS_PER_MESSAGE or time.perf_counter() - last_sent > SECONDS_PER_MESSAGE:
            conn.send_bytes(b"".join(outbox))
            outbox.clear()
            last_sent = time.perf_counter()

    def wait_for_parent() -> tuple[int, np.ndarray, np.ndarray, np.ndarray] | None:
        answer = read_feedback(conn.recv_bytes())
        if answer[0] == FEEDBACK_ABORT:  # the parent stopped the session (it raised): say so, then its messages
            conn.send_bytes(ACTION.pack(ACTION_ABORTED, 0, 0.0))
            return None
        return answer

    try:
        if mirror is None:
            raise RuntimeError("no mirror for this environment (the parent sent no rules)")
        obs, info = mirror.reset(seed, start_hole)
        agent.reset(env, seed)
        world, state = mirror.env.world, mirror.env.state
        n_holes = world.n_holes
        no_holes = np.zeros(0, dtype=np.int64)
        while True:
            action, seconds = _timed_action(agent, obs, info)
            if isinstance(action, int) and not isinstance(action, bool):
                record = ACTION.pack(ACTION_HOLE, action, seconds)
                hole = action if 0 <= action < n_holes else state.current
            else:
                text = repr(action).encode("utf-8", "replace")
                record = ACTION.pack(ACTION_NOT_A_HOLE, len(text), seconds) + text
                hole = state.current  # as the parent plays it: the costed no-op of the current hole
            expected = revealed_by(world, state, hole)
            send(record, now=bool(expected))
            holes, ctf, good = no_holes, no_holes, no_holes
            if expected:
                answer = wait_for_parent()
                if answer is None:
                    return
                _, holes, ctf, good = answer
                if tuple(holes.tolist()) != expected:
                    raise RuntimeError(f"sealed mirror out of step: the parent revealed {holes.tolist()}")
            obs, terminated, info = mirror.step(hole, holes, ctf, good)
            state = mirror.env.state
            if terminated:
                send(ACTION.pack(ACTION_END, state.n_exposures, state.elapsed), now=True)
                wait_for_parent()  # the parent's word that it ended too (or stopped it)
                return
    except (EOFError, BrokenPipeError, ConnectionResetError):  # the parent is gone: so is the worker
        os._exit(0)
    except BaseException as exc:  # reported to the parent, which raises it as one line
        text = f"{type(exc).__name__}: {exc}".encode("utf-8", "replace")
        send(ACTION.pack(ACTION_ERROR, len(text), 0.0) + text, now=True)


class _NotAnAction:
    """Stands for what an agent returned that is not a hole index (recorded by its repr)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


class SealedAgent:
    """An agent, by name, run in a sealed worker process; has the agent interface.

    Use it as a context manager (or call :meth:`close`) so the worker ends with the run.
    """

    def __init__(self, agent_name: str, hyperparameters: dict[str, Any] | None = None) -> None:
        self.name = agent_name
        context = _worker_context(agent_name)
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_worker, args=(child, agent_name, hyperparameters), name=f"cryobench-sealed-{agent_name}"
        )
        self._process.daemon = True  # never outlives the run
        self._process.start()
        child.close()
        meta = self._receive("loaded")[0]
        self.uses_ground_truth: bool = meta["uses_ground_truth"]
        self.uses_latent_quality: bool = meta["uses_latent_quality"]
        self.latent_calibration: str = meta["latent_calibration"]
        self.needs_feedback: bool = meta["needs_feedback"]
        self.reads_feedback: bool = meta["reads_feedback"]
        self.card: dict[str, Any] = meta["card"]
        self.version: dict[str, str | None] = meta["version"]
        self.worker_pid: int = meta["pid"]
        self._sent_layout: Any = None
        self._worker_left = False  # set when the worker reported an error and left its session
        self._records: collections.deque[tuple[int, int, float, str]] = collections.deque()
        # A poll object made once: Connection.poll builds a selector per call (a tenth of a step).
        self._answers = select.poll() if hasattr(select, "poll") else None
        if self._answers is not None:
            self._answers.register(self._conn.fileno(), select.POLLIN)
        self._maps: dict[tuple[str, str], tuple[np.ndarray, tuple[str, str, tuple[int, ...]]]] = {}
        # Observation arrays (the feature matrix is about 1 MB a step) go through memory-mapped
        # files, not the pipe: sending 40 kB or more a step through it cost 1-2 ms (measured),
        # several times a fast agent's whole decision.
        self._folder = tempfile.mkdtemp(
            prefix="cryobench-sealed-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
        )
        self.decision_seconds: list[float] = []

    # ---- the agent interface ---------------------------------------------------------------
    def fit(self, env, seed: int = 0) -> None:
        self._send_env(env)
        self._send("fit", int(seed))
        self._receive("ok")

    def reset(self, env, seed: int) -> None:
        self._send_env(env)
        self._send("reset", int(seed))
        self._receive("ok")

    def act(self, obs: dict, info: dict) -> Any:
        small_obs, small_info, mapped = {}, {}, {}
        for where, source, small in (("obs", obs, small_obs), ("info", info, small_info)):
            for key, value in source.items():
                if isinstance(value, np.ndarray) and value.size >= MAPPED_MIN_SIZE:
                    mapped[(where, key)] = self._mapped(where, key, value)
                else:
                    small[key] = value
        self._send("act", small_obs, small_info, mapped)
        action, seconds, text = self._receive("action")
        self.decision_seconds.append(float(seconds))
        return action if action is not None else _NotAnAction(text)

    def sealed_play_episode(
        self, env, seed: int, options: dict | None = None, strict_actions: bool = False
    ) -> dict | None:
        """One session with the observations built in the worker (:mod:`cryobench.sealed_mirror`), as
        :func:`cryobench.evaluate.play_episode` plays it; None when ``env`` cannot be mirrored.

        The worker streams its actions; the parent plays each on the real world and answers only
        the steps that reveal CTFs (before playing the step, so both work at once), then checks
        that the worker's session ended where its own did.
        """
        if mirror_rules(env) is None:
            return None
        env.reset(seed=seed, options=options)
        self._send_env(env)
        inner = env.unwrapped
        world, state = inner.world, inner.state
        n_holes = env.action_space.n
        self._send("episode", int(seed), int(state.start))
        self._worker_left = False
        self._records.clear()
        invalid_actions: list[dict[str, Any]] = []
        # With inspection the two take turns every step: one CPU. Otherwise (or for an agent that
        # decides without revealed CTFs) the worker streams its actions and both run at once (one
        # CPU: 1.3x open with feedback none; two: 1.1-1.3x).
        takes_turns = world.feedback.mode == "inspection" and self.reads_feedback
        parent_cpus = self._share_one_cpu() if takes_turns else None
        try:
            while True:
                kind, action, seconds, text = self._receive_action()
                if kind == ACTION_END:
                    raise InputError(f"agent {self.name!r}: its worker's session ended before the parent's")
                self.decision_seconds.append(seconds)
                if kind != ACTION_HOLE or not 0 <= action < n_holes:
                    shown = text if kind != ACTION_HOLE else repr(action)
                    if strict_actions:
                        raise InputError(
                            f"policy {self.name!r}: episode seed {seed}, step {state.n_exposures}: "
                            f"returned {shown:.80}, expected a hole index from 0 to {n_holes - 1} (an integer)"
                        )
                    invalid_actions.append({"step": state.n_exposures, "action": shown})
                    action = state.current
                revealed = revealed_by(world, state, action)
                if revealed and self.reads_feedback:  # a blind mirror waits for none (Mirror's blind)
                    self._send_bytes(feedback_message(FEEDBACK_REVEAL, revealed, world))
                # What env.step does in a paper session, without the observation nobody here reads.
                result = simulator.expose(world, state, action)
                if result.newly_revealed != revealed:
                    raise RuntimeError(f"sealed run: step revealed {result.newly_revealed}, not {revealed}")
                if simulator.is_over(world, state):
                    break
            kind, exposures, elapsed, _ = self._receive_action()
            if (kind, exposures, elapsed) != (ACTION_END, state.n_exposures, state.elapsed):
                raise InputError(f"agent {self.name!r}: its worker's session did not end with the parent's")
            self._send_bytes(feedback_message(FEEDBACK_OVER))
        except Exception as exc:
            if not (isinstance(exc, InputError) and self._worker_left):
                self._stop_session()
            raise
        except BaseException:  # Ctrl-C, SystemExit: the run ends here, and so does the worker, now
            self.close(wait=False)
            raise
        finally:
            if parent_cpus is not None:  # both back on every CPU: a streamed session runs them side by side
                os.sched_setaffinity(0, parent_cpus)
                os.sched_setaffinity(self.worker_pid, parent_cpus)
        return {**metrics.episode_metrics(world, state), "invalid_actions": invalid_actions}

    def _share_one_cpu(self) -> set[int] | None:
        """Keep this thread and the worker on the CPU this thread runs on, for one session; return
        this thread's CPUs to restore after it (None: left as they are).

        Why: with inspection the two processes take turns (the worker waits for each step's CTF,
        the parent for the next action), so one CPU is all they use at once; on two CPUs every turn is a wake-up across
        CPUs, and on this machine under load such episodes took 3 to 6 times as long (measured:
        predict-rank 0.26-0.53 s against 0.09 s on one CPU, load 13)."""
        try:
            cpus = os.sched_getaffinity(0)
            with open("/proc/thread-self/stat") as stat:
                cpu = int(stat.read().rsplit(")", 1)[1].split()[36])  # field 39: the CPU it last ran on
            if len(cpus) < 2 or cpu not in cpus:
                return None
            os.sched_setaffinity(self.worker_pid, {cpu})
            os.sched_setaffinity(0, {cpu})
        except (AttributeError, OSError, ValueError, IndexError):  # not Linux, or not allowed: as they are
            return None
        return cpus

    def _stop_session(self) -> None:
        """Stop the worker's session after the parent raised: it answers ACTION_ABORTED once it reads
        the stop (the actions it streamed meanwhile are dropped), and is then ready for messages."""
        try:
            self._send_bytes(feedback_message(FEEDBACK_ABORT))
            while self._receive_action()[0] != ACTION_ABORTED:
                pass
        except InputError:  # the worker failed or ended meanwhile: end it, later use gets a clear error
            self.close(wait=False)

    # ---- plumbing ------------------------------------------------------------------------------
    def _send_env(self, env) -> None:
        """Send the public view when the environment's world changed (a new layout object)."""
        inner = env.unwrapped
        if inner.layout is self._sent_layout:
            return
        # The privileged interface: the informed bound gets its latent knowledge and not the CTFs.
        informed = inner.informed_good_probability(self.latent_calibration) if self.uses_latent_quality else None
        truth = inner.ground_truth_ctf() if self.uses_ground_truth and informed is None else None
        feature_names = tuple(getattr(inner, "feature_names", ()))
        layout = public_layout_copy(inner.layout)
        rules = mirror_rules(env)
        self._send("env", layout, feature_names, env.observation_space, env.action_space, truth, informed, rules)
        self._receive("ok")
        self._sent_layout = inner.layout

    def _mapped(self, where: str, key: str, value: np.ndarray) -> tuple[str, str, tuple[int, ...]]:
        """Copy ``value`` into its memory-mapped file (made on first use, or when its shape changes)."""
        entry = self._maps.get((where, key))
        if entry is None or entry[0].shape != value.shape or entry[0].dtype != value.dtype:
            path = os.path.join(self._folder, f"{where}-{key}-{len(self._maps)}-{value.size}.bin")
            array = np.memmap(path, dtype=value.dtype, mode="w+", shape=value.shape)
            entry = (array, (path, value.dtype.str, value.shape))
            self._maps[(where, key)] = entry
        np.copyto(entry[0], value)
        return entry[1]

    def _send(self, *message: Any) -> None:
        try:
            self._conn.send(message)
        except (BrokenPipeError, OSError):
            raise InputError(f"agent {self.name!r}: its sealed worker process ended unexpectedly") from None

    def _send_bytes(self, message: bytes) -> None:
        try:
            self._conn.send_bytes(message)
        except (BrokenPipeError, OSError):
            raise InputError(f"agent {self.name!r}: its sealed worker process ended unexpectedly") from None

    def _answer_ready(self) -> bool:
        """Whether the worker answered within ``ANSWER_TIMEOUT_SECONDS``."""
        if self._answers is None:
            return self._conn.poll(ANSWER_TIMEOUT_SECONDS)
        return bool(self._answers.poll(ANSWER_TIMEOUT_SECONDS * 1000))

    def _receive_action(self) -> tuple[int, int, float, str]:
        """The worker's next record in a mirrored session: (kind, hole or count, seconds or minutes,
        the text of a non-hole or an error); a message holds one or more."""
        if not self._records:
            if not self._answer_ready():
                self.close()
                raise InputError(
                    f"agent {self.name!r} did not answer within {ANSWER_TIMEOUT_SECONDS:.0f} s in its worker"
                )
            try:
                message = self._conn.recv_bytes()
            except (EOFError, OSError):
                raise InputError(f"agent {self.name!r}: its sealed worker process ended unexpectedly") from None
            try:
                self._records.extend(read_actions(message))
            except (ValueError, struct.error):  # not a session's records: the two are out of step
                self.close(wait=False)
                raise InputError(f"agent {self.name!r}: its sealed worker sent an unreadable answer") from None
        kind, value, seconds, text = self._records.popleft()
        if kind == ACTION_ERROR:
            self._worker_left = True  # its session ended with the error
            raise InputError(f"agent {self.name!r} failed in sealed evaluation: {text}")
        return kind, value, seconds, text

    def _receive(self, expected: str) -> tuple:
        if not self._conn.poll(ANSWER_TIMEOUT_SECONDS):
            self.close()
            raise InputError(f"agent {self.name!r} did not answer within {ANSWER_TIMEOUT_SECONDS:.0f} s in its worker")
        try:
            kind, *payload = self._conn.recv()
        except (EOFError, OSError):
            raise InputError(f"agent {self.name!r}: its sealed worker process ended unexpectedly") from None
        if kind == "error":
            message, _trace = payload
            raise InputError(f"agent {self.name!r} failed in sealed evaluation: {message}")
        if kind != expected:
            raise InputError(f"agent {self.name!r}: its worker answered {kind!r} where {expected!r} was expected")
        return tuple(payload)

    def close(self, wait: bool = True) -> None:
        """End the worker: asked to, and given 5 s (``wait``), or at once."""
        if self._process.is_alive():
            try:
                if wait:
                    self._conn.send(("close",))
            except (BrokenPipeError, OSError):
                pass
            self._process.join(timeout=5 if wait else 0)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
        self._conn.close()
        self._maps.clear()
        shutil.rmtree(self._folder, ignore_errors=True)

    def __enter__(self) -> SealedAgent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
