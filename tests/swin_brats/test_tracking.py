"""Experiment tracking: a real `mlflow server` on 127.0.0.1 and the default local SQLite store."""

import csv
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import TINY, run_bundle
from mlflow import MlflowClient
from monai.networks.nets import SwinUNETR

EXPECTED_PARAMS = {"learning_rate", "roi_size", "feature_size", "epochs", "batch_size", "normalization"}
EXPECTED_PARAMS |= {"label_convention", "fold", "amp", "use_checkpoint", "bundle_version"}
EXPECTED_ARTIFACTS = {"training_log.csv", "training_curves.png", "metrics.csv", "summary.json", "model.pt"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server` on a free loopback port with a SQLite backend and a temporary artifact root."""
    root, port = tmp_path_factory.mktemp("mlflow_server"), _free_port()
    store, artifacts = f"sqlite:///{root / 'mlflow.db'}", str(root / "artifacts")
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--backend-store-uri", store, "--artifacts-destination", artifacts]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                break
        except OSError:
            assert server.poll() is None, "mlflow server exited at start"
            time.sleep(0.5)
    else:
        pytest.fail("mlflow server did not answer within 120 s")
    yield uri
    os.killpg(server.pid, 15)
    server.wait(timeout=30)


def _train(data: Path, out: Path, *tracking: str) -> None:
    run_bundle("training", "--config_file", "configs/train.json", "--dataset_dir", str(data), "--num_folds", "3",
               "--ckpt_dir", str(out / "models"), "--output_dir", str(out / "eval"), "--epochs", "2",
               "--tracking", "mlflow", *tracking, *TINY)  # fmt: skip


def _assert_metrics_match_the_training_log(client: MlflowClient, run_id: str, training_log: Path) -> None:
    """Each epoch's numbers in MLflow are those of training_log.csv (2 epochs, validated after each)."""
    with open(training_log, newline="") as f:
        rows = list(csv.DictReader(f))
    epochs = [int(row["epoch"]) for row in rows]
    assert epochs == [1, 2]
    for metric in ("train_mean_dice", "val_mean_dice", "val_mean_dice_tc", "val_mean_dice_wt", "val_mean_dice_et"):
        history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, metric))
        assert [step for step, _ in history] == epochs, metric
        assert [value for _, value in history] == pytest.approx([float(row[metric]) for row in rows], rel=1e-6), metric
    # train_loss holds each iteration's loss (step: iteration) and each epoch's mean (step: epoch)
    losses = client.get_metric_history(run_id, "train_loss")
    assert len(losses) == 2 * 2 + 2  # 2 epochs x 2 training cases, and the 2 epoch means
    for row in rows:
        at_epoch = [m.value for m in losses if m.step == int(row["epoch"])]  # an iteration's loss and the mean
        assert len(at_epoch) == 2 and pytest.approx(float(row["train_loss"]), rel=1e-6) in at_epoch, (row, at_epoch)


def _assert_complete_run(
    client: MlflowClient, experiment_name: str, training_log: Path, run_name: str | None = None
) -> None:
    experiment = client.get_experiment_by_name(experiment_name)
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    if run_name:
        assert run.info.run_name == run_name
    assert set(run.data.params) >= EXPECTED_PARAMS
    assert run.data.params["feature_size"] == "12" and run.data.params["label_convention"] == "brats2021"
    assert run.data.tags["bundle_name"] == "swin_brats_bundle" and run.data.tags["bundle_version"]
    for metric in ("train_loss", "val_mean_dice", "val_mean_dice_tc", "val_mean_dice_wt", "val_mean_dice_et"):
        history = client.get_metric_history(run.info.run_id, metric)
        assert history, metric
    _assert_metrics_match_the_training_log(client, run.info.run_id, training_log)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts >= EXPECTED_ARTIFACTS
    assert any(a.startswith("config_") and a.endswith(".json") for a in artifacts)  # the executed config


def test_training_logs_to_a_real_tracking_server(make_dataset, tmp_path: Path, mlflow_server: str) -> None:
    _train(make_dataset("brats2021"), tmp_path, "--tracking_uri", mlflow_server, "--experiment_name", "server_test",
           "--run_name", "tiny")  # fmt: skip
    _assert_complete_run(
        MlflowClient(tracking_uri=mlflow_server), "server_test", tmp_path / "eval" / "training_log.csv", "tiny"
    )


def test_training_logs_to_the_default_local_store(make_dataset, tmp_path: Path) -> None:
    _train(make_dataset("brats2021"), tmp_path)
    store = tmp_path / "eval" / "mlruns.db"
    assert store.is_file()
    _assert_complete_run(
        MlflowClient(tracking_uri=f"sqlite:///{store}"), "swin_brats", tmp_path / "eval" / "training_log.csv"
    )


def test_an_unreachable_server_is_a_clear_error_at_start(make_dataset, tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{_free_port()}"
    result = run_bundle("training", "--config_file", "configs/train.json", "--dataset_dir",
                        str(make_dataset("brats2021")), "--num_folds", "3", "--ckpt_dir", str(tmp_path),
                        "--output_dir", str(tmp_path), "--tracking", "mlflow", "--tracking_uri", uri, *TINY,
                        expect_ok=False)  # fmt: skip
    assert result.returncode != 0
    assert f"error: MLflow tracking server {uri} is not reachable" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "model.pt").exists()


def test_inference_is_tracked_too(make_dataset, tmp_path: Path) -> None:
    network = SwinUNETR(4, 3, feature_size=12)
    torch.save(network.state_dict(), tmp_path / "model.pt")
    run_bundle("inference", "--config_file", "configs/inference.json", "--dataset_dir",
               str(make_dataset("brats2021", num_cases=1, num_unlabelled=0, seed=3)), "--ckpt_dir", str(tmp_path),
               "--output_dir", str(tmp_path / "out"), "--tracking", "mlflow", "--run_name", "infer", *TINY)  # fmt: skip
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'out' / 'mlruns.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("swin_brats").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "infer"
    assert any(a.path.startswith("config_") for a in client.list_artifacts(run.info.run_id))
    assert run.data.params["label_convention"] == "brats2021" and run.data.params["sw_overlap"] == "0.5"
