"""Per-region probability thresholds (`region_thresholds`), scored on the ensemble bench's trained fold models.

Each fold model of `ensemble.py`'s work folder predicts its own out-of-fold validation cases (seed 3001 data) and the
unseen test cases (seed 3002) once, through the bundle's validation inferer; every threshold set then runs through the
bundle's post-processing chain (`scripts.postprocessing.region_postprocessing`, the other rules at their defaults) on
those same logits. Mean Dice over TC, WT and ET per label map, averaged. Synthetic data.

Run: python region_thresholds.py --work ENSEMBLE_WORK   (the recorded result: a work folder of
`ensemble.py --folds 0 1 2 3 4 --data_seed 3001 --test_seed 3002`)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from common import BUNDLE, write_result
from monai.bundle import ConfigParser
from scripts.labels import REGIONS  # noqa: E402
from scripts.metrics import dice_score  # noqa: E402
from scripts.postprocessing import region_postprocessing  # noqa: E402

CONFIGS = [str(BUNDLE / "configs" / "train.json"), str(BUNDLE / "configs" / "quick.json")]
DEFAULTS = json.loads((BUNDLE / "configs" / "train.json").read_text())
RULES = {key: DEFAULTS[key] for key in ("min_component_mm3", "min_enhancing_mm3", "min_coreless_lesion_mm3")}
THRESHOLD_SETS = [
    (0.5, 0.5, 0.5),
    *((t, t, t) for t in (0.4, 0.6, 0.7)),
    *((0.5, 0.5, t) for t in (0.4, 0.6, 0.7)),
    *((t, 0.5, 0.5) for t in (0.4, 0.6, 0.7)),
    *((0.5, t, 0.5) for t in (0.4, 0.6, 0.7)),
]


def fold_parser(data: Path, fold: int, every_case: bool) -> ConfigParser:
    """train.json + quick.json as ensemble.py trained fold `fold` (5 folds of `data`); all cases if `every_case`."""
    parser = ConfigParser()
    parser.read_config(CONFIGS)
    parser.update({"bundle_root": str(BUNDLE), "dataset_dir": str(data), "num_folds": 5, "fold": fold})
    parser.update({"progress_bar": False, "num_workers": 0, "amp": False})
    if every_case:
        parser["validate#dataset#data"] = "$@dataset_info['training']"
    return parser


def score_fold(work: Path, fold: int, data: Path, every_case: bool) -> dict[str, list[float]]:
    """Per threshold set, the mean Dice of each case the fold model predicts."""
    parser = fold_parser(data, fold, every_case)
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(work / "models" / f"fold{fold}" / "model.pt", weights_only=True))
    network.eval()
    inferer = parser.get_parsed_content("validate#inferer")
    chains = {str(list(t)): region_postprocessing("pred", **RULES, thresholds=t) for t in THRESHOLD_SETS}
    scores: dict[str, list[float]] = {name: [] for name in chains}
    for batch in parser.get_parsed_content("validate#dataloader"):
        with torch.no_grad():
            logits = inferer(batch["image"], network)[0]
        truth = batch["label"][0].numpy() > 0.5
        for name, chain in chains.items():
            regions = chain({"pred": logits})["pred"].numpy() > 0.5
            scores[name].append(float(np.mean([dice_score(regions[i], truth[i]) for i in range(len(REGIONS))])))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="ensemble.py's work folder")
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args()
    sets: dict[str, dict[str, list[float]]] = {"out_of_fold": {}, "unseen": {}}
    for fold in args.folds:
        splits = (("out_of_fold", args.work / "data", False), ("unseen", args.work / "test", True))
        for name, data, every_case in splits:
            for key, values in score_fold(args.work, fold, data, every_case).items():
                sets[name].setdefault(key, []).extend(values)
            print(f"fold {fold} {name} done", flush=True)
    pooled = {key: sets["out_of_fold"][key] + sets["unseen"][key] for key in sets["out_of_fold"]}
    result = {
        "benchmark": "per-region probability thresholds (TC, WT, ET) on the ensemble bench's fold models; mean Dice",
        "synthetic_data": True,
        "rules": RULES,
        "label_maps": {name: len(next(iter(scores.values()))) for name, scores in sets.items()},
        "mean_dice": {
            name: {key: round(float(np.mean(values)), 4) for key, values in scores.items()}
            for name, scores in {**sets, "pooled": pooled}.items()
        },
    }
    write_result("swin_brats_region_thresholds", result)


if __name__ == "__main__":
    main()
