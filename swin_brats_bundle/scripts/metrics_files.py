"""An evaluation's per-case metrics on disk: `metrics.csv` (one row per case) and `summary.json`."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scripts.atomic import atomic_write
from scripts.metrics import METRIC_COLUMNS


def write_case_metrics(
    output_dir: Path, rows: list[dict[str, Any]], summary: dict[str, Any], columns: Sequence[str] = METRIC_COLUMNS
) -> None:
    """`metrics.csv` (case_id, then `columns`, by default `metrics.METRIC_COLUMNS`, with 6 decimals) and
    `summary.json`, each atomically."""
    output_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(output_dir / "metrics.csv", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["case_id", *columns])
        for row in rows:
            writer.writerow([row["case_id"], *(f"{row[c]:.6f}" for c in columns)])
    with atomic_write(output_dir / "summary.json") as f:
        f.write(json.dumps(summary, indent=4) + "\n")
