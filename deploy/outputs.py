"""The app's outputs: the label map as NIfTI on the input grid, and a DICOM SEG with one coded segment per label."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from scripts import segments  # the bundle's (it needs the bundle root on sys.path): colour and code per tissue
from scripts.atomic import atomic_path

SEG_SERIES_DESCRIPTION = "Swin UNETR brain tumour segmentation, not for clinical use"


def write_label_map(label: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    """Save an (x, y, z) uint8 label map with the input's affine."""
    with atomic_path(path, suffix=".nii.gz") as partial:
        nib.save(nib.Nifti1Image(label.astype(np.uint8), np.asarray(affine, dtype=np.float64)), partial)
    return path


def dicom_code(code: segments.Code) -> Code:
    """The bundle's (value, meaning, scheme) code as pydicom's `Code`."""
    return Code(code.value, code.scheme, code.meaning)


def segment_descriptions(
    labels: Mapping[int, str], tissues: Mapping[int, str], bundle_version: str
) -> list[hd.seg.SegmentDescription]:
    """Segments 1..N for the label values in ascending order, named by the convention; code, category and display
    colour those of their tissue in the bundle's `segments.SEGMENTS`."""
    algorithm = hd.AlgorithmIdentificationSequence(
        name="swin_brats_bundle", version=bundle_version, family=codes.DCM.ArtificialIntelligence
    )
    described = []
    for number, value in enumerate(sorted(labels), 1):
        segment = segments.SEGMENTS[tissues[value]]
        described.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=labels[value][:64],  # LO
                segmented_property_category=dicom_code(segment.category),
                segmented_property_type=dicom_code(segment.code),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
                display_color=hd.color.CIELabColor.from_rgb(*segment.rgb255),
            )
        )
    return described


def write_dicom_seg(
    frames: np.ndarray,
    source_images: Sequence[Dataset],
    labels: Mapping[int, str],
    tissues: Mapping[int, str],
    bundle_version: str,
    path: Path,
) -> Path:
    """Save a BINARY DICOM SEG of a (slices, rows, cols) label map whose slices follow `source_images`.

    Label values are renumbered to segment numbers 1..N (BraTS 2021's 4 becomes segment 3); empty frames are left out.
    """
    segment_of = np.zeros(int(max(labels)) + 1, dtype=np.uint8)
    for number, value in enumerate(sorted(labels), 1):
        segment_of[value] = number
    unknown = sorted(set(np.unique(frames).tolist()) - {0, *labels})
    if unknown:
        raise ValueError(f"{path.name}: label values {unknown} have no segment (known: {sorted(labels)}).")
    seg = hd.seg.Segmentation(
        source_images=list(source_images),
        pixel_array=segment_of[frames],
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(labels, tissues, bundle_version),
        series_instance_uid=hd.UID(),
        series_number=9001,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="MONAI",
        manufacturer_model_name="swin_brats_bundle",
        software_versions=bundle_version,
        device_serial_number="0",
        series_description=SEG_SERIES_DESCRIPTION,
    )
    with atomic_path(path, suffix=".dcm") as partial:
        seg.save_as(partial)
    return path
