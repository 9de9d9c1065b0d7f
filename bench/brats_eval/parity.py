"""Our per-group scores against the official `brats-evaluation` package on hand-made label maps, one set per task.

The package (AGPL-3.0) lives in an environment of its own (bench/brats_eval/.venv, `make brats-eval-bench` makes it);
it is never imported here, only run as a subprocess on NIfTI files this script writes. For each convention it scores
(`labels.CONVENTIONS[...].evaluation_config`), the same truth/prediction pairs go through `metrics.case_metrics` and
through `python -m brats_evaluation.evaluation --config <task>`; every per-group number must agree to `TOLERANCE`:
global Dice and HD95, lesion-wise Dice and HD95, and the lesion counts (the package's infinity read as 373, as its
own parser does for HD95). The maps are on a 1 mm grid, the BraTS one, where the package's voxel-unit global HD95 is
in mm too. Hand-made maps, not patient data.

Run: .venv/bin/python bench/brats_eval/parity.py --evaluation_python bench/brats_eval/.venv/bin/python
     [--output bench/results/brats_eval_parity.json] [--tasks brats2024 met ...]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO / "swin_brats_bundle"), str(REPO / "bench" / "swin_brats")]

from record import machine, provenance  # noqa: E402
from scripts.labels import CONVENTIONS, LabelConvention, labels_to_regions  # noqa: E402
from scripts.metrics import HD95_EMPTY_MM, case_metrics  # noqa: E402

TOLERANCE = 1e-3
SHAPE = (72, 72, 56)
PACKAGE = "brats-evaluation==0.0.10"
# our column family -> the package's key per group
COMPARED = {
    "dice": "global_bin_dsc",
    "hd95": "global_bin_hd95",
    "lesion_dice": "sq_dsc",
    "lesion_hd95": "sq_hd95",
    "lesions_missed": "fn",
    "lesions_false_positive": "fp",
    "lesions_truth": "n_ref_instances",
}


def _ball(centre: tuple[float, float, float], radius: float) -> np.ndarray:
    grid = np.indices(SHAPE, dtype=np.float32)
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2


def _value(convention: LabelConvention, tissue: str) -> int | None:
    return next((v for v, t in convention.tissues.items() if t == tissue), None)


def _tumour(label: np.ndarray, convention: LabelConvention, centre, radius: float, parts: set[str]) -> None:
    """Paint one lesion in the convention's values: edema around a core with an enhancing rim, and where asked and
    the convention has them a resection cavity beside it, a cyst inside the core (MEN-RT: the core as GTV)."""
    gtv = _value(convention, "GTV")
    if gtv is not None:
        label[_ball(centre, radius)] = gtv
        return
    if "cavity" in parts and (rc := _value(convention, "RC")) is not None:
        label[_ball((centre[0] + 1.9 * radius, centre[1], centre[2]), 0.9 * radius)] = rc
    label[_ball(centre, 1.7 * radius) & (label == 0)] = convention.edema
    label[_ball(centre, radius)] = convention.core_only
    if "enhancing" in parts:
        label[_ball(centre, radius) & ~_ball(centre, 0.55 * radius)] = convention.enhancing
    if "cyst" in parts and (cc := _value(convention, "CC")) is not None:
        label[_ball((centre[0] + 0.3 * radius, centre[1], centre[2]), 0.35 * radius)] = cc


ALL = {"enhancing", "cavity", "cyst"}


def cases(convention: LabelConvention) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (truth, prediction): overlap, many small lesions (found, missed, merged, false), absent groups, a
    prediction of nothing, disjoint tumours, two empty maps, a lesion split in two."""
    made: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def pair(name: str) -> tuple[np.ndarray, np.ndarray]:
        made[name] = (np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8))
        return made[name]

    truth, pred = pair("shifted")
    _tumour(truth, convention, (30, 36, 28), 8, ALL)
    _tumour(pred, convention, (32, 37, 28), 9, ALL)

    truth, pred = pair("small_lesions")
    centres = [(14, 14, 14), (14, 50, 20), (50, 14, 30), (54, 52, 40), (54, 60, 40)]
    for centre in centres:
        _tumour(truth, convention, centre, 3, {"enhancing"})
    _tumour(pred, convention, centres[0], 3, {"enhancing"})  # found exactly
    _tumour(pred, convention, (15, 51, 21), 3.5, {"enhancing"})  # found, shifted
    _tumour(pred, convention, (54, 56, 40), 5, {"enhancing"})  # one blob over the last two
    _tumour(pred, convention, (36, 36, 10), 2, {"enhancing"})  # two false positives
    _tumour(pred, convention, (36, 60, 46), 2.5, set())

    truth, pred = pair("absent_groups")  # truth without ET, cavity or cyst; the prediction has some
    _tumour(truth, convention, (36, 36, 28), 8, set())
    _tumour(pred, convention, (36, 36, 28), 8, {"enhancing", "cavity"})

    truth, pred = pair("nothing_predicted")
    _tumour(truth, convention, (36, 36, 28), 7, ALL)

    truth, pred = pair("disjoint")
    _tumour(truth, convention, (20, 20, 20), 5, ALL)
    _tumour(pred, convention, (52, 52, 36), 5, ALL)

    pair("both_empty")

    truth, pred = pair("split")
    _tumour(truth, convention, (36, 36, 28), 9, ALL)
    _tumour(pred, convention, (36, 36, 28), 9, ALL)
    pred[:, 35:38, :] = 0  # a cut through the whole lesion: two predicted lesions for one true
    return made


def _save(volume: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(path))


def _finite(value: float) -> float:
    """The package's infinity as 373, as its parser reports HD95; NaN stays NaN."""
    return HD95_EMPTY_MM if math.isinf(value) else float(value)


def _same(ours: float, theirs: float) -> bool:
    return (math.isnan(ours) and math.isnan(theirs)) or abs(ours - theirs) <= TOLERANCE


def compare_task(name: str, evaluation_python: str, work: Path) -> dict:
    """Score one convention's cases both ways; the per-group numbers and their largest difference."""
    convention = CONVENTIONS[name]
    prefix = f"BraTS-{convention.evaluation_config.upper()}"
    pairs = cases(convention)
    ours: dict[str, dict[str, float]] = {}
    for index, (case, (truth, pred)) in enumerate(pairs.items()):
        file = f"{prefix}-{index:05d}-000.nii.gz"
        _save(truth, work / name / "ref" / file)
        _save(pred, work / name / "pred" / file)
        regions = [labels_to_regions(torch.as_tensor(volume), convention) for volume in (pred, truth)]
        ours[file] = case_metrics(*regions, convention, spacing=(1.0, 1.0, 1.0)) | {"case": case}
    summary = work / name / "summary.json"
    started = time.monotonic()
    run = [evaluation_python, "-m", "brats_evaluation.evaluation", "--ref_path", str(work / name / "ref"),
           "--pred_path", str(work / name / "pred"), "--config", convention.evaluation_config,
           "--summary_json", str(summary)]  # fmt: skip
    subprocess.run(run, check=True, capture_output=True, text=True)
    seconds = time.monotonic() - started
    theirs = {Path(m["subject_name"]).name: m for m in json.loads(summary.read_text())["metrics"]}
    rows, worst, failures = [], 0.0, []
    for file, row in ours.items():
        if "error" in theirs[file]:
            raise RuntimeError(f"brats-evaluation failed on {name} {file}: {theirs[file]['error']}")
        for group in convention.group_names:
            for family, key in COMPARED.items():
                mine, official = float(row[f"{family}_{group}"]), _finite(float(theirs[file][group][key]))
                agree = _same(mine, official)
                if not (math.isnan(mine) or math.isnan(official)):
                    worst = max(worst, abs(mine - official))
                if not agree:
                    failures.append(f"{row['case']} {family}_{group}: ours {mine}, brats-evaluation {official}")
                rows.append([f"{row['case']}/{family}_{group}", mine, official])
    return {
        "config": convention.evaluation_config,
        "cases": list(pairs),
        "groups": list(convention.group_names),
        "numbers_compared": len(rows),
        "max_abs_difference": worst,
        "disagreements": failures,
        "package_seconds": round(seconds, 1),
        "numbers": "case/metric_group: [ours, brats-evaluation] (NaN: nothing to score)",
        "values": {name: [round(ours, 6), round(theirs, 6)] for name, ours, theirs in rows},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluation_python", default=str(HERE / ".venv" / "bin" / "python"))
    parser.add_argument("--output", default=str(HERE.parent / "results" / "brats_eval_parity.json"))
    scored = [name for name, convention in CONVENTIONS.items() if convention.evaluation_config]
    parser.add_argument("--tasks", nargs="+", default=scored, choices=scored, help="conventions to compare (all)")
    args = parser.parse_args(argv)
    tasks = args.tasks
    with tempfile.TemporaryDirectory() as folder:
        results = {name: compare_task(name, args.evaluation_python, Path(folder)) for name in tasks}
    passed = all(not result["disagreements"] for result in results.values())
    result = {
        "benchmark": "per-group scores of metrics.case_metrics against the brats-evaluation package",
        "package": PACKAGE,
        "tolerance": TOLERANCE,
        "data": f"hand-made label maps, {SHAPE} voxels at 1 mm (synthetic, not patient data)",
        "passed": passed,
        **provenance(),
        "machine": machine(),
        "tasks": results,
    }
    Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    for name, task in results.items():
        state = "agree" if not task["disagreements"] else f"{len(task['disagreements'])} disagree"
        print(f"{name} ({task['config']}): {task['numbers_compared']} numbers, max |diff| "
              f"{task['max_abs_difference']:.2e}, {state}")  # fmt: skip
        for line in task["disagreements"]:
            print(f"  {line}")
    print(f"{'passed' if passed else 'FAILED'}: {args.output}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
