"""The shipped claims for tests that fabricate rows to exercise a verdict rule (budget-limited, censored,
paired differences): each preset block keeps its seeds and grid but sets nothing and solves no parameter
budget, so a fabricated row needs to match only the claim's task, model and side (``require``). The
settings themselves are the claims' own business, checked against the paper in tests/test_report.py and
against the experiment files in tests/test_experiments.py."""

from __future__ import annotations

import copy
from typing import Any

from seqbench.analyse.report import load_claims

# what a TGN row of the paper's §6.2 setting carries (the associative-recall sides ``require`` it)
PAPER_TGN = {"lambda_mode": "adaptive", "lambda_max": 0.02, "gate_bias": 0.0}


def bare_claims() -> dict[str, dict[str, Any]]:
    """The shipped claims by id, their preset blocks without ``set``, ``tune_set`` and ``params``."""
    claims = copy.deepcopy(load_claims())
    for claim in claims["claims"]:
        for block in claim["presets"].values():
            for key in ("set", "tune_set", "params"):
                block.pop(key, None)
    return {claim["id"]: claim for claim in claims["claims"]}
