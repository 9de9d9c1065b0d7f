"""Validation mean Dice against wall-clock training time: the reference (seed) recipe, the bundle's quick recipe, and
the quick recipe with each of its choices taken back alone. SYNTHETIC DATA.

Every variant trains through the real CLI (`python -m monai.bundle run training` with configs/train.json +
configs/quick.json + the variant's overrides), one process at a time on this machine, on the same realistic synthetic
cases: 20 cases at 2 mm from `--data_seed` (not the seed the recipe was tuned on), fold 0 of 5 (4 cases) validated,
the other 16 trained on, feature size 12, ROI 64. Each epoch's wall clock and validation Dice come from the run's
training_log.csv. Post-processing does not change training, so it is scored without retraining: the quick recipe's
best model and the 8-epoch one are evaluated (train + quick + evaluate.json) with each rule off and on.

The seed and quick runs train 20 epochs (quick.json) and validate every other epoch; each ablation trains 8 epochs
(~7 minutes) beside an unchanged 8-epoch quick run, which is what 2 CPU cores allow in one sitting.

    .venv/bin/python bench/swin_brats/convergence.py [--data_seed 2026] [--variants seed quick ...]
        [--minutes 20] [--work DIR] [--result NAME]      -> bench/results/NAME.json and .png
                                                            (NAME: swin_brats_convergence by default)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BUNDLE, RESULTS, write_result
from matplotlib.figure import Figure

# The reference recipe (research-contributions SwinUNETR/BRATS21 and the seed article) at the quick sizes: Adam 1e-4,
# Dice loss, cosine without warm-up, PyTorch's output initialisation, no post-processing. Gradient checkpointing (the
# reference's `use_checkpoint`) is left off as in quick.json: it trades time for memory and leaves the maths alone.
SEED = {
    "loss": "dice",
    "learning_rate": 0.0001,
    "optimizer_name": "adam",
    "warmup_epochs": 0,
    "output_bias_prior": 0,
    "min_component_mm3": 0,
    "min_enhancing_mm3": 0,
    "min_coreless_lesion_mm3": 0,
    "region_thresholds": [0.5, 0.5, 0.5],
}
FULL = {"val_interval": 2}  # the two main runs: 20 epochs (quick.json), validated every other epoch
SHORT = {"epochs": 8}  # the ablations: 8 epochs (validated at 4 and 8), each default taken back alone
VARIANTS: dict[str, dict] = {
    "seed": {**SEED, **FULL},
    "quick": FULL,
    "quick, 8 epochs": SHORT,
    "quick, 8 epochs, output_bias_prior 0 (PyTorch init)": {**SHORT, "output_bias_prior": 0},
    "quick, 8 epochs, loss dice": {**SHORT, "loss": "dice"},
    "quick, 8 epochs, optimizer adam": {**SHORT, "optimizer_name": "adam"},
    "quick, 8 epochs, warmup_epochs 0": {**SHORT, "warmup_epochs": 0},
    "quick, 8 epochs, learning_rate 1e-4": {**SHORT, "learning_rate": 0.0001},
    "quick, 8 epochs, crop_tumour_fraction 0.33": {**SHORT, "crop_tumour_fraction": 0.33},
    # twice the budget (--result swin_brats_convergence_long): does the fold's level rise with more training?
    "quick.json as it is (20 epochs, validated every 4)": {},
    "quick, 40 epochs (twice the budget), validated every 4": {"epochs": 40},
}
TRAIN_DEFAULTS = json.loads((BUNDLE / "configs" / "train.json").read_text())
COMPONENTS = TRAIN_DEFAULTS["min_component_mm3"] or 200
ENHANCING = TRAIN_DEFAULTS["min_enhancing_mm3"] or 200  # the ET rule is off by default: measured at 200 mm³ anyway
CORELESS = TRAIN_DEFAULTS["min_coreless_lesion_mm3"] or 5000
THRESHOLDS = TRAIN_DEFAULTS["region_thresholds"]
OFF = {"min_component_mm3": 0, "min_enhancing_mm3": 0, "min_coreless_lesion_mm3": 0, "region_thresholds": [0.5] * 3}
POSTPROCESSING = {  # evaluated on a trained model: name -> the three rules' sizes in mm³ (0 = off)
    "none": OFF,
    f"small components removed ({COMPONENTS} mm3)": {**OFF, "min_component_mm3": COMPONENTS},
    f"coreless lesions removed ({CORELESS} mm3)": {**OFF, "min_coreless_lesion_mm3": CORELESS},
    f"small ET relabelled as core ({ENHANCING} mm3)": {**OFF, "min_enhancing_mm3": ENHANCING},
    f"region thresholds {THRESHOLDS}": {**OFF, "region_thresholds": THRESHOLDS},
    "all": {
        "min_component_mm3": COMPONENTS,
        "min_enhancing_mm3": ENHANCING,
        "min_coreless_lesion_mm3": CORELESS,
        "region_thresholds": THRESHOLDS,
    },
}
TRAIN_FILES = ("configs/train.json", "configs/quick.json")


def config_list(*files: str) -> str:
    """The `--config_file` value that merges `files` in order."""
    return "[" + ",".join(f"'{name}'" for name in files) + "]"


TRAIN_CONFIGS = config_list(*TRAIN_FILES)
EVALUATE_CONFIGS = config_list(*TRAIN_FILES, "configs/evaluate.json")


def cli_value(value) -> str:
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def bundle_run(config: str, settings: dict, log: Path) -> float:
    """One whole `python -m monai.bundle run` process from the bundle folder; returns its wall seconds."""
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", config]
    command += ["--meta_file", "configs/metadata.json", "--logging_file", "configs/logging.conf"]
    for key, value in settings.items():
        command += [f"--{key}", cli_value(value)]
    start = time.perf_counter()
    with open(log, "w") as out:
        subprocess.run(command, cwd=BUNDLE, stdout=out, stderr=subprocess.STDOUT, check=True, env=os.environ.copy())
    return time.perf_counter() - start


def write_data(work: Path, data_seed: int, num_cases: int = 20, num_folds: int = 5) -> tuple[Path, Path]:
    """Realistic synthetic cases at 2 mm and their datalist in `num_folds` folds, made once per work folder."""
    data, datalist = work / "data", work / "datalist.json"
    if not datalist.is_file():
        script = BUNDLE / "scripts"
        subprocess.run([sys.executable, str(script / "synthetic_data.py"), "--output_dir", str(data), "--num_cases",
                        str(num_cases), "--spacing", "2", "--seed", str(data_seed)], check=True)  # fmt: skip
        subprocess.run([sys.executable, str(script / "prepare_datalist.py"), "--dataset_dir", str(data), "--output",
                        str(datalist), "--num_folds", str(num_folds)], check=True)  # fmt: skip
    return data, datalist


def make_data(work: Path, data_seed: int) -> tuple[Path, Path, dict]:
    """The convergence cases (20, 5 folds) and the records of fold 0's validation cases."""
    data, datalist = write_data(work, data_seed)
    cases = json.loads((data / "cases.json").read_text())["cases"]
    folds = {case["case_id"]: case["fold"] for case in json.loads(datalist.read_text())["training"]}
    validation = {case_id: cases[case_id] for case_id, fold in sorted(folds.items()) if fold == 0}
    return data, datalist, validation


def read_curve(log: Path) -> list[dict]:
    """(seconds, epoch, validation Dice) of every validated epoch of a training_log.csv."""
    with open(log, newline="") as f:
        rows = [row for row in csv.DictReader(f) if row["val_mean_dice"]]
    keys = ("val_mean_dice", "val_mean_dice_et", "val_mean_dice_tc", "val_mean_dice_wt")
    return [
        {"epoch": int(row["epoch"]), "seconds": float(row["seconds"]), **{k: round(float(row[k]), 4) for k in keys}}
        for row in rows
    ]


def last_validation_per_case(eval_dir: Path) -> dict[str, dict[str, float]]:
    """Each validation case's Dice per region, and their mean, at a run's last validation (validation/metrics.csv)."""
    regions = ("et", "tc", "wt")
    with open(eval_dir / "validation" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    per_case = {row["case_id"]: {r: round(float(row[f"dice_{r}"]), 4) for r in regions} for row in rows}
    for dice in per_case.values():
        dice["mean"] = round(sum(dice[r] for r in regions) / len(regions), 4)
    return per_case


def train_variant(name: str, overrides: dict, common: dict, work: Path, minutes: float) -> dict:
    out = work / "".join(c if c.isalnum() or c in ".-" else "_" for c in name)
    settings = {**common, **overrides, "ckpt_dir": str(out / "models"), "output_dir": str(out / "eval")}
    log = out.parent / f"{out.name}.log"  # not with_suffix: a variant's name may hold a dot ("quick.json as it is")
    wall = bundle_run(TRAIN_CONFIGS, settings, log) if not (out / "eval").is_dir() else None
    curve = read_curve(out / "eval" / "training_log.csv")
    within = [point for point in curve if point["seconds"] <= minutes * 60]
    best = max(within, key=lambda p: p["val_mean_dice"]) if within else None
    return {
        "overrides": overrides,
        "process_seconds": None if wall is None else round(wall, 1),
        "curve": curve,
        f"best_within_{minutes:g}_min": best,
        "final": curve[-1] if curve else None,
        "model": str(out / "models" / "model.pt"),
        "ckpt_dir": str(out / "models"),
    }


def evaluate_postprocessing(run: dict, common: dict, work: Path, tag: str) -> dict:
    """Held-out mean Dice of one trained model with each post-processing rule off and on."""
    results = {}
    for name, rules in POSTPROCESSING.items():
        out = work / f"evaluate_{tag}_{name.split(' (')[0].replace(' ', '_')}"
        settings = {**common, **run["overrides"], **rules, "ckpt_dir": run["ckpt_dir"], "output_dir": str(out)}
        settings["num_pictures"] = 0
        if not (out / "summary.json").is_file():  # a rerun with --work reuses finished evaluations
            bundle_run(EVALUATE_CONFIGS, settings, out.parent / f"{out.name}.log")
        metrics = json.loads((out / "summary.json").read_text())["metrics"]
        dice = {region: round(metrics[f"dice_{region}"]["mean"], 4) for region in ("et", "tc", "wt")}
        hd95 = {region: round(metrics[f"hd95_{region}"]["mean"], 2) for region in ("et", "tc", "wt")}
        with open(out / "metrics.csv", newline="") as f:
            per_case = list(csv.DictReader(f))
        results[name] = {
            "rules": rules,
            "mean_dice": round(sum(dice.values()) / 3, 4),
            "dice": dice,
            "hd95_mm": hd95,
            "per_case_dice": {
                row["case_id"]: {r: round(float(row[f"dice_{r}"]), 4) for r in ("et", "tc", "wt")} for row in per_case
            },
        }
    return results


def plot(runs: dict, minutes: float, path: Path) -> None:
    figure = Figure(figsize=(11, 5), layout="constrained")
    ax = figure.subplots()
    styles = {"quick": {"lw": 2.5, "color": "black"}, "seed": {"lw": 2.5, "color": "tab:red"}}
    for name, run in runs.items():
        minutes_axis = [point["seconds"] / 60 for point in run["curve"]]
        dice = [point["val_mean_dice"] for point in run["curve"]]
        ax.plot(minutes_axis, dice, marker="o", ms=3, label=name, **styles.get(name, {"lw": 1, "ls": "--"}))
    ax.axvline(minutes, color="grey", lw=0.8)
    ax.axhline(0.8, color="grey", lw=0.8, ls=":")
    ax.set(xlabel="training wall-clock time (minutes, 2 CPU cores)", ylabel="validation mean Dice (ET, TC, WT)",
           title="Realistic synthetic BraTS-like cases: 16 train / 4 validation, 2 mm, feature size 12, ROI 64",
           ylim=(0, 1))  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    figure.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_seed", type=int, default=2026, help="synthetic data seed (the recipe was tuned on 1)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget the best Dice is read within")
    parser.add_argument("--work", type=Path, default=None, help="keep runs here (a rerun skips finished variants)")
    parser.add_argument("--result", default="swin_brats_convergence", help="result file name (and its .png)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="convergence_"))
    work.mkdir(parents=True, exist_ok=True)
    data, datalist, validation = make_data(work, args.data_seed)
    common = {"bundle_root": str(BUNDLE), "dataset_dir": str(data), "datalist": str(datalist), "fold": 0,
              "progress_bar": False}  # fmt: skip
    runs = {name: train_variant(name, VARIANTS[name], common, work, args.minutes) for name in args.variants}
    postprocessing = {
        tag: evaluate_postprocessing(runs[name], common, work, tag)
        for tag, name in (("quick", "quick"), ("quick_8_epochs", "quick, 8 epochs"))
        if name in runs
    }
    quick = json.loads((BUNDLE / "configs" / "quick.json").read_text())
    picture = RESULTS / f"{args.result}.png"
    plot(runs, args.minutes, picture)
    write_result(
        args.result,
        {
            "benchmark": "validation mean Dice against training time: seed recipe, quick recipe, each choice taken back",  # noqa: E501
            "synthetic_data": True,
            "data": {
                "seed": args.data_seed,
                "cases": 20,
                "spacing_mm": 2,
                "validation_fold": 0,
                "validation_cases": validation,
            },  # fmt: skip
            "quick_json": quick,
            "minutes": args.minutes,
            "runs": {
                name: {k: v for k, v in run.items() if k not in ("model", "ckpt_dir")} for name, run in runs.items()
            },
            "postprocessing": postprocessing,
            "picture": str(picture.relative_to(RESULTS.parent.parent)),
        },
    )


if __name__ == "__main__":
    main()
