"""Fixtures for the MONAI Label app (label/): synthetic BraTS folders, a served copy of the bundle, real servers.

These tests run in label/.venv (MONAI Label's environment, `make test`). The reference side, the bundle's own
`python -m monai.bundle run inference`, runs in the project's .venv, the bundle's own environment. The served copy has
a crafted feature-size-12 model with 64-voxel windows written into its inference.json (as MONAI Label users write
their checkpoint's settings), every other key as shipped (`amp` true included).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nrrd
import numpy as np
import pytest
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "swin_brats_bundle"
APP = REPO / "label"
BUNDLE_PYTHON = Path(os.environ.get("SWIN_BRATS_BUNDLE_PYTHON", REPO / ".venv" / "bin" / "python"))
sys.path[:0] = [str(BUNDLE), str(REPO / "tests"), str(APP)]

from scripts.synthetic_data import write_dataset  # noqa: E402
from served_bundle import serve_bundle  # noqa: E402

SLICER_MODULE = Path(sys.prefix) / "monailabel" / "plugins" / "slicer" / "MONAILabel"
"""3D Slicer's MONAI Label module as the monailabel wheel ships it (MONAILabel.py): its client library (MONAILabelLib,
no Slicer imports) sends requests as Slicer sends them."""
sys.path.append(str(SLICER_MODULE))

from MONAILabelLib.client import MONAILabelClient  # noqa: E402
from MONAILabelLib.labelcolors import GenericAnatomyColors  # noqa: E402

MODEL = "swin_brats_bundle"
SLICER_INFER_PARAMS = {"result_extension": ".nrrd", "result_dtype": "uint8"}
"""What the module's `MONAILabelLogic.infer` adds to every inference request."""
MODEL_SETTINGS = {"feature_size": 12, "roi_size": [64, 64, 64]}
SHAPE = (48, 48, 40)
ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONWARNINGS": "ignore"}
START_TIMEOUT_S = 300


def make_app(app: Path) -> Path:
    """The app as a user sets it up in `app`: label/'s code, and the bundle copied into model/ with its model.pt."""
    app.mkdir(parents=True)
    shutil.copy(APP / "main.py", app)
    shutil.copytree(APP / "lib", app / "lib", ignore=shutil.ignore_patterns("__pycache__"))
    (app / "model").mkdir()
    serve_bundle(app / "model", MODEL_SETTINGS)
    return app


def synthetic(folder: Path, layout: str, cases: int, unlabelled: int = 0) -> Path:
    """`cases` synthetic labelled cases (then `unlabelled` more) in `layout`; the same seed gives every layout the
    same images."""
    write_dataset(folder, layout, cases, unlabelled, SHAPE, 0)
    return folder


class Reference:
    """The bundle's own `python -m monai.bundle run inference` in .venv over `dataset`, started at once (it runs while
    the server starts) and waited for by `prediction`."""

    def __init__(self, bundle: Path, dataset: Path, output: Path) -> None:
        command = [str(BUNDLE_PYTHON), "-m", "monai.bundle", "run", "inference"]
        command += ["--config_file", "configs/inference.json", "--meta_file", "configs/metadata.json"]
        command += [
            "--logging_file",
            "configs/logging.conf",
            "--dataset_dir",
            str(dataset),
            "--output_dir",
            str(output),
        ]
        command += ["--num_workers", "0", "--progress_bar", "False"]
        self.output, self.log = output, output.parent / "run_inference.log"
        with open(self.log, "w") as log:  # a file, not a pipe: nothing blocks it while the server starts
            self.process = subprocess.Popen(command, cwd=bundle, env=ENV, stdout=log, stderr=subprocess.STDOUT)

    def prediction(self, case_id: str) -> Path:
        self.process.wait(timeout=900)
        assert self.process.returncode == 0, self.log.read_text()[-4000:]
        return self.output / f"{case_id}.nii.gz"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m monailabel.main start_server` on 127.0.0.1 in this environment, as README.md starts it."""

    def __init__(self, app: Path, studies: Path, log: Path) -> None:
        self.port, self.log = free_port(), log
        command = [sys.executable, "-m", "monailabel.main", "start_server", "--app", str(app)]
        command += ["--studies", str(studies), "--host", "127.0.0.1", "--port", str(self.port)]
        env = {**ENV, "MONAI_LABEL_SESSION_PATH": str(log.parent / "sessions")}
        with open(log, "w") as out:  # its own session: stop() ends it with the training process it starts
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait(self) -> Server:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"server exited {self.process.returncode}:\n{self.log.read_text()[-4000:]}")
            try:
                self.get("/info/")
                return self
            except OSError:
                time.sleep(1)
        pytest.fail(f"server not answering after {START_TIMEOUT_S} s:\n{self.log.read_text()[-4000:]}")

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> tuple:
        """(status, body bytes) of one request; an HTTP error status is returned, not raised."""
        request = urllib.request.Request(self.url(path), data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=900) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def get(self, path: str) -> Any:
        status, body = self.request("GET", path)
        assert status == 200, body
        return json.loads(body)

    def post_json(self, path: str, payload: dict) -> tuple[int, Any]:
        status, body = self.request("POST", path, json.dumps(payload).encode(), {"Content-Type": "application/json"})
        return status, json.loads(body)

    def multipart(self, method: str, path: str, fields: dict[str, str], files: dict[str, Path]) -> tuple[int, bytes]:
        """A multipart/form-data request, as MONAI Label's clients (3D Slicer) send labels and parameters."""
        boundary = "swinbratsboundary"
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in fields.items()
        ]
        for key, path_ in files.items():
            head = f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"; filename="{path_.name}"\r\n\r\n'
            parts.append(head.encode() + path_.read_bytes() + b"\r\n")
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        return self.request(method, path, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})

    def infer(self, image: str, params: dict | None = None) -> tuple[int, bytes]:
        """POST /infer/<model>?image=<id>&output=image: the label map file, or the error answer."""
        return self.multipart(
            "POST", f"/infer/{MODEL}?image={image}&output=image", {"params": json.dumps(params or {})}, {}
        )

    def slicer(self, tmpdir: Path) -> MONAILabelClient:
        """The client 3D Slicer's MONAI Label module talks to this server with, saving answers in `tmpdir`."""
        return MONAILabelClient(self.url(""), tmpdir=str(tmpdir))

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def ras_affine(image: Any) -> np.ndarray:
    """The RAS affine (NIfTI's) of a SimpleITK image, whose origin and directions are LPS."""
    affine = np.eye(4)
    directions = np.reshape(image.GetDirection(), (3, 3)) * np.asarray(image.GetSpacing())
    affine[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ directions
    affine[:3, 3] = np.diag([-1.0, -1.0, 1.0]) @ np.asarray(image.GetOrigin())
    return affine


def slicer_segments(
    result_file: str, label_names: dict[str, int], served: list[str], file_extension: str
) -> dict[str, tuple[np.ndarray, list[float] | None]]:
    """Segment name -> (voxel mask, colour; None: one Slicer picks) as 3D Slicer's MONAI Label module makes them from
    an inference answer (`updateSegmentationMask`) with its File Extension setting `file_extension`, `served` being
    the /info/ labels it made empty segments of, read as Slicer reads them: ITK for the voxels, the NRRD header for a
    segmentation file's segments."""
    image = sitk.ReadImage(result_file)
    assert image.GetNumberOfComponentsPerPixel() == 1, "a label map: one value per voxel"
    voxels = sitk.GetArrayFromImage(image).transpose()
    if result_file.endswith(".seg.nrrd") and file_extension == ".seg.nrrd":  # loaded as a segmentation, as it is
        header, segments, index = nrrd.read_header(result_file), {}, 0
        while f"Segment{index}_ID" in header:
            key = f"Segment{index}_"
            assert header.get(key + "Layer", str(index)) == "0", "one layer: the voxels hold every segment"
            mask = voxels == int(header.get(key + "LabelValue", 1))
            segments[header[key + "Name"]] = (mask, [float(c) for c in header[key + "Color"].split()])
            index += 1
        return segments
    # read as a label map: the i-th name of label_names by value gets label value i, if the segment exists; its
    # colour is the module's anatomy table's for the name (getLabelColor)
    names = [name for name, _ in sorted(label_names.items(), key=lambda item: item[1])]
    segments = {}
    for value, name in enumerate(names, 1):
        if name in served:
            color = GenericAnatomyColors.get(name.lower())
            segments[name] = (voxels == value, [c / 255 for c in color] if color else None)
    return segments


@pytest.fixture(scope="module")
def start_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Start servers for a module (app folder, studies folder); all stopped when the module ends."""
    servers: list[Server] = []

    def start(app: Path, studies: Path) -> Server:
        server = Server(app, studies, tmp_path_factory.mktemp("server") / "server.log")
        servers.append(server)
        return server.wait()

    yield start
    for server in servers:
        server.stop()
