"""Cross-validation: train every fold through the same train.json, evaluate each on its own validation cases, gather
the out-of-fold label maps and per-case metrics, and summarise them as the Swin UNETR paper's table.

Each fold k trains into `<ckpt_dir>/fold<k>/` and `<output_dir>/fold<k>/`; a fold that finished is not trained again,
a killed one resumes from its checkpoint. `<output_dir>/cross_validation/` gets `metrics.csv` (every case, out of
fold), `predictions/` (every case's out-of-fold label map), `summary.csv`, `summary.json` and `summary.png`: Dice and
HD95 per region and their mean, per fold and mean ± std over folds. With `--tracking mlflow` the run is one MLflow
parent run with a child run per fold. Any other `--key value` is passed on to every fold's training and evaluation.

Run: python scripts/cross_validate.py --dataset_dir D [--datalist F] [--folds 0 2] [--ckpt_dir models]
     [--output_dir eval] [--config_file configs/train.json ...] [--tracking mlflow] [--key value ...]
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a file: make the bundle root importable so `scripts.*` resolves
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.atomic import atomic_write
from scripts.datalist import dataset_info
from scripts.errors import stop
from scripts.labels import REGIONS

logger = logging.getLogger("cross_validate")
BUNDLE = Path(__file__).resolve().parents[1]
FINISHED = "cross_validation_fold.json"
REGION_KEYS = [region.lower() for region in REGIONS]


def _option(passthrough: list[str], key: str, default: Any = None) -> Any:
    """The value given for `--key` among the pass-through arguments."""
    flag = f"--{key}"
    return passthrough[passthrough.index(flag) + 1] if flag in passthrough[:-1] else default


def bundle_run(config_files: list[str], arguments: list[str], log: Path) -> None:
    """One `python -m monai.bundle run` from the bundle folder, its output in `log`; stop naming the log on failure."""
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(config_files), *arguments]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        result = subprocess.run(command, cwd=BUNDLE, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())
    if result.returncode != 0:
        tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
        stop(f"{' '.join(command[3:6])} ... failed (exit {result.returncode}): {tail[0]}; full log: {log}")


def run_fold(fold: int, common: list[str], configs: list[str], ckpt_dir: Path, output_dir: Path, tracking: list[str]):
    """Train (unless finished; resume if a checkpoint exists) and evaluate one fold; return its metrics rows."""
    models, out = ckpt_dir / f"fold{fold}", output_dir / f"fold{fold}"
    where = ["--fold", str(fold), "--ckpt_dir", str(models)]
    marker = models / FINISHED
    if marker.is_file():
        logger.info(f"fold {fold}: already trained ({marker}), not trained again")
    else:
        resume = ["--resume", "True"] if (models / "checkpoint.pt").is_file() else []
        logger.info(f"fold {fold}: training{' (resuming)' if resume else ''}, log {out / 'training.log'}")
        bundle_run(configs, [*common, *where, "--output_dir", str(out / "training"), *resume, *tracking,
                             "--run_name", f"fold{fold}"], out / "training.log")  # fmt: skip
        with atomic_write(marker) as f:
            f.write(json.dumps({"fold": fold, "arguments": common}, indent=4) + "\n")
    logger.info(f"fold {fold}: evaluating its validation cases")
    evaluate = [*configs, "configs/evaluate.json"]
    bundle_run(evaluate, [*common, *where, "--output_dir", str(out / "evaluation")], out / "evaluation.log")
    with open(out / "evaluation" / "metrics.csv", newline="") as f:
        return [{"fold": fold, **row} for row in csv.DictReader(f)]


def _mean(values: list[float]) -> float:
    """The mean over the cases with a score: a BraTS 2024-2025 task leaves NaN where there is nothing to score."""
    scored = [value for value in values if not np.isnan(value)]
    return float(np.mean(scored)) if scored else float("nan")


def fold_summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Mean Dice and HD95 per region, and the mean Dice of the regions, over a fold's cases."""
    summary = {f"{metric}_{r}": _mean([float(row[f"{metric}_{r}"]) for row in rows])
               for metric in ("dice", "hd95") for r in REGION_KEYS}  # fmt: skip
    summary["dice_mean"] = float(np.mean([summary[f"dice_{r}"] for r in REGION_KEYS]))
    return summary


def summarise(rows: list[dict[str, Any]], folds: list[int]) -> dict[str, Any]:
    """The paper's table: each fold's means, then mean and (sample) standard deviation over folds."""
    per_fold = {fold: fold_summary([row for row in rows if row["fold"] == fold]) for fold in folds}
    columns = list(next(iter(per_fold.values())))
    values = {c: np.array([per_fold[f][c] for f in folds]) for c in columns}
    return {
        "folds": {str(f): {"cases": sum(row["fold"] == f for row in rows), **per_fold[f]} for f in folds},
        "mean": {c: float(v.mean()) for c, v in values.items()},
        "std": {c: float(v.std(ddof=1)) if len(folds) > 1 else 0.0 for c, v in values.items()},
        "cases": len(rows),
    }


def write_outputs(rows: list[dict[str, Any]], summary: dict[str, Any], output_dir: Path, copy_from: Path) -> Path:
    folder = output_dir / "cross_validation"
    (folder / "predictions").mkdir(parents=True, exist_ok=True)
    for row in rows:  # every case's label map from the fold that did not train on it
        source = copy_from / f"fold{row['fold']}" / "evaluation" / "predictions" / f"{row['case_id']}.nii.gz"
        if source.is_file():
            shutil.copy2(source, folder / "predictions" / source.name)
    fields = ["case_id", "fold", *[k for k in rows[0] if k not in ("case_id", "fold")]]
    with atomic_write(folder / "metrics.csv", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(rows)
    columns = list(summary["mean"])
    with atomic_write(folder / "summary.csv", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["fold", "cases", *columns])
        for fold, entry in summary["folds"].items():
            writer.writerow([fold, entry["cases"], *(f"{entry[c]:.4f}" for c in columns)])
        writer.writerow(["mean", summary["cases"], *(f"{summary['mean'][c]:.4f}" for c in columns)])
        writer.writerow(["std", "", *(f"{summary['std'][c]:.4f}" for c in columns)])
    with atomic_write(folder / "summary.json") as f:
        f.write(json.dumps(summary, indent=4) + "\n")
    plot_summary(summary, folder / "summary.png")
    return folder


def plot_summary(summary: dict[str, Any], path: Path) -> None:
    """Dice per region and their mean for each fold, with the mean ± std over folds."""
    from matplotlib.figure import Figure

    names = [*REGION_KEYS, "mean"]
    figure = Figure(figsize=(8, 4), layout="constrained")
    ax = figure.subplots()
    folds = list(summary["folds"])
    width = 0.8 / (len(folds) + 1)
    for index, fold in enumerate(folds):
        ax.bar(np.arange(4) + index * width, [summary["folds"][fold][f"dice_{n}"] for n in names], width,
               label=f"fold {fold}")  # fmt: skip
    ax.bar(np.arange(4) + len(folds) * width, [summary["mean"][f"dice_{n}"] for n in names], width, color="black",
           yerr=[summary["std"][f"dice_{n}"] for n in names], capsize=3, label="mean ± std")  # fmt: skip
    ax.set_xticks(np.arange(4) + 0.4 - width / 2, [n.upper() if n != "mean" else "mean" for n in names])
    ax.set(ylabel="Dice (out of fold)", ylim=(0, 1), title=f"Cross-validation, {summary['cases']} cases")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    with atomic_write(path, "wb") as f:
        figure.savefig(f, format="png", dpi=100)


def open_parent_run(tracking_uri: str, experiment: str):
    """(client, run id) of a new MLflow parent run for the whole cross-validation."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    return client, client.create_run(experiment_id, run_name="cross_validation").info.run_id


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_dir", required=True)
    parser.add_argument("--datalist", default=None)
    parser.add_argument("--folds", type=int, nargs="+", default=None, help="default: every fold of the datalist")
    parser.add_argument("--ckpt_dir", type=Path, default=BUNDLE / "models")
    parser.add_argument("--output_dir", type=Path, default=BUNDLE / "eval")
    parser.add_argument("--config_file", nargs="+", default=["configs/train.json"], help="train.json and overlays")
    parser.add_argument("--tracking", default=None, help="mlflow: a parent run with a child run per fold")
    args, passthrough = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(levelname)s - %(message)s")
    num_folds, seed = int(_option(passthrough, "num_folds", 5)), int(_option(passthrough, "seed", 0))
    info = dataset_info(args.dataset_dir, args.datalist, num_folds, seed)
    available = sorted({case["fold"] for case in info["training"]})
    folds = args.folds if args.folds is not None else available
    if missing := sorted(set(folds) - set(available)):
        stop(f"fold(s) {missing} are not in the datalist, whose folds are {available}")
    ckpt_dir, output_dir = args.ckpt_dir.resolve(), args.output_dir.resolve()
    common = ["--bundle_root", str(BUNDLE), "--dataset_dir", str(Path(args.dataset_dir).resolve()), *passthrough]
    if args.datalist:
        common += ["--datalist", str(Path(args.datalist).resolve())]
    tracking, parent = [], None
    if args.tracking:
        uri = _option(passthrough, "tracking_uri", f"sqlite:///{output_dir / 'mlruns.db'}")
        experiment = _option(passthrough, "experiment_name", "swin_brats")
        output_dir.mkdir(parents=True, exist_ok=True)
        parent = open_parent_run(uri, experiment)
        tracking = ["--tracking", args.tracking, "--tracking_uri", uri, "--parent_run_id", parent[1]]
    rows = []
    for fold in folds:
        rows += run_fold(fold, common, list(args.config_file), ckpt_dir, output_dir, tracking)
    summary = summarise(rows, folds)
    folder = write_outputs(rows, summary, output_dir, output_dir)
    if parent:
        client, run_id = parent
        for key, value in summary["mean"].items():
            client.log_metric(run_id, f"cv_{key}", value)
        for name in ("summary.csv", "summary.json", "summary.png", "metrics.csv"):
            client.log_artifact(run_id, str(folder / name))
        client.set_terminated(run_id)
    mean, std = summary["mean"], summary["std"]
    logger.info(
        f"cross-validation over folds {folds} ({summary['cases']} cases): mean Dice {mean['dice_mean']:.4f} "
        f"± {std['dice_mean']:.4f} ("
        + ", ".join(f"{r.upper()} {mean[f'dice_{r}']:.4f}" for r in REGION_KEYS)
        + f"); {folder / 'summary.csv'}"
    )


if __name__ == "__main__":
    main()
