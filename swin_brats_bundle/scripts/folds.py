"""Folds: each labelled case's fold, dealt once by a seeded shuffle, and the training or validation split of one."""

from __future__ import annotations

import random
from typing import Any

from scripts.layouts import DatasetLayoutError


def assign_folds(cases: list[dict], num_folds: int, seed: int) -> list[dict]:
    """Give each case a `fold` in [0, num_folds): a seeded shuffle of the sorted case ids, dealt round robin."""
    if num_folds < 1:
        raise ValueError(f"num_folds must be at least 1, got {num_folds}.")
    order = sorted(cases, key=lambda case: case["case_id"])
    random.Random(seed).shuffle(order)
    folds = {case["case_id"]: index % num_folds for index, case in enumerate(order)}
    return [{**case, "fold": folds[case["case_id"]]} for case in cases]


def fold_cases(info: dict[str, Any], fold: int, split: str) -> list[dict]:
    """Labelled cases of the training (`fold != fold`) or validation (`fold == fold`) split; raise if it is empty."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}.")
    cases = [c for c in info["training"] if (c["fold"] == fold) == (split == "val")]
    if not cases:
        folds = sorted({c["fold"] for c in info["training"]})
        raise DatasetLayoutError(
            f"The {split} split of fold {fold} is empty: {len(info['training'])} labelled case(s) in folds {folds}. "
            "Choose another --fold or --num_folds, or add labelled cases."
        )
    return cases
