"""Scale-out and resilience of the classification bundle: kill and resume, seeded determinism, torchrun DDP on CPU."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from cls_helpers import BUNDLE, CONFIGS
from iteration_losses import iteration_losses
from monai.bundle import ConfigWorkflow

TINY = ["--feature_size", "12", "--roi_size", "[14,14,14]", "--num_samples", "70", "--batch_size", "8",
        "--num_workers", "0", "--progress_bar", "False", "--num_threads", "1"]  # fmt: skip
TRAINER_EPOCH_DONE = re.compile(r"SupervisedTrainer - INFO - Epoch\[(\d+)\] Complete")
VAL_ACCURACY = re.compile(r"Got new best metric of val_accuracy: ([0-9.eE-]+)")
CHECKPOINT = "checkpoint.pt"


def _train_command(run_dir: Path, epochs: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", "configs/train.json",
            "--meta_file", "configs/metadata.json", "--logging_file", "configs/logging.conf",
            "--ckpt_dir", str(run_dir), "--output_dir", str(run_dir), "--epochs", str(epochs),
            *TINY, *extra]  # fmt: skip


def _run(command: list[str], **kwargs) -> str:
    done = subprocess.run(command, cwd=BUNDLE, capture_output=True, text=True, timeout=900, **kwargs)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-6000:]
    return log


def test_sigkill_then_resume_finishes_only_the_remaining_epochs(tmp_path: Path) -> None:
    run_dir, epochs = tmp_path / "run", 8
    process = subprocess.Popen(_train_command(run_dir, epochs), cwd=BUNDLE, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 600
    while not (run_dir / CHECKPOINT).exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "training ended before it could be killed"
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith((f".{CHECKPOINT}.", ".model.pt."))]
    saved = torch.load(run_dir / CHECKPOINT, weights_only=True)
    killed_after = saved["trainer"]["epoch"]
    assert 1 <= killed_after < epochs
    assert {"model", "optimizer", "lr_scheduler", "best_metric"} <= saved.keys()

    log = _run(_train_command(run_dir, epochs, "--resume", "True"))
    assert f"resumed from epoch {killed_after}" in log
    assert [int(e) for e in TRAINER_EPOCH_DONE.findall(log)] == list(range(killed_after + 1, epochs + 1))
    final = torch.load(run_dir / CHECKPOINT, weights_only=True)
    assert final["trainer"]["epoch"] == epochs
    # OneCycleLR steps per iteration: the resumed schedule continues rather than restarting
    assert final["lr_scheduler"]["last_epoch"] == final["trainer"]["iteration"]
    state = torch.load(run_dir / "model.pt", weights_only=True)
    assert "head.2.weight" in state and not any(k.startswith("module.") for k in state)
    assert not list(run_dir.rglob("*.partial"))


def test_resume_without_a_checkpoint_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(_train_command(tmp_path / "empty", 1, "--resume", "True"), cwd=BUNDLE, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    last_line = done.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: --resume True") and str(tmp_path / "empty" / CHECKPOINT) in last_line


def _seeded_losses(bundle_scripts: Path, out: Path) -> list[float]:
    workflow = ConfigWorkflow(
        config_file=str(CONFIGS / "train.json"),
        workflow_type="train",
        bundle_root=str(bundle_scripts),
        ckpt_dir=str(out),
        output_dir=str(out),
        epochs=1,
        val_interval=5,
        feature_size=12,
        roi_size=[14, 14, 14],
        num_samples=40,
        batch_size=8,
        num_workers=0,
        progress_bar=False,
        seed=7,
    )
    workflow.initialize()
    return iteration_losses(workflow)


def test_two_seeded_runs_give_identical_losses(bundle_scripts: Path, tmp_path: Path) -> None:
    first = _seeded_losses(bundle_scripts, tmp_path / "a")
    second = _seeded_losses(bundle_scripts, tmp_path / "b")
    assert len(first) >= 3 and len(set(first)) > 1  # several different iterations, not one repeated value
    assert first == second


def test_torchrun_ddp_on_cpu_matches_single_process_evaluation(tmp_path: Path) -> None:
    """Two gloo ranks validate 10 volumes split 5 + 5; the gathered accuracy equals a one-process evaluation."""
    common = ["--ckpt_dir", str(tmp_path / "models"), "--val_fraction", "0.1", *TINY]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "monai.bundle", "run", "--config_file", "['configs/train.json','configs/multi_gpu_train.json']",
               "--epochs", "1", "--output_dir", str(tmp_path / "train"), *common]  # fmt: skip
    log = _run(command, env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"})
    per_rank = VAL_ACCURACY.findall(log)  # each rank's evaluator logs its own key metric
    assert len(per_rank) == 2, f"one line per rank (2 ranks x 1 validation): {per_rank}"
    distributed = set(per_rank)
    assert len(distributed) == 1, f"every rank sees the same gathered accuracy: {per_rank}"
    assert log.count("model.pt (val_accuracy") == 1, "only rank 0 saves"
    state = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    assert "head.2.weight" in state and not any(k.startswith("module.") for k in state)

    single = _run([sys.executable, "-m", "monai.bundle", "run", "--config_file",
                   "['configs/train.json','configs/evaluate.json']", "--validate#datalist#split", "validation",
                   "--output_dir", str(tmp_path / "evaluation"), *common])  # fmt: skip
    assert [float(v) for v in VAL_ACCURACY.findall(single)] == pytest.approx([float(distributed.pop())], abs=1e-9)
    assert json.loads((tmp_path / "evaluation" / "metrics.json").read_text())["num_samples"] == 10


@pytest.mark.parametrize("workflow", ["training", "evaluation"])
def test_a_lowercase_switch_is_refused_by_name(workflow: str, tmp_path: Path) -> None:
    """`--resume false` arrives as the truthy string "false"; it must stop, not resume (evaluation: the same check)."""
    command = _train_command(tmp_path / "run", 1, "--resume", "false")
    if workflow == "evaluation":
        command[4:7] = ["--config_file", "['configs/train.json','configs/evaluate.json']"]
    done = subprocess.run(command, cwd=BUNDLE, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == (
        "error: resume='false' is not allowed: True or False (capitalised on the command line)"
    )
    assert not (tmp_path / "run").exists()
