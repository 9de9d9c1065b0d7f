"""A MONAI Label datastore over a dataset folder as it is downloaded: one image per case, labels in the case's values.

MONAI Label's `LocalDatastore` lists the files at the top of the studies folder, one image each; a BraTS case is a
folder of four sequence files (MSD: a 4D file in imagesTr/). This datastore lists the cases the bundle's own discovery
finds (`scripts/cases.py`, every layout of `scripts/layouts.py` and plain 4D files), each once, under its case id,
its image being the one sequence a viewer shows (`sequence`, FLAIR by default). Labels stay where MONAI Label keeps
them (`labels/final/<case id>.nii.gz`); one saved from 3D Slicer numbers its segments 1, 2, 3 in the editor's order
(or, as a `.seg.nrrd` segmentation file, names them in its header), so `save_label` writes it back in the convention's
label values, as NIfTI on the case's grid, for training to read.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import nibabel as nib
import numpy as np
from fastapi import HTTPException
from monai.transforms import LoadImage
from monailabel.datastore.local import DataModel, ImageLabelModel, LocalDatastore

from lib.seg_nrrd import read_segmentation

logger = logging.getLogger(__name__)

SEGMENTATION_SUFFIX = ".seg.nrrd"
SLICER_HELPER_SEGMENTS = ("background", "foreground_scribbles", "background_scribbles")


class RequestError(HTTPException):
    """A request the server cannot serve as asked (unknown case, unreadable or mismatched file): answered with
    `status_code` (422 unless given) and the one-line reason, wherever in the request it is raised."""

    def __init__(self, detail: str, status_code: int = 422) -> None:
        super().__init__(status_code=status_code, detail=detail)


class BratsDatastore(LocalDatastore):
    """`LocalDatastore` whose images are the cases of a BraTS / MSD folder (or of a folder of 4D files)."""

    def __init__(
        self, studies: str, bundle: SimpleNamespace, labels: Mapping[str, int], sequence: str = "FLAIR", **kwargs: Any
    ) -> None:
        if sequence not in bundle.layouts.CHANNELS:
            raise ValueError(f"sequence '{sequence}' is not one of {', '.join(bundle.layouts.CHANNELS)}")
        self.bundle, self.labels, self.sequence = bundle, dict(labels), sequence
        super().__init__(studies, **kwargs)

    def _shown_files(self) -> dict[str, str]:
        """Case id -> the file a viewer shows (relative to the studies folder), for every case found."""
        root = os.path.realpath(self._datastore.image_path())
        try:
            info = self.bundle.cases.discover(root, allow_incomplete=True)
        except self.bundle.layouts.DatasetLayoutError as error:
            logger.warning(f"no BraTS cases listed: {error}")
            return {}
        shown = {}
        for case in info["training"] + info["testing"]:
            files = case["image"] if isinstance(case["image"], list) else [case["image"]]
            preferred = files[self.bundle.layouts.CHANNELS.index(self.sequence)] if len(files) > 1 else files[0]
            existing = [f for f in (preferred, *files) if os.path.isfile(f)]
            if existing:  # a case missing a sequence is listed: /infer names what it lacks
                shown[case["case_id"]] = os.path.relpath(existing[0], root)
        return shown

    def _image_file(self, image_id: str, obj: ImageLabelModel) -> str:
        name = obj.image.info.get("name") or self._filename(image_id, obj.image.ext)
        return os.path.realpath(os.path.join(self._datastore.image_path(), name))

    def get_image_uri(self, image_id: str) -> str:
        obj = self._datastore.objects.get(image_id)
        return self._image_file(image_id, obj) if obj else ""

    def get_image_info(self, image_id: str) -> dict[str, Any]:
        obj = self._datastore.objects.get(image_id)
        return {**copy.deepcopy(obj.image.info), "path": self._image_file(image_id, obj)} if obj else {}

    def datalist(self, full_path: bool = True) -> list[dict[str, Any]]:
        """{"image": the shown file, "label": the final label} of every case with a final label."""
        tag = "final"
        return [
            {"image": self._image_file(k, v), "label": os.path.realpath(self.get_label_uri(k, tag))}
            for k, v in self._datastore.filter_by_tag(tag).items()
        ]

    def _add_non_existing_images(self) -> int:
        self._init_from_datastore_file()
        added = 0
        for case_id, name in self._shown_files().items():
            if case_id not in self._datastore.objects:
                info = {"ts": int(time.time()), "name": name}
                ext = ".nii" if name.endswith(".nii") else ".nii.gz"
                self._datastore.objects[case_id] = ImageLabelModel(image=DataModel(info=info, ext=ext))
                added += 1
        return added

    def _remove_non_existing(self) -> int:
        self._init_from_datastore_file()
        removed, kept = 0, {}
        for image_id, obj in self._datastore.objects.items():
            if not os.path.exists(self._image_file(image_id, obj)):
                removed += 1
                continue
            labels = {
                tag: label for tag, label in obj.labels.items() if os.path.exists(self._label_file(image_id, tag))
            }
            removed += len(obj.labels) - len(labels)
            obj.labels.clear()
            obj.labels.update(labels)
            kept[image_id] = obj
        self._datastore.objects.clear()
        self._datastore.objects.update(kept)
        return removed

    def _label_file(self, image_id: str, tag: str) -> str:
        label = self._datastore.objects[image_id].labels[tag]
        return os.path.join(self._datastore.label_path(tag), self._filename(image_id, label.ext))

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        """Save a label map as NIfTI on the case's grid, in label values: Slicer's segment numbers (`label_info`'s
        "label_info": [{"name", "idx"}]) become the values of the names the server listed, as do the segments of a
        `.seg.nrrd` segmentation file by their own names; without either the values must already be the convention's."""
        image = self.get_image_uri(image_id)
        if not image:
            raise RequestError(f"unknown image id '{image_id}': no such case in {self._datastore_path}", 404)
        segments = (label_info or {}).get("label_info") or []
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, f"{image_id}.nii.gz")
            nib.save(self._label_in_values(image, label_filename, segments), path)
            return super().save_label(image_id, path, label_tag, label_info)

    def _label_in_values(self, image: str, label_file: str, segments: list[dict[str, Any]]) -> nib.Nifti1Image:
        reference = nib.load(image)
        try:
            named = read_segmentation(label_file) if label_file.lower().endswith(SEGMENTATION_SUFFIX) else None
            label = None if named else LoadImage(image_only=True)(label_file)
        except Exception as error:
            raise RequestError(f"cannot read the label file ({self.bundle.errors.first_line(error)})") from error
        data, affine = (
            (next(iter(named[0].values())), named[1]) if named else (np.asarray(label).squeeze(), label.affine)
        )
        if data.shape != reference.shape[:3]:
            raise RequestError(f"label of shape {data.shape}; the case's grid is {reference.shape[:3]} ({image})")
        if not np.allclose(np.asarray(affine), reference.affine, atol=1e-3):
            raise RequestError(f"label affine differs from the case's ({image}): save it on the shown image's grid")
        if named:  # its own segment names say which voxels are which label, whatever Slicer numbered them
            values = self._named_values(named[0])
        else:
            values = np.rint(data).astype(np.int64)
            if segments:
                values = self._relabel(values, segments)
        allowed = {0, *self.labels.values()}
        if unknown := sorted(set(np.unique(values).tolist()) - allowed):
            raise RequestError(f"label values {unknown} are not among the served labels {self._listed()}")
        return nib.Nifti1Image(values.astype(np.uint8), reference.affine)

    def _named_values(self, masks: Mapping[str, np.ndarray]) -> np.ndarray:
        """Label values from a segmentation file's segments (name -> voxel mask), by name; Slicer's helper segments
        (background, scribbles) are left out as its MONAI Label module leaves them out of `label_info`."""
        by_name = {name.lower(): value for name, value in self.labels.items()}
        values = np.zeros(next(iter(masks.values())).shape, np.int64)
        for name, mask in masks.items():
            if name in SLICER_HELPER_SEGMENTS:
                continue
            if name.lower() not in by_name:
                raise RequestError(f"segment '{name}' is not one of the served labels {self._listed()}")
            if overlap := int(np.count_nonzero(mask & (values > 0))):
                raise RequestError(f"segment '{name}' overlaps another in {overlap} voxels: one label per voxel")
            values[mask] = by_name[name.lower()]
        return values

    def _relabel(self, values: np.ndarray, segments: list[dict[str, Any]]) -> np.ndarray:
        by_name = {name.lower(): value for name, value in self.labels.items()}
        relabelled = np.zeros_like(values)
        for segment in segments:
            name, index = str(segment.get("name", "")), int(segment.get("idx", 0))
            if name.lower() not in by_name:
                raise RequestError(f"segment '{name}' is not one of the served labels {self._listed()}")
            relabelled[values == index] = by_name[name.lower()]
        return relabelled

    def _listed(self) -> str:
        return ", ".join(f"{value} {name}" for name, value in sorted(self.labels.items(), key=lambda item: item[1]))
