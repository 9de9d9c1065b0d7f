"""The bundle learns: a small quick-recipe run through the real CLI lowers the training loss and lifts the validation
Dice well above an untrained network's, on realistic synthetic cases (synthetic data). No timing is asserted."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from conftest import run_bundle
from scripts.synthetic_data import write_dataset

QUICK = "['configs/train.json','configs/quick.json']"
EVALUATE = "['configs/train.json','configs/quick.json','configs/evaluate.json']"


def _mean_dice(summary: Path) -> float:
    metrics = json.loads(summary.read_text())["metrics"]
    return sum(metrics[f"dice_{region}"]["mean"] for region in ("et", "tc", "wt")) / 3


def test_quick_recipe_lowers_the_loss_and_beats_an_untrained_network(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_dataset(data, "brats2021", num_cases=6, shape=(64, 64, 64), seed=3)  # ~2.9 mm voxels
    common = ["--dataset_dir", str(data), "--num_folds", "3", "--fold", "0", "--progress_bar", "False"]
    common += ["--ckpt_dir", str(tmp_path / "models"), "--num_workers", "0"]
    run_bundle("training", "--config_file", QUICK, *common, "--epochs", "8", "--val_interval", "4",
               "--output_dir", str(tmp_path / "train"))  # fmt: skip

    with open(tmp_path / "train" / "training_log.csv", newline="") as f:
        log = list(csv.DictReader(f))
    losses = [float(row["train_loss"]) for row in log]
    assert len(losses) == 8 and min(losses[-2:]) < 0.8 * losses[0], losses

    run_bundle("--config_file", EVALUATE, *common, "--output_dir", str(tmp_path / "trained"), "--num_pictures", "0")
    run_bundle("--config_file", EVALUATE, *common, "--output_dir", str(tmp_path / "untrained"), "--num_pictures", "0",
               "--load_pretrain", "False")  # fmt: skip
    trained, untrained = (_mean_dice(tmp_path / name / "summary.json") for name in ("trained", "untrained"))
    assert trained > untrained + 0.2, (trained, untrained)
    assert trained > 0.4, trained
