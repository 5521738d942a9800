"""Leaderboards: submissions run under a protocol, verified by re-running, tables generated.

Protocol v1 (``leaderboards/protocol-v1.yaml``, frozen):

- :mod:`cryobench.leaderboard.submission`: submission documents (``cryobench-submission/1``):
  :func:`~cryobench.leaderboard.submission.submit`, the schema, reading and writing.
- :mod:`cryobench.leaderboard.verify`: re-run a submission's agent and accept it only when
  every episode reproduces exactly under the same protocol version; otherwise say why.
- :mod:`cryobench.leaderboard.tables`: regenerate every table from ``leaderboards/results/v1/``;
  :func:`~cryobench.leaderboard.tables.escape_markdown` makes names from submissions inert in them.

Protocol v2 (held-out test worlds): :mod:`~cryobench.leaderboard.heldout_runs` (submissions),
:mod:`~cryobench.leaderboard.heldout_tables` and :mod:`~cryobench.leaderboard.heldout_site`
(tables, figures, the static page).

Scores are never typed by hand: every number in a table comes from the per-episode results.
"""
