"""cryobench's pytest plugin (entry point ``pytest11``): fixtures for testing a planner in your own CI.

Installed with cryobench, pytest loads it by itself. Fixtures:

- ``cryobench_env(env="aldolase", **kwargs)``: a gymnasium environment (short name or id, ``gym.make``
  arguments), closed after the test.
- ``cryobench_check(agent_or_policy, against=BASELINE, tier=None, tolerance=0.0, out=None)``: runs
  ``cryobench check`` (:mod:`cryobench.check`) and fails the test, with the verdict's reason, when
  the agent is worse than the baseline by a statistically supported margin; returns the report.
- ``cryobench_decision_benchmark(policy, env="aldolase", steps=10, **kwargs)``: times one decision of
  a policy (an agent object, SB3 model, callable or ``module:attr``) with pytest-benchmark's
  ``benchmark`` fixture, on the observation after ``steps`` steps of the policy itself; returns
  the action. Gate it like any benchmark (``--benchmark-compare-fail``).

Everything is imported when a fixture is used, never when pytest starts: the plugin costs other
test suites nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def cryobench_env() -> Iterator[Callable[..., Any]]:
    """A factory of cryobench environments: ``cryobench_env("aldolase", noise=2.0)``; closed after the test."""
    from cryobench.registration import make_env

    made = []

    def make(env: str = "aldolase", **kwargs: Any):
        made.append(make_env(env, kwargs))
        return made[-1]

    yield make
    for env in made:
        env.close()


@pytest.fixture
def cryobench_check(tmp_path: Path) -> Callable[..., dict]:
    """``cryobench_check("my_pkg.agent:MyAgent", against="baseline.json")``: fails the test when worse."""

    def check(
        agent: str,
        against: str | Path,
        tier: str | None = None,
        tolerance: float = 0.0,
        out: str | Path | None = None,
        workers: int = 2,
    ) -> dict:
        from cryobench.check import report_lines, run_check, save_report

        report = run_check(
            agent, against, tmp_path / "cryobench-check", tier=tier, tolerance=tolerance, workers=workers
        )
        save_report(report, out or tmp_path / "cryobench-check.json")
        if report["verdict"] == "worse":
            pytest.fail("\n".join(report_lines(report)), pytrace=False)
        return report

    return check


@pytest.fixture
def cryobench_decision_benchmark(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """Times one decision of a policy with pytest-benchmark (``pip install pytest-benchmark``)."""

    def run(policy: Any, env: str = "aldolase", steps: int = 10, seed: int = 0, **kwargs: Any) -> Any:
        try:
            benchmark = request.getfixturevalue("benchmark")
        except pytest.FixtureLookupError:
            pytest.fail("cryobench_decision_benchmark needs pytest-benchmark: pip install pytest-benchmark")
        from cryobench.agents.external import as_agent
        from cryobench.registration import make_env

        environment = make_env(env, kwargs)
        try:
            agent = as_agent(policy)
            obs, info = environment.reset(seed=seed)
            agent.reset(environment, seed)
            for _ in range(steps):  # a mid-session observation, reached by the policy's own choices
                obs, _reward, terminated, _truncated, info = environment.step(agent.act(obs, info))
                if terminated:
                    raise ValueError(f"the session ended within {steps} steps; ask for fewer")
            benchmark.extra_info["env"] = environment.spec.id
            benchmark.extra_info["n_holes"] = int(environment.action_space.n)
            return benchmark(agent.act, obs, info)
        finally:
            environment.close()

    return run
