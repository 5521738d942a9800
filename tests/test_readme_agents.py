"""README.md's agents table names every built-in agent, with the feedback and upper-bound facts of its class."""

from __future__ import annotations

import re
from pathlib import Path

from cryobench.agents.registry import agent_class, list_agents

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_agent_rows() -> dict[str, tuple[str, str]]:
    """Agent name -> (what it does, needs feedback) from the table under README.md's "## Agents"."""
    section = README.read_text().split("\n## Agents\n", 1)[1]
    table = section[section.index("| agent | what it does | needs feedback |") :].split("\n\n", 1)[0]
    rows = {}
    for line in table.splitlines()[2:]:
        names, what, feedback = (cell.strip() for cell in line.strip("|").split("|"))
        for name in re.findall(r"`([^`]+)`", names):
            rows[name] = (what, feedback)
    return rows


def test_the_readme_agents_table_has_every_built_in_agent_with_its_class_facts():
    built_in = {row["name"] for row in list_agents() if row["source"].startswith("cryobench.")}
    rows = readme_agent_rows()
    assert sorted(built_in - set(rows)) == [], "README.md's agents table lacks these agents: add a row"
    assert sorted(set(rows) - built_in) == []
    for name, (what, feedback) in rows.items():
        cls = agent_class(name)
        assert (feedback == "yes") == cls.needs_feedback, f"README row of {name}: needs feedback {feedback!r}"
        assert ("**upper bound" in what) == cls.uses_ground_truth, f"README row of {name}: upper bound?"


def test_the_readme_links_the_informed_bounds_headroom_table():
    text = README.read_text()
    link = "[`leaderboards/tables/v2/headroom.md`](leaderboards/tables/v2/headroom.md)"
    assert link in text
    assert (README.parent / "leaderboards/tables/v2/headroom.md").is_file()
