"""What a viewer shows for each tissue a label convention names: a display colour and a SNOMED CT code.

Keyed by the tissue short names of `labels.TISSUE_NAMES` (NCR, ED, ET, ...), so a new convention needs entries here
only for tissues no convention had before; `tests/label` checks that every tissue has one. Colours follow the BraTS
papers' figures (necrotic core red, edema green, enhancing tumour yellow). Codes come from DICOM's SNOMED CT lists (the
`SCT` concepts pydicom ships), all under the category 49755003 Morphologically abnormal structure; a tissue with no
such code (the resection cavity) has none rather than a guessed one.
"""

from __future__ import annotations

from dataclasses import dataclass

from scripts.labels import LabelConvention

SNOMED = "SCT"
CATEGORY = ("49755003", "Morphologically Abnormal Structure")


@dataclass(frozen=True)
class Segment:
    """One tissue's colour (RGB, 0-255) and SNOMED CT code (value, meaning), None where DICOM lists none."""

    color: tuple[int, int, int]
    code: tuple[str, str] | None


NECROSIS, EDEMA, NEOPLASM = ("6574001", "Necrosis"), ("79654002", "Edema"), ("108369006", "Neoplasm")

SEGMENTS: dict[str, Segment] = {
    "NCR": Segment((255, 0, 0), NECROSIS),
    "NETC": Segment((255, 0, 0), NECROSIS),
    "NET": Segment((255, 0, 0), NEOPLASM),
    "ED": Segment((0, 200, 0), EDEMA),
    "SNFH": Segment((0, 200, 0), EDEMA),
    "ET": Segment((255, 255, 0), NEOPLASM),
    "RC": Segment((0, 112, 255), None),
    "CC": Segment((160, 32, 240), ("367643001", "Cyst")),
    "GTV": Segment((255, 128, 0), ("228791009", "Gross tumor volume (observable entity)")),
}


def convention_segments(convention: LabelConvention) -> dict[int, tuple[str, Segment]]:
    """Label value -> (name, segment) for every label of `convention`, in value order."""
    return {value: (convention.labels[value], SEGMENTS[tissue]) for value, tissue in sorted(convention.tissues.items())}
