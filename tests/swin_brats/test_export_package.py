"""Model-zoo release of swin_brats_bundle: zip -> safe unpack elsewhere -> inference there; TorchScript and ONNX export
with eager parity and inference from the TorchScript file; the zip-slip guard refuses hostile zips."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import onnxruntime
import pytest
import torch
from conftest import BUNDLE, FP32, REPO, TINY
from monai.bundle import ConfigParser
from torch import nn

sys.path.insert(0, str(REPO / "ci"))
from package_bundle import package  # noqa: E402
from unpack_bundle import UnsafeZipEntryError, safe_extract  # noqa: E402

VERSION = json.loads((BUNDLE / "configs" / "metadata.json").read_text())["version"]
NAME = f"swin_brats_bundle_v{VERSION}.zip"
TS_CONFIGS = "['configs/inference.json','configs/inference_torchscript.json']"
# `onnx_export --converter_kwargs` as the model card documents it: the TorchScript-based exporter (dynamo=False, about
# five times faster than the dynamo one here at the same parity), a free batch axis, and MONAI's own onnxruntime check.
ONNX_CONVERTER = (
    "{'dynamo': False, 'opset_version': 18, 'input_names': ['image'], 'output_names': ['pred'],"
    " 'dynamic_axes': {'image': {0: 'batch'}, 'pred': {0: 'batch'}},"
    " 'verify': True, 'use_ort': True, 'device': 'cpu', 'rtol': 0.0, 'atol': 1e-4}"
)
# Run outputs planted in a copy of the bundle: none of them may reach the zip.
PRODUCED = (
    "models/model.pt",
    "models/checkpoint.pt",
    "models/model.ts",
    "models/model.onnx",
    "eval/metrics.csv",
    "eval/mlruns.db",
    "mlruns/0/meta.yaml",
    "configs/datalist.json",
    "scripts/__pycache__/labels.cpython-311.pyc",
    "configs/.DS_Store",
)


def bundle_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m monai.bundle ...` in `cwd` with nothing of the repository on the path; fail with the log tail."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {"CUDA_VISIBLE_DEVICES": "", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, "-m", "monai.bundle", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done


def config_network(bundle: Path) -> nn.Module:
    """`network_def` of the bundle's inference.json at feature size 12, as inference and export build it."""
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["feature_size"] = 12
    return parser.get_parsed_content("network_def")


def assert_non_trivial(label_map: np.ndarray) -> None:
    """Each BraTS 2021 value covers at least 1 % of the grid: two such maps agreeing means agreeing tumour voxels,
    not two empty (or constant) maps."""
    values, counts = np.unique(label_map, return_counts=True)
    assert values.tolist() == [0, 1, 2, 4], dict(zip(values.tolist(), counts.tolist(), strict=True))
    assert counts.min() >= 0.01 * label_map.size, dict(zip(values.tolist(), counts.tolist(), strict=True))


def git_view(bundle: Path) -> set[str]:
    """Files git would commit under `bundle` (tracked or new, not ignored), relative to it."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "."],
        cwd=bundle,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {name for name in out.splitlines() if (bundle / name).is_file()}


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The release zip of a copy of the bundle in which every kind of run output was planted."""
    copy = tmp_path_factory.mktemp("src") / "swin_brats_bundle"
    shutil.copytree(BUNDLE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    for name in PRODUCED:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / name).write_bytes(b"produced by a run")
    return package(copy, tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def unpacked(release: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The release unpacked elsewhere, with a crafted feature-size-12 checkpoint as models/model.pt."""
    root = tmp_path_factory.mktemp("unpacked")
    safe_extract(release, root)
    torch.manual_seed(0)
    network = config_network(root / "swin_brats_bundle")
    torch.save(network.state_dict(), root / "swin_brats_bundle" / "models" / "model.pt")
    return root / "swin_brats_bundle"


@pytest.fixture(scope="module")
def case(make_dataset) -> dict:
    """One labelled synthetic BraTS 2021 case (64x64x48): its folder and FLAIR file."""
    data = make_dataset("brats2021", 1, 0)
    (folder,) = [p for p in data.iterdir() if p.is_dir()]
    return {"data": data, "id": folder.name, "flair": folder / f"{folder.name}_flair.nii.gz"}


@pytest.fixture(scope="module")
def eager_prediction(unpacked: Path, case: dict) -> np.ndarray:
    """Inference with models/model.pt from inside the unpacked bundle (bundle_root '.')."""
    bundle_cli("run", "inference", "--config_file", "configs/inference.json", "--dataset_dir", str(case["data"]),
               *FP32, *TINY, cwd=unpacked)  # fmt: skip
    written = nib.load(unpacked / "eval" / "predictions" / f"{case['id']}.nii.gz")
    source = nib.load(case["flair"])
    assert written.shape == source.shape and written.get_data_dtype() == np.uint8
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-5)
    return np.asarray(written.dataobj)


@pytest.fixture(scope="module")
def exported(unpacked: Path) -> Path:
    """models/model.ts traced at the 64^3 ROI by the documented `ckpt_export` command, in the unpacked bundle."""
    bundle_cli("ckpt_export", "network_def", "--filepath", "models/model.ts", "--ckpt_file", "models/model.pt",
               "--meta_file", "configs/metadata.json", "--config_file", "configs/inference.json", "--use_trace", "True",
               "--input_shape", "[1,4,64,64,64]", "--feature_size", "12",
               "--converter_kwargs", "{'check_trace': False}", cwd=unpacked)  # fmt: skip
    return unpacked / "models" / "model.ts"


@pytest.fixture(scope="module")
def onnx_exported(unpacked: Path) -> Path:
    """models/model.onnx exported at the 64^3 ROI by the documented `onnx_export` command, in the unpacked bundle."""
    bundle_cli("onnx_export", "network_def", "--filepath", "models/model.onnx", "--ckpt_file", "models/model.pt",
               "--meta_file", "configs/metadata.json", "--config_file", "configs/inference.json", "--use_trace", "True",
               "--input_shape", "[1,4,64,64,64]", "--feature_size", "12",
               "--converter_kwargs", ONNX_CONVERTER, cwd=unpacked)  # fmt: skip
    return unpacked / "models" / "model.onnx"


def test_release_zip_holds_the_bundle_sources_and_nothing_a_run_produced(release: Path, tmp_path: Path) -> None:
    assert release.name == NAME
    with zipfile.ZipFile(release) as archive:
        names = archive.namelist()
        sizes = [info.file_size for info in archive.infolist()]
    assert all(name.startswith("swin_brats_bundle/") for name in names)
    inside = {name.removeprefix("swin_brats_bundle/") for name in names}
    assert not inside & set(PRODUCED)
    assert {"LICENSE", "configs/metadata.json", "configs/inference_torchscript.json", "docs/README.md"} <= inside
    assert {"docs/data_license.txt", "scripts/synthetic_data.py", "models/.gitkeep"} <= inside
    assert inside == git_view(BUNDLE)  # exactly what git would commit: sources in, run outputs out
    assert max(sizes) <= 1024 * 1024
    # the same files always give the same bytes
    assert package(BUNDLE, tmp_path).read_bytes() == package(BUNDLE, tmp_path / "again").read_bytes()


def test_unpacked_release_runs_inference_from_its_own_folder(
    eager_prediction: np.ndarray, unpacked: Path, case: dict
) -> None:
    assert not unpacked.resolve().is_relative_to(REPO.resolve())
    assert (unpacked / "eval" / "predictions" / f"{case['id']}.nii.gz").is_file()  # output_dir from bundle_root '.'
    assert_non_trivial(eager_prediction)  # BraTS 2021 values, each painted somewhere


def test_torchscript_export_matches_the_eager_network(exported: Path, unpacked: Path) -> None:
    extra = {"metadata.json": "", "inference.json": ""}
    traced = torch.jit.load(str(exported), map_location="cpu", _extra_files=extra).eval()
    assert json.loads(extra["metadata.json"])["version"] == VERSION
    assert json.loads(extra["inference.json"])["network_def"]["_target_"] == "SwinUNETR"
    eager = config_network(unpacked).eval()
    eager.load_state_dict(torch.load(unpacked / "models" / "model.pt", weights_only=True))
    x = torch.rand(1, 4, 64, 64, 64)
    with torch.no_grad():
        scripted, expected = traced(x), eager(x)
    assert (scripted - expected).abs().max().item() <= 1e-4
    assert expected.abs().max().item() > 1e-2  # a real comparison, not two near-zero outputs


def test_onnx_export_matches_the_eager_network(onnx_exported: Path, unpacked: Path) -> None:
    session = onnxruntime.InferenceSession(str(onnx_exported), providers=["CPUExecutionProvider"])
    (image,), (pred,) = session.get_inputs(), session.get_outputs()
    # batch is free; the spatial size is the one exported (the shifted-window layout is fixed at export)
    assert (image.name, image.shape) == ("image", ["batch", 4, 64, 64, 64])
    assert (pred.name, pred.shape) == ("pred", ["batch", 3, 64, 64, 64])
    eager = config_network(unpacked).eval()
    eager.load_state_dict(torch.load(unpacked / "models" / "model.pt", weights_only=True))
    torch.manual_seed(1)
    x = torch.rand(2, 4, 64, 64, 64)
    with torch.no_grad():
        expected = eager(x).numpy()
    (onnx_out,) = session.run(None, {"image": x.numpy()})
    assert onnx_out.shape == expected.shape == (2, 3, 64, 64, 64)
    assert np.abs(onnx_out - expected).max() <= 1e-4
    assert np.abs(expected).max() > 1e-2  # a real comparison, not two near-zero outputs


def test_inference_from_the_torchscript_file_alone(
    eager_prediction: np.ndarray, exported: Path, unpacked: Path, case: dict, tmp_path: Path
) -> None:
    state_dict = unpacked / "models" / "model.pt"
    state_dict.rename(tmp_path / "model.pt")  # only model.ts is left: nothing may try to load the state dict
    try:
        bundle_cli("run", "inference", "--config_file", TS_CONFIGS, "--dataset_dir", str(case["data"]),
                   "--output_dir", str(tmp_path / "ts"), *FP32, *TINY, cwd=unpacked)  # fmt: skip
    finally:
        (tmp_path / "model.pt").rename(state_dict)
    written = nib.load(tmp_path / "ts" / f"{case['id']}.nii.gz")
    np.testing.assert_allclose(written.affine, nib.load(case["flair"]).affine, atol=1e-5)
    scripted = np.asarray(written.dataobj)
    assert_non_trivial(scripted)
    assert_non_trivial(eager_prediction)
    assert np.mean(scripted == eager_prediction) >= 0.999


def _zip_with(path: Path, hostile: zipfile.ZipInfo, payload: bytes = b"x") -> Path:
    """A zip with one harmless file, then the hostile entry."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("swin_brats_bundle/README.md", "fine")
        archive.writestr(hostile, payload)
    return path


def _symlink_entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


HOSTILE = {
    "parent": (zipfile.ZipInfo("../evil.txt"), "'..'"),
    "nested parent": (zipfile.ZipInfo("swin_brats_bundle/../../evil.txt"), "'..'"),
    "absolute": (zipfile.ZipInfo("/tmp/evil.txt"), "absolute path"),
    "drive": (zipfile.ZipInfo("C:\\evil.txt"), "absolute path"),
    "symlink": (_symlink_entry("swin_brats_bundle/models/model.pt"), "symbolic link"),
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_unpack_refuses_a_hostile_zip_before_writing_anything(tmp_path: Path, kind: str) -> None:
    entry, reason = HOSTILE[kind]
    hostile = _zip_with(tmp_path / "hostile.zip", entry, b"/etc/passwd" if kind == "symlink" else b"x")
    target = tmp_path / "target"
    with pytest.raises(UnsafeZipEntryError, match=reason) as refused:
        safe_extract(hostile, target)
    assert repr(entry.filename) in str(refused.value)
    assert not any(target.rglob("*")) and not (tmp_path / "evil.txt").exists()

    done = subprocess.run(
        [sys.executable, str(REPO / "ci" / "unpack_bundle.py"), str(hostile), str(tmp_path / "cli")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ") and repr(entry.filename) in done.stderr
    assert not any((tmp_path / "cli").rglob("*"))


def test_unpack_refuses_writing_through_a_link_inside_the_target(tmp_path: Path) -> None:
    target, outside = tmp_path / "target", tmp_path / "outside"
    target.mkdir()
    outside.mkdir()
    (target / "configs").symlink_to(outside)
    hostile = _zip_with(tmp_path / "hostile.zip", zipfile.ZipInfo("configs/inference.json"))
    with pytest.raises(UnsafeZipEntryError, match="resolves outside the target folder"):
        safe_extract(hostile, target)
    assert not any(outside.iterdir())


def test_unpack_cli_unpacks_a_release(release: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "ci" / "unpack_bundle.py"), str(release), str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(tmp_path / "swin_brats_bundle")]
    assert (tmp_path / "swin_brats_bundle" / "configs" / "inference.json").is_file()
