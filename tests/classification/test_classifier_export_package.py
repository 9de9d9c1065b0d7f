"""Model-zoo release of classification_bundle: zip -> safe unpack elsewhere -> inference there; TorchScript and ONNX
export with eager parity, and inference from the TorchScript file alone."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import nibabel as nib
import numpy as np
import onnxruntime
import pytest
import torch
from cls_helpers import BUNDLE, REPO, extrude, real_digits

sys.path.insert(0, str(REPO / "ci"))
from package_bundle import package  # noqa: E402
from unpack_bundle import safe_extract  # noqa: E402

VERSION = json.loads((BUNDLE / "configs" / "metadata.json").read_text())["version"]
TINY = ["--feature_size", "12", "--num_threads", "0", "--batch_size", "4"]
TS_CONFIGS = "['configs/inference.json','configs/inference_torchscript.json']"
# `onnx_export --converter_kwargs` as the model card documents it: the TorchScript-based exporter (dynamo=False), a free
# batch axis, and MONAI's own onnxruntime check of the export input.
ONNX_CONVERTER = (
    "{'dynamo': False, 'opset_version': 18, 'input_names': ['image'], 'output_names': ['pred'],"
    " 'dynamic_axes': {'image': {0: 'batch'}, 'pred': {0: 'batch'}},"
    " 'verify': True, 'use_ort': True, 'device': 'cpu', 'rtol': 0.0, 'atol': 1e-4}"
)


def bundle_cli(*args: str, cwd: Path) -> None:
    """`python -m monai.bundle ...` in `cwd` with nothing of the repository on the path; fail with the log tail."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {"CUDA_VISIBLE_DEVICES": "", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, "-m", "monai.bundle", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]


def read_predictions(path: Path) -> dict[str, dict[str, float]]:
    """predictions.csv as {name: {column: value}}."""
    with open(path) as f:
        return {row["name"]: {k: float(v) for k, v in row.items() if k != "name"} for row in csv.DictReader(f)}


def network_module(bundle: Path) -> ModuleType:
    """The bundle's scripts/network.py loaded from its file (it imports nothing from `scripts`)."""
    spec = importlib.util.spec_from_file_location("unpacked_classification_network", bundle / "scripts" / "network.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The release zip unpacked elsewhere, with a crafted feature-size-12 checkpoint as models/model.pt."""
    release = package(BUNDLE, tmp_path_factory.mktemp("dist"))
    assert release.name == f"classification_bundle_v{VERSION}.zip"
    with zipfile.ZipFile(release) as archive:
        inside = {name.removeprefix("classification_bundle/") for name in archive.namelist()}
    assert {"LICENSE", "docs/data_license.txt", "configs/inference_torchscript.json", "models/.gitkeep"} <= inside
    assert not [name for name in inside if name.startswith(("eval/", "models/model")) or name.endswith(".pt")]
    root = tmp_path_factory.mktemp("unpacked")
    safe_extract(release, root)
    torch.manual_seed(0)
    network = network_module(root / "classification_bundle").SwinClassifier(feature_size=12)
    torch.save(network.state_dict(), root / "classification_bundle" / "models" / "model.pt")
    return root / "classification_bundle"


@pytest.fixture(scope="module")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five real digits as 16^3 NIfTI volumes."""
    folder = tmp_path_factory.mktemp("volumes")
    digits, labels = real_digits(1, seed=5)
    for i, volume in enumerate(extrude(digits[:5], 16, seed=6)):
        nib.save(nib.Nifti1Image(volume, np.eye(4)), folder / f"digit_{i}_label_{labels[i]}.nii.gz")
    return folder


@pytest.fixture(scope="module")
def eager_predictions(unpacked: Path, volumes: Path) -> dict[str, dict[str, float]]:
    """Inference with models/model.pt from inside the unpacked bundle (bundle_root '.', output in its eval/)."""
    bundle_cli("run", "inference", "--config_file", "configs/inference.json", "--input_dir", str(volumes), *TINY,
               cwd=unpacked)  # fmt: skip
    return read_predictions(unpacked / "eval" / "predictions.csv")


@pytest.fixture(scope="module")
def exported(unpacked: Path) -> Path:
    """models/model.ts traced at the 14^3 ROI by the documented `ckpt_export` command, in the unpacked bundle."""
    bundle_cli("ckpt_export", "network_def", "--filepath", "models/model.ts", "--ckpt_file", "models/model.pt",
               "--meta_file", "configs/metadata.json", "--config_file", "configs/inference.json", "--use_trace", "True",
               "--input_shape", "[1,1,14,14,14]", "--feature_size", "12",
               "--converter_kwargs", "{'check_trace': False}", cwd=unpacked)  # fmt: skip
    return unpacked / "models" / "model.ts"


@pytest.fixture(scope="module")
def onnx_exported(unpacked: Path) -> Path:
    """models/model.onnx exported at the 14^3 ROI by the documented `onnx_export` command, in the unpacked bundle."""
    bundle_cli("onnx_export", "network_def", "--filepath", "models/model.onnx", "--ckpt_file", "models/model.pt",
               "--meta_file", "configs/metadata.json", "--config_file", "configs/inference.json", "--use_trace", "True",
               "--input_shape", "[1,1,14,14,14]", "--feature_size", "12",
               "--converter_kwargs", ONNX_CONVERTER, cwd=unpacked)  # fmt: skip
    return unpacked / "models" / "model.onnx"


def test_unpacked_release_runs_inference_from_its_own_folder(
    eager_predictions: dict[str, dict[str, float]], unpacked: Path, volumes: Path
) -> None:
    assert not unpacked.resolve().is_relative_to(REPO.resolve())
    assert sorted(eager_predictions) == sorted(p.name for p in volumes.glob("*.nii.gz"))
    for row in eager_predictions.values():
        probabilities = [row[f"prob_{k}"] for k in range(10)]
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)
        assert row["predicted_class"] == int(np.argmax(probabilities))


def test_torchscript_export_matches_the_eager_network(exported: Path, unpacked: Path) -> None:
    extra = {"metadata.json": "", "inference.json": ""}
    traced = torch.jit.load(str(exported), map_location="cpu", _extra_files=extra).eval()
    assert json.loads(extra["metadata.json"])["version"] == VERSION
    eager = network_module(unpacked).SwinClassifier(feature_size=12).eval()
    eager.load_state_dict(torch.load(unpacked / "models" / "model.pt", weights_only=True))
    for batch in (1, 3):  # the data loader's batches: the batch size must not be baked into the trace
        x = torch.rand(batch, 1, 14, 14, 14)
        with torch.no_grad():
            scripted, expected = traced(x), eager(x)
        assert (scripted - expected).abs().max().item() <= 1e-4
        assert expected.abs().max().item() > 1e-2  # a real comparison, not two near-zero outputs


def test_onnx_export_matches_the_eager_network(onnx_exported: Path, unpacked: Path) -> None:
    session = onnxruntime.InferenceSession(str(onnx_exported), providers=["CPUExecutionProvider"])
    (image,), (pred,) = session.get_inputs(), session.get_outputs()
    assert (image.name, image.shape) == ("image", ["batch", 1, 14, 14, 14])  # batch free, ROI fixed at export
    assert (pred.name, pred.shape) == ("pred", ["batch", 10])
    eager = network_module(unpacked).SwinClassifier(feature_size=12).eval()
    eager.load_state_dict(torch.load(unpacked / "models" / "model.pt", weights_only=True))
    torch.manual_seed(1)
    for batch in (1, 3):
        x = torch.rand(batch, 1, 14, 14, 14)
        with torch.no_grad():
            expected = eager(x).numpy()
        (onnx_out,) = session.run(None, {"image": x.numpy()})
        assert onnx_out.shape == expected.shape == (batch, 10)
        assert np.abs(onnx_out - expected).max() <= 1e-4
        assert np.abs(expected).max() > 1e-2  # a real comparison, not two near-zero outputs


def test_inference_from_the_torchscript_file_alone(
    eager_predictions: dict[str, dict[str, float]], exported: Path, unpacked: Path, volumes: Path, tmp_path: Path
) -> None:
    state_dict = unpacked / "models" / "model.pt"
    state_dict.rename(tmp_path / "model.pt")  # only model.ts is left: the model.pt loader must be off
    try:
        bundle_cli("run", "inference", "--config_file", TS_CONFIGS, "--input_dir", str(volumes),
                   "--output_dir", str(tmp_path / "ts"), *TINY, cwd=unpacked)  # fmt: skip
    finally:
        (tmp_path / "model.pt").rename(state_dict)
    scripted = read_predictions(tmp_path / "ts" / "predictions.csv")
    assert sorted(scripted) == sorted(eager_predictions)
    # a real comparison: the probabilities depend on the volume, far beyond the 1e-4 tolerance (no constant network)
    spread = max(np.ptp([row[f"prob_{k}"] for row in eager_predictions.values()]) for k in range(10))
    assert spread > 1e-2, spread
    for name, row in scripted.items():
        assert row["predicted_class"] == eager_predictions[name]["predicted_class"]
        for k in range(10):
            assert row[f"prob_{k}"] == pytest.approx(eager_predictions[name][f"prob_{k}"], abs=1e-4)
