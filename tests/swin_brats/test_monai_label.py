"""The one-image-per-case routes of inference.json that MONAI Label and 3D Slicer use: a folder of 4D files (written
by scripts/four_channel_image.py) predicted like the BraTS folder it came from, the channel order and label convention
items, and the label names metadata.json gives. The real MONAI Label server is tested in tests/label (label/.venv)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import BUNDLE, run_bundle
from scripts.labels import CONVENTIONS, UNSCANNED_CONVENTION, label_names
from scripts.layouts import LAYOUTS

sys.path.insert(0, str(BUNDLE.parent / "tests"))
from served_bundle import serve_bundle  # noqa: E402

# The checkpoint's own settings, written into the copy's inference.json as a user serving such a model would.
MODEL_SETTINGS = {"feature_size": 12, "roi_size": [64, 64, 64], "amp": False}
MSD_CHANNEL_INDICES = LAYOUTS["msd"].channel_indices


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the bundle with a crafted feature-size-12 models/model.pt and inference.json set to match it."""
    return serve_bundle(tmp_path_factory.mktemp("served"), MODEL_SETTINGS)


def four_channel_files(data: Path, output_dir: Path) -> Path:
    """scripts/four_channel_image.py as a user runs it."""
    script = BUNDLE / "scripts" / "four_channel_image.py"
    subprocess.run(
        [sys.executable, str(script), "--dataset_dir", str(data), "--output_dir", str(output_dir)], check=True
    )
    return output_dir


def predict(served: Path, dataset: Path, output: Path) -> dict[str, np.ndarray]:
    """`run inference` over `dataset`: case id -> label map."""
    run_bundle("inference", "--config_file", "configs/inference.json", "--dataset_dir", str(dataset),
               "--output_dir", str(output), "--num_workers", "0", "--progress_bar", "False", cwd=served)  # fmt: skip
    return {p.name.removesuffix(".nii.gz"): np.asarray(nib.load(p).dataobj) for p in sorted(output.glob("*.nii.gz"))}


def test_a_folder_of_4d_files_is_predicted_like_its_brats_folder(served: Path, make_dataset, tmp_path: Path) -> None:
    data = make_dataset("brats2021", 1, 0)
    from_folders = predict(served, data, tmp_path / "folders")
    from_4d = predict(served, four_channel_files(data, tmp_path / "4d"), tmp_path / "from_4d")
    assert list(from_4d) == list(from_folders) and len(from_4d) == 1
    values = set(np.unique(np.concatenate([m.ravel() for m in from_4d.values()])))
    assert len(values) > 2 and values <= {0, 1, 2, 4}  # non-trivial maps in BraTS 2021 values
    for case_id, label in from_folders.items():
        np.testing.assert_array_equal(from_4d[case_id], label)


def test_four_channel_image_puts_msd_channels_in_the_network_order(make_dataset, tmp_path: Path) -> None:
    """The same synthetic cases in the MSD layout (one 4D file, FLAIR, T1w, t1gd, T2w) and the BraTS 2021 one."""
    msd = four_channel_files(make_dataset("msd", 2, 0), tmp_path / "msd")
    brats = four_channel_files(make_dataset("brats2021", 2, 0), tmp_path / "brats")
    msd_files = sorted(msd.glob("*.nii.gz"))
    assert len(msd_files) == 2
    for msd_file, brats_file in zip(msd_files, sorted(brats.glob("*.nii.gz")), strict=True):
        msd_image, brats_image = nib.load(msd_file), nib.load(brats_file)
        assert msd_image.shape[-1] == 4
        np.testing.assert_array_equal(np.asarray(msd_image.dataobj), np.asarray(brats_image.dataobj))
        np.testing.assert_allclose(msd_image.affine, brats_image.affine, atol=1e-5)


def test_metadata_names_the_values_of_the_written_label_map() -> None:
    """MONAI Label and Slicer name segments from outputs.pred.channel_def: the values `auto` writes unscanned."""
    metadata = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    channel_def = metadata["network_data_format"]["outputs"]["pred"]["channel_def"]
    assert channel_def == label_names(CONVENTIONS[UNSCANNED_CONVENTION])


def test_channel_order_comes_from_the_case_unless_set() -> None:
    from scripts.transforms import ReorderChannelsd

    image = torch.arange(4.0).reshape(4, 1, 1, 1)
    scanned = {"image": image, "channel_indices": list(MSD_CHANNEL_INDICES)}
    assert ReorderChannelsd("image")(scanned)["image"].flatten().tolist() == [0.0, 2.0, 1.0, 3.0]
    assert "channel_indices" not in ReorderChannelsd("image")(scanned)  # consumed, never collated
    assert ReorderChannelsd("image")({"image": image})["image"].flatten().tolist() == [0.0, 1.0, 2.0, 3.0]
    explicit = ReorderChannelsd("image", [3, 2, 1, 0])(scanned)["image"]
    assert explicit.flatten().tolist() == [3.0, 2.0, 1.0, 0.0]
    for bad in ([0, 1, 1, 3], [0, 1, 2], "msd"):
        with pytest.raises(ValueError, match="channel_indices must be 'auto' or a permutation of 0-3"):
            ReorderChannelsd("image", bad)


def test_label_convention_auto_comes_from_the_case_else_brats2021() -> None:
    from scripts.labels import RegionsToLabelsd

    enhancing = torch.ones(3, 1, 1, 1)  # TC, WT and ET: painted as the convention's ET value
    assert int(RegionsToLabelsd("pred", "auto")({"pred": enhancing})["pred"].max()) == 4
    assert int(RegionsToLabelsd("pred", "auto")({"pred": enhancing, "label_convention": "msd"})["pred"].max()) == 3
    assert int(RegionsToLabelsd("pred", "brats2021")({"pred": enhancing, "label_convention": "msd"})["pred"].max()) == 4
    with pytest.raises(ValueError, match="Unknown label_convention 'brats2019'"):
        RegionsToLabelsd("pred", "brats2019")
