"""The honest headline of a run: soft accuracy, hard-gated accuracy and the chance level side by side.

A gated model trained with soft gates can score well while its gate rate is tiny, because gates below
the threshold still carry attention. Its hard-gated accuracy (attention computed only where g > tau)
says whether the sparse computation is enough; a reader needs it next to chance to judge that.
"""

from __future__ import annotations

from typing import Any

# "near chance": within this share of the way from chance to perfect; "high": past this share of it
NEAR_CHANCE = 0.1
HIGH = 0.5


def _above_chance(accuracy: float, chance: float) -> float:
    """How far accuracy is from chance towards 1.0 (0 at chance, 1 perfect)."""
    return (accuracy - chance) / (1.0 - chance) if chance < 1.0 else 0.0


def hard_gate_collapsed(row: dict[str, Any]) -> bool:
    """Soft accuracy is high while hard-gated accuracy is near chance: the sparse gate is not enough."""
    soft, hard, chance = row.get("accuracy"), row.get("accuracy_hard"), row.get("chance")
    if soft is None or hard is None or chance is None:
        return False
    return _above_chance(soft, chance) >= HIGH and _above_chance(hard, chance) <= NEAR_CHANCE


def headline(row: dict[str, Any]) -> list[str]:
    """Lines for a gated run (a row with ``accuracy_hard``); none for other runs."""
    soft, hard, chance = row.get("accuracy"), row.get("accuracy_hard"), row.get("chance")
    if soft is None or hard is None:
        return []
    gate = row.get("gate_rate")
    lines = [f"accuracy {soft:.3f} (soft gates) | accuracy_hard {hard:.3f} (attention only where g > tau)"
             + (f" | chance {chance:.3f}" if chance is not None else "")
             + (f" | gate_rate {gate:.4f}" if gate is not None else "")]
    if hard_gate_collapsed(row):
        lines.append(f"hard-gated accuracy is near chance ({hard:.3f} vs {chance:.3f}) while soft accuracy is "
                     f"{soft:.3f}: the soft gates below threshold still carry the attention this model needs, so "
                     "the gate rate understates it (try --set model.hard_train_from=0.8)")
    return lines
