"""Leaderboards: submissions run under the protocol, verified by re-running, tables generated.

- :mod:`cryobench.leaderboard.submission`: submission documents (``cryobench-submission/1``):
  :func:`~cryobench.leaderboard.submission.submit`, the schema, reading and writing.
- :mod:`cryobench.leaderboard.verify`: re-run a submission's agent and accept it only when
  every episode reproduces exactly under the same protocol version; otherwise say why.
- :mod:`cryobench.leaderboard.tables`: regenerate every table from ``leaderboards/results/v<N>/``.

Scores are never typed by hand: every number in a table comes from the per-episode results.
"""
