"""The coreless-lesion rule (`min_coreless_lesion_mm3`) at several sizes, on label maps that trained models wrote.

Compares, on the same label maps, the rule off against removing whole-tumour components with no tumour core under
each size (`scripts.postprocessing.remove_coreless_lesions`, the bundle's own code), in cases where another lesion has
a core. The label maps are the ones `ensemble.py` leaves in its work folder: the out-of-fold predictions of the
cross-validation (seed 3001 data) and each fold model's predictions of the unseen test cases (seed 3002), made with
the other rules at their defaults; this rule runs after those, so applying it to the written maps is what the chain
does. No model runs here. Synthetic data.

Run: python postprocessing_rules.py --work ENSEMBLE_WORK [--sizes 0 1000 2000 5000 10000 inf]   (the recorded
result: a work folder of `ensemble.py --folds 0 1 2 3 4 --data_seed 3001 --test_seed 3002`)
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from common import BRATS2021, write_result
from scripts.labels import REGIONS, get_convention, labels_to_regions, nest_regions  # noqa: E402
from scripts.metrics import dice_score  # noqa: E402
from scripts.postprocessing import remove_coreless_lesions  # noqa: E402

CONVENTION = get_convention(BRATS2021.convention)


def regions_of(label_map: np.ndarray) -> torch.Tensor:
    """(3, *spatial) nested TC/WT/ET regions of a BraTS 2021 label map."""
    return nest_regions(labels_to_regions(torch.as_tensor(label_map)[None], CONVENTION))


def score_folder(predictions: Path, data: Path, sizes: list[float]) -> dict[str, list[float]]:
    """Per size, the mean Dice over regions of each label map in `predictions` after the rule."""
    scores: dict[str, list[float]] = {f"{size:g}": [] for size in sizes}
    for path in sorted(predictions.glob("*.nii.gz")):
        case_id = path.name.removesuffix(".nii.gz")
        image = nib.load(path)
        voxel_mm3 = float(np.prod(image.header.get_zooms()[:3]))
        predicted = regions_of(np.asarray(image.dataobj))
        truth_file = data / case_id / BRATS2021.file_name(case_id, BRATS2021.label)
        truth = regions_of(np.asarray(nib.load(truth_file).dataobj)).numpy() > 0
        for size in sizes:
            kept = remove_coreless_lesions(predicted, size / voxel_mm3) if size else predicted
            dice = [dice_score(kept[index].numpy() > 0, truth[index]) for index in range(len(REGIONS))]
            scores[f"{size:g}"].append(float(np.mean(dice)))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="ensemble.py's work folder")
    parser.add_argument("--sizes", type=float, nargs="+", default=[0, 1000, 2000, 5000, 10000, math.inf])
    args = parser.parse_args()
    sizes = [0.0, *[size for size in args.sizes if size != 0]]  # the rule off is the baseline
    sets = {"out_of_fold": (args.work / "eval" / "cross_validation" / "predictions", args.work / "data")}
    for fold_dir in sorted(args.work.glob("test_fold*")):
        if fold_dir.is_dir():
            sets[f"unseen_{fold_dir.name.removeprefix('test_')}"] = (fold_dir, args.work / "test")
    per_set = {name: score_folder(predictions, data, sizes) for name, (predictions, data) in sets.items()}
    pooled = {f"{size:g}": [v for scores in per_set.values() for v in scores[f"{size:g}"]] for size in sizes}
    result = {
        "benchmark": "coreless-lesion rule (min_coreless_lesion_mm3) by size, on written label maps; mean Dice",
        "synthetic_data": True,
        "label_maps": {name: len(scores["0"]) for name, scores in per_set.items()},
        "mean_dice": {
            name: {size: round(float(np.mean(values)), 4) for size, values in scores.items()}
            for name, scores in {**per_set, "pooled": pooled}.items()
        },
        "label_maps_changed": {
            size: int(sum(abs(a - b) > 1e-9 for a, b in zip(values, pooled["0"], strict=True)))
            for size, values in pooled.items()
        },
    }
    write_result("swin_brats_postprocessing", result)


if __name__ == "__main__":
    main()
