"""The evaluation's worst and best cases by mean Dice over the scored groups, chosen reproducibly."""

from __future__ import annotations

from typing import Any

import numpy as np

from scripts.metrics import REGION_ORDER

DICE_COLUMNS = tuple(f"dice_{region}" for region in REGION_ORDER)
"""The Dice columns of the ET/TC/WT conventions; a row of another convention has its own `dice_<group>`."""


def _mean_dice(row: dict[str, Any]) -> float:
    """Mean Dice over the row's groups; NaN (a group empty in prediction and truth: nothing to score) is skipped, and
    a case with nothing to score anywhere counts as perfect."""
    values = np.array([float(v) for k, v in row.items() if k.startswith("dice_")], dtype=np.float64)
    scored = values[~np.isnan(values)]
    return float(scored.mean()) if scored.size else 1.0


def ranked(rows: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """(case id, mean Dice) from worst to best (ties by case id, so the choice is reproducible)."""
    scores = [(row["case_id"], _mean_dice(row)) for row in rows]
    return sorted(scores, key=lambda pair: (pair[1], pair[0]))


def worst_and_best(rows: list[dict[str, Any]], count: int) -> dict[str, str]:
    """case id -> 'worst k' / 'best k' for the `count` worst and best cases (a case in both is called worst)."""
    order = ranked(rows)
    chosen = {case_id: f"best {k}" for k, (case_id, _) in enumerate(reversed(order[-count:]), 1)}
    chosen |= {case_id: f"worst {k}" for k, (case_id, _) in enumerate(order[:count], 1)}
    return chosen
