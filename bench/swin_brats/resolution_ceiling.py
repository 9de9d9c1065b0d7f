"""The Dice a one-voxel boundary error costs, per region and case kind, on the 2 mm and 1 mm grids. SYNTHETIC DATA.

No model: each case's true regions (TC, WT, ET) are scored against themselves grown or shrunk by one voxel
(6-connected binary dilation and erosion, the mean of the two). A prediction that is right but for one voxel all
along the outline scores this; it bounds what Dice a 4-case validation fold with small tumours can show on a grid.
Cases: the convergence benchmark's (20 cases, data seed 2026) at 2 mm, and the same generator at 1 mm (the BraTS grid);
the mean over the validation fold of convergence.py (fold 0 of 5, split seed 0) is given for the 2 mm cases.

    .venv/bin/python bench/swin_brats/resolution_ceiling.py [--data_seed 2026] [--work DIR]
        -> bench/results/swin_brats_resolution_ceiling.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from common import BUNDLE, mean_by_kind, write_result
from scipy import ndimage

sys.path.insert(0, str(BUNDLE))
from scripts.cases import discover  # noqa: E402
from scripts.labels import CONVENTIONS, REGIONS, labels_to_regions  # noqa: E402
from scripts.metrics import dice_score  # noqa: E402

NEIGHBOURS = ndimage.generate_binary_structure(3, 1)


def one_voxel_dice(region: np.ndarray) -> float:
    """Mean Dice of a region against itself dilated and eroded by one voxel (1.0 for an empty region: BraTS rule)."""
    if not region.any():
        return 1.0
    grown, shrunk = ndimage.binary_dilation(region, NEIGHBOURS), ndimage.binary_erosion(region, NEIGHBOURS)
    return 0.5 * (dice_score(region, grown) + dice_score(region, shrunk))


def case_rows(data: Path) -> dict[str, dict]:
    kinds = json.loads((data / "cases.json").read_text())["cases"]
    rows = {}
    for case in discover(data, num_folds=5, seed=0)["training"]:
        label = np.asarray(nib.load(case["label"]).dataobj)
        regions = labels_to_regions(torch.as_tensor(label), CONVENTIONS["brats2021"]).numpy().astype(bool)
        per_region = {name.lower(): round(one_voxel_dice(regions[i]), 4) for i, name in enumerate(REGIONS)}
        rows[case["case_id"]] = {
            "kind": kinds[case["case_id"]]["kind"],
            "whole_tumour_ml": kinds[case["case_id"]]["whole_tumour_ml"],
            "fold": case["fold"],
            "dice": per_region,
            "mean_dice": round(float(np.mean(list(per_region.values()))), 4),
        }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_seed", type=int, default=2026)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="ceiling_"))
    result = {
        "benchmark": "Dice of the true regions against themselves grown or shrunk by one voxel (no model)",
        "synthetic_data": True,
        "data_seed": args.data_seed,
        "grids": {},
    }
    for spacing in (2, 1):
        data = work / f"data_{spacing}mm"
        if not data.is_dir():
            script = BUNDLE / "scripts" / "synthetic_data.py"
            subprocess.run([sys.executable, str(script), "--output_dir", str(data), "--num_cases", "20",
                            "--spacing", str(spacing), "--seed", str(args.data_seed)], check=True)  # fmt: skip
        rows = case_rows(data)
        means, kinds = ({case_id: row[key] for case_id, row in rows.items()} for key in ("mean_dice", "kind"))
        by_kind = mean_by_kind(means, kinds)
        grid = {"spacing_mm": spacing, "by_kind": by_kind, "cases": rows}
        validation = [row["mean_dice"] for row in rows.values() if row["fold"] == 0]
        grid["validation_fold_0_mean_dice"] = round(float(np.mean(validation)), 4)
        result["grids"][f"{spacing}mm"] = grid
    write_result("swin_brats_resolution_ceiling", result)


if __name__ == "__main__":
    main()
