"""Bundle workflows through the real MONAI bundle CLI: train -> evaluate -> infer on tiny settings, and zoo checks."""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
from cls_helpers import BUNDLE, CONFIGS, REPO
from mlflow import MlflowClient
from monai.bundle import ConfigParser

TINY = ["--feature_size", "12", "--roi_size", "[14,14,14]", "--num_samples", "60", "--epochs", "1",
        "--batch_size", "8", "--num_workers", "0", "--progress_bar", "False"]  # fmt: skip
TRAIN, EVALUATE, INFERENCE = (str(CONFIGS / f"{name}.json") for name in ("train", "evaluate", "inference"))


def bundle_run(*args: str, cwd=REPO) -> str:
    """`python -m monai.bundle run ...`; fail with the log tail if the command fails."""
    done = subprocess.run([sys.executable, "-m", "monai.bundle", "run", *args], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done.stdout + done.stderr


def _test_split_labels(bundle_scripts) -> dict[str, int]:
    """name -> true class of the test split that evaluate.json scores, from the configs at the TINY settings."""
    parser = ConfigParser()
    parser.read_config([TRAIN, EVALUATE])
    parser.update({"bundle_root": str(bundle_scripts), "num_samples": 60})
    return {item["name"]: item["label"] for item in parser.get_parsed_content("validate#datalist")}


def test_train_evaluate_infer_through_the_cli(bundle_scripts, tmp_path):
    out, ckpt = tmp_path / "eval", tmp_path / "models"
    where = ["--output_dir", str(out), "--ckpt_dir", str(ckpt)]
    # training from inside the bundle (bundle_root "."), with MLflow tracking on
    log = bundle_run(
        "training", "--config_file", "configs/train.json", "--tracking", "mlflow", *TINY, *where, cwd=BUNDLE
    )
    assert "Epoch[1] Complete" in log
    state = torch.load(ckpt / "model.pt", map_location="cpu", weights_only=True)
    assert all(k.startswith(("swinViT.", "head.")) for k in state) and "head.2.weight" in state  # plain state dict
    assert state["head.2.weight"].shape == (10, 192)
    with sqlite3.connect(out / "mlruns.db") as db:
        keys = {row[0] for row in db.execute("select distinct key from metrics")}
    assert {"train_loss", "train_accuracy", "val_accuracy"} <= keys
    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlruns.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("swin_classification").experiment_id])
    assert {"learning_rate", "feature_size", "roi_size", "epochs", "batch_size", "bundle_version"} <= set(
        run.data.params
    )
    assert run.data.tags["bundle_name"] == "classification_bundle"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "model.pt" in artifacts and any(a.startswith("config_") for a in artifacts)

    # evaluation from the repository root with --bundle_root, tracked too
    bundle_run(
        "--config_file",
        f"['{TRAIN}','{EVALUATE}']",
        "--bundle_root",
        str(BUNDLE),
        "--tracking",
        "mlflow",
        *TINY,
        *where,
    )
    with sqlite3.connect(out / "mlruns.db") as db:
        assert {"val_precision", "val_recall"} <= {row[0] for row in db.execute("select distinct key from metrics")}
    metrics = json.loads((out / "metrics.json").read_text())
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == metrics["num_samples"]
    assert matrix.sum(1).min() >= 1  # stratified: every digit is in the test split
    assert {"precision", "recall", "f1"} <= metrics.keys() and len(metrics["per_class"]) == 10
    assert (out / "confusion_matrix.png").stat().st_size > 1000

    # inference on the test split, then on a folder of NIfTI volumes
    bundle_run("inference", "--config_file", INFERENCE, "--bundle_root", str(BUNDLE), *TINY, *where)
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == metrics["num_samples"] and rows[0]["name"].startswith("test_")
    for row in rows:
        probs = np.array([float(row[f"prob_{k}"]) for k in range(10)])
        assert probs.sum() == pytest.approx(1.0, abs=1e-4) and int(row["predicted_class"]) == probs.argmax()
    # metrics.json's numbers from the predictions of the same model on the same split and the true labels
    labels = _test_split_labels(bundle_scripts)
    predicted = {row["name"]: int(row["predicted_class"]) for row in rows}
    assert sorted(predicted) == sorted(labels)
    recomputed = np.zeros((10, 10), dtype=np.int64)
    for name, label in labels.items():
        recomputed[label, predicted[name]] += 1
    assert recomputed.tolist() == metrics["confusion_matrix"]
    accuracy = np.mean([predicted[name] == label for name, label in labels.items()])
    assert metrics["accuracy"] == pytest.approx(accuracy)

    folder = tmp_path / "nifti"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("b.nii.gz", "a.nii.gz", "c.nii"):
        nib.save(nib.Nifti1Image(rng.random((16, 16, 16)).astype(np.float32), np.eye(4)), folder / name)
    bundle_run("inference", "--config_file", INFERENCE, "--bundle_root", str(BUNDLE), "--input_dir", str(folder),
               "--output_filename", "nifti.csv", *TINY, *where)  # fmt: skip
    rows = list(csv.DictReader((out / "nifti.csv").open()))
    assert [r["name"] for r in rows] == ["a.nii.gz", "b.nii.gz", "c.nii"]
    assert list(rows[0]) == ["name", "predicted_class"] + [f"prob_{k}" for k in range(10)]


def test_cli_reports_a_bad_dataset_file(tmp_path):
    bad = tmp_path / "digits.csv"
    bad.write_text("1,2,3\n")
    done = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", TRAIN, "--bundle_root", str(BUNDLE),
         "--dataset_path", str(bad), "--output_dir", str(tmp_path / "eval"), "--ckpt_dir", str(tmp_path / "ckpt"),
         *TINY],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode != 0
    assert "digits.csv: unsupported format '.csv'" in done.stderr
