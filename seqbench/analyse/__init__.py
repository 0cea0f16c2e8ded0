"""Analyse: reading results, never re-running anything. Statistics (stats), tuning on validation (tuning),
leaderboards, figures (plots), the claims reports (report, claims/*.json) and the verdict gate that
says when their evidence cannot decide a claim at its budget (gate), and descriptions of tasks and
model configs (describe). Reads the rows that train writes through seqbench.results.
"""
