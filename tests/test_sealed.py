"""Sealed evaluation: the agent runs in a worker that never receives the ground truth."""

from __future__ import annotations

import os

import numpy as np
import pytest

from cryobench.agents.external import as_agent
from cryobench.agents.registry import load_agent
from cryobench.errors import InputError
from cryobench.evaluate import make_env, play_episode
from cryobench.grid import CTF_CAP
from cryobench.sealed import SealedAgent
from tests.sealed_agents import memory_dump_path

pytestmark = pytest.mark.slow  # each test starts a worker interpreter


@pytest.fixture(scope="module")
def env():
    environment = make_env("aldolase", {"duration": 60.0})
    yield environment
    environment.close()


@pytest.mark.parametrize("name", ["predict-rank", "greedy", "ucb", "oracle-planner", "oracle-informed"])
def test_a_sealed_run_plays_exactly_as_an_open_one(env, name):
    agent, _ = load_agent(name)
    open_rows = [play_episode(env, agent, seed) for seed in (0, 1)]
    with SealedAgent(name) as sealed:
        assert sealed.worker_pid != os.getpid()
        assert sealed.uses_ground_truth == name.startswith("oracle")
        sealed.fit(env, 0)
        sealed_rows = [play_episode(env, sealed, seed) for seed in (0, 1)]
    assert sealed_rows == open_rows
    assert sealed_rows[0]["good_exposures"] > 0  # a real session, not an empty one


def test_a_sealed_informed_bound_gets_the_calibration_it_declares(env):
    """Version 2's hyperparameters (calibration logistic) in a sealed run: the parent sends that
    calibration's probabilities, and the session is the open one's."""
    version_2 = {"calibration": "logistic", "predict_rank_margin": 0.0}
    agent, _ = load_agent("oracle-informed", version_2)
    open_row = play_episode(env, agent, 0)
    with SealedAgent("oracle-informed", version_2) as sealed:
        assert sealed.latent_calibration == "logistic"
        assert play_episode(env, sealed, 0) == open_row
    with SealedAgent("oracle-informed") as sealed:
        assert sealed.latent_calibration == "hinged"  # the card's (version 3)


def test_a_sealed_view_refuses_probabilities_of_another_calibration():
    from cryobench.sealed import SealedEnv

    view = SealedEnv(None, (), None, None, informed=np.full(3, 0.5), calibration="hinged")
    assert view.informed_good_probability("hinged").tolist() == [0.5, 0.5, 0.5]
    with pytest.raises(ValueError, match="sent in calibration 'hinged' .*, not 'logistic'"):
        view.informed_good_probability()


@pytest.mark.parametrize(
    ("cheat", "reason"),
    [
        ("ReadsTheWorld", "AttributeError: 'SealedEnv' object has no attribute 'world'"),
        ("WritesTheLayout", "ValueError: assignment destination is read-only"),
        ("AsksForTheTruth", "PermissionError: sealed evaluation: the ground truth is given only to upper bounds"),
        ("AsksForTheLatent", "PermissionError: sealed evaluation: the latent patch quality is given only to"),
        ("InformedAsksForTheTruth", "PermissionError: sealed evaluation: the ground truth is given only to upper"),
    ],
)
def test_an_agent_reaching_for_the_truth_fails_with_a_clear_error(env, cheat, reason):
    before = env.unwrapped.layout.tile.copy()
    with SealedAgent(f"tests.sealed_agents:{cheat}") as sealed, pytest.raises(InputError) as caught:
        play_episode(env, sealed, 0)
    assert reason in str(caught.value)
    assert "\n" not in str(caught.value)
    assert (env.unwrapped.layout.tile == before).all()  # the parent's layout is untouched


@pytest.mark.parametrize("feedback", ["inspection", "queue:4", "none"])
def test_a_sealed_run_plays_as_an_open_one_under_every_feedback(feedback):
    # The worker builds the observations itself from what the feedback revealed (sealed_mirror).
    environment = make_env("aldolase", {"duration": 90.0, "feedback": feedback})
    name = "tests.sealed_agents:FollowsFeedback"
    agent = as_agent(name)
    cpus = os.sched_getaffinity(0)
    with SealedAgent(name) as sealed:
        receive, during = sealed._receive_action, []

        def receive_and_look():
            during.append(os.sched_getaffinity(sealed.worker_pid))
            return receive()

        sealed._receive_action = receive_and_look
        for seed in (0, 1):
            assert play_episode(environment, sealed, seed) == play_episode(environment, agent, seed)
        after = os.sched_getaffinity(sealed.worker_pid)
    # With inspection the two processes take turns on one CPU during a session; both get their
    # CPUs back after it.
    assert {len(cpus_then) for cpus_then in during} == {1 if feedback == "inspection" and len(cpus) > 1 else len(cpus)}
    assert os.sched_getaffinity(0) == cpus and after == cpus
    state = environment.unwrapped.state
    exposed = state.n_exposures
    assert exposed >= 10
    assert state.revealed.sum() == {"inspection": exposed, "queue:4": exposed - exposed % 4, "none": 0}[feedback]


def test_an_agent_that_decides_without_feedback_streams_and_plays_as_open():
    # predict-rank declares reads_feedback = False: its worker's mirror reveals nothing and never
    # waits for the parent (no CPU shared), and the session is the open one move for move.
    environment = make_env("aldolase", {"duration": 90.0, "feedback": "inspection"})
    agent, _ = load_agent("predict-rank")
    cpus = os.sched_getaffinity(0)
    with SealedAgent("predict-rank") as sealed:
        assert not sealed.reads_feedback
        sent = []
        send = sealed._send_bytes
        sealed._send_bytes = lambda message: (sent.append(message), send(message))
        for seed in (0, 1):
            assert play_episode(environment, sealed, seed) == play_episode(environment, agent, seed)
        worker_cpus = os.sched_getaffinity(sealed.worker_pid)
    assert len(sent) == 2  # one "session over" message per session, no feedback
    assert worker_cpus == cpus


def test_an_agent_that_reads_the_features_it_declared_it_never_reads_fails_clearly(env):
    # Its worker's mirror leaves the matrix out: reading it stops the run with a one-line error.
    with SealedAgent("tests.sealed_agents:ClaimsNoFeaturesButReads") as sealed:
        with pytest.raises(InputError, match="failed in sealed evaluation: KeyError: 'features'") as caught:
            play_episode(env, sealed, 0)
    assert "\n" not in str(caught.value)


def test_a_false_declaration_only_blinds_the_agent():
    # An agent that claims to decide without revealed CTFs but reads them sees none in a sealed
    # run: it plays as it would open under feedback "none", not as it would with the feedback.
    name = "tests.sealed_agents:ClaimsBlindButReads"
    agent = as_agent(name)
    runs = {}
    for feedback in ("inspection", "none"):
        environment = make_env("aldolase", {"duration": 90.0, "feedback": feedback})
        runs[feedback] = [play_episode(environment, agent, seed)["trajectory"] for seed in (0, 1)]
    assert runs["inspection"] != runs["none"]  # it does read the feedback when it gets it
    environment = make_env("aldolase", {"duration": 90.0, "feedback": "inspection"})
    with SealedAgent(name) as sealed:
        sealed_runs = [play_episode(environment, sealed, seed)["trajectory"] for seed in (0, 1)]
    assert sealed_runs == runs["none"]


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("greedy", {"acquisition": "staged"}),  # not mirrored: observations from the parent
        ("random", {"observation": "compact"}),  # not mirrored
        ("tests.sealed_agents:SometimesInvalid", {"mask_dtype": "bool"}),  # mirrored
    ],
    ids=["staged", "compact", "bool-mask"],
)
def test_other_sessions_play_as_open_ones_too(name, kwargs):
    environment = make_env("aldolase", {"duration": 60.0, **kwargs})
    agent = as_agent(name) if ":" in name else load_agent(name)[0]
    with SealedAgent(name) as sealed:
        rows = [play_episode(environment, sealed, seed) for seed in (0, 1)]
    assert rows == [play_episode(environment, agent, seed) for seed in (0, 1)]
    assert rows[0]["exposures"] >= 10


@pytest.mark.parametrize("feedback", ["inspection", "none"])  # none: the worker streams its actions
def test_invalid_actions_are_recorded_as_in_an_open_run(feedback):
    environment = make_env("aldolase", {"duration": 60.0, "feedback": feedback})
    agent = as_agent("tests.sealed_agents:SometimesInvalid")
    with SealedAgent("tests.sealed_agents:SometimesInvalid") as sealed:
        row = play_episode(environment, sealed, 0)
        assert row == play_episode(environment, agent, 0)
        assert row["invalid_actions"][:2] == [{"step": 5, "action": "'hole 3'"}, {"step": 5, "action": "1000000"}]
        # Strict (a policy): the first invalid action stops the run; the worker is ready for the next.
        with pytest.raises(InputError, match="episode seed 0, step 5: returned 'hole 3', expected a hole index"):
            play_episode(environment, sealed, 0, strict_actions=True)
        assert play_episode(environment, sealed, 1) == play_episode(environment, agent, 1)


def test_an_agent_failing_mid_session_leaves_its_worker_ready(env):
    with SealedAgent("tests.sealed_agents:FailsAtStep") as sealed:
        with pytest.raises(InputError, match="RuntimeError: step 7 fails, as asked"):
            play_episode(env, sealed, 0)
        # reset by the next session: it plays it through
        assert play_episode(env, sealed, 1) == play_episode(env, as_agent("tests.sealed_agents:FailsAtStep"), 1)


def _truth_found(env, dump) -> list[str]:
    """What of the parent's truth the memory dump holds: CTFs or good flags of holes never revealed,
    or the exact CTF of a revealed one above the cap (observations show it capped at 20 Å)."""
    world, state = env.unwrapped.world, env.unwrapped.state
    hidden = ~state.revealed  # never revealed: only the parent knows these
    secret = hidden | (world.grid.ctf > CTF_CAP)
    found = []
    for name, array in np.load(dump).items():
        if array.dtype.kind == "f" and np.any(array[secret] == world.grid.ctf[secret]):
            found.append(f"{name}: CTFs")
        if array.dtype.kind == "b" and np.array_equal(array[hidden], world.true_good[hidden]):
            found.append(f"{name}: good holes")
    return found


def test_the_memory_search_finds_the_truth_where_it_is(env):
    # The control: the same search in an open run (one process) finds both.
    play_episode(env, as_agent("tests.sealed_agents:SearchesMemory"), 0)
    dump = memory_dump_path(os.getpid())
    found = _truth_found(env, dump)
    dump.unlink()
    assert {text.split(": ")[1] for text in found} == {"CTFs", "good holes"}


def test_nothing_in_the_worker_holds_the_truth(env):
    with SealedAgent("tests.sealed_agents:SearchesMemory") as sealed:
        row = play_episode(env, sealed, 0)
        dump = memory_dump_path(sealed.worker_pid)
    assert row["exposures"] == 52
    assert np.any(env.unwrapped.state.revealed & (env.unwrapped.world.grid.ctf > CTF_CAP))  # capped ones shown
    assert len(np.load(dump).files) >= 20  # it did find the worker's arrays (its mirror's CTFs among them)
    found = _truth_found(env, dump)
    dump.unlink()
    assert found == []


def test_observations_handed_over_are_the_agents_own(env):
    with SealedAgent("tests.sealed_agents:KeepsLastObservation") as sealed:
        row = play_episode(env, sealed, 3)
    assert row["exposures"] >= 10


def test_an_unknown_agent_is_refused_in_one_line():
    with pytest.raises(InputError, match="no-such-agent") as caught:
        SealedAgent("no-such-agent")
    assert "\n" not in str(caught.value)


def test_the_worker_ends_with_the_run(env):
    sealed = SealedAgent("random")
    pid = sealed.worker_pid
    sealed.close()
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_ctrl_c_in_the_parent_mid_session_ends_the_worker_at_once(env, monkeypatch):
    with SealedAgent("greedy") as sealed:
        receive, calls = sealed._receive_action, []

        def interrupted():
            calls.append(1)
            if len(calls) == 5:
                raise KeyboardInterrupt
            return receive()

        monkeypatch.setattr(sealed, "_receive_action", interrupted)
        with pytest.raises(KeyboardInterrupt):
            play_episode(env, sealed, 0)
        assert sealed._process.exitcode == -9  # killed, not left waiting for a message that never comes
        with pytest.raises(InputError, match="its sealed worker process ended unexpectedly"):
            play_episode(env, sealed, 1)
