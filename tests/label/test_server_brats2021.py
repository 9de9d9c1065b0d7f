"""A real MONAI Label server over a BraTS 2021 folder as downloaded: the datastore lists each case once, /infer answers
`run inference`'s label map on the grid of the image shown (also for an uploaded 4D file), bad requests get a one-line
reason and the server goes on.

One server for the module; the tests run in file order, the bad requests first, so the good /infer after them also
shows the server kept serving.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import MODEL, Reference, Server, make_app, synthetic
from scripts.four_channel_image import four_channel_image
from scripts.labels import CONVENTIONS, label_names
from scripts.layouts import LAYOUTS
from scripts.segments import convention_segments

LAYOUT = LAYOUTS["brats2021"]
CONVENTION = CONVENTIONS["brats2021"]
GOOD, MISSING, CORRUPT = (LAYOUT.case_id(i) for i in range(3))


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three BraTS 2021 cases: one good, one without its T1 file, one whose T2 file is cut short."""
    folder = synthetic(tmp_path_factory.mktemp("brats2021"), "brats2021", 3)
    (folder / MISSING / LAYOUT.file_name(MISSING, "t1")).unlink()
    corrupt = folder / CORRUPT / LAYOUT.file_name(CORRUPT, "t2")
    corrupt.write_bytes(corrupt.read_bytes()[:2000])
    return folder


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_app(tmp_path_factory.mktemp("app") / "app")


@pytest.fixture(scope="module")
def reference(app: Path, studies: Path, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """`run inference` (the bundle's own, in .venv) on a dataset folder holding the good case alone."""
    alone = tmp_path_factory.mktemp("alone")
    shutil.copytree(studies / GOOD, alone / GOOD)
    return Reference(app / "model" / MODEL, alone, tmp_path_factory.mktemp("reference") / "predictions")


@pytest.fixture(scope="module")
def server(start_server, app: Path, studies: Path, reference: Reference) -> Server:
    return start_server(app, studies)  # while the reference runs


def label_map(body: bytes, path: Path) -> nib.Nifti1Image:
    path.write_bytes(body)
    return nib.load(path)


def test_info_lists_the_model_and_each_case_once_with_the_dataset_labels(server: Server, studies: Path) -> None:
    info = server.get("/info/")
    model = info["models"][MODEL]
    expected = {name: int(value) for value, name in label_names(CONVENTION).items() if value != "0"}
    assert model["labels"] == expected
    assert list(expected) == ["necrotic / non-enhancing tumour core", "peritumoral edema", "enhancing tumour"]
    assert list(expected.values()) == [1, 2, 4]
    assert info["labels"] == list(expected)  # what Slicer names its segments from, in label-value order
    colors = {name: list(segment.color) for name, segment in convention_segments(CONVENTION).values()}
    assert model["label_colors"] == colors
    types = [e["segmentAttribute"]["SegmentedPropertyTypeCodeSequence"]["CodeValue"] for e in model["label_info"]]
    assert types == ["6574001", "79654002", "108369006"]  # SNOMED CT Necrosis, Edema, Neoplasm
    assert model["config"]["flip_tta"] is False and model["config"]["sw_overlap"] == 0.5  # inference.json's own
    assert MODEL in info["trainers"]
    objects = server.get("/datastore/?output=all")["objects"]
    assert sorted(objects) == [GOOD, MISSING, CORRUPT]
    assert objects[GOOD]["image"]["info"]["name"] == f"{GOOD}/{LAYOUT.file_name(GOOD, 'flair')}"
    status, shown = server.request("GET", f"/datastore/image?image={GOOD}")
    assert status == 200 and shown == (studies / GOOD / LAYOUT.file_name(GOOD, "flair")).read_bytes()


def test_bad_requests_get_a_reason_and_the_server_goes_on(server: Server) -> None:
    status, body = server.infer("BraTS2021_09999")
    assert status == 404 and json.loads(body)["detail"].startswith("unknown image id 'BraTS2021_09999'")
    status, body = server.infer(MISSING)
    detail = json.loads(body)["detail"]
    assert status == 422 and detail.startswith(f"case {MISSING}: ") and LAYOUT.file_name(MISSING, "t1") in detail
    assert "\n" not in detail
    status, body = server.infer(CORRUPT)
    detail = json.loads(body)["detail"]
    assert status == 422 and LAYOUT.file_name(CORRUPT, "t2") in detail and "corrupt" in detail
    status, body = server.infer(GOOD, {"sw_overlap": 2})
    assert status == 422 and json.loads(body)["detail"] == "option sw_overlap: 2.0 is not in [0, 1)"
    assert server.process.poll() is None and MODEL in server.get("/info/")["models"]


def test_infer_answers_the_label_map_of_run_inference_on_the_shown_grid(
    server: Server, reference: Reference, studies: Path, tmp_path: Path
) -> None:
    status, body = server.infer(GOOD)
    assert status == 200, body[:2000]
    answer = label_map(body, tmp_path / "answer.nii.gz")
    expected = np.asarray(nib.load(reference.prediction(GOOD)).dataobj)
    assert set(np.unique(expected)) == {0, 1, 2, 4}  # a non-trivial map in BraTS 2021 values
    np.testing.assert_array_equal(np.asarray(answer.dataobj), expected)
    shown = nib.load(studies / GOOD / LAYOUT.file_name(GOOD, "flair"))
    assert answer.shape == shown.shape
    np.testing.assert_allclose(answer.affine, shown.affine, atol=1e-4)


def test_an_uploaded_4d_file_gets_the_same_label_map(
    server: Server, reference: Reference, studies: Path, tmp_path: Path
) -> None:
    """The 4D route: one file holding the four sequences (scripts/four_channel_image.py), sent with the request."""
    files = [str(studies / GOOD / LAYOUT.file_name(GOOD, suffix)) for suffix in LAYOUT.suffixes]
    nib.save(four_channel_image({"case_id": GOOD, "image": files}), tmp_path / f"{GOOD}.nii.gz")
    status, body = server.multipart("POST", f"/infer/{MODEL}?output=image", {}, {"file": tmp_path / f"{GOOD}.nii.gz"})
    assert status == 200, body[:2000]
    answer = np.asarray(label_map(body, tmp_path / "answer.nii.gz").dataobj)
    np.testing.assert_array_equal(answer, np.asarray(nib.load(reference.prediction(GOOD)).dataobj))


def test_a_label_naming_an_unserved_segment_or_off_the_grid_is_refused(
    server: Server, studies: Path, tmp_path: Path
) -> None:
    shown = nib.load(studies / GOOD / LAYOUT.file_name(GOOD, "flair"))
    label = tmp_path / "label.nii.gz"
    nib.save(nib.Nifti1Image(np.ones(shown.shape, np.uint8), shown.affine), label)
    fields = {"params": json.dumps({"label_info": [{"name": "tumour", "idx": 1}]})}
    status, body = server.multipart("PUT", f"/datastore/label?image={GOOD}&tag=final", fields, {"label": label})
    assert status == 422 and json.loads(body)["detail"].startswith("segment 'tumour' is not one of the served labels")
    nib.save(nib.Nifti1Image(np.full(shown.shape, 3, np.uint8), shown.affine), label)  # 3: not a BraTS 2021 value
    status, body = server.multipart("PUT", f"/datastore/label?image={GOOD}&tag=final", {}, {"label": label})
    assert status == 422 and json.loads(body)["detail"].startswith("label values [3] are not among the served labels")
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.uint8), shown.affine), label)
    status, body = server.multipart("PUT", f"/datastore/label?image={GOOD}&tag=final", {}, {"label": label})
    assert status == 422 and json.loads(body)["detail"].startswith("label of shape (8, 8, 8); the case's grid is")
    assert not (studies / "labels" / "final" / f"{GOOD}.nii.gz").exists()
