"""Learned agents on protocol v2: one submission per training seed, merged into one entry with its spread."""

from __future__ import annotations

import copy

import pytest

from cryobench.errors import InputError
from cryobench.leaderboard import heldout_runs, heldout_tables
from cryobench.resources import card_dir


def _committed(name: str) -> dict:
    return heldout_runs.load_submission(card_dir("leaderboards") / "results" / "v2" / f"{name}.json")


def _seed_docs(seeds: list[int], base: str = "greedy") -> list[dict]:
    """Copies of a committed result posing as a learned agent's per-seed submissions, seed k's scores + k."""
    docs = []
    for seed in seeds:
        doc = copy.deepcopy(_committed(base))
        doc["agent"]["name"] = "learned"
        doc["agent"]["training_seed"] = seed
        for block in doc["tasks"].values():
            for run in block["runs"]:
                run["score"] += seed
        docs.append(doc)
    return docs


def test_three_training_seeds_merge_into_one_entry_whose_runs_are_the_seed_means():
    docs = _seed_docs([2, 0, 1])
    merged = heldout_tables.merge_training_seeds("learned", docs)
    original = _committed("greedy")
    assert merged["agent"]["training_seeds"] == [0, 1, 2]
    assert "training_seed" not in merged["agent"]
    assert [doc["agent"]["training_seed"] for doc in merged["per_seed"]] == [0, 1, 2]
    for task, block in original["tasks"].items():
        for run, merged_run in zip(block["runs"], merged["tasks"][task]["runs"], strict=True):
            assert merged_run["score"] == pytest.approx(run["score"] + 1.0, abs=1e-6)  # mean of +0, +1, +2
            assert merged_run["world"] == run["world"]


@pytest.mark.parametrize(
    "seeds, reason",
    [
        ([0, 1], r"agent 'learned' is learned: its entry needs results of at least 3 training seeds .*\[0, 1\]"),
        ([0, 1, 1], r"training seed\(s\) submitted twice: \[0, 1, 1\]"),
    ],
)
def test_too_few_or_repeated_training_seeds_are_refused(seeds, reason):
    with pytest.raises(InputError, match=reason):
        heldout_tables.merge_training_seeds("learned", _seed_docs(seeds))


def test_seeds_run_on_other_tasks_are_refused():
    docs = _seed_docs([0, 1, 2])
    del docs[2]["tasks"]["aldolase"]
    with pytest.raises(InputError, match="were not run on the same tasks and worlds"):
        heldout_tables.merge_training_seeds("learned", docs)


def test_the_tables_show_each_training_seeds_iqm_and_the_range():
    board = heldout_tables.compute_board(
        [_committed("predict-rank"), heldout_tables.merge_training_seeds("learned", _seed_docs([0, 1, 2]))]
    )
    spread = heldout_tables.training_seed_spread(board, "twins")
    per_seed = [
        heldout_tables.aggregate.iqm(heldout_tables._normalised(doc, board.scopes["twins"]["tasks"], board.protocol))
        for doc in _seed_docs([0, 1, 2])
    ]
    values = " / ".join(f"{v:.1f}" for v in per_seed)
    assert spread == {"learned": f"IQM of training seeds 0 / 1 / 2: {values} (range {per_seed[2] - per_seed[0]:.1f})"}
    assert per_seed[0] < per_seed[1] < per_seed[2]  # each seed's own scores, not the merged ones
    table = "\n".join(heldout_tables.scope_table(board, "twins"))
    assert f"- learned: {spread['learned']}" in table


def test_a_learned_agents_submission_without_its_training_seed_is_refused_before_any_run():
    doc = copy.deepcopy(_committed("greedy"))
    doc["agent"]["name"] = "dqn"
    reasons = heldout_runs.static_problems(doc, heldout_runs.protocol_for("full"))
    assert reasons == [
        "field 'agent.training_seed' is missing: a learned agent's submission is one of its training seeds "
        "(cryobench submit --training-seed N)"
    ]


def test_the_dqn_card_lists_three_training_seeds_with_their_own_checkpoints():
    seeds = heldout_runs.training_seeds("dqn")
    assert sorted(seeds) == [0, 1, 2]
    checkpoints = [seeds[s]["checkpoint"] for s in sorted(seeds)]
    assert checkpoints == [f"checkpoints/dqn-v3-seed{s}.pt" for s in range(3)]
    assert all((card_dir("agents") / path).is_file() for path in checkpoints)
    assert heldout_runs.training_seeds("greedy") == {}


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--agent", "greedy", "--training-seed", "0"],
            "Error: option --training-seed: agent 'greedy' lists no training seeds (it is not a learned agent)\n",
        ),
        (
            ["--agent", "dqn", "--training-seed", "7"],
            "Error: option --training-seed: agent 'dqn' has training seeds [0, 1, 2] (agents/dqn.yaml), not 7\n",
        ),
        (
            ["--agent", "dqn"],
            "Error: agent 'dqn' is learned: its protocol v2 entry is one submission per training seed; pass "
            "--training-seed (one of 0, 1, 2)\n",
        ),
        (
            ["--agent", "dqn", "--protocol", "1", "--training-seed", "0"],
            "Error: option --training-seed belongs to protocol 2\n",
        ),
    ],
)
def test_submit_with_a_wrong_training_seed_is_one_line_and_writes_nothing(args, message, tmp_path):
    from click.testing import CliRunner

    from cryobench.cli import main
    from cryobench.errors import ExitCode

    out = tmp_path / "x.json"
    result = CliRunner().invoke(main, ["submit", *args, "--out", str(out), "--work", str(tmp_path / "w")])
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert result.output == message
    assert not out.exists()
