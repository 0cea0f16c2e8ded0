"""Configure: what a run is before anything runs. Typed configs and ``--set`` overrides (config),
presets resolved into a ``RunConfig`` (resolve), run-time options and their checks (options), parameter
budgets (budget) and recorded configs replayed (replay). Knows nothing of training, sweeps or analysis.
"""
