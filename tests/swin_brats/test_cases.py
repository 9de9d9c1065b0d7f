"""Case discovery for the three layouts, folds, datalist files and the prepare_datalist CLI."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BUNDLE
from scripts.cases import discover
from scripts.datalist import dataset_info, inference_cases
from scripts.folds import fold_cases
from scripts.layouts import DatasetLayoutError, layout_of_file
from scripts.naming import case_id_from_path, output_name

EXPECTED = {
    "brats2021": ("BraTS2021_00000", ["flair", "t1ce", "t1", "t2"], [0, 1, 2, 3]),
    "brats2023": ("BraTS-GLI-00000-000", ["t2f", "t1c", "t1n", "t2w"], [0, 1, 2, 3]),
    "msd": ("BRATS_001", None, [0, 2, 1, 3]),
}


@pytest.mark.parametrize("layout", list(EXPECTED))
def test_discovers_each_layout(make_dataset, layout: str) -> None:
    root = make_dataset(layout)
    info = discover(root, num_folds=3, seed=0)
    first_id, modalities, channel_indices = EXPECTED[layout]
    assert info["layout"] == layout and info["label_convention"] == layout
    assert info["channel_indices"] == channel_indices
    assert len(info["training"]) == 3 and len(info["testing"]) == 1
    first = next(c for c in info["training"] if c["case_id"] == first_id)
    if modalities is None:
        assert first["image"].endswith("imagesTr/BRATS_001.nii.gz")
        assert info["testing"][0]["image"].endswith("imagesTs/BRATS_004.nii.gz")
    else:  # one file per modality, in the documented network order FLAIR, T1ce, T1, T2
        suffixes = [Path(p).name[len(first_id) + 1 : -len(".nii.gz")] for p in first["image"]]
        assert suffixes == modalities
    assert Path(first["label"]).is_file()
    assert sorted(c["fold"] for c in info["training"]) == [0, 1, 2]
    assert "label" not in info["testing"][0]


def test_folds_are_deterministic_for_a_seed(tmp_path: Path) -> None:
    for index in range(10):
        (tmp_path / f"BraTS2021_{index:05d}").mkdir()
        for mod in ("flair", "t1ce", "t1", "t2", "seg"):
            (tmp_path / f"BraTS2021_{index:05d}" / f"BraTS2021_{index:05d}_{mod}.nii.gz").touch()
    folds = {seed: [c["fold"] for c in discover(tmp_path, 5, seed)["training"]] for seed in (0, 0, 1)}
    assert folds[0] == [c["fold"] for c in discover(tmp_path, 5, 0)["training"]]
    assert folds[0] != folds[1]
    assert sorted(folds[0]) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_incomplete_cases_are_all_named(tmp_path: Path) -> None:
    for case, mods in (("BraTS2021_00001", ["flair", "t1"]), ("BraTS2021_00002", ["flair", "t1ce", "t1"])):
        (tmp_path / case).mkdir()
        for mod in mods:
            (tmp_path / case / f"{case}_{mod}.nii.gz").touch()
    with pytest.raises(DatasetLayoutError) as error:
        discover(tmp_path)
    message = str(error.value)
    assert "2 incomplete case(s)" in message
    assert "BraTS2021_00001_t1ce.nii.gz, BraTS2021_00001_t2.nii.gz" in message
    assert "BraTS2021_00002: missing BraTS2021_00002_t2.nii.gz" in message


def test_empty_and_mixed_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="No cases found"):
        discover(tmp_path)
    (tmp_path / "a_flair.nii.gz").touch()
    (tmp_path / "b-t2f.nii.gz").touch()
    with pytest.raises(DatasetLayoutError, match="mixes BraTS 2021 and BraTS 2023"):
        discover(tmp_path)


def test_msd_macos_stub_files_are_ignored(make_dataset, tmp_path: Path) -> None:
    root = make_dataset("msd")
    stub = root / "imagesTr" / "._BRATS_001.nii.gz"
    stub.write_bytes(b"\x00")
    try:
        assert all(not Path(c["image"]).name.startswith("._") for c in discover(root)["training"])
    finally:
        stub.unlink()


def test_prepare_datalist_cli_writes_relative_paths_that_load_back(make_dataset, tmp_path: Path) -> None:
    root = make_dataset("brats2023")
    output = tmp_path / "lists" / "datalist.json"
    command = [sys.executable, str(BUNDLE / "scripts" / "prepare_datalist.py"), "--dataset_dir", str(root)]
    result = subprocess.run([*command, "--output", str(output), "--num_folds", "3"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "layout brats2023" in result.stdout and "3 labelled" in result.stdout and "1 unlabelled" in result.stdout
    stored = json.loads(output.read_text())
    assert stored["label_convention"] == "brats2023" and stored["num_folds"] == 3
    assert all(not Path(p).is_absolute() for c in stored["training"] for p in c["image"])
    assert output.read_text().startswith('{\n    "layout"')  # 4-space pretty JSON
    loaded = dataset_info(str(root), str(output))
    discovered = discover(root, 3, 0)
    assert loaded["training"] == discovered["training"] and loaded["testing"] == discovered["testing"]


def test_prepare_datalist_cli_reports_a_bad_folder(tmp_path: Path) -> None:
    script = str(BUNDLE / "scripts" / "prepare_datalist.py")
    output = tmp_path / "out.json"
    result = subprocess.run(
        [sys.executable, script, "--dataset_dir", str(tmp_path), "--output", str(output)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "No cases found" in result.stderr and "Traceback" not in result.stderr
    assert not output.exists()


def test_fold_split_and_inference_cases(make_dataset) -> None:
    info = discover(make_dataset("brats2021"), num_folds=3, seed=0)
    train, val = fold_cases(info, 0, "train"), fold_cases(info, 0, "val")
    train_ids, val_ids = [c["case_id"] for c in train], [c["case_id"] for c in val]
    assert len(train) == 2 and len(val) == 1
    assert set(train_ids).isdisjoint(val_ids)  # no case is both trained on and validated on
    assert sorted(train_ids + val_ids) == sorted(c["case_id"] for c in info["training"])  # together: every case
    assert all(c["fold"] == 0 for c in val) and all(c["fold"] != 0 for c in train)
    with pytest.raises(DatasetLayoutError, match="val split of fold 7 is empty"):
        fold_cases(info, 7, "val")
    cases = inference_cases(info)
    assert len(cases) == 4 and all(set(c) == {"case_id", "image", "channel_indices", "label_convention"} for c in cases)
    # what inference.json's `auto` channel order and label convention read per case
    assert all(c["channel_indices"] == [0, 1, 2, 3] and c["label_convention"] == "brats2021" for c in cases)
    msd = inference_cases(discover(make_dataset("msd"), num_folds=3, seed=0))
    assert all(c["channel_indices"] == [0, 2, 1, 3] and c["label_convention"] == "msd" for c in msd)


@pytest.mark.parametrize(
    ("path", "case_id"),
    [
        ("/d/BraTS2021_01146/BraTS2021_01146_flair.nii.gz", "BraTS2021_01146"),
        ("/d/BraTS-GLI-00000-000/BraTS-GLI-00000-000-t2f.nii.gz", "BraTS-GLI-00000-000"),
        ("/d/imagesTs/BRATS_485.nii.gz", "BRATS_485"),
        ("/d/x/BRATS_485.nii", "BRATS_485"),
    ],
)
def test_case_ids_and_output_names(path: str, case_id: str) -> None:
    assert case_id_from_path(path) == case_id
    assert output_name({"filename_or_obj": path}, None)["subject"] == case_id


def test_a_files_layout_from_its_name_and_place(make_dataset) -> None:
    assert layout_of_file("/d/BraTS2021_01146/BraTS2021_01146_flair.nii.gz") == "brats2021"
    assert layout_of_file("/d/BraTS-GLI-00000-000/BraTS-GLI-00000-000-seg.nii.gz") == "brats2023"
    assert layout_of_file(make_dataset("msd") / "imagesTr" / "BRATS_001.nii.gz") == "msd"
    assert layout_of_file("/d/x/BRATS_485.nii") is None  # a lone 4D file: no dataset.json beside it
