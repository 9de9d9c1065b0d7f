"""Is the convergence fold short of data or of training? The quick recipe on its 16 training cases against the same
recipe on more training cases from the same generator and seed, for the same number of optimisation steps and
validated on the same 4 held-out cases. SYNTHETIC DATA.

The convergence benchmark (data seed 2026, 20 cases, fold 0 of 5 held out) levels off well below 0.80 while its
training Dice keeps rising. Two readings: the recipe needs more steps, or 16 training cases do not show it enough
tumours. Both sides here are whole `python -m monai.bundle run training` processes (train.json + quick.json), one
after the other on this machine, with the same iterations (epochs x training cases), the same schedule length in
iterations and validations at the same iterations:

- "16 cases": the convergence datalist as it is (`--epochs` epochs, validated every `--epochs // 3`);
- "N cases": the same 20 cases plus more cases drawn after them from seed 2026 (the generator spawns one random
  stream per case, so the first 20 are the convergence cases; checked), the extra cases in training folds, fold 0
  untouched; its epochs are the same iterations over N training cases, validated every epoch.

    .venv/bin/python bench/swin_brats/training_cases.py [--extra 32] [--epochs 9] [--work DIR]
        -> bench/results/swin_brats_training_cases.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import BUNDLE, write_result
from convergence import TRAIN_CONFIGS, bundle_run, last_validation_per_case, read_curve, write_data

DATA_SEED, BASE_CASES = 2026, 20


def more_data(work: Path, extra: int, base: Path, datalist: Path) -> tuple[Path, Path]:
    """The 20 convergence cases and `extra` more from the same seed, with the convergence folds kept for the 20."""
    data, extended = work / "more" / "data", work / "more" / "datalist.json"
    if not (data / "cases.json").is_file():
        subprocess.run([sys.executable, str(BUNDLE / "scripts" / "synthetic_data.py"), "--output_dir", str(data),
                        "--num_cases", str(BASE_CASES + extra), "--spacing", "2", "--seed", str(DATA_SEED),
                        "--workers", "2"], check=True)  # fmt: skip
    records = json.loads((data / "cases.json").read_text())["cases"]
    same = json.loads((base / "cases.json").read_text())["cases"]
    if any(records[case_id] != record for case_id, record in same.items()):
        raise SystemExit(f"error: the first {BASE_CASES} cases of {data} are not the convergence cases of {base}")
    if not extended.is_file():
        listed = json.loads(datalist.read_text())
        known = {case["case_id"] for case in listed["training"]}
        template = listed["training"][0]
        added = [case_id for case_id in sorted(records) if case_id not in known]
        for index, case_id in enumerate(added):  # the extra cases go to training folds 1-4, never to fold 0
            entry = json.loads(json.dumps(template).replace(template["case_id"], case_id))
            listed["training"].append({**entry, "fold": 1 + index % 4})
        extended.write_text(json.dumps(listed, indent=4) + "\n")
    return data, extended


def train(name: str, settings: dict, work: Path) -> dict:
    """One training run (reused when its folder holds a finished one): its curve and the last validation per case."""
    out = work / name.replace(" ", "_")
    settings = {**settings, "ckpt_dir": str(out / "models"), "output_dir": str(out / "eval")}
    reused = (out / "eval" / "training_log.csv").is_file()
    wall = None if reused else round(bundle_run(TRAIN_CONFIGS, settings, out.with_suffix(".log")), 1)
    per_case = last_validation_per_case(out / "eval")
    curve = read_curve(out / "eval" / "training_log.csv")
    keys = ("epochs", "val_interval")
    return {"settings": {k: settings[k] for k in keys}, "reused_run": reused, "process_seconds": wall,
            "curve": curve, "final": curve[-1], "best": max(curve, key=lambda p: p["val_mean_dice"]),
            "last_validation_per_case": per_case}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--extra", type=int, default=32, help="cases added to the 16 training cases")
    parser.add_argument("--epochs", type=int, default=9, help="epochs of the 16-case side (9: the demo's)")
    parser.add_argument("--work", type=Path, default=None, help="keep data and runs here (a rerun reuses them)")
    parser.add_argument("--result", default="swin_brats_training_cases")
    parser.add_argument("--note", default="", help="how reused runs were made, recorded in the result")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="training_cases_"))
    work.mkdir(parents=True, exist_ok=True)
    base, datalist = write_data(work / "base", DATA_SEED)
    data, extended = more_data(work, args.extra, base, datalist)
    folds = {case["case_id"]: case["fold"] for case in json.loads(extended.read_text())["training"]}
    base_trained = sum(case["fold"] != 0 for case in json.loads(datalist.read_text())["training"])
    trained = sum(fold != 0 for fold in folds.values())
    iterations = args.epochs * base_trained
    if iterations % trained:
        raise SystemExit(f"error: {iterations} iterations do not divide into epochs of {trained} cases; change --extra")
    common = {"bundle_root": str(BUNDLE), "fold": 0, "progress_bar": False}
    sides = {
        f"{base_trained} cases": {**common, "dataset_dir": str(base), "datalist": str(datalist),
                                  "epochs": args.epochs, "val_interval": max(1, args.epochs // 3)},
        f"{trained} cases": {**common, "dataset_dir": str(data), "datalist": str(extended),
                             "epochs": iterations // trained, "val_interval": max(1, iterations // trained // 3)},
    }  # fmt: skip
    runs = {name: train(name, settings, work) for name, settings in sides.items()}
    validation = sorted(case_id for case_id, fold in folds.items() if fold == 0)
    write_result(
        args.result,
        {
            "benchmark": "quick recipe: the convergence fold's 16 training cases against more cases of the same "
            "generator and seed, same iterations, same 4 validation cases",
            "synthetic_data": True,
            "data": {"seed": DATA_SEED, "spacing_mm": 2, "validation_cases": validation, "training_cases": {
                f"{base_trained} cases": base_trained, f"{trained} cases": trained}, "iterations": iterations},
            "summary": {name: {"final": run["final"]["val_mean_dice"], "best": run["best"]["val_mean_dice"],
                               "seconds": run["final"]["seconds"]} for name, run in runs.items()},
            "note": args.note,
            "runs": runs,
        },
    )  # fmt: skip


if __name__ == "__main__":
    main()
