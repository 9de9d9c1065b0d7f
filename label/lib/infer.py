"""Inference as MONAI Label's `BundleInferTask` runs the bundle's `inference.json`, from a whole BraTS case.

MONAI Label hands the task the one file a viewer shows; `CaseFilesd`, put before the bundle's own preprocessing,
turns it into the case as `run inference` lists it (its four sequence files, their channel order, the dataset's label
convention) after the bundle's preflight check of those files. The rest is the bundle's config as shipped. Options a
clinician may change per request are top-level keys of that config (`OPTIONS`), plus the fold ensemble of
`inference_ensemble.json` when fold models exist.

What 3D Slicer's MONAI Label module shows: it asks for `.nrrd` and, with its File Extension setting `.seg.nrrd`, loads
an answer named `*.seg.nrrd` as a segmentation with the header's names and colours; so an NRRD answer is a segmentation
file (`lib/seg_nrrd.py`) holding the same label values. With any other setting the module reads the label map and
gives the i-th name of the answer's `label_names` (by value) label value i, so `label_names` names every value from 1
up, a value the convention leaves unused (BraTS 2018-2021's 3) by a name no segment has, which Slicer skips.
"""

from __future__ import annotations

import copy
import glob
import logging
import os
import tempfile
from collections.abc import Callable, Hashable, Mapping
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from monai.transforms import MapTransform
from monailabel.tasks.infer.bundle import BundleInferTask
from monailabel.utils.others.generic import strtobool

from lib.bundle import parsed, served
from lib.datastore import RequestError
from lib.seg_nrrd import write_segmentation

logger = logging.getLogger(__name__)

OPTIONS = {"flip_tta": bool, "sw_overlap": float}
"""inference.json keys offered as MONAI Label options (Slicer's Options panel), with their types."""
ENSEMBLE = "fold_ensemble"
ENSEMBLE_CONFIG = "inference_ensemble.json"
SEGMENTATION_EXTENSIONS = (".nrrd", ".seg.nrrd")
"""Answer extensions written as a 3D Slicer segmentation file (`.seg.nrrd`): Slicer's module asks for `.nrrd`."""


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


def coded(code: Any) -> dict[str, str]:
    """A `segments.Code` (value, meaning, scheme) as a DICOM code sequence item."""
    return {"CodeValue": code.value, "CodingSchemeDesignator": code.scheme, "CodeMeaning": code.meaning}


def segment_info(bundle: SimpleNamespace, convention: Any) -> dict[str, Any]:
    """The served labels' colours and codes, as MONAI Label's DICOM SEG writer takes them (`label_info` entries)."""
    segments = bundle.segments.convention_segments(convention)
    entries = []
    for value, (name, segment) in segments.items():
        attribute = {
            "labelID": value,
            "SegmentLabel": name,
            "SegmentAlgorithmType": "AUTOMATIC",
            "SegmentAlgorithmName": "swin_brats_bundle",
            "SegmentedPropertyCategoryCodeSequence": coded(segment.category),
            "SegmentedPropertyTypeCodeSequence": coded(segment.code),
            "recommendedDisplayRGBValue": segment.rgb255,
        }
        entries.append({"name": name, "idx": value, "color": segment.rgb255, "segmentAttribute": attribute})
    colors = {name: list(segment.color) for name, segment in segments.values()}
    return {"label_colors": colors, "label_info": entries}


def positional_label_names(labels: Mapping[str, int]) -> dict[str, int]:
    """`labels` (name -> value) with every missing value from 1 to the largest named "unused label <value>": 3D
    Slicer's MONAI Label module gives the i-th name by value label value i, and skips names it has no segment for."""
    by_value = {value: name for name, value in labels.items()}
    return {by_value.get(value, f"unused label {value}"): value for value in range(1, max(by_value, default=0) + 1)}


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

    def __call__(self, request: dict[str, Any], callbacks: dict | None = None) -> tuple[str | None, dict[str, Any]]:
        """MONAI Label's inference, its `label_names` as 3D Slicer reads them (`positional_label_names`)."""
        result_file, result = super().__call__(request, callbacks)
        result["label_names"] = positional_label_names(self.labels)
        return result_file, result

    def writer(self, data: dict[str, Any], extension: str | None = None, dtype: Any = None) -> tuple[Any, Any]:
        """MONAI Label's writer, but an NRRD answer (`SEGMENTATION_EXTENSIONS`) is a `.seg.nrrd` segmentation file:
        the label map as MONAI Label writes it, each label value a segment with the convention's name and colour."""
        requested = extension or data.get("result_extension")
        if requested not in SEGMENTATION_EXTENSIONS or not data.get("result_write_to_file", True):
            return super().writer(data, extension, dtype)
        label = data[self.output_label_key]
        meta = data.get(f"{self.output_label_key}_meta_dict") or {}
        affine = meta.get("affine") if meta.get("affine") is not None else label.affine  # as MONAI Label's Writer
        label_map = np.asarray(label.detach().cpu() if isinstance(label, torch.Tensor) else label)
        affine = np.asarray(affine.detach().cpu() if isinstance(affine, torch.Tensor) else affine, float)
        segments = [(value, name, self.segments["label_colors"][name]) for name, value in self.labels.items()]
        handle, path = tempfile.mkstemp(suffix=".seg.nrrd")  # MONAI Label's endpoint deletes it once sent
        os.close(handle)
        write_segmentation(path, np.squeeze(label_map, axis=0) if label_map.ndim == 4 else label_map, affine, segments)
        return path, data.get(self.output_json_key, {})

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
