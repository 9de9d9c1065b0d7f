"""Benchmark: train classification_bundle with its default configuration through the MONAI bundle CLI, then evaluate.

Reports held-out test accuracy (and macro precision/recall/F1) and wall time; writes
bench/results/classification_default.json. Usage (from the repository root):

    .venv/bin/python bench/classification/train_default.py [--work_dir DIR]   # about 20 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "classification_bundle"
RESULT = "classification_default"  # bench/results/classification_default.json
sys.path.insert(0, str(REPO / "bench" / "swin_brats"))
from record import write_result  # noqa: E402  (commit, date, machine and CPU, as every result file records them)


def run_cli(args: list[str], log: Path) -> float:
    """Run `python -m monai.bundle run ...` from the bundle folder, log to `log`; return the wall time in seconds."""
    start = time.perf_counter()
    with log.open("w") as f:
        subprocess.run(
            [sys.executable, "-m", "monai.bundle", "run", *args],
            cwd=BUNDLE,
            stdout=f,
            stderr=subprocess.STDOUT,
            check=True,
        )
    return time.perf_counter() - start


def main() -> None:
    """Train, evaluate on the held-out test split and write the results JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work_dir", type=Path, default=None, help="logs, weights and metrics (default: a temp dir)")
    args = parser.parse_args()
    work = (args.work_dir or Path(tempfile.mkdtemp(prefix="classification_bench_"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    where = ["--output_dir", str(work / "eval"), "--ckpt_dir", str(work / "models")]
    train_s = run_cli(["training", "--config_file", "configs/train.json", *where], work / "train.log")
    eval_s = run_cli(["--config_file", "['configs/train.json','configs/evaluate.json']", *where], work / "evaluate.log")
    metrics = json.loads((work / "eval" / "metrics.json").read_text())
    config = json.loads((BUNDLE / "configs" / "train.json").read_text())
    import monai

    result = {
        "benchmark": "classification_bundle default configuration, embedded real-digit 3D data, held-out test split",
        "test_accuracy": metrics["accuracy"],
        "test_precision_macro": metrics["precision"],
        "test_recall_macro": metrics["recall"],
        "test_f1_macro": metrics["f1"],
        "test_samples": metrics["num_samples"],
        "train_wall_s": round(train_s, 1),
        "evaluate_wall_s": round(eval_s, 1),
        "total_wall_s": round(train_s + eval_s, 1),
        "config": {k: config[k] for k in ("epochs", "batch_size", "learning_rate", "feature_size", "roi_size",
                                          "grid_size", "num_samples", "max_rotation", "num_threads", "seed")},
        "monai": monai.__version__,
    }  # fmt: skip
    write_result(RESULT, result)


if __name__ == "__main__":
    main()
