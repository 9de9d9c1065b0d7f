"""A real MONAI Label server over a BraTS 2023 folder: its label names and values, `run inference`'s label map, and the
annotate-and-train loop (a label saved as 3D Slicer saves it, one training epoch, a new model the next /infer uses).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import MODEL, Reference, Server, make_app, synthetic
from scripts.labels import CONVENTIONS
from scripts.layouts import LAYOUTS

LAYOUT = LAYOUTS["brats2023"]
CONVENTION = CONVENTIONS["brats2023"]
CASE = LAYOUT.case_id(0)
# one epoch (one case: one iteration) that moves the weights (no warm-up step at learning rate 0), on the CPU, at the
# smallest training window (64 voxels) without gradient checkpointing, validated on the training case
TRAIN_REQUEST = {
    "max_epochs": 1,
    "warmup_epochs": 0,
    "learning_rate": 0.01,
    "val_split": 0.0,
    "roi_size": [64, 64, 64],
    "use_checkpoint": False,
    "num_workers": 0,
    "cache": "none",
    "progress_bar": False,
}
TRAIN_TIMEOUT_S = 900


def wait_for_training(server: Server) -> dict:
    """GET /train/ until the task ends, runs past TRAIN_TIMEOUT_S, or never starts (SUBMITTED for a minute)."""
    start = time.monotonic()
    while (state := server.get("/train/"))["status"] in ("SUBMITTED", "RUNNING"):
        waited = time.monotonic() - start
        if waited > TRAIN_TIMEOUT_S or (state["status"] == "SUBMITTED" and waited > 60):
            break
        time.sleep(1)
    return state


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic(tmp_path_factory.mktemp("brats2023"), "brats2023", 1)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_app(tmp_path_factory.mktemp("app") / "app")


@pytest.fixture(scope="module")
def reference(app: Path, studies: Path, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return Reference(app / "model" / MODEL, studies, tmp_path_factory.mktemp("reference") / "predictions")


@pytest.fixture(scope="module")
def server(start_server, app: Path, studies: Path, reference: Reference) -> Server:
    return start_server(app, studies)


@pytest.fixture(scope="module")
def first_answer(server: Server, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    status, body = server.infer(CASE)
    assert status == 200, body[:2000]
    path = tmp_path_factory.mktemp("answer") / "first.nii.gz"
    path.write_bytes(body)
    return np.asarray(nib.load(path).dataobj)


def test_info_names_the_brats2023_labels(server: Server) -> None:
    model = server.get("/info/")["models"][MODEL]
    assert model["labels"] == {"necrotic tumour core": 1, "peritumoral edema": 2, "enhancing tumour": 3}
    assert model["labels"] == {name: value for value, name in CONVENTION.labels.items()}
    assert sorted(server.get("/datastore/?output=all")["objects"]) == [CASE]


def test_infer_answers_the_label_map_of_run_inference(first_answer: np.ndarray, reference: Reference) -> None:
    expected = np.asarray(nib.load(reference.prediction(CASE)).dataobj)
    assert set(np.unique(expected)) == {0, 1, 2, 3}  # BraTS 2023 values
    np.testing.assert_array_equal(first_answer, expected)


def test_a_saved_label_and_one_epoch_give_the_model_the_next_infer_uses(
    server: Server, app: Path, studies: Path, first_answer: np.ndarray, tmp_path: Path
) -> None:
    truth = nib.load(studies / CASE / LAYOUT.file_name(CASE, "seg"))
    values = np.asarray(truth.dataobj)
    # as 3D Slicer saves a label: its segments numbered 1, 2, 3 in the editor's order, their names in label_info
    order = ["enhancing tumour", "peritumoral edema", "necrotic tumour core"]
    value_of = {name: value for value, name in CONVENTION.labels.items()}
    slicer = np.zeros_like(values)
    for index, name in enumerate(order, 1):
        slicer[values == value_of[name]] = index
    nib.save(nib.Nifti1Image(slicer.astype(np.uint8), truth.affine), tmp_path / "label.nii.gz")
    fields = {"params": json.dumps({"label_info": [{"name": n, "idx": i} for i, n in enumerate(order, 1)]})}
    files = {"label": tmp_path / "label.nii.gz"}
    status, body = server.multipart("PUT", f"/datastore/label?image={CASE}&tag=final", fields, files)
    assert status == 200, body
    saved = nib.load(studies / "labels" / "final" / f"{CASE}.nii.gz")  # where training finds it, in BraTS values
    np.testing.assert_array_equal(np.asarray(saved.dataobj), values)
    np.testing.assert_allclose(saved.affine, truth.affine, atol=1e-4)

    model = app / "model" / MODEL / "models" / "model.pt"
    before = model.stat().st_mtime_ns
    status, task = server.post_json(f"/train/{MODEL}", TRAIN_REQUEST)
    assert status == 200 and task["status"] in ("SUBMITTED", "RUNNING"), task  # RUNNING once its thread has started
    state = wait_for_training(server)
    assert state["status"] == "DONE", "\n".join(state.get("details") or [server.log.read_text()[-3000:]])
    assert model.stat().st_mtime_ns > before

    status, body = server.infer(CASE)
    assert status == 200, body[:2000]
    (tmp_path / "after.nii.gz").write_bytes(body)
    assert not np.array_equal(np.asarray(nib.load(tmp_path / "after.nii.gz").dataobj), first_answer)
