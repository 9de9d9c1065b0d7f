"""What a viewer shows for each tissue a label convention names: a display colour and a DICOM coded concept.

The one source of these facts, keyed by the tissue short names of `labels.TISSUE_NAMES` (NCR, ED, ET, ...): the
bundle's pictures (`pictures.TISSUE_COLOURS`), the MONAI Label app's segments and the MONAI Deploy app's DICOM SEG
(`deploy/outputs.py`) all read `SEGMENTS`. A new convention needs entries here only for tissues no convention had.

Colours (RGB, 0-1) follow the BraTS papers' figures: necrotic / non-enhancing core red, edema green, enhancing tumour
yellow. Codes are the segmented property types of DICOM PS3.16's context groups, looked up in pydicom's copy of them
(`pydicom.sr._cid_dict`): CID 7168 "Brain Lesion Segmentation Type With Necrosis" and CID 7169 "... Without Necrosis"
(Necrosis, Edema, NCIt Enhancing Lesion, NCIt Non-Enhancing Lesion), CID 7159 "Lesion Segmentation Type" (Cyst), all
under the category 49755003 Morphologically Abnormal Structure (CID 7150); the radiotherapy target from CID 9534
"Radiotherapy Target" under DCM 130041 RT Target (CID 9580 "RT Segmentation Property Category").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from scripts.labels import LabelConvention

SNOMED, NCIT, DCM = "SCT", "NCIt", "DCM"


class Code(NamedTuple):
    """A DICOM coded concept: code value, code meaning (as DICOM words it) and coding scheme designator."""

    value: str
    meaning: str
    scheme: str = SNOMED


CATEGORY = Code("49755003", "Morphologically Abnormal Structure")
RT_TARGET = Code("130041", "RT Target", DCM)

NECROSIS = Code("6574001", "Necrosis")  # CID 7168
EDEMA = Code("79654002", "Edema")  # CID 7168, 7169
ENHANCING = Code("C113842", "Enhancing Lesion", NCIT)  # CID 7168, 7169
# The non-enhancing core, necrosis included where a task does not label it apart (CID 7169 uses this one concept for
# it): NETC of BraTS MEN, MET, PED and post-treatment GLI, MSD's NET. BraTS 2021/2023 GLI's NCR keeps Necrosis.
NON_ENHANCING = Code("C81175", "Non-Enhancing Lesion", NCIT)  # CID 7168, 7169
CYST = Code("367643001", "Cyst")  # CID 7159
# No segmentation context group has a (resection) cavity: CID 7151's cavities are normal anatomy (91806002 Body
# cavity, ...). SNOMED CT 245849007 "Post-surgical anatomy (morphologic abnormality)" is the abnormality surgery leaves,
# under the category's own hierarchy (49755003); DICOM lists it only in CID 9272 RT ROI Image Acquisition Context.
POST_SURGICAL = Code("245849007", "Post-surgical anatomy")
GTV = Code("228791009", "GTV")  # CID 9534 Radiotherapy Target (BraTS MEN-RT's label is a radiotherapy target)

RED, GREEN = (0.95, 0.15, 0.1), (0.1, 0.85, 0.2)


@dataclass(frozen=True)
class Segment:
    """One tissue's colour (RGB, 0-1), segmented property type `code` and its category."""

    color: tuple[float, float, float]
    code: Code
    category: Code = CATEGORY

    @property
    def rgb255(self) -> list[int]:
        """The colour as 0-255 integers (DICOM's recommended display RGB value)."""
        return [round(c * 255) for c in self.color]


SEGMENTS: dict[str, Segment] = {
    "NCR": Segment(RED, NECROSIS),
    "NET": Segment(RED, NON_ENHANCING),
    "NETC": Segment(RED, NON_ENHANCING),
    "ED": Segment(GREEN, EDEMA),
    "SNFH": Segment(GREEN, EDEMA),
    "ET": Segment((1.0, 0.9, 0.0), ENHANCING),
    "RC": Segment((0.2, 0.45, 1.0), POST_SURGICAL),
    "CC": Segment((0.0, 0.9, 0.9), CYST),
    "GTV": Segment((1.0, 0.3, 0.9), GTV, RT_TARGET),
}


def convention_segments(convention: LabelConvention) -> dict[int, tuple[str, Segment]]:
    """Label value -> (name, segment) for every label of `convention`, in value order."""
    return {value: (convention.labels[value], SEGMENTS[tissue]) for value, tissue in sorted(convention.tissues.items())}
