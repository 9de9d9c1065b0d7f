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
from scripts.atomic import atomic_path  # the bundle's: needs the bundle root on sys.path

# SNOMED CT codes per tissue (the bundle's `labels.TISSUE_NAMES`): 6574001 Necrosis for the non-enhancing / necrotic
# core, 79654002 Edema for edema and FLAIR hyperintensity, 108369006 Neoplasm for the enhancing tumour, 367643001 Cyst,
# 228791009 Gross tumor volume, and for the resection cavity (DICOM lists no cavity code) 245849007 Post-surgical
# anatomy; category 49755003 Morphologically abnormal structure.
CATEGORY = codes.SCT.MorphologicallyAbnormalStructure
TISSUE_CODES: dict[str, Code] = {
    **dict.fromkeys(("NCR", "NET", "NETC"), codes.SCT.Necrosis),
    **dict.fromkeys(("ED", "SNFH"), codes.SCT.Edema),
    "ET": codes.SCT.Neoplasm,
    "CC": codes.SCT.Cyst,
    "GTV": codes.SCT.GrossTumorVolume,
    "RC": codes.SCT.PostSurgicalAnatomy,
}
SEG_SERIES_DESCRIPTION = "Swin UNETR brain tumour segmentation, not for clinical use"


def write_label_map(label: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    """Save an (x, y, z) uint8 label map with the input's affine."""
    with atomic_path(path, suffix=".nii.gz") as partial:
        nib.save(nib.Nifti1Image(label.astype(np.uint8), np.asarray(affine, dtype=np.float64)), partial)
    return path


def segment_descriptions(
    labels: Mapping[int, str], tissues: Mapping[int, str], bundle_version: str
) -> list[hd.seg.SegmentDescription]:
    """Segments 1..N for the label values in ascending order, named by the convention and coded by their tissue."""
    algorithm = hd.AlgorithmIdentificationSequence(
        name="swin_brats_bundle", version=bundle_version, family=codes.DCM.ArtificialIntelligence
    )
    return [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=labels[value][:64],  # LO
            segmented_property_category=CATEGORY,
            segmented_property_type=TISSUE_CODES[tissues[value]],
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        )
        for number, value in enumerate(sorted(labels), 1)
    ]


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
