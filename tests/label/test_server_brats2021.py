"""A real MONAI Label server over a BraTS 2021 folder as downloaded: the datastore lists each case once, /infer answers
`run inference`'s label map on the grid of the image shown (also for an uploaded 4D file), 3D Slicer's MONAI Label
module gets named, coloured segments in the label values (BraTS 2021's 4 included) and its saved segmentation files are
stored in label values, bad requests get a one-line reason and the server goes on.

One server for the module; the tests run in file order, the bad requests first, so the good /infer after them also
shows the server kept serving.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pytest
import SimpleITK as sitk
from conftest import MODEL, SLICER_INFER_PARAMS, Reference, Server, make_app, ras_affine, slicer_segments, synthetic
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
    assert types == [segment.code.value for _, segment in convention_segments(CONVENTION).values()]
    assert types == ["6574001", "79654002", "C113842"]  # SNOMED CT Necrosis, Edema; NCIt Enhancing Lesion (CID 7168)
    sequences = [
        e["segmentAttribute"][key]
        for e in model["label_info"]
        for key in ("SegmentedPropertyCategoryCodeSequence", "SegmentedPropertyTypeCodeSequence")
    ]
    assert [s["CodingSchemeDesignator"] for s in sequences] == ["SCT", "SCT", "SCT", "SCT", "SCT", "NCIt"]
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


def test_3d_slicer_shows_the_label_map_as_named_coloured_segments(
    server: Server, reference: Reference, studies: Path, tmp_path: Path
) -> None:
    """Asked as 3D Slicer's MONAI Label module asks (its client, `.nrrd`), the answer is a `*.seg.nrrd` file on the
    shown grid holding `run inference`'s label map; loaded as a segmentation (the module's File Extension `.seg.nrrd`)
    its segments carry the convention's names and colours; read as a label map (any other File Extension),
    `label_names` still gives each served name its own voxels (BraTS 2021's enhancing tumour is 4, not the module's
    3rd value)."""
    result_file, params = server.slicer(tmp_path).infer(MODEL, GOOD, dict(SLICER_INFER_PARAMS))
    assert result_file.endswith(".seg.nrrd")  # what the module checks before loading it as a segmentation
    expected = np.asarray(nib.load(reference.prediction(GOOD)).dataobj)
    shown = nib.load(studies / GOOD / LAYOUT.file_name(GOOD, "flair"))
    image = sitk.ReadImage(result_file)
    assert image.GetSize() == shown.shape
    np.testing.assert_allclose(ras_affine(image), shown.affine, atol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image).transpose(), expected)

    segments = convention_segments(CONVENTION)
    truth = {name: (expected == value, list(segment.color)) for value, (name, segment) in segments.items()}
    assert all(mask.any() for mask, _ in truth.values())  # every segment has voxels: a misplaced one shows
    served = server.get("/info/")["labels"]
    loaded = slicer_segments(result_file, params["label_names"], served, ".seg.nrrd")
    assert list(loaded) == list(truth)  # in label-value order
    for name, (mask, color) in loaded.items():
        np.testing.assert_array_equal(mask, truth[name][0], err_msg=name)
        assert color == pytest.approx(truth[name][1], abs=1e-5), name
    read = slicer_segments(result_file, params["label_names"], served, ".nii.gz")
    assert list(read) == list(truth)
    for name, (mask, _) in read.items():
        np.testing.assert_array_equal(mask, truth[name][0], err_msg=name)


def test_a_segmentation_file_saved_by_3d_slicer_is_stored_in_label_values(
    server: Server, studies: Path, tmp_path: Path
) -> None:
    """With File Extension `.seg.nrrd` the module submits its segmentation node as Slicer saves it: label values of
    Slicer's own numbering, segment names in the header, `label_info` counting every segment of the node; the server
    stores the label by the header's names."""
    truth = nib.load(studies / GOOD / LAYOUT.file_name(GOOD, "seg"))
    values = np.asarray(truth.dataobj)
    order = ["enhancing tumour", "peritumoral edema", "necrotic / non-enhancing tumour core"]  # the editor's order
    value_of = {name: value for value, name in CONVENTION.labels.items()}
    lps = np.diag([-1.0, -1.0, 1.0])
    header = {
        "type": "uint8",
        "encoding": "gzip",
        "space": "left-posterior-superior",
        "kinds": ["domain", "domain", "domain"],
        "space directions": (lps @ truth.affine[:3, :3]).T,
        "space origin": lps @ truth.affine[:3, 3],
        "Segmentation_ReferenceImageExtentOffset": "0 0 0",
    }
    slicer_values, extent = np.zeros(values.shape, np.uint8), " ".join(f"0 {size - 1}" for size in values.shape)
    for index, name in enumerate(order):
        slicer_values[values == value_of[name]] = index + 1
        key = f"Segment{index}_"
        header |= {key + "ID": f"Segment_{index + 1}", key + "Name": name, key + "Color": "0.5 0.5 0.5"}
        header |= {key + "LabelValue": str(index + 1), key + "Layer": "0", key + "Extent": extent}
    label = tmp_path / "tmpa1b2c3.seg.nrrd"  # as Slicer names it (a temporary file with the File Extension)
    nrrd.write(str(label), slicer_values, header, index_order="F")
    label_info = [{"name": name, "idx": index} for index, name in enumerate(order, 2)]  # a helper segment first
    server.slicer(tmp_path).save_label(GOOD, str(label), params={"label_info": label_info})
    saved = nib.load(studies / "labels" / "final" / f"{GOOD}.nii.gz")
    np.testing.assert_array_equal(np.asarray(saved.dataobj), values)
    np.testing.assert_allclose(saved.affine, truth.affine, atol=1e-4)
