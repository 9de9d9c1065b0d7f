"""The DICOM SEG writer on its own (no app run): every convention's segments carry the bundle's `segments.py` code,
category and colour, and those codes are the DICOM context groups' concepts that `segments.py` names."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from conftest import study_attributes, write_mr_series
from outputs import write_dicom_seg
from pydicom.sr._cid_dict import cid_concepts
from pydicom.sr._concepts_dict import concepts
from scripts.labels import CONVENTIONS, TISSUE_NAMES
from scripts.segments import SEGMENTS

# The context group (DICOM PS3.16) each tissue's type code comes from, by the reading in segments.py's docstring.
TYPE_GROUPS = {
    "NCR": 7168,  # Brain Lesion Segmentation Type With Necrosis
    "ED": 7168,
    "SNFH": 7168,
    "ET": 7168,
    "NET": 7169,  # ... Without Necrosis
    "NETC": 7169,
    "CC": 7159,  # Lesion Segmentation Type
    "RC": 9272,  # RT ROI Image Acquisition Context: DICOM's only list with Post-surgical anatomy
    "GTV": 9534,  # Radiotherapy Target
}
CATEGORY_GROUPS = (7150, 9580)  # Segmentation Property Category, RT Segmentation Property Category


def in_group(code: tuple[str, str, str], cid: int) -> bool:
    """Whether (value, meaning, scheme) is a concept of context group `cid` in pydicom's copy of DICOM PS3.16."""
    value, meaning, scheme = code
    keywords = cid_concepts[cid].get(scheme, [])
    return any(concepts[scheme][keyword].get(value, (None,))[0] == meaning for keyword in keywords)


def described(seg: hd.seg.Segmentation, number: int) -> tuple[tuple, tuple, list[int]]:
    """(type, category, display RGB) of one segment as written: codes as (value, meaning, scheme)."""
    item = seg.SegmentSequence[number - 1]
    codes = [
        (s[0].CodeValue, s[0].CodeMeaning, s[0].CodingSchemeDesignator)
        for s in (item.SegmentedPropertyTypeCodeSequence, item.SegmentedPropertyCategoryCodeSequence)
    ]
    rgb = list(hd.color.CIELabColor.from_dicom_value(item.RecommendedDisplayCIELabValue).to_rgb())
    return codes[0], codes[1], rgb


def test_every_tissue_code_is_a_concept_of_the_context_group_named() -> None:
    assert set(TYPE_GROUPS) == set(SEGMENTS) == set(TISSUE_NAMES)
    for tissue, segment in SEGMENTS.items():
        assert in_group(segment.code, TYPE_GROUPS[tissue]), (tissue, segment.code)
        assert any(in_group(segment.category, cid) for cid in CATEGORY_GROUPS), (tissue, segment.category)


@pytest.mark.parametrize("name", sorted(CONVENTIONS))
def test_dicom_seg_segments_carry_the_bundle_segments(name: str, tmp_path: Path) -> None:
    convention = CONVENTIONS[name]
    values = sorted(convention.labels)
    volume = np.zeros((8, 8, len(values)), dtype=np.int16)
    label = np.zeros(volume.shape, dtype=np.uint8)
    for k, value in enumerate(values):  # one slice per label value, so every segment has a frame
        label[2:6, 2:6, k] = value
    paths = write_mr_series(volume, np.eye(4), "AX T2 FLAIR", tmp_path / "FLAIR", study_attributes(), 1)
    frames = np.moveaxis(label, 2, 0).transpose(0, 2, 1)  # (slices, rows, columns) as the series' slice k holds
    path = write_dicom_seg(
        frames, [pydicom.dcmread(p) for p in paths], convention.labels, convention.tissues, "0.0", tmp_path / "s.dcm"
    )
    seg = hd.seg.segread(path)
    assert seg.number_of_segments == len(values)
    for number, value in enumerate(values, 1):
        segment = SEGMENTS[convention.tissues[value]]
        assert seg.get_segment_description(number).segment_label == convention.labels[value]
        assert described(seg, number) == (tuple(segment.code), tuple(segment.category), segment.rgb255), value
