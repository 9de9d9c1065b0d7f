"""inference.json as MONAI Label's `monaibundle` app reads it: only `bundle_root` set, nothing scanned, one 4D file."""

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
from monai.bundle import ConfigParser
from monai.transforms import LoadImaged, SaveImaged
from scripts.labels import CONVENTIONS, UNSCANNED_CONVENTION, label_names
from scripts.layouts import CHANNELS, LAYOUTS

sys.path.insert(0, str(BUNDLE.parent / "tests"))
from served_bundle import serve_bundle  # noqa: E402

# The checkpoint's own settings, written into the copy's inference.json as a user serving such a model would:
# MONAI Label overrides nothing but bundle_root.
MODEL_SETTINGS = {"feature_size": 12, "roi_size": [64, 64, 64], "amp": False}
SUFFIXES = dict(zip(CHANNELS, LAYOUTS["brats2021"].suffixes, strict=True))  # FLAIR -> flair, ...
MSD_CHANNEL_INDICES = LAYOUTS["msd"].channel_indices


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the bundle with a crafted feature-size-12 models/model.pt and inference.json set to match it."""
    return serve_bundle(tmp_path_factory.mktemp("served"), MODEL_SETTINGS)


@pytest.fixture(scope="module")
def case(make_dataset) -> dict:
    data = make_dataset("brats2021", 1, 0)
    (folder,) = [p for p in data.iterdir() if p.is_dir()]
    return {"data": data, "id": folder.name, "folder": folder}


def write_4d(case: dict, order: tuple[str, ...], path: Path) -> Path:
    """The case's four modality files as one 4D NIfTI (x, y, z, channel) with channels in `order`."""
    images = [nib.load(case["folder"] / f"{case['id']}_{SUFFIXES[name]}.nii.gz") for name in order]
    stacked = np.stack([np.asarray(image.dataobj) for image in images], axis=-1)
    nib.save(nib.Nifti1Image(stacked, images[0].affine), path)
    return path


def four_channel_files(data: Path, output_dir: Path) -> Path:
    """scripts/four_channel_image.py as a user runs it."""
    script = BUNDLE / "scripts" / "four_channel_image.py"
    subprocess.run(
        [sys.executable, str(script), "--dataset_dir", str(data), "--output_dir", str(output_dir)], check=True
    )
    return output_dir


def monai_label_predict(bundle: Path, image: Path, **overrides) -> np.ndarray:
    """What MONAI Label 0.8's BundleInferTask does with inference.json: parse it with only `bundle_root` set, load
    `network_def` + models/model.pt, take `preprocessing` (its LoadImaged returning metadata too), `inferer` and
    `postprocessing` without SaveImaged, and run them on {"image": path}."""
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser.config.update({"bundle_root": str(bundle), **overrides})
    network = parser.get_parsed_content("network_def", instantiate=True)
    checkpoint = torch.load(bundle / "models" / "model.pt", map_location="cpu", weights_only=True)
    network.load_state_dict(checkpoint.get("model", checkpoint))
    network.eval()
    pre = list(parser.get_parsed_content("preprocessing", instantiate=True).transforms)
    for transform in pre:
        if isinstance(transform, LoadImaged):
            transform._loader.image_only = False  # as MONAI Label does (monailabel/tasks/infer/bundle.py)
    post = [t for t in parser.get_parsed_content("postprocessing").transforms if not isinstance(t, SaveImaged)]
    inferer = parser.get_parsed_content("inferer", instantiate=True)
    data = {"image": str(image)}
    for transform in pre:
        data = transform(data)
    with torch.no_grad():
        data["pred"] = inferer(data["image"][None], network)[0]
    for transform in post:
        data = transform(data)
    assert not Path(parser["dataset_dir"]).exists()  # nothing needed the default dataset folder
    return np.asarray(data["pred"]).squeeze(0)


@pytest.fixture(scope="module")
def bundle_prediction(served: Path, case: dict) -> np.ndarray:
    """The bundle's own `run inference` on the case's BraTS folder."""
    run_bundle("inference", "--config_file", "configs/inference.json", "--dataset_dir", str(case["data"]),
               "--num_workers", "0", "--progress_bar", "False", cwd=served)  # fmt: skip
    return np.asarray(nib.load(served / "eval" / "predictions" / f"{case['id']}.nii.gz").dataobj)


def test_a_4d_file_gives_the_label_map_of_run_inference(
    served: Path, case: dict, bundle_prediction: np.ndarray, tmp_path: Path
) -> None:
    image = four_channel_files(case["data"], tmp_path) / f"{case['id']}.nii.gz"
    np.testing.assert_array_equal(
        nib.load(image).get_fdata(), nib.load(write_4d(case, CHANNELS, tmp_path / "x.nii.gz")).get_fdata()
    )
    predicted = monai_label_predict(served, image)
    assert predicted.shape == bundle_prediction.shape
    assert set(np.unique(bundle_prediction)) == {0, 1, 2, 4}  # a non-trivial map in BraTS 2021 values
    np.testing.assert_array_equal(predicted, bundle_prediction)


def test_channel_indices_reads_a_4d_file_in_another_order(
    served: Path, case: dict, bundle_prediction: np.ndarray, tmp_path: Path
) -> None:
    msd_order = tuple(CHANNELS[MSD_CHANNEL_INDICES.index(i)] for i in range(len(CHANNELS)))  # FLAIR, T1, T1ce, T2
    assert msd_order == ("FLAIR", "T1", "T1ce", "T2")
    image = write_4d(case, msd_order, tmp_path / "msd_order.nii.gz")
    np.testing.assert_array_equal(
        monai_label_predict(served, image, channel_indices=list(MSD_CHANNEL_INDICES)), bundle_prediction
    )
    assert not np.array_equal(monai_label_predict(served, image), bundle_prediction)  # the order matters


def test_label_convention_key_sets_the_values_written(served: Path, case: dict, tmp_path: Path) -> None:
    image = write_4d(case, CHANNELS, tmp_path / "case.nii.gz")
    assert set(np.unique(monai_label_predict(served, image, label_convention="brats2023"))) == {0, 1, 2, 3}


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
