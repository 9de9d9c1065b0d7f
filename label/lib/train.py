"""Training as MONAI Label's `BundleTrainTask` runs the bundle's `train.json`, on the datastore's labelled cases.

The labelled cases go to training as the bundle lists cases: their four sequence files, the saved label, folds, in a
datalist written next to the training outputs (`datalist`, `dataset_dir` set to it and the studies folder), so the
bundle's preflight, channel order and label convention apply as in `run training`. MONAI Label's own split
(`val_split`) picks the validation cases; with too few labelled cases for one, the training cases are validated, so
that `models/model.pt` (written at the best validation) is renewed. The network's size and input normalisation come
from the served `inference.json`, so the model written is one `/infer` can load. Any other top-level key of
`train.json` given in the request overrides it, e.g. {"max_epochs": 1, "num_workers": 0, "cache": "none"}.
"""

from __future__ import annotations

import logging
import os
from types import SimpleNamespace
from typing import Any

import torch
from monai.bundle import ConfigParser
from monailabel.interfaces.datastore import Datastore
from monailabel.tasks.train.bundle import BundleTrainTask

from lib.bundle import config_value
from lib.datastore import RequestError

logger = logging.getLogger(__name__)

SERVED_KEYS = ("feature_size", "normalization")
"""train.json keys taken from the served inference.json unless the request sets them: they decide what model.pt fits."""
DATALIST = "monailabel_datalist.json"


class BratsTrainTask(BundleTrainTask):
    """`BundleTrainTask` whose cases are the datastore's labelled BraTS cases, with request keys as train.json keys."""

    def __init__(self, path: str, conf: dict[str, str], bundle: SimpleNamespace, studies: str) -> None:
        super().__init__(path, conf)
        self.bundle, self.studies = bundle, os.path.realpath(studies)
        self.keys = set(ConfigParser.load_config_file(self.bundle_config_path)) - {"bundle_root"}
        self.request: dict[str, Any] = {}

    def _fetch_datalist(self, request: dict[str, Any], datastore: Datastore) -> list[dict[str, Any]]:
        """The labelled cases as training items (sequence files, saved label), written as the bundle's datalist."""
        self.request = request
        items, info = [], None
        for pair in datastore.datalist():
            info = self.bundle.cases.discover_case(pair["image"])
            (case,) = info["training"] + info["testing"]
            items.append({"case_id": case["case_id"], "image": case["image"], "label": pair["label"]})
        if info is None:
            raise RequestError("no labelled cases: save a label (PUT /datastore/label) before training")
        datalist = {**info, "num_folds": 1, "training": self.bundle.folds.assign_folds(items, 1, 0), "testing": []}
        self.datalist_file = os.path.join(self.bundle_path, "eval", DATALIST)
        os.makedirs(os.path.dirname(self.datalist_file), exist_ok=True)
        self.bundle.datalist.save_datalist(datalist, self.datalist_file, self.studies)
        return items

    def _update_overrides(self, overrides: dict[str, Any]) -> dict[str, Any]:
        overrides["epochs"] = overrides.pop("train#trainer#max_epochs")  # the trainer's and the schedule's length
        overrides["device"] = torch.device(overrides["device"])
        overrides.update(dataset_dir=self.studies, datalist=self.datalist_file)
        if not overrides.get("validate#dataset#data"):
            logger.warning("too few labelled cases for a validation split: the training cases are validated")
            overrides["validate#dataset#data"] = overrides["train#dataset#data"]
        for key in SERVED_KEYS:
            overrides[key] = config_value(self.bundle_path, "inference.json", key)
        overrides.update({k: v for k, v in self.request.items() if k in self.keys and k != "device"})
        logger.info(f"train.json overrides: { {k: v for k, v in overrides.items() if not k.endswith('#data')} }")
        return overrides
