"""The app's parts in this process (no server): every layout's cases listed once with the item `run inference` gives
them (MSD's 4D files and a plain folder of 4D files too), every tissue's display colour and DICOM code, and 3D
Slicer's segmentation files (`.seg.nrrd`) written on any grid and read from the forms Slicer saves."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import BUNDLE, MODEL_SETTINGS, ras_affine, synthetic
from lib.bundle import bundle_scripts, served
from lib.datastore import BratsDatastore, RequestError
from lib.infer import BratsInferTask, CaseFilesd
from lib.seg_nrrd import read_segmentation
from monai.data import MetaTensor
from pydicom.sr._concepts_dict import concepts
from scripts.four_channel_image import four_channel_image
from scripts.labels import CONVENTIONS, TISSUE_NAMES
from scripts.layouts import LAYOUTS
from scripts.segments import CATEGORY, SEGMENTS, SNOMED, convention_segments
from served_bundle import serve_bundle

MSD = LAYOUTS["msd"]


@pytest.fixture(scope="module")
def bundle():
    return bundle_scripts(BUNDLE)


@pytest.fixture(scope="module")
def msd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MSD Task01 as downloaded: dataset.json, one labelled case in imagesTr/labelsTr, one in imagesTs."""
    return synthetic(tmp_path_factory.mktemp("msd"), "msd", 1, 1)


def served_cases(dataset_info: dict) -> list[dict]:
    """The cases as the bundle's inference.json lists them for `run inference` (what the served app calls)."""
    return served(BUNDLE, "case_screen#cases", dataset_info)


def datastore(studies: Path, bundle, convention: str, sequence: str = "FLAIR") -> BratsDatastore:
    labels = {name: value for value, name in CONVENTIONS[convention].labels.items()}
    return BratsDatastore(str(studies), bundle, labels, sequence=sequence, auto_reload=False)


def test_msd_cases_are_listed_once_as_their_4d_files(msd: Path, bundle) -> None:
    store = datastore(msd, bundle, "msd")
    ids = [MSD.case_id(0), MSD.case_id(1)]
    assert sorted(store.list_images()) == ids
    assert store.get_image_uri(ids[0]) == str((msd / "imagesTr" / f"{ids[0]}.nii.gz").resolve())
    assert store.get_image_uri(ids[1]) == str((msd / "imagesTs" / f"{ids[1]}.nii.gz").resolve())
    item = CaseFilesd("image", bundle, served_cases)({"image": store.get_image_uri(ids[0])})
    assert item == {"image": store.get_image_uri(ids[0]), "channel_indices": list(MSD.channel_indices),
                    "label_convention": "msd"}  # fmt: skip
    assert datastore(msd, bundle, "msd").list_images() == store.list_images()  # reread from datastore_v2.json


def test_a_folder_of_4d_files_is_listed_in_network_order(msd: Path, bundle, tmp_path: Path) -> None:
    """The route of scripts/four_channel_image.py: 4D files in the network's channel order, nothing else."""
    case = bundle.cases.discover(msd)["training"][0]
    nib.save(four_channel_image(case), tmp_path / "case.nii.gz")
    store = datastore(tmp_path, bundle, "brats2021")
    assert store.list_images() == ["case"]
    item = CaseFilesd("image", bundle, served_cases)({"image": store.get_image_uri("case")})
    assert item["channel_indices"] == [0, 1, 2, 3] and item["label_convention"] == "brats2021"


def brats2021_names(folder: Path) -> tuple[str, str]:
    """Two BraTS 2021 cases by their file names only (empty files): the second has no FLAIR."""
    layout = LAYOUTS["brats2021"]
    complete, incomplete = layout.case_id(0), layout.case_id(1)
    for case, suffixes in ((complete, layout.suffixes), (incomplete, layout.suffixes[1:])):
        (folder / case).mkdir(parents=True)
        for suffix in suffixes:
            (folder / case / layout.file_name(case, suffix)).write_bytes(b"")
    return complete, incomplete


def test_the_shown_sequence_is_a_choice(bundle, tmp_path: Path) -> None:
    complete, _ = brats2021_names(tmp_path)
    store = datastore(tmp_path, bundle, "brats2021", sequence="T1ce")
    assert store.get_image_uri(complete).endswith(LAYOUTS["brats2021"].file_name(complete, "t1ce"))
    with pytest.raises(ValueError, match="sequence 'T1c' is not one of FLAIR, T1ce, T1, T2"):
        datastore(tmp_path, bundle, "brats2021", sequence="T1c")


def test_a_case_missing_a_sequence_is_listed_and_refused_by_name(bundle, tmp_path: Path) -> None:
    layout = LAYOUTS["brats2021"]
    complete, incomplete = brats2021_names(tmp_path)
    store = datastore(tmp_path, bundle, "brats2021")
    assert sorted(store.list_images()) == [complete, incomplete]
    assert store.get_image_uri(incomplete).endswith(layout.file_name(incomplete, "t1ce"))  # shown instead
    with pytest.raises(Exception, match=f"case {incomplete}: .*{layout.file_name(incomplete, 'flair')}") as error:
        CaseFilesd("image", bundle, served_cases)({"image": store.get_image_uri(incomplete)})
    assert error.value.status_code == 422


def test_every_tissue_has_a_colour_and_a_dicom_code() -> None:
    assert set(SEGMENTS) == set(TISSUE_NAMES)
    newer = {"RC"}  # Post-surgical anatomy (245849007) is in pydicom 3's lists, not in this environment's pydicom 2
    for tissue, segment in SEGMENTS.items():
        assert all(0 <= c <= 1 for c in segment.color), tissue
        for code in (segment.code, segment.category):
            known = {(value, meaning) for by in concepts[code.scheme].values() for value, (meaning, _) in by.items()}
            assert (code.value, code.meaning) in known or (tissue in newer and code == segment.code), (tissue, code)
    assert CATEGORY == ("49755003", "Morphologically Abnormal Structure", SNOMED)
    for name, convention in CONVENTIONS.items():
        segments = convention_segments(convention)
        assert list(segments) == sorted(convention.labels), name
        colors = [segment.color for _, segment in segments.values()]
        assert len(set(colors)) == len(colors), f"{name}: two tissues share a colour"


def test_inference_options_reach_the_bundle_config(bundle, tmp_path: Path) -> None:
    """flip_tta and sw_overlap set inference.json's keys per request; fold_ensemble, offered once fold models exist,
    serves the bundle's own ensemble of them (inference_ensemble.json)."""
    served = serve_bundle(tmp_path, MODEL_SETTINGS)
    task = BratsInferTask(str(served), {}, bundle, CONVENTIONS["brats2021"])
    assert "fold_ensemble" not in task.config()
    request = {**task.config(), "flip_tta": True, "sw_overlap": 0.25, "device": "cpu"}
    task.pre_transforms(request)
    inferer = task.inferer(request)
    assert inferer.flip_tta is True and inferer.overlap == 0.25
    task.pre_transforms({**request, "flip_tta": "false"})
    assert task.inferer(request).flip_tta is False
    for fold in (0, 1):
        (served / "models" / f"fold{fold}").mkdir()
        shutil.copy(served / "models" / "model.pt", served / "models" / f"fold{fold}" / "model.pt")
    task = BratsInferTask(str(served), {}, bundle, CONVENTIONS["brats2021"])
    assert task.config()["fold_ensemble"] is False
    ensemble = task._get_network("cpu", {**task.config(), "fold_ensemble": True})  # as a request merges them
    assert type(ensemble).__name__ == "FoldEnsemble" and len(ensemble.members) == 2  # the bundle's class
    assert type(task._get_network("cpu", task.config())).__name__ == "SwinUNETR"


def oblique_affine() -> np.ndarray:
    """A RAS affine rotated about two axes, with three spacings and an origin: a mix-up of axes or of RAS and LPS
    shows in it."""
    rotation_z = np.array([[0.8, -0.6, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]])
    rotation_x = np.array([[1.0, 0.0, 0.0], [0.0, 0.96, -0.28], [0.0, 0.28, 0.96]])
    affine = np.eye(4)
    affine[:3, :3] = rotation_z @ rotation_x @ np.diag([0.9, 1.2, 2.5])
    affine[:3, 3] = [-91.0, 12.5, 30.0]
    return affine


def test_an_nrrd_answer_is_a_segmentation_file_on_the_label_maps_grid(bundle, tmp_path: Path) -> None:
    """`.nrrd` (what 3D Slicer's module asks for) and `.seg.nrrd` answers: one layer of label values with a segment per
    label value (name, colour), on the prediction's grid as ITK (Slicer) reads it, oblique grids included."""
    task = BratsInferTask(str(serve_bundle(tmp_path, MODEL_SETTINGS)), {}, bundle, CONVENTIONS["brats2021"])
    label_map = np.random.default_rng(0).choice([0, 1, 2, 4], size=(1, 9, 8, 7)).astype(np.uint8)
    affine = oblique_affine()
    for extension in (".nrrd", ".seg.nrrd"):
        pred = MetaTensor(torch.as_tensor(label_map), affine=torch.as_tensor(affine))
        path, _ = task.writer({"pred": pred, "result_extension": extension})
        assert path.endswith(".seg.nrrd"), extension
        image = sitk.ReadImage(path)
        np.testing.assert_allclose(ras_affine(image), affine, atol=1e-6)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(image).transpose(), label_map[0])
        header = nrrd.read_header(path)
        segments = convention_segments(CONVENTIONS["brats2021"])
        for index, (value, (name, segment)) in enumerate(segments.items()):
            key = f"Segment{index}_"
            assert (header[key + "Name"], header[key + "LabelValue"], header[key + "Layer"]) == (name, str(value), "0")
            assert [float(c) for c in header[key + "Color"].split()] == pytest.approx(segment.color, abs=1e-5)
        assert f"Segment{len(segments)}_ID" not in header
        masks, read_affine = read_segmentation(path)
        assert {name: mask.sum() for name, mask in masks.items()} == {
            name: (label_map[0] == value).sum() for value, (name, _) in segments.items()
        }
        np.testing.assert_allclose(read_affine, affine, atol=1e-6)


def slicer_file(path: Path, affine: np.ndarray, layers: np.ndarray, segments: list[tuple[str, int, int]]) -> Path:
    """A segmentation file as Slicer saves one whose segments overlap or may: a list of 3D layers (the list axis
    first), each segment (name, layer, label value) in the header."""
    lps = np.diag([-1.0, -1.0, 1.0])
    header = {
        "type": "uint8",
        "encoding": "gzip",
        "space": "left-posterior-superior",
        "kinds": ["list", "domain", "domain", "domain"],
        "space directions": np.vstack([np.full(3, np.nan), (lps @ affine[:3, :3]).T]),
        "space origin": lps @ affine[:3, 3],
    }
    for index, (name, layer, value) in enumerate(segments):
        key = f"Segment{index}_"
        header |= {key + "ID": f"Segment_{index}", key + "Name": name, key + "Color": "1 0 0"}
        header |= {key + "Layer": str(layer), key + "LabelValue": str(value)}
    nrrd.write(str(path), layers.astype(np.uint8), header, index_order="F")
    return path


def test_a_segmentation_file_is_stored_by_its_segment_names(msd: Path, bundle, tmp_path: Path) -> None:
    """Layers and Slicer's own label values do not matter, names do; Slicer's helper segments are left out; an
    unserved name or two segments on one voxel are refused by name."""
    studies = tmp_path / "studies"
    shutil.copytree(msd, studies)
    store, case = datastore(studies, bundle, "msd"), MSD.case_id(0)
    truth = nib.load(studies / "labelsTr" / f"{case}.nii.gz")
    values = np.asarray(truth.dataobj)
    assert set(np.unique(values)) == {0, 1, 2, 3}
    layers = np.zeros((2, *values.shape), np.uint8)
    layers[0][values == 3], layers[0][values == 1], layers[1][values == 2] = 7, 2, 1  # enhancing, edema; non-enh.
    segments = [("enhancing tumour", 0, 7), ("non-enhancing tumour", 1, 1), ("edema", 0, 2), ("background", 1, 5)]
    label = slicer_file(tmp_path / "a.seg.nrrd", truth.affine, layers, segments)
    store.save_label(case, str(label), "final", {"label_info": [{"name": "edema", "idx": 1}]})  # not used: named
    saved = nib.load(studies / "labels" / "final" / f"{case}.nii.gz")
    np.testing.assert_array_equal(np.asarray(saved.dataobj), values)
    np.testing.assert_allclose(saved.affine, truth.affine, atol=1e-4)

    # without Allow Overlapping Segmentations Slicer saves a label map under the same name: numbered by label_info
    plain = tmp_path / "d.seg.nrrd"
    header = {"space": "left-posterior-superior", "space origin": np.diag([-1.0, -1.0, 1.0]) @ truth.affine[:3, 3]}
    header["space directions"] = (np.diag([-1.0, -1.0, 1.0]) @ truth.affine[:3, :3]).T
    nrrd.write(str(plain), np.choose(values, [0, 3, 1, 2]).astype(np.uint8), header, index_order="F")
    order = [
        {"name": "non-enhancing tumour", "idx": 1},
        {"name": "enhancing tumour", "idx": 2},
        {"name": "edema", "idx": 3},
    ]
    (studies / "labels" / "final" / f"{case}.nii.gz").unlink()
    store.save_label(case, str(plain), "final", {"label_info": order})
    np.testing.assert_array_equal(np.asarray(nib.load(studies / "labels" / "final" / f"{case}.nii.gz").dataobj), values)

    unknown = slicer_file(tmp_path / "b.seg.nrrd", truth.affine, layers, [("tumour", 0, 7)])
    with pytest.raises(RequestError, match="segment 'tumour' is not one of the served labels"):
        store.save_label(case, str(unknown), "final", {})
    layers[1][values == 3] = 1  # non-enhancing tumour over the enhancing tumour too
    overlapping = slicer_file(tmp_path / "c.seg.nrrd", truth.affine, layers, segments)
    with pytest.raises(
        RequestError, match=f"segment 'non-enhancing tumour' overlaps another in {(values == 3).sum()} voxels"
    ):
        store.save_label(case, str(overlapping), "final", {})
