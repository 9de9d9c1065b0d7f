"""The BraTS submission check: the bundle's own inference output passes on every layout, each kind of fault is named."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import BUNDLE, LAYOUTS, TINY, run_bundle
from scripts.cases import discover
from scripts.check_submission import check_submission, report_path
from scripts.datalist import inference_cases
from scripts.labels import CONVENTIONS

CHECK = BUNDLE / "scripts" / "check_submission.py"


def _t1ce_checkpoint(folder: Path) -> Path:
    """A 1x1x1 convolution predicting every region where the z-scored T1ce is above 0.5: a non-trivial label map."""
    network = torch.nn.Conv3d(4, 3, 1)
    with torch.no_grad():
        network.weight.zero_()
        network.weight[:, 1] = 10.0
        network.bias.fill_(-5.0)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), folder / "model.pt")
    return folder


@pytest.fixture(scope="module")
def predicted(make_dataset, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """layout -> (dataset, predictions folder written by `run inference`, which checks BraTS layouts itself)."""
    results = {}
    for layout in LAYOUTS:
        work = tmp_path_factory.mktemp(f"submission_{layout}")
        data = make_dataset(layout, num_cases=2, num_unlabelled=1, seed=8)
        result = run_bundle("inference", "--config_file", "configs/inference.json", "--dataset_dir", str(data),
                            "--ckpt_dir", str(_t1ce_checkpoint(work / "models")), "--output_dir", str(work / "out"),
                            "--network_def", "$torch.nn.Conv3d(4, 3, 1)", *TINY)  # fmt: skip
        log = result.stdout + result.stderr
        if layout == "msd":  # no challenge upload format: inference does not check it
            assert "submission check" not in log and not report_path(work / "out").exists()
        else:
            assert "submission check: 3 case(s), 0 problem(s)" in log, log[-2000:]
            assert json.loads(report_path(work / "out").read_text())["passed"] is True
        results[layout] = (data, work / "out")
    return results


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_bundles_own_predictions_pass_on_every_layout(predicted, layout: str) -> None:
    data, out = predicted[layout]
    result = subprocess.run([sys.executable, str(CHECK), "--predictions", str(out), "--dataset_dir", str(data)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(report_path(out).read_text())
    assert report["passed"] and report["cases"] == 3 and report["problems"] == []
    assert report["label_convention"] == layout
    # the maps are not trivially empty: the check looked at real label values
    maps = [np.asarray(nib.load(p).dataobj) for p in sorted(out.glob("*.nii.gz"))]
    assert len(maps) == 3 and all(m.any() for m in maps) and report["empty_maps"] == []


def _broken_copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def test_every_kind_of_fault_is_named_with_its_case_and_file(predicted, tmp_path: Path) -> None:
    data, out = predicted["brats2023"]
    info = discover(data)
    cases = inference_cases(info)
    first, second, third = (case["case_id"] for case in cases)
    broken = _broken_copy(out, tmp_path / "broken")
    (broken / f"{first}.nii.gz").unlink()  # a missing case
    shutil.copy(out / f"{second}.nii.gz", broken / "BraTS-GLI-99999-000.nii.gz")  # an extra file: no such case
    (broken / f"{second}.nii.gz").rename(broken / f"{second}-seg.nii.gz")  # a wrong name
    third_map = nib.load(out / f"{third}.nii.gz")
    data_third = np.asarray(third_map.dataobj).copy()
    data_third[data_third == 3] = 4  # ET=4 (BraTS 2021) in a 2023 folder
    shifted = third_map.affine.copy()
    shifted[0, 3] += 1.5  # a shifted affine
    image = nib.Nifti1Image(data_third.astype(np.float32), shifted)  # a float label map
    image.header.set_qform(shifted, code=1)
    image.header.set_sform(shifted, code=1)
    nib.save(image, broken / f"{third}.nii.gz")
    (broken / "notes.txt").write_text("left behind")

    report = check_submission(broken, cases, CONVENTIONS["brats2023"])
    assert not report["passed"]
    by_case = {}
    for item in report["problems"]:
        by_case.setdefault((item["case_id"], Path(item["file"]).name), []).append(item["problem"])
    assert by_case[(first, f"{first}.nii.gz")] == ["no prediction"]
    assert by_case[(None, "BraTS-GLI-99999-000.nii.gz")] == ["a prediction for no case"]
    assert by_case[(second, f"{second}.nii.gz")] == [f"no prediction; found {second}-seg.nii.gz instead"]
    assert by_case[(second, f"{second}-seg.nii.gz")] == [f"not the submission name of case {second} ({second}.nii.gz)"]
    third_problems = " | ".join(by_case[(third, f"{third}.nii.gz")])
    assert "affine differs from the case's images (by up to 1.5 mm)" in third_problems
    assert "stored as float32, not an integer type" in third_problems
    assert "label values [4] are not in brats2023" in third_problems and "a brats2021 label map?" in third_problems
    assert report["other_files"] == [str(broken / "notes.txt")]

    # the CLI: exit status 1, one line per problem naming case and file, the report beside the folder
    result = subprocess.run([sys.executable, str(CHECK), "--predictions", str(broken), "--dataset_dir", str(data)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("ERROR - ") and ".nii.gz" in line]
    assert len(lines) == len(report["problems"])  # one line per problem
    assert f"ERROR - {first}: {broken / first}.nii.gz: no prediction" in result.stderr
    assert json.loads(report_path(broken).read_text())["problems"] == report["problems"]


def test_an_empty_map_is_counted_not_refused(predicted, tmp_path: Path) -> None:
    data, out = predicted["brats2021"]
    folder = _broken_copy(out, tmp_path / "empty")
    target = sorted(folder.glob("*.nii.gz"))[0]
    image = nib.load(target)
    nib.save(nib.Nifti1Image(np.zeros(image.shape, np.uint8), image.affine, image.header), target)
    report = check_submission(folder, inference_cases(discover(data)), CONVENTIONS["brats2021"])
    assert report["passed"] and report["empty_maps"] == [target.name[: -len(".nii.gz")]]
