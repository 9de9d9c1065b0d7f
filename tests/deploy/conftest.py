"""Fixtures for the MONAI Deploy app: a served bundle copy, one synthetic BraTS case, `run inference` and app runners.

These tests run in deploy/.venv (the app's environment). The reference side, the bundle's own
`python -m monai.bundle run inference`, and the synthetic data (nilearn template) run in the project's .venv, the
bundle's own environment: `make test` builds both.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "swin_brats_bundle"
APP = REPO / "deploy" / "app.py"
BUNDLE_PYTHON = Path(os.environ.get("SWIN_BRATS_BUNDLE_PYTHON", REPO / ".venv" / "bin" / "python"))
sys.path[:0] = [str(REPO / "deploy"), str(BUNDLE), str(REPO / "tests")]

from scripts.layouts import CHANNELS, LAYOUTS  # noqa: E402
from served_bundle import serve_bundle  # noqa: E402

# The checkpoint's own settings, written into the copy's inference.json as for MONAI Label (tests/swin_brats/
# test_monai_label.py): the app overrides nothing. fp32: bf16 autocast would round differently per process.
# min_component_mm3 200 cm³ makes the voxel size decisive: the case's regions (one component each, 41k-78k voxels of
# about 36 mm³) stay, but read as 1 mm³ voxels (an input without its affine) every region would be removed.
MODEL_SETTINGS = {"feature_size": 12, "roi_size": [64, 64, 64], "amp": False, "min_component_mm3": 200000}
SHAPE = (64, 64, 48)
BRATS2021_LAYOUT = LAYOUTS["brats2021"]
SUFFIXES = dict(zip(CHANNELS, BRATS2021_LAYOUT.suffixes, strict=True))  # BraTS 2021 file endings
DESCRIPTIONS = {"FLAIR": "AX T2 FLAIR", "T1ce": "AX T1 post-contrast", "T1": "AX T1", "T2": "AX T2"}
ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONWARNINGS": "ignore"}


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the bundle with a seeded, untrained feature-size-12 models/model.pt and inference.json set to it."""
    return serve_bundle(tmp_path_factory.mktemp("served"), MODEL_SETTINGS)


@pytest.fixture(scope="session")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One synthetic BraTS 2021 case (scripts.synthetic_data, as tests/swin_brats make them) in its dataset folder."""
    data = tmp_path_factory.mktemp("brats2021_data")
    code = "import sys; from pathlib import Path; from scripts.synthetic_data import write_dataset; "
    code += f"write_dataset(Path(sys.argv[1]), 'brats2021', 1, 0, {SHAPE}, 0)"
    subprocess.run([str(BUNDLE_PYTHON), "-c", code, str(data)], cwd=BUNDLE, env=ENV, check=True, timeout=300)
    (folder,) = [p for p in data.iterdir() if p.is_dir()]
    return {"data": data, "id": folder.name, "folder": folder}


@pytest.fixture(scope="session")
def bundle_prediction(served: Path, case: dict, tmp_path_factory: pytest.TempPathFactory) -> nib.Nifti1Image:
    """The bundle's own `python -m monai.bundle run inference` on the case's dataset folder."""
    output_dir = tmp_path_factory.mktemp("run_inference") / "predictions"
    command = [str(BUNDLE_PYTHON), "-m", "monai.bundle", "run", "inference", "--config_file", "configs/inference.json"]
    command += ["--meta_file", "configs/metadata.json", "--logging_file", "configs/logging.conf"]
    command += ["--dataset_dir", str(case["data"]), "--output_dir", str(output_dir)]
    command += ["--num_workers", "0", "--progress_bar", "False"]
    result = subprocess.run(command, cwd=served, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return nib.load(output_dir / f"{case['id']}.nii.gz")


def run_app(input_dir: Path, output_dir: Path, model: Path) -> subprocess.CompletedProcess:
    """`python deploy/app.py -i -o -m` in this (the deploy) environment."""
    command = [sys.executable, str(APP), "-i", str(input_dir), "-o", str(output_dir), "-m", str(model)]
    return subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)


def last_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def write_mr_series(
    volume: np.ndarray, affine: np.ndarray, description: str, folder: Path, study: dict, number: int
) -> list[Path]:
    """One int16 (x, y, z) volume as single-frame MR instances: slice k holds volume[:, :, k].T (rows = y, columns
    = x), positions and orientation from the NIfTI (RAS) affine turned into DICOM's LPS."""
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    orientation = np.concatenate([lps[:3, 0] / spacing[0], lps[:3, 1] / spacing[1]])
    series_uid = generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(volume.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MRImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesDescription, ds.SeriesNumber, ds.InstanceNumber = "MR", description, number, k + 1
        for key, value in study.items():
            setattr(ds, key, value)
        ds.SeriesInstanceUID = series_uid
        ds.ImageOrientationPatient = [round(float(v), 6) for v in orientation]
        ds.ImagePositionPatient = [round(float(v), 4) for v in lps @ np.array([0.0, 0.0, k, 1.0])][:3]
        ds.PixelSpacing = [round(float(spacing[1]), 6), round(float(spacing[0]), 6)]  # row (y), column (x) spacing
        ds.SliceThickness = round(float(spacing[2]), 6)
        pixels = np.ascontiguousarray(volume[:, :, k].T.astype(np.int16))
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = pixels.tobytes()
        path = folder / f"{number:02d}_{k:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def study_attributes() -> dict:
    """Patient / study / frame-of-reference attributes the four series share."""
    return {
        "PatientName": "Synthetic^Case",
        "PatientID": "SYN0001",
        "PatientBirthDate": "",
        "PatientSex": "O",
        "StudyInstanceUID": generate_uid(),
        "StudyID": "1",
        "StudyDate": "20260101",
        "StudyTime": "120000",
        "AccessionNumber": "",
        "ReferringPhysicianName": "",
        "FrameOfReferenceUID": generate_uid(),
        "PositionReferenceIndicator": "",
        "Manufacturer": "synthetic",
    }


@pytest.fixture(scope="session")
def dicom_study(case: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The case's four NIfTI files as four DICOM MR series of one study, named by DESCRIPTIONS."""
    folder = tmp_path_factory.mktemp("dicom") / case["id"]
    study = study_attributes()
    for number, (channel, suffix) in enumerate(SUFFIXES.items(), 1):
        image = nib.load(case["folder"] / BRATS2021_LAYOUT.file_name(case["id"], suffix))
        write_mr_series(np.asarray(image.dataobj), image.affine, DESCRIPTIONS[channel], folder / channel, study, number)
    return folder
