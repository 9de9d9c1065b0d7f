"""Each fold's model alone against the ensemble of all folds, on test cases no fold trained on: Dice and wall time.
SYNTHETIC DATA.

Cross-validation (`scripts/cross_validate.py`, train.json + quick.json, `--folds` of `--num_folds`, all by default)
on realistic synthetic cases at 2 mm from `--data_seed`, then whole-process `run inference` (inference.json +
quick.json, the post-processing defaults as shipped) on separate test cases from `--test_seed`, once per fold model and
once with configs/inference_ensemble.json over all of them, each scored against the test labels with the bundle's
BraTS metrics. One run, one machine, processes one after another.

Seeds: 3001 (training) and 3002 (test) made the work folder that region_thresholds.py and postprocessing_rules.py
chose `region_thresholds` and `min_coreless_lesion_mm3` on, so their test cases are no longer unseen; the defaults
here, 5001 and 5002, were used for nothing else (no data seed in bench/ or its results had been 5001 or 5002).

    .venv/bin/python bench/swin_brats/ensemble.py [--num_cases 20] [--num_folds 5] [--folds 0 1 2 3 4] [--epochs 10]
        [--val_interval 2] [--num_test 6] [--data_seed 5001] [--test_seed 5002] [--work DIR] [--note TEXT]
                                                            -> bench/results/swin_brats_ensemble.json
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from common import BUNDLE, generated_kinds, mean_by_kind, write_result

sys.path.insert(0, str(BUNDLE))
from scripts.cases import discover  # noqa: E402
from scripts.labels import CONVENTIONS, labels_to_regions  # noqa: E402
from scripts.metrics import region_metrics  # noqa: E402

QUICK = ["configs/train.json", "configs/quick.json"]
POSTPROCESSING_KEYS = ("region_thresholds", "min_component_mm3", "min_enhancing_mm3", "min_coreless_lesion_mm3")


def synthetic(folder: Path, cases: int, seed: int) -> Path:
    if not folder.is_dir():
        subprocess.run([sys.executable, str(BUNDLE / "scripts" / "synthetic_data.py"), "--output_dir", str(folder),
                        "--num_cases", str(cases), "--spacing", "2", "--seed", str(seed)], check=True)  # fmt: skip
    return folder


def infer(configs: list[str], settings: list[str], log: Path) -> float:
    command = [sys.executable, "-m", "monai.bundle", "run", "inference", "--config_file", str(configs), *settings]
    start = time.perf_counter()
    with open(log, "w") as out:
        subprocess.run(command, cwd=BUNDLE, stdout=out, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - start


def score(predictions: Path, test: Path) -> dict:
    """Mean Dice per region and their mean over the test cases (BraTS empty rule)."""
    convention = CONVENTIONS["brats2021"]
    rows = []
    for case in discover(test)["training"]:
        label = labels_to_regions(np.asarray(nib.load(case["label"]).dataobj), convention).numpy()
        pred = labels_to_regions(np.asarray(nib.load(predictions / f"{case['case_id']}.nii.gz").dataobj), convention)
        rows.append(region_metrics(pred.numpy(), label, (2.0, 2.0, 2.0)))
    dice = {r: round(float(np.mean([row[f"dice_{r}"] for row in rows])), 4) for r in ("et", "tc", "wt")}
    per_case = {case["case_id"]: round(float(np.mean([row[f"dice_{r}"] for r in ("et", "tc", "wt")])), 4)
                for case, row in zip(discover(test)["training"], rows, strict=True)}  # fmt: skip
    return {"mean_dice": round(float(np.mean(list(dice.values()))), 4), "dice": dice, "cases": len(rows),
            "per_case_mean_dice": per_case}  # fmt: skip


def out_of_fold(cv_out: Path) -> dict[str, float]:
    """Each case's mean Dice over the three regions, from the fold that held it out."""
    with open(cv_out / "cross_validation" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return {
        row["case_id"]: round(float(np.mean([float(row[f"dice_{r}"]) for r in ("et", "tc", "wt")])), 4) for row in rows
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_cases", type=int, default=20)
    parser.add_argument("--num_folds", type=int, default=5)
    parser.add_argument("--folds", type=int, nargs="+", default=None, help="folds to train (default: all)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--val_interval", type=int, default=2, help="epochs between validations (model selection)")
    parser.add_argument("--num_test", type=int, default=6)
    parser.add_argument("--data_seed", type=int, default=5001, help="synthetic data seed of the cross-validation cases")
    parser.add_argument("--test_seed", type=int, default=5002, help="synthetic data seed of the unseen test cases")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--note", default=None, help="stored in the result (e.g. other work shared the cores)")
    args = parser.parse_args()
    if args.folds is None:
        args.folds = list(range(args.num_folds))
    if args.data_seed == args.test_seed:
        raise SystemExit(
            f"error: --data_seed and --test_seed are both {args.data_seed}: the test cases would be trained on"
        )
    work = args.work or Path(tempfile.mkdtemp(prefix="ensemble_"))
    data = synthetic(work / "data", args.num_cases, args.data_seed)
    test = synthetic(work / "test", args.num_test, args.test_seed)
    models, cv_out = work / "models", work / "eval"
    start = time.perf_counter()
    subprocess.run([sys.executable, str(BUNDLE / "scripts" / "cross_validate.py"), "--dataset_dir", str(data),
                    "--ckpt_dir", str(models), "--output_dir", str(cv_out), "--folds", *map(str, args.folds),
                    "--config_file", *QUICK, "--num_folds", str(args.num_folds), "--epochs", str(args.epochs),
                    "--val_interval", str(args.val_interval), "--progress_bar", "False"], check=True)  # fmt: skip
    cv_seconds = time.perf_counter() - start
    common = ["--bundle_root", str(BUNDLE), "--dataset_dir", str(test), "--progress_bar", "False"]
    results = {}
    for fold in args.folds:
        out = work / f"test_fold{fold}"
        seconds = infer(["configs/inference.json", "configs/quick.json"],
                        [*common, "--ckpt_dir", str(models / f"fold{fold}"), "--output_dir", str(out)],
                        work / f"test_fold{fold}.log")  # fmt: skip
        results[f"fold {fold}"] = {**score(out, test), "inference_seconds": round(seconds, 1)}
    out = work / "test_ensemble"
    ensemble = ["configs/inference.json", "configs/quick.json", "configs/inference_ensemble.json"]
    seconds = infer(ensemble, [*common, "--ckpt_dir", str(models), "--output_dir", str(out)], work / "ensemble.log")
    results["ensemble"] = {**score(out, test), "inference_seconds": round(seconds, 1)}
    singles = [results[f"fold {f}"]["mean_dice"] for f in args.folds]
    cv = json.loads((cv_out / "cross_validation" / "summary.json").read_text())
    test_kinds = generated_kinds(test)
    inference_defaults = json.loads((BUNDLE / "configs" / "inference.json").read_text())
    write_result(
        "swin_brats_ensemble",
        {
            "benchmark": "each fold's model vs the ensemble of the folds, on test cases no fold trained on",
            "synthetic_data": True,
            "settings": {
                "cases": args.num_cases,
                "num_folds": args.num_folds,
                "folds": args.folds,
                "epochs": args.epochs,
                "val_interval": args.val_interval,
                "test_cases": args.num_test,
                "data_seed": args.data_seed,
                "test_seed": args.test_seed,
                "configs": QUICK,
                "inference_configs": ["configs/inference.json", "configs/quick.json"],
                "postprocessing": {key: inference_defaults[key] for key in POSTPROCESSING_KEYS},
            },  # fmt: skip
            "cross_validation": {
                "seconds": round(cv_seconds, 1),
                "mean": cv["mean"],
                "std": cv["std"],
                "per_fold_mean_dice": {fold: round(v["dice_mean"], 4) for fold, v in cv["folds"].items()},
                "out_of_fold_by_kind": mean_by_kind(out_of_fold(cv_out), generated_kinds(data)),
            },
            "test_by_kind": {name: mean_by_kind(r["per_case_mean_dice"], test_kinds) for name, r in results.items()},
            "test": results,
            "single_fold_mean_dice": {
                "mean": round(float(np.mean(singles)), 4),
                "min": min(singles),
                "max": max(singles),
            },  # fmt: skip
            **({"note": args.note} if args.note else {}),
        },
    )


if __name__ == "__main__":
    main()
