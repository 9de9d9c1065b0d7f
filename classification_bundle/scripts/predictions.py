"""Finish the CSV written by MONAI's ClassificationSaver: a header and integer class ids."""

from __future__ import annotations

import csv
from pathlib import Path


def add_header(csv_path: str, num_classes: int) -> Path:
    """Rewrite `name,class,p_0..p_K-1` rows as a CSV with a header `name,predicted_class,prob_0,...` and int classes.

    ClassificationSaver writes rows without a header and stores every value as a float.
    """
    path = Path(csv_path)
    with path.open(newline="") as f:
        rows = [row for row in csv.reader(f) if row]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "predicted_class"] + [f"prob_{k}" for k in range(num_classes)])
        writer.writerows([name, int(float(cls)), *(f"{float(p):.6f}" for p in probs)] for name, cls, *probs in rows)
    return path
