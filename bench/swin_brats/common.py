"""Shared by the segmentation benchmarks: full-size synthetic BraTS cases, case kinds; the result files' provenance
and machine description (record.py) re-exported."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from record import REPO, RESULTS, machine, provenance, write_result

BUNDLE = REPO / "swin_brats_bundle"
if str(BUNDLE) not in sys.path:
    sys.path.insert(0, str(BUNDLE))

from scripts.layouts import LAYOUTS  # noqa: E402
from scripts.synthetic_data import BRATS_GRID, case_kinds, make_case, write_case  # noqa: E402

BRATS_SHAPE = BRATS_GRID
BRATS2021 = LAYOUTS["brats2021"]
"""The layout the benchmarks write their synthetic cases in."""


def write_fullsize_dataset(folder: Path, num_cases: int, seed: int, shape: tuple[int, int, int] = BRATS_SHAPE) -> Path:
    """`num_cases` labelled BraTS 2021-layout synthetic cases (scripts/synthetic_data.py): the 1 mm BraTS grid with a
    BraTS-sized brain (about 140 x 175 x 150 voxels, the rest background), or for another `shape` the brain fitted
    into it."""
    rng = np.random.default_rng(seed)
    spacing = 1.0 if tuple(shape) == BRATS_SHAPE else None
    for index, kind in enumerate(case_kinds(num_cases, rng)):
        case = make_case(rng, tuple(shape), spacing, kind)
        write_case(folder, BRATS2021.name, BRATS2021.case_id(index), case, labelled=True)
    return folder


def generated_kinds(data: Path) -> dict[str, str]:
    """Case id -> the kind of case synthetic_data.py made (its cases.json)."""
    return {case_id: entry["kind"] for case_id, entry in json.loads((data / "cases.json").read_text())["cases"].items()}


def mean_by_kind(per_case: dict[str, float], kinds: dict[str, str]) -> dict[str, dict]:
    """Case count and mean of `per_case` for each kind of case: where the difficulty lies."""
    groups: dict[str, list[float]] = {}
    for case_id, value in per_case.items():
        groups.setdefault(kinds[case_id], []).append(value)
    return {kind: {"cases": len(v), "mean_dice": round(float(np.mean(v)), 4)} for kind, v in sorted(groups.items())}


__all__ = ["BRATS2021", "BRATS_SHAPE", "BUNDLE", "REPO", "RESULTS", "generated_kinds", "machine", "mean_by_kind",
           "provenance", "write_fullsize_dataset", "write_result"]  # fmt: skip
