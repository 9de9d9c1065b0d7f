"""Shared by the segmentation benchmarks: full-size synthetic BraTS cases, the machine description, result files."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "swin_brats_bundle"
RESULTS = REPO / "bench" / "results"
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


def provenance() -> dict:
    """The commit (with `+dirty` when the tree has uncommitted changes) and the UTC time of a result."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "HEAD") or "unknown"
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {
        "commit": commit + ("+dirty" if dirty else ""),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def machine() -> dict:
    """What the numbers were measured on."""
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "machine": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def write_result(name: str, result: dict) -> Path:
    """Print `result` as JSON and store it as bench/results/<name>.json, with the commit, date and machine."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {**result, **provenance(), "machine": result.get("machine", machine())}
    text = json.dumps(result, indent=4) + "\n"
    print(text)
    path = RESULTS / f"{name}.json"
    path.write_text(text)
    return path
