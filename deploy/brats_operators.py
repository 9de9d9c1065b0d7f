"""The app's operators around the SDK's `MonaiBundleInferenceOperator`: study loaders, the bundle inference, writers.

Both loaders emit `image` (an SDK `Image`: (4, x, y, z) float32 in the network's channel order, MONAI metadata with
the affine, so the bundle's mm³ post-processing sees the real voxel size) and `study` (a `StudyInfo` for the writer).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.deploy.core import Fragment, Image, Operator, OperatorSpec
from monai.deploy.core.domain.dicom_series import DICOMSeries
from monai.deploy.core.domain.dicom_series_selection import SelectedSeries, StudySelectedSeries
from monai.deploy.core.domain.dicom_study import DICOMStudy
from monai.deploy.operators.dicom_series_to_volume_operator import DICOMSeriesToVolumeOperator
from monai.deploy.operators.monai_bundle_inference_operator import (
    DISALLOW_LOAD_SAVE,
    MonaiBundleInferenceOperator,
    filter_compose,
)
from monai.transforms import Compose, LoadImage
from monai.utils import MetaKeys, SpaceKeys
from outputs import write_dicom_seg, write_label_map
from pydicom import Dataset
from scripts.labels import CASE_CONVENTION, LabelConvention, auto_convention, painted_convention
from study import CHANNELS, NiftiStudy, StudyError, select_series

logger = logging.getLogger(__name__)

DETECTED_CONVENTION = "swin_brats_detected_convention"
"""Image metadata item: the label convention a BraTS 2023-named input implies, as `run inference` detects it."""


@dataclass(frozen=True)
class StudyInfo:
    """What the writer needs about the input: output name, grid, convention hint and the DICOM reference slices."""

    case_id: str
    affine: np.ndarray
    shape: tuple[int, int, int]
    detected_convention: str | None = None
    reference: tuple[Dataset, ...] | None = None  # FLAIR instances in the volume's slice order (DICOM input only)


def image_of(volume: np.ndarray, affine: np.ndarray, source: str, detected: str | None) -> Image:
    """An SDK Image of a channel-first (4, x, y, z) volume, carrying the metadata MONAI's LoadImage would set."""
    meta: dict[str, Any] = {
        MetaKeys.AFFINE: torch.as_tensor(affine, dtype=torch.float64),
        MetaKeys.ORIGINAL_AFFINE: np.asarray(affine, dtype=np.float64),
        MetaKeys.SPATIAL_SHAPE: np.asarray(volume.shape[1:]),
        MetaKeys.SPACE: SpaceKeys.RAS,
        MetaKeys.ORIGINAL_CHANNEL_DIM: 0,  # what the bundle's EnsureChannelFirstd reads
        "filename_or_obj": source,
        # "spacing" plus "original_affine" make the SDK operator take the metadata as it is (_convert_from_image)
        "spacing": np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0)),
    }
    if detected is not None:
        meta[DETECTED_CONVENTION] = detected
    return Image(np.ascontiguousarray(volume, dtype=np.float32), metadata=meta)


def load_nifti_study(study: NiftiStudy) -> tuple[Image, StudyInfo]:
    """Load four 3D files or one 4D file as inference.json's LoadImaged + EnsureChannelFirstd do (float32)."""
    loader = LoadImage(image_only=True, ensure_channel_first=True)
    volume = loader([str(f) for f in study.files] if len(study.files) > 1 else str(study.files[0]))
    if volume.ndim != 4 or volume.shape[0] != len(CHANNELS):
        raise StudyError(
            f"{study.files[0]}: a single NIfTI input must be 4D with {len(CHANNELS)} channels "
            f"({', '.join(CHANNELS)}), found shape {tuple(volume.shape)}."
        )
    affine = volume.affine.numpy()
    detected = auto_convention(study.layout).name if study.layout else None  # a 4D file: the writer's own rule
    info = StudyInfo(study.case_id, affine, tuple(int(n) for n in volume.shape[1:]), detected)
    return image_of(volume.numpy(), affine, str(study.files[0].parent), detected), info


class NiftiStudyLoaderOperator(Operator):
    """Emits the NIfTI study found in the input folder (`study.find_nifti_study`) as `image` and `study`."""

    def __init__(self, fragment: Fragment, *args: Any, study: NiftiStudy, **kwargs: Any) -> None:
        self.study = study
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.output("image")
        spec.output("study")

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        image, info = load_nifti_study(self.study)
        op_output.emit(image, "image")
        op_output.emit(info, "study")


class MRStudyToVolumeOperator(DICOMSeriesToVolumeOperator):
    """Picks the FLAIR, T1ce, T1 and T2 MR series by `study.SERIES_RULES` and stacks them as one 4-channel `image`.

    Each series goes through the SDK's own DICOM-to-volume conversion (slice sorting, rescale, RAS affine); the four
    must share one grid. The FLAIR instances, in the volume's slice order, are the DICOM SEG's reference.
    """

    def __init__(self, fragment: Fragment, *args: Any, folder: Path, **kwargs: Any) -> None:
        self.folder = folder
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("dicom_study_list")
        spec.output("image")
        spec.output("study")

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        image, info = self.stack_series(op_input.receive("dicom_study_list"))
        op_output.emit(image, "image")
        op_output.emit(info, "study")

    def stack_series(self, studies: list[DICOMStudy]) -> tuple[Image, StudyInfo]:
        """The four selected series as one (4, x, y, z) Image and the StudyInfo of their shared grid."""
        series: dict[str, tuple[DICOMStudy, DICOMSeries]] = {
            s.SeriesInstanceUID: (study, s)
            for study in studies
            for s in study.get_all_series()
            if str(getattr(s, "Modality", "")).upper() == "MR"
        }
        descriptions = {uid: str(getattr(s, "SeriesDescription", "") or "") for uid, (_, s) in series.items()}
        chosen = select_series(self.folder, descriptions)
        volumes, affines = [], []
        for channel in CHANNELS:
            study, dicom_series = series[chosen[channel]]
            selection = StudySelectedSeries(study)
            selection.add_selected_series(SelectedSeries(channel, dicom_series))
            image = self.convert_to_image([selection])
            volumes.append(np.swapaxes(image.asnumpy(), 0, 2))  # SDK (slices, rows, cols) -> (x, y, z) as NIfTI
            affines.append(np.asarray(image.metadata()["affine"], dtype=np.float64))
        for channel, volume, affine in zip(CHANNELS, volumes, affines, strict=True):
            if volume.shape != volumes[0].shape or not np.allclose(affine, affines[0], atol=1e-3):
                raise StudyError(
                    f"{self.folder}: series '{descriptions[chosen[channel]]}' ({channel}) is not on the grid of "
                    f"'{descriptions[chosen['FLAIR']]}' (FLAIR): shape {volume.shape} vs {volumes[0].shape}; "
                    "resample the series to one grid first."
                )
        flair = series[chosen["FLAIR"]][1]
        reference = tuple(instance.get_native_sop_instance() for instance in flair.get_sop_instances())
        stacked = np.stack(volumes).astype(np.float32)
        info = StudyInfo(self.folder.name, affines[0], tuple(int(n) for n in stacked.shape[1:]), None, reference)
        return image_of(stacked, affines[0], str(self.folder), None), info


class BratsBundleInferenceOperator(MonaiBundleInferenceOperator):
    """The SDK's bundle operator with the bundle's `bundle_root` set to the bundle folder and the case's label
    convention passed on, so its transforms behave as under `python -m monai.bundle run inference`."""

    def _init_config(self, config_names: list[str]) -> None:
        super()._init_config(config_names)
        names = self._bundle_config_names
        if self.bundle_path is not None and self.bundle_path.is_dir():
            # inference.json's bundle_root "." is the working directory: rebuild what reads it with the real root
            self.parser["bundle_root"] = str(self.bundle_path)
            self._inferer = self.parser.get_parsed_content(names.inferer_name)
        # The SDK takes a Compose for dictionary transforms only if its first item is a MapTransform; the bundle's
        # postprocessing starts with a nested Compose (region_postprocessing). Flattening keeps the order.
        self._preproc = self._flat_compose(names.preproc_name)
        self._postproc = self._flat_compose(names.postproc_name)

    def _flat_compose(self, name: str) -> Compose:
        """Config item `name` as one flat Compose, without the LoadImage/SaveImage transforms the SDK drops."""
        return filter_compose(self._get_compose(name, DISALLOW_LOAD_SAVE).flatten(), DISALLOW_LOAD_SAVE)

    def pre_process(self, data: Any, *args: Any, **kwargs: Any) -> Any:
        """The bundle's preprocessing, plus the case item that its RegionsToLabelsd("auto") reads."""
        detected = data["image"].meta.get(DETECTED_CONVENTION)
        processed = super().pre_process(data, *args, **kwargs)
        if detected is not None:
            processed[CASE_CONVENTION] = detected
        return processed

    def convention(self, detected: str | None) -> LabelConvention:
        """The convention the bundle's RegionsToLabelsd paints for a case with `detected` (None: unscanned), given the
        convention its model was trained on (`model_convention`)."""
        model = self.parser.get_parsed_content("model_convention")
        return painted_convention(str(self.parser["label_convention"]), detected, model)

    @property
    def bundle_version(self) -> str:
        return str(self.parser["_meta_"].get("version", "unknown"))


class StudyWriterOperator(Operator):
    """Writes `<case>.nii.gz` (label map on the input grid) and, for DICOM input, `<case>_seg.dcm` (DICOM SEG)."""

    def __init__(
        self, fragment: Fragment, *args: Any, output_folder: Path, inference: BratsBundleInferenceOperator, **kwargs
    ) -> None:
        self.output_folder = output_folder
        self.inference = inference
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("seg_image")
        spec.input("study")

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        frames = np.asarray(op_input.receive("seg_image").asnumpy())  # the SDK's (slices, rows, cols) uint8
        info: StudyInfo = op_input.receive("study")
        label = np.swapaxes(frames, 0, 2)
        if label.shape != info.shape:
            raise ValueError(f"{info.case_id}: prediction shape {label.shape} is not the input grid {info.shape}.")
        path = write_label_map(label, info.affine, self.output_folder / f"{info.case_id}.nii.gz")
        logger.info(f"wrote {path}")
        if info.reference is not None:
            convention = self.inference.convention(info.detected_convention)
            seg = self.output_folder / f"{info.case_id}_seg.dcm"
            labels, tissues = convention.labels, convention.tissues
            write_dicom_seg(frames, info.reference, labels, tissues, self.inference.bundle_version, seg)
            logger.info(f"wrote {seg}")
