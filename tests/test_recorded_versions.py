"""Entries recorded before an agent gained hyperparameters re-run their own version: the added keys take
the values those entries ran with (dqn version 3 switched on the plan features, prior and switch)."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np

from cryobench.agents.dqn import DQNConfig
from cryobench.agents.registry import card_version, load_agent, recorded_hyperparameters
from cryobench.env import CryoEMSessionEnv
from cryobench.leaderboard.heldout_runs import reproduction_problems
from tests.test_dqn_reliability import OLD_CHECKPOINT_ACTIONS, SMALL, make_world

RESULTS = Path(__file__).resolve().parents[1] / "leaderboards" / "results"


def _recorded_v1_dqn() -> dict:
    return json.loads((RESULTS / "v1" / "dqn.json").read_text())["agent"]["card"]["hyperparameters"]


def test_a_recorded_card_without_the_new_keys_gets_their_old_values():
    recorded = _recorded_v1_dqn()
    assert "trust_rms" not in recorded and "plan_features" not in recorded
    filled = recorded_hyperparameters("dqn", recorded)
    assert {k: filled[k] for k in DQNConfig.ADDED_AFTER_RECORDING} == DQNConfig.ADDED_AFTER_RECORDING
    assert {k: filled[k] for k in recorded} == recorded  # what the card recorded is kept as it is
    assert DQNConfig().trust_rms == 0.25 and DQNConfig().prior_scale == 1.0  # today's card: version 4
    assert recorded_hyperparameters("no-such-agent", {"a": 1}) == {"a": 1}


def test_the_v1_entry_replayed_decides_as_version_1_did():
    agent, _ = load_agent("dqn", recorded_hyperparameters("dqn", _recorded_v1_dqn()))
    assert agent.config.checkpoint == "checkpoints/dqn-aldolase.pt" and agent.config.trust_rms == 0.0
    env = CryoEMSessionEnv.from_world(make_world(seed=8, duration=60.0, noise=1.0, **SMALL))
    obs, info = env.reset(seed=3)
    agent.reset(env, 3)
    actions, over = [], False
    while not over:
        actions.append(int(agent.act(obs, info)))
        obs, _, over, _, info = env.step(actions[-1])
    digest = hashlib.sha256(np.array(actions, dtype=np.int64).tobytes()).hexdigest()[:16]
    assert digest == OLD_CHECKPOINT_ACTIONS["checkpoints/dqn-aldolase.pt"]


def _v2_doc_and_rerun() -> tuple[dict, dict]:
    """dqn-noise-robust's v2 entry (recorded before plan features, prior and switch existed) and the agent
    block a faithful re-run reports: the recorded hyperparameters plus the added ones at their old values."""
    doc = json.loads((RESULTS / "v2" / "dqn-noise-robust-seed0.json").read_text())
    filled = recorded_hyperparameters("dqn-noise-robust", doc["agent"]["hyperparameters"])
    rerun = copy.deepcopy(doc)
    rerun["agent"]["hyperparameters"] = filled
    rerun["agent"]["version"] = card_version({"name": "dqn-noise-robust", "hyperparameters": filled})
    return doc, rerun


def test_a_faithful_rerun_of_an_older_v2_entry_reproduces():
    doc, rerun = _v2_doc_and_rerun()
    assert set(rerun["agent"]["hyperparameters"]) - set(doc["agent"]["hyperparameters"]) == {
        "plan_features",
        "trust_rms",
        "trust_holes",
        "prior_scale",
        "trust_test",
    }
    assert reproduction_problems(doc, rerun) == []


def test_a_version_3_entry_rechecks_its_trust_against_the_calibrated_predictions():
    # Version 3's entries (in git history since version 4's landed) were recorded before trust_test existed:
    # today's recorded card without it, and with every hole's argmax, re-runs with version 3's test.
    doc = json.loads((RESULTS / "v2" / "dqn-seed0.json").read_text())
    recorded = {k: v for k, v in doc["agent"]["hyperparameters"].items() if k != "trust_test"}
    recorded["act_candidates_per_patch"] = 0
    assert doc["agent"]["hyperparameters"]["trust_test"] == "raw" and recorded["trust_rms"] == 0.25
    filled = recorded_hyperparameters("dqn", recorded)
    assert filled["trust_test"] == "calibrated" and DQNConfig().trust_test == "raw"


def test_a_rerun_with_todays_values_for_the_added_keys_does_not_reproduce():
    doc, rerun = _v2_doc_and_rerun()
    rerun["agent"]["hyperparameters"]["trust_rms"] = 0.25
    problems = reproduction_problems(doc, rerun)
    assert "field 'agent.hyperparameters' does not reproduce" in " ".join(problems)
    doc, rerun = _v2_doc_and_rerun()
    rerun["agent"]["version"]["checkpoint_sha256"] = "0" * 64  # another checkpoint file
    assert any(p.startswith("field 'agent.version' does not reproduce") for p in reproduction_problems(doc, rerun))


def test_planner_entries_recorded_before_their_version_3_re_run_as_version_2():
    # bayes-lookahead and oracle-informed gained two hyperparameters each in version 3; a version 2
    # entry (its card without them) re-runs with version 2's values, not today's card's.
    from cryobench.agents.lookahead import BayesLookaheadConfig
    from cryobench.agents.oracles import OracleInformedConfig
    from cryobench.agents.registry import load_card

    for name, config in (("bayes-lookahead", BayesLookaheadConfig), ("oracle-informed", OracleInformedConfig)):
        today = load_card(name)["hyperparameters"]
        version_2 = {k: v for k, v in today.items() if k not in config.ADDED_AFTER_RECORDING}
        agent, _ = load_agent(name, recorded_hyperparameters(name, version_2))
        for key, old in config.ADDED_AFTER_RECORDING.items():
            assert getattr(agent.config, key) == old != today[key], (name, key)
