"""Compare results files: a side-by-side table with CIs, normalised scores and Jaccard overlaps."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryobench import metrics


def _key(result: dict) -> str:
    env = result["env"]
    extra = ",".join(f"{k}={v}" for k, v in sorted(env.get("kwargs", {}).items()))
    return env["id"] + (f"[{extra}]" if extra else "")


def good_by_seed(result: dict) -> dict[int, int]:
    return {row["seed"]: row["good_exposures"] for row in result["episodes"]}


def comparison_table(results: list[dict]) -> pd.DataFrame:
    """One row per results file: headline metrics with IQM CIs; normalised score where a
    ``random`` and an ``oracle-*`` result on the same environment are among the inputs.
    Upper bounds (agents that see the ground truth) are flagged and sorted last."""
    random_mean, oracle_mean = {}, {}
    for r in results:
        goods = np.array([row["good_exposures"] for row in r["episodes"]], dtype=float)
        if r["agent"]["name"] == "random":
            random_mean[_key(r)] = goods.mean()
        if r["agent"].get("upper_bound"):
            oracle_mean[_key(r)] = max(oracle_mean.get(_key(r), -np.inf), goods.mean())
    rows = []
    for r in results:
        goods = np.array([row["good_exposures"] for row in r["episodes"]], dtype=float)
        exposures = np.array([row["exposures"] for row in r["episodes"]], dtype=float)
        summary = metrics.summarise(goods)
        key = _key(r)
        score = np.nan
        if key in random_mean and key in oracle_mean and oracle_mean[key] > random_mean[key]:
            score = float(metrics.normalised_score(goods.mean(), random_mean[key], oracle_mean[key]))
        rows.append(
            {
                "agent": r["agent"]["name"],
                "env": key,
                "upper_bound": bool(r["agent"].get("upper_bound")),
                "episodes": len(goods),
                "good_mean": summary["mean"],
                "good_sd": summary["sd"],
                "good_iqm": summary["iqm"],
                "iqm_ci95": f"[{summary['iqm_ci_low']:.1f}, {summary['iqm_ci_high']:.1f}]",
                "exposures": float(exposures.mean()),
                "good_fraction": float(np.mean([row["good_fraction"] for row in r["episodes"]])),
                "squares_visited": float(np.mean([row["squares_visited"] for row in r["episodes"]])),
                "exposures_per_square": float(np.mean([row["exposures_per_square"] for row in r["episodes"]])),
                "normalised_score": score,
            }
        )
    table = pd.DataFrame(rows)
    return table.sort_values(["env", "upper_bound", "good_mean"], ascending=[True, True, False], kind="stable")


def jaccard_between(results: list[dict], good_only: bool = False) -> pd.DataFrame:
    """Mean Jaccard similarity of exposure sets between agents, over the seeds they share.

    Off-diagonal: agent A's and agent B's trajectories from the same seed. Diagonal: the
    mean pairwise similarity between one agent's trajectories from different seeds (how
    much its paths agree with each other). Only results on the same environment compare.
    """
    names = [f"{r['agent']['name']}@{_key(r)}" for r in results]
    matrix = np.full((len(results), len(results)), np.nan)
    for i, a in enumerate(results):
        ta = {row["seed"]: row for row in a["episodes"]}
        for j, b in enumerate(results):
            if _key(a) != _key(b):
                continue
            if i == j:
                trajs = [_traj(row, good_only) for row in a["episodes"]]
                matrix[i, j] = metrics.mean_pairwise(metrics.jaccard_matrix(trajs)) if len(trajs) > 1 else 1.0
                continue
            tb = {row["seed"]: row for row in b["episodes"]}
            common = sorted(set(ta) & set(tb))
            if common:
                matrix[i, j] = float(
                    np.mean([metrics.jaccard(_traj(ta[s], good_only), _traj(tb[s], good_only)) for s in common])
                )
    return pd.DataFrame(matrix, index=names, columns=names)


def _traj(row: dict, good_only: bool) -> list[int]:
    if not good_only:
        return row["trajectory"]
    good = row.get("trajectory_good")
    if good is None:
        raise ValueError("results file has no per-exposure good flags; cannot compute good-only Jaccard")
    return [h for h, g in zip(row["trajectory"], good, strict=True) if g]
