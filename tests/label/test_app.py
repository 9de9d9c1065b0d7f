"""The app's parts in this process (no server): every layout's cases listed once with the item `run inference` gives
them (MSD's 4D files and a plain folder of 4D files too), and every tissue's display colour and SNOMED CT code."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import pytest
from conftest import BUNDLE, MODEL_SETTINGS, synthetic
from lib.bundle import bundle_scripts, served
from lib.datastore import BratsDatastore
from lib.infer import BratsInferTask, CaseFilesd
from pydicom.sr._concepts_dict import concepts
from scripts.four_channel_image import four_channel_image
from scripts.labels import CONVENTIONS, TISSUE_NAMES
from scripts.layouts import LAYOUTS
from scripts.pictures import TISSUE_COLOURS
from scripts.segments import CATEGORY, SEGMENTS, convention_segments
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
    snomed = {(code, meaning) for by_code in concepts["SCT"].values() for code, (meaning, _) in by_code.items()}
    newer = {"RC"}  # Post-surgical anatomy (245849007) is in pydicom 3's lists, not in this environment's pydicom 2
    for tissue, segment in SEGMENTS.items():
        assert all(0 <= c <= 1 for c in segment.color), tissue
        assert tissue in newer or segment.code in snomed, tissue
    assert CATEGORY in snomed
    assert {tissue: segment.color for tissue, segment in SEGMENTS.items()} == TISSUE_COLOURS  # the pictures' colours
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
