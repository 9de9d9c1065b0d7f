"""The GPU benchmark (bench/gpu/gpu_bench.py) end to end in its dry run on the CPU: tiny sizes through the bundle's
own configs, every section of the result filled, so the script is ready to run whenever a GPU is at hand."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "gpu" / "gpu_bench.py"
RESULT = "gpu_swin_brats.json"
SECTIONS = ("data", "matmul", "flops", "training", "inference", "loader", "summary")


def run_script(*args: str, timeout: float = 840) -> subprocess.CompletedProcess:
    """The script in its own process, with no GPU visible, one thread (the other core runs the other test worker)."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=timeout
    )


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, dict, Path]:
    folder = tmp_path_factory.mktemp("gpu_bench")
    work = folder / "work"
    run = run_script(str(folder / "out"), "--dry_run", "--commit", "abc123", "--work_dir", str(work),
                     "--time_budget", "780")  # fmt: skip
    path = folder / "out" / RESULT
    assert path.is_file(), f"no {RESULT}; exit {run.returncode}:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run, json.loads(path.read_text()), work


def errors(tree: object, where: str = "") -> list[str]:
    """Every `error` or `skipped` entry in the result, with where it is."""
    if not isinstance(tree, dict):
        return []
    found = [f"{where}: {tree[k]}" for k in ("error", "skipped") if k in tree]
    return found + [e for key, value in tree.items() for e in errors(value, f"{where}/{key}")]


def test_dry_run_fills_every_section(dry_run: tuple) -> None:
    run, result, _ = dry_run
    assert errors(result) == [], f"{errors(result)}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert run.returncode == 0 and result["status"] == "complete", run.stderr[-3000:]
    assert result["dry_run"] is True
    for section in SECTIONS:
        assert result.get(section), f"section {section} missing or empty"
    environment = result["environment"]
    assert environment["commit"] == "abc123" and environment["date"]
    assert environment["gpu"] is None and environment["device"] == "cpu"
    assert environment["peak_bf16_dense_tflops"] is None
    for key in ("torch", "monai", "python", "cpu", "cpu_count", "cuda", "nibabel", "ignite"):
        assert key in environment, key
    assert result["data"]["shape"] == [64, 64, 48] and result["data"]["synthetic"] is True


def test_training_rows_through_the_bundle_trainer(dry_run: tuple) -> None:
    _, result, _ = dry_run
    roi = result["training"]["roi_64"]
    assert roi["batch"]["image_shape"] == [1, 4, 64, 64, 64]
    assert roi["batch"]["label_shape"][:2] == [1, 3]
    assert set(roi) == {"batch", *result["settings"]["train_variants"]}
    for name, row in roi.items():
        if name == "batch":
            continue
        assert row["use_checkpoint"] is name.endswith("_checkpoint"), name
        assert row["amp"] is False, f"{name}: MONAI's trainer autocasts on CUDA only"
        assert row["iterations_timed"] == 1 and row["s_per_iteration"] > 0, name
        assert math.isfinite(row["last_loss"]) and row["last_loss"] > 0, name
        assert row["peak_allocated_gib"] is None  # no GPU


def test_inference_runs_the_config_with_each_variant(dry_run: tuple) -> None:
    _, result, work = dry_run
    inference = result["inference"]
    assert set(inference) == {"model", *result["settings"]["inference_variants"]}
    bundle, reference = inference["bundle"], inference["reference"]
    assert (bundle["sw_overlap"], bundle["sw_batch_size"], bundle["crop_to_brain"]) == (0.5, 4, True)
    assert (reference["sw_overlap"], reference["sw_batch_size"], reference["crop_to_brain"]) == (0.6, 1, False)
    for name in result["settings"]["inference_variants"]:
        row = inference[name]
        assert row["cases"] == 2 and row["precision"] in ("fp32", "cpu_bf16"), name
        assert 0 < row["inferer_s_per_case"] <= row["s_per_case"] < row["workflow_s"], name
        assert 0 < row["inferer_s_per_case_after_first"] <= row["s_per_case_after_first"], name
        assert len(list((work / "predictions" / name).glob("*.nii.gz"))) == 2, f"{name}: label maps not written"
    assert result["summary"]["inference_speedup_bundle_over_reference"] > 0


def test_flops_and_shares(dry_run: tuple) -> None:
    _, result, _ = dry_run
    flops = result["flops"]["roi_64"]
    # backward costs about twice the forward: a step counted at under 2x or over 4x the forward counts something else
    assert 2 * flops["forward_gflop_per_window"] < flops["train_step_gflop"] < 4 * flops["forward_gflop_per_window"]
    assert flops["window_tflops"] > 0 and flops["s_per_window"] > 0
    share = result["summary"]["flops_share"]["roi_64"]
    assert share["window_share_of_peak"] is None  # no datasheet peak for a CPU
    assert share["train_step_tflops"] > 0 and share["window_share_of_matmul"] > 0
    assert result["matmul"]["bf16_tflops"] >= 0 and result["matmul"]["size"] == 256


def test_loader_compares_both_pipelines(dry_run: tuple) -> None:
    _, result, _ = dry_run
    loader = result["loader"]
    for pipeline in ("bundle", "reference"):
        assert loader[pipeline]["data_wait_s_per_iteration_after_first"] >= 0, pipeline
    assert loader["bundle"]["dataset"] == "CacheDataset" and loader["reference"]["dataset"] == "Dataset"
    assert set(result["summary"]["loader_data_wait_s"]) == {"bundle", "reference"}


def test_guard_writes_the_result_when_the_budget_runs_out(tmp_path: Path) -> None:
    """A run that outlives its budget ends with the result written, naming the measurement it was in."""
    run = run_script(str(tmp_path / "out"), "--dry_run", "--sections", "training", "--work_dir", str(tmp_path / "w"),
                     "--time_budget", "1", "--grace", "0", timeout=300)  # fmt: skip
    result = json.loads((tmp_path / "out" / RESULT).read_text())
    assert run.returncode == 3, run.stdout[-2000:]
    assert result["status"] == "stopped by the time guard during data", result["status"]
    assert "environment" in result and result["elapsed_s"] >= 1


def test_peak_table() -> None:
    spec = importlib.util.spec_from_file_location("gpu_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    peak = module.peak_bf16_tflops
    assert peak("NVIDIA H100 80GB HBM3") == 989.5  # SXM
    assert peak("NVIDIA H100 PCIe") == 756.5
    assert peak("NVIDIA H100 NVL") == 835.5
    assert peak("NVIDIA H200") == 989.5
    assert peak("NVIDIA A100-SXM4-80GB") == peak("NVIDIA A100-PCIE-40GB") == 312.0
    assert peak("NVIDIA GeForce RTX 4090") is None and peak(None) is None
