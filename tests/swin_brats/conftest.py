"""Shared fixtures: the bundle on sys.path, synthetic datasets per layout, and a runner for the real bundle CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "swin_brats_bundle"
sys.path.insert(0, str(BUNDLE))

from monai.bundle import ConfigWorkflow  # noqa: E402
from scripts.layouts import LAYOUTS as DECLARED_LAYOUTS  # noqa: E402
from scripts.synthetic_data import write_dataset  # noqa: E402

# Tiny but real: the shipped configs through `python -m monai.bundle`, with test-sized overrides.
TINY = ["--feature_size", "12", "--roi_size", "[64,64,64]", "--num_workers", "0", "--progress_bar", "False"]
SHAPE = (64, 64, 48)
# Every file naming gets the end-to-end tests; the BraTS task prefixes that share the 2023 naming (BraTS-PED-, ...)
# get theirs in test_brats_tasks.py.
LAYOUTS = tuple(name for name, layout in DECLARED_LAYOUTS.items() if not layout.case_prefix)
# For tests about the network's own voxels: the small-component and small-ET rules off.
NO_POSTPROCESSING = ("--min_component_mm3", "0", "--min_enhancing_mm3", "0", "--min_coreless_lesion_mm3", "0",
                     "--region_thresholds", "[0.5,0.5,0.5]")  # fmt: skip
# For tests comparing label maps voxel by voxel with an fp32 reference: bf16 (the default on CPUs that have it)
# rounds differently and flips voxels near the threshold.
FP32 = ("--amp", "False")


def zscore_nonzero(image: np.ndarray) -> np.ndarray:
    """The configs' `zscore` normalisation of one channel: mean and std of the nonzero voxels, background kept 0."""
    image = image.astype(np.float64)
    brain = image != 0
    normalised = np.zeros_like(image)
    normalised[brain] = (image[brain] - image[brain].mean()) / image[brain].std()
    return normalised


def train_workflow(data: Path, ckpt_dir: Path, output_dir: Path, **overrides) -> ConfigWorkflow:
    """train.json as an initialised in-process workflow on `data`: 3 folds, no progress bar, loading in this process."""
    workflow = ConfigWorkflow(
        config_file=str(BUNDLE / "configs" / "train.json"),
        workflow_type="train",
        bundle_root=str(BUNDLE),
        dataset_dir=str(data),
        num_folds=3,
        ckpt_dir=str(ckpt_dir),
        output_dir=str(output_dir),
        **{"progress_bar": False, "num_workers": 0, **overrides},
    )
    workflow.initialize()
    return workflow


def run_bundle(*args: str, cwd: Path = BUNDLE, expect_ok: bool = True) -> subprocess.CompletedProcess:
    """Run `python -m monai.bundle run ...` from the bundle folder; on an unexpected exit code show the output."""
    command = [sys.executable, "-m", "monai.bundle", "run", *args]
    command += ["--meta_file", str(BUNDLE / "configs" / "metadata.json")]
    command += ["--logging_file", str(BUNDLE / "configs" / "logging.conf")]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if expect_ok and result.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} exited {result.returncode}:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
        )
    return result


@pytest.fixture(scope="session")
def make_dataset(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Synthetic dataset factory, cached per argument set for the whole session."""
    cache: dict[tuple, Path] = {}

    def make(layout: str, num_cases: int = 3, num_unlabelled: int = 1, seed: int = 0) -> Path:
        key = (layout, num_cases, num_unlabelled, seed)
        if key not in cache:
            folder = tmp_path_factory.mktemp(f"{layout}_data")
            write_dataset(folder, layout, num_cases, num_unlabelled, SHAPE, seed)
            cache[key] = folder
        return cache[key]

    return make
