"""Inference as MONAI Label's `BundleInferTask` runs the bundle's `inference.json`, from a whole BraTS case.

MONAI Label hands the task the one file a viewer shows; `CaseFilesd`, put before the bundle's own preprocessing,
turns it into the case as `run inference` lists it (its four sequence files, their channel order, the dataset's label
convention) after the bundle's preflight check of those files. The rest is the bundle's config as shipped. Options a
clinician may change per request are top-level keys of that config (`OPTIONS`), plus the fold ensemble of
`inference_ensemble.json` when fold models exist.
"""

from __future__ import annotations

import copy
import glob
import logging
import os
from collections.abc import Callable, Hashable, Mapping
from types import SimpleNamespace
from typing import Any

import torch
from monai.transforms import MapTransform
from monailabel.tasks.infer.bundle import BundleInferTask
from monailabel.utils.others.generic import strtobool

from lib.bundle import parsed, served
from lib.datastore import RequestError

logger = logging.getLogger(__name__)

OPTIONS = {"flip_tta": bool, "sw_overlap": float}
"""inference.json keys offered as MONAI Label options (Slicer's Options panel), with their types."""
ENSEMBLE = "fold_ensemble"
ENSEMBLE_CONFIG = "inference_ensemble.json"


class CaseFilesd(MapTransform):
    """The file a viewer shows -> the case's sequence files with the items `run inference` gives each case
    (`channel_indices`, `label_convention`: `case_items` of the case's datalist); a case the bundle's preflight
    refuses raises `RequestError` naming it."""

    def __init__(self, keys: str, bundle: SimpleNamespace, case_items: Callable[[dict], list[dict]]) -> None:
        super().__init__(keys)
        self.bundle, self.case_items = bundle, case_items

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            try:
                (case,) = self.case_items(self.bundle.cases.discover_case(d[key]))
            except (ValueError, OSError) as error:
                raise RequestError(f"{d[key]}: {self.bundle.errors.first_line(error)}") from error
            if problems := self.bundle.preflight.check_case(case):
                raise RequestError(f"case {case['case_id']}: {self.bundle.preflight.describe(problems)}")
            d.update({k: v for k, v in case.items() if k != "case_id"})
        return d


def segment_info(bundle: SimpleNamespace, convention: Any) -> dict[str, Any]:
    """The served labels' colours and codes, as MONAI Label's DICOM SEG writer takes them (`label_info` entries)."""
    segments = bundle.segments.convention_segments(convention)
    category, scheme = bundle.segments.CATEGORY, bundle.segments.SNOMED
    entries = []
    for value, (name, segment) in segments.items():
        attribute = {
            "labelID": value,
            "SegmentLabel": name,
            "SegmentAlgorithmType": "AUTOMATIC",
            "SegmentAlgorithmName": "swin_brats_bundle",
            "SegmentedPropertyCategoryCodeSequence": {
                "CodeValue": category[0],
                "CodingSchemeDesignator": scheme,
                "CodeMeaning": category[1],
            },
            "SegmentedPropertyTypeCodeSequence": {
                "CodeValue": segment.code[0],
                "CodingSchemeDesignator": scheme,
                "CodeMeaning": segment.code[1],
            },
            "recommendedDisplayRGBValue": segment.rgb255,
        }
        entries.append({"name": name, "idx": value, "color": segment.rgb255, "segmentAttribute": attribute})
    colors = {name: list(segment.color) for name, segment in segments.values()}
    return {"label_colors": colors, "label_info": entries}


class BratsInferTask(BundleInferTask):
    """`BundleInferTask` over whole cases, labelled in the studies' convention, with the bundle's options."""

    def __init__(self, path: str, conf: dict[str, str], bundle: SimpleNamespace, convention: Any) -> None:
        super().__init__(path, conf, extend_load_image=False)  # LoadImaged as the bundle has it (a list of files)
        self.bundle = bundle
        self.labels = {name: value for value, name in sorted(convention.labels.items())}
        self.segments = segment_info(bundle, convention)
        self._config.update({key: self.bundle_config[key] for key in OPTIONS})
        if self._fold_models():
            self._config[ENSEMBLE] = False

    def info(self) -> dict[str, Any]:
        return {**super().info(), **self.segments}

    def pre_transforms(self, data: dict[str, Any] | None = None) -> list:
        for key, kind in OPTIONS.items():
            if data and key in data:
                self.bundle_config[key] = self._option(key, kind, data[key])
        self.bundle_config.parse(reset=True)
        return [CaseFilesd(self.input_key, self.bundle, self.case_items), *super().pre_transforms(data)]

    def case_items(self, dataset_info: dict[str, Any]) -> list[dict]:
        """The cases of `dataset_info` as the served inference.json lists them for `run inference`."""
        return served(self.bundle_path, "case_screen#cases", dataset_info)

    @staticmethod
    def _option(key: str, kind: type, value: Any) -> Any:
        try:
            value = bool(strtobool(str(value))) if kind is bool else kind(value)
        except (TypeError, ValueError) as error:
            raise RequestError(f"option {key}: {value!r} is not a {kind.__name__}") from error
        if key == "sw_overlap" and not 0 <= value < 1:
            raise RequestError(f"option sw_overlap: {value} is not in [0, 1)")
        return value

    def _fold_models(self) -> list[str]:
        return sorted(glob.glob(os.path.join(self.bundle_path, "models", "fold*", "model.pt")))

    def _get_network(self, device: str, data: dict[str, Any] | None) -> torch.nn.Module:
        """The single model, or with the `fold_ensemble` option the bundle's own ensemble of its fold models."""
        if not (data and strtobool(str(data.get(ENSEMBLE, False)))):
            return super()._get_network(device, data)
        checkpoints = self._fold_models()
        if not checkpoints:
            raise RequestError(f"option {ENSEMBLE}: no fold models in {self.bundle_path}/models/fold*/model.pt")
        stamp = (ENSEMBLE, device, tuple((p, os.stat(p).st_mtime) for p in checkpoints))
        cached = self._networks.get(stamp[:2])
        if cached is None or cached[1] != stamp:
            config = parsed(self.bundle_path, ["inference.json", ENSEMBLE_CONFIG], device=device)
            network = copy.deepcopy(config.get_parsed_content("network")).eval()
            self._networks[stamp[:2]] = cached = (network, stamp)
        return cached[0]
