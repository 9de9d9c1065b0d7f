"""Cross-validation over folds (train, evaluate, gather, summarise, skip finished folds) and fold ensembles at
inference and evaluation, through the real CLI."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import BUNDLE, FP32, NO_POSTPROCESSING, TINY, run_bundle, zscore_nonzero
from scripts.cases import discover
from scripts.labels import CONVENTIONS
from scripts.layouts import CHANNELS

CROSS_VALIDATE = BUNDLE / "scripts" / "cross_validate.py"
CONV = "$torch.nn.Conv3d(4, 3, 1)"  # a 1x1x1 network: every voxel's prediction depends on that voxel alone


def _cross_validate(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(CROSS_VALIDATE), *args]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_two_folds_train_are_summarised_and_a_rerun_skips_them(make_dataset, tmp_path: Path) -> None:
    data = make_dataset("brats2021", num_cases=4, num_unlabelled=0, seed=6)
    models, out = tmp_path / "models", tmp_path / "eval"
    # the folds' bookkeeping is under test, not Swin UNETR: a 1x1x1 network trains in no time
    args = ["--dataset_dir", str(data), "--ckpt_dir", str(models), "--output_dir", str(out), "--num_folds", "2",
            "--epochs", "1", "--network_def", CONV, *TINY]  # fmt: skip
    first = _cross_validate(*args)
    assert "fold 0: training" in first.stderr and "fold 1: training" in first.stderr
    folder = out / "cross_validation"
    with open(folder / "summary.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [row["fold"] for row in table] == ["0", "1", "mean", "std"]
    assert [row["cases"] for row in table[:3]] == ["2", "2", "4"]
    dice = [float(row["dice_mean"]) for row in table]
    assert dice[2] == pytest.approx((dice[0] + dice[1]) / 2, abs=1e-4)
    assert dice[3] == pytest.approx(abs(dice[0] - dice[1]) / np.sqrt(2), abs=1e-4)  # sample std of two folds
    summary = json.loads((folder / "summary.json").read_text())
    assert sorted(summary["folds"]) == ["0", "1"] and summary["cases"] == 4
    # every case scored and predicted out of fold: by the one fold model that did not train on it
    info = discover(data, num_folds=2)
    with open(folder / "metrics.csv", newline="") as f:
        rows = {row["case_id"]: row for row in csv.DictReader(f)}
    assert {case_id: int(row["fold"]) for case_id, row in rows.items()} == {
        c["case_id"]: c["fold"] for c in info["training"]
    }
    assert sorted(p.name for p in (folder / "predictions").glob("*.nii.gz")) == sorted(f"{c}.nii.gz" for c in rows)
    assert (folder / "summary.png").stat().st_size > 1000
    trained = {k: (models / f"fold{k}" / "model.pt").stat().st_mtime_ns for k in (0, 1)}

    second = _cross_validate(*args)
    assert "fold 0: already trained" in second.stderr and "fold 1: already trained" in second.stderr
    assert "training" not in second.stderr.replace("already trained", "")
    assert {k: (models / f"fold{k}" / "model.pt").stat().st_mtime_ns for k in (0, 1)} == trained


def _conv_checkpoint(folder: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    network = torch.nn.Conv3d(4, 3, 1)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), folder / "model.pt")
    return folder / "model.pt"


def _infer(data: Path, out: Path, *extra: str, ensemble: bool = False) -> None:
    configs = "['configs/inference.json','configs/inference_ensemble.json']" if ensemble else "configs/inference.json"
    run_bundle("inference", "--config_file", configs, "--dataset_dir", str(data), "--output_dir", str(out),
               "--network_def", CONV, *NO_POSTPROCESSING, *FP32, *TINY, *extra)  # fmt: skip


def test_an_ensemble_of_one_model_twice_is_that_model(make_dataset, tmp_path: Path) -> None:
    data = make_dataset("brats2021", num_cases=1, num_unlabelled=1, seed=4)
    checkpoint = _conv_checkpoint(tmp_path / "a", seed=1)
    _infer(data, tmp_path / "single", "--ckpt_dir", str(checkpoint.parent))
    _infer(data, tmp_path / "twice", "--checkpoints", f"['{checkpoint}','{checkpoint}']", ensemble=True)
    for single in sorted((tmp_path / "single").glob("*.nii.gz")):
        a, b = (
            np.asarray(nib.load(folder / single.name).dataobj) for folder in (tmp_path / "single", tmp_path / "twice")
        )
        assert a.any() and np.array_equal(a, b), single.name


def test_an_ensemble_of_two_models_paints_their_mean_probability(make_dataset, tmp_path: Path) -> None:
    data = make_dataset("brats2021", num_cases=1, num_unlabelled=1, seed=4)
    checkpoints = [_conv_checkpoint(tmp_path / name, seed) for name, seed in (("a", 1), ("b", 2))]
    _infer(data, tmp_path / "ensemble", "--checkpoints", json.dumps([str(c) for c in checkpoints]), ensemble=True)
    networks = []
    for checkpoint in checkpoints:
        network = torch.nn.Conv3d(4, 3, 1)
        network.load_state_dict(torch.load(checkpoint, weights_only=True))
        networks.append(network)
    convention = CONVENTIONS["brats2021"]
    info = discover(data)
    for case in info["training"] + info["testing"]:
        image = np.stack([zscore_nonzero(np.asarray(nib.load(path).dataobj)) for path in case["image"]])
        brain = (image != 0).any(0)
        box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(brain))
        x = torch.as_tensor(image[(slice(None), *box)][None], dtype=torch.float32)
        with torch.no_grad():
            mean = sum(torch.sigmoid(n(x))[0] for n in networks) / 2  # the models' own probabilities, averaged
        tc, wt, et = (mean >= 0.5).numpy()
        tc, wt = tc | et, wt | tc | et
        expected = np.zeros(brain.shape, np.uint8)
        inside = expected[box]
        inside[wt], inside[tc], inside[et] = convention.edema, convention.core_only, convention.enhancing
        written = np.asarray(nib.load(tmp_path / "ensemble" / f"{case['case_id']}.nii.gz").dataobj)
        assert len(np.unique(expected)) > 2  # a map with several labels: the average matters
        assert np.mean(written == expected) > 0.9999, case["case_id"]  # float ties at p = 0.5 aside
        single_a = (torch.sigmoid(networks[0](x))[0] >= 0.5).numpy()
        assert (single_a != (mean >= 0.5).numpy()).any()  # and differs from either model alone


def _dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two masks; 1 when both are empty (BraTS scores an empty region predicted empty as right)."""
    total = prediction.sum() + truth.sum()
    return 1.0 if total == 0 else 2.0 * float((prediction & truth).sum()) / float(total)


def _one_channel_checkpoint(folder: Path, channel: str) -> Path:
    """A 1x1x1 network that calls every region where `channel`'s z-score passes 1.5: a member with a view of its own."""
    network = torch.nn.Conv3d(4, 3, 1)
    with torch.no_grad():
        network.weight.zero_()
        network.weight[:, CHANNELS.index(channel)] = 2.0
        network.bias.fill_(-3.0)
    folder.mkdir(parents=True)
    torch.save(network.state_dict(), folder / "model.pt")
    return folder / "model.pt"


def test_evaluating_an_ensemble_scores_the_mean_of_its_members_probabilities(make_dataset, tmp_path: Path) -> None:
    """metrics.csv holds the Dice of three members' averaged probabilities, recomputed here from the case's files."""
    data = make_dataset("brats2021")
    checkpoints = [_one_channel_checkpoint(tmp_path / channel, channel) for channel in ("FLAIR", "T1ce", "T2")]
    configs = "['configs/train.json','configs/evaluate.json','configs/inference_ensemble.json']"
    run_bundle("--config_file", configs, "--dataset_dir", str(data), "--num_folds", "3", "--network_def", CONV,
               "--checkpoints", json.dumps([str(c) for c in checkpoints]), "--output_dir", str(tmp_path / "eval"),
               "--num_pictures", "0", *NO_POSTPROCESSING, *FP32, *TINY)  # fmt: skip
    with open(tmp_path / "eval" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1
    assert (tmp_path / "eval" / "predictions" / f"{rows[0]['case_id']}.nii.gz").is_file()

    # the same case by hand: z-scored channels, each member's sigmoid, their mean, a plain 0.5 threshold (the knobs
    # above make the post-processing neutral) inside the brain's box, the regions nested as a painted map nests them
    (case,) = [c for c in discover(data)["training"] if c["case_id"] == rows[0]["case_id"]]
    image = np.stack([zscore_nonzero(np.asarray(nib.load(path).dataobj)) for path in case["image"]])
    probabilities = []
    for checkpoint in checkpoints:
        member = torch.nn.Conv3d(4, 3, 1)
        member.load_state_dict(torch.load(checkpoint, weights_only=True))
        with torch.no_grad():
            probabilities.append(torch.sigmoid(member(torch.as_tensor(image[None], dtype=torch.float32)))[0].numpy())
    box = np.zeros(image.shape[1:], bool)  # the inferer predicts no tumour outside the brain's bounding box
    box[tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero((image != 0).any(0)))] = True

    def regions(probability: np.ndarray) -> dict[str, np.ndarray]:
        tc, wt, et = (probability >= 0.5) & box
        return {"tc": tc | et, "wt": wt | tc | et, "et": et}

    label = np.asarray(nib.load(case["label"]).dataobj)  # BraTS 2021: 1 necrotic core, 2 edema, 4 enhancing
    truth = {"tc": np.isin(label, (1, 4)), "wt": label > 0, "et": label == 4}
    mean = sum(probabilities) / len(probabilities)  # of probabilities: with three members, not the mean logit's
    expected, first_only = regions(mean), regions(probabilities[0])
    ties = int((np.abs(mean - 0.5) < 1e-6).sum())  # voxels that float rounding may put on either side
    for region in truth:
        dice = _dice(expected[region], truth[region])
        tolerance = 1e-6 + 2 * ties / (expected[region].sum() + truth[region].sum())
        assert float(rows[0][f"dice_{region}"]) == pytest.approx(dice, abs=tolerance), (region, ties)
    # the members disagree: the ensemble's Dice is neither member's (here, the first one's), by far more than that
    assert max(abs(_dice(expected[r], truth[r]) - _dice(first_only[r], truth[r])) for r in truth) > 0.05
