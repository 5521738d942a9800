"""Compare results files: a side-by-side table with CIs, normalised scores and Jaccard overlaps."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryobench import metrics
from cryobench.errors import InputError


def _key(result: dict) -> str:
    env = result["env"]
    extra = ",".join(f"{k}={v}" for k, v in sorted(env.get("kwargs", {}).items()))
    return env["id"] + (f"[{extra}]" if extra else "")


def comparison_table(results: list[dict]) -> pd.DataFrame:
    """One row per results file: good exposures with IQM CIs, the mean of every registered metric
    (:data:`cryobench.metrics.METRICS`), and the normalised score where a ``random`` and an upper-bound
    result on the same environment are among the inputs. Upper bounds (agents that see the ground
    truth) are flagged and sorted last."""
    good = metrics.metric("good_exposures")
    runs: dict[str, list[tuple[str, bool, float]]] = {}
    for r in results:
        runs.setdefault(_key(r), []).append(
            (r["agent"]["name"], bool(r["agent"].get("upper_bound")), float(good.values(r["episodes"]).mean()))
        )
    references = {key: metrics.reference_points(key_runs) for key, key_runs in runs.items()}
    rows = []
    for r in results:
        goods = good.values(r["episodes"])
        summary = metrics.summarise(goods)
        random_mean, bound = references[_key(r)]
        score = np.nan
        if random_mean is not None and bound is not None:
            score = float(metrics.normalised_score(goods.mean(), random_mean, bound))
        row = {
            "agent": r["agent"]["name"],
            "env": _key(r),
            "upper_bound": bool(r["agent"].get("upper_bound")),
            "episodes": len(goods),
            "good_mean": summary["mean"],
            "good_sd": summary["sd"],
            "good_iqm": summary["iqm"],
            "iqm_ci95": f"[{summary['iqm_ci_low']:.1f}, {summary['iqm_ci_high']:.1f}]",
        }
        for name, metric in metrics.METRICS.items():
            if name != good.name:
                row[name] = float(metric.values(r["episodes"]).mean())
        rows.append({**row, "normalised_score": score})
    table = pd.DataFrame(rows)
    return table.sort_values(["env", "upper_bound", "good_mean"], ascending=[True, True, False], kind="stable")


def jaccard_between(results: list[dict], good_only: bool = False) -> pd.DataFrame:
    """Mean Jaccard similarity of exposure sets between agents, over the seeds they share.

    Off-diagonal: agent A's and agent B's trajectories from the same seed. Diagonal: the
    mean pairwise similarity between one agent's trajectories from different seeds (how
    much its paths agree with each other). Only results on the same environment compare.
    """
    names = [f"{r['agent']['name']}@{_key(r)}" for r in results]
    for name, r in zip(names, results, strict=True):
        if good_only and any("trajectory_good" not in row for row in r["episodes"]):
            raise InputError(
                f"option --good-only: the results of {name} have no per-exposure good flags (field "
                "trajectory_good: an older results file); run them again, or compare without --good-only"
            )
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
    return [h for h, g in zip(row["trajectory"], row["trajectory_good"], strict=True) if g]
