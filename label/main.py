"""MONAI Label app serving swin_brats_bundle over a BraTS dataset folder as it is downloaded (README.md).

Adapted from MONAI Label 0.8.5's `monaibundle` sample app (Apache-2.0, MONAI Consortium): the same bundle tasks
(`BundleInferTask`, `BundleTrainTask`), made to read whole BraTS cases (`lib/`). The bundle is served from
`model/<name>` as it is: no model zoo is contacted. Configuration (`--conf key value`):

- `models`: bundle folder names under `model/`, comma separated (default `swin_brats_bundle`);
- `sequence`: the sequence a viewer shows and annotates on (FLAIR, T1ce, T1 or T2; default FLAIR);
- `skip_trainers`: `true` serves inference only.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import monailabel
from fastapi import HTTPException
from lib.bundle import bundle_scripts, served
from lib.datastore import BratsDatastore, RequestError
from lib.infer import BratsInferTask
from lib.train import BratsTrainTask
from monailabel.config import settings
from monailabel.interfaces.app import MONAILabelApp
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random
from monailabel.utils.others.generic import strtobool

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "swin_brats_bundle"


class MyApp(MONAILabelApp):
    """Datastore of BraTS cases, one inference and one training task per served bundle."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self.model_dir = os.path.join(app_dir, "model")
        names = [name.strip() for name in conf.get("models", DEFAULT_MODEL).split(",") if name.strip()]
        self.models = {name: os.path.join(self.model_dir, name) for name in names}
        for name, path in self.models.items():
            if not os.path.isfile(os.path.join(path, "configs", "inference.json")):
                raise ValueError(f"model '{name}': no bundle at {path} (copy swin_brats_bundle there: README.md)")
        self.bundle = bundle_scripts(next(iter(self.models.values())))
        self.convention = self._convention(studies)
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name=f"Swin UNETR BraTS segmentation (MONAI Label {monailabel.__version__})",
            description="swin_brats_bundle on whole BraTS cases: four sequences in, a label map on the shown grid out",
            version=monailabel.__version__,
        )

    def _convention(self, studies: str) -> Any:
        """The labels predictions of the studies' cases are written in, by the served inference.json's own rule."""
        try:
            info = self.bundle.cases.discover(studies, allow_incomplete=True)
        except self.bundle.layouts.DatasetLayoutError:  # nothing to scan (yet): as for one uploaded 4D file
            info = {"layout": None, "label_convention": self.bundle.labels.auto_convention(None).name}
        return served(next(iter(self.models.values())), "convention", info)

    def init_datastore(self) -> BratsDatastore:
        labels = {name: value for value, name in self.convention.labels.items()}
        return BratsDatastore(
            self.studies,
            self.bundle,
            labels,
            sequence=self.conf.get("sequence", "FLAIR"),
            auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
        )

    def init_infers(self) -> dict[str, BratsInferTask]:
        infers = {
            name: BratsInferTask(path, self.conf, self.bundle, self.convention) for name, path in self.models.items()
        }
        if invalid := [name for name, task in infers.items() if not task.is_valid()]:
            raise ValueError(f"model(s) {', '.join(invalid)}: no models/model.pt to serve (README.md)")
        return infers

    def init_trainers(self) -> dict[str, BratsTrainTask]:
        if strtobool(self.conf.get("skip_trainers", "false")):
            return {}
        return {name: BratsTrainTask(path, self.conf, self.bundle, self.studies) for name, path in self.models.items()}

    def init_strategies(self) -> dict[str, Any]:
        return {"random": Random(), "first": First()}

    def infer(self, request: dict[str, Any], datastore: Any = None) -> dict[str, Any]:
        """MONAI Label's inference, answering a bad request with a one-line reason: 404 for an unknown image id, 422
        for a case or option the bundle refuses, 500 naming the failure for anything else."""
        image = request.get("image")
        if isinstance(image, str) and not os.path.exists(image) and not self.datastore().get_image_uri(image):
            raise RequestError(f"unknown image id '{image}': no such case in {self.studies}", 404)
        try:
            return super().infer(request, datastore)
        except HTTPException:  # RequestError: its own status and reason
            raise
        except (Exception, SystemExit) as error:  # the bundle's `stop()` raises SystemExit: never end the server
            logger.exception(f"inference of {image} failed")
            cause = self.bundle.errors.root_cause(error)
            detail = f"inference of {image} failed: {self.bundle.errors.first_line(cause)}"
            raise HTTPException(status_code=500, detail=detail) from error
