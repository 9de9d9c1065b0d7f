"""What a viewer shows for each tissue a label convention names: a display colour and a SNOMED CT code.

Keyed by the tissue short names of `labels.TISSUE_NAMES` (NCR, ED, ET, ...), so a new convention needs entries here
only for tissues no convention had before; `tests/label` checks that every tissue has one. The colours are the
overlay colours of the bundle's pictures (`pictures.TISSUE_COLOURS`: necrotic core red, edema green, enhancing tumour
yellow, as in the BraTS papers' figures) and the codes those of the MONAI Deploy app's DICOM SEG
(`deploy/outputs.py`), from DICOM's SNOMED CT lists, all under the category 49755003 Morphologically abnormal
structure; `tests/label` checks both agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from scripts.labels import LabelConvention

SNOMED = "SCT"
CATEGORY = ("49755003", "Morphologically Abnormal Structure")


@dataclass(frozen=True)
class Segment:
    """One tissue's colour (RGB, 0-1) and SNOMED CT code (value, meaning)."""

    color: tuple[float, float, float]
    code: tuple[str, str]

    @property
    def rgb255(self) -> list[int]:
        """The colour as 0-255 integers (DICOM's recommended display RGB value)."""
        return [round(c * 255) for c in self.color]


NECROSIS, EDEMA, NEOPLASM = ("6574001", "Necrosis"), ("79654002", "Edema"), ("108369006", "Neoplasm")
RED, GREEN = (0.95, 0.15, 0.1), (0.1, 0.85, 0.2)

SEGMENTS: dict[str, Segment] = {
    "NCR": Segment(RED, NECROSIS),
    "NET": Segment(RED, NECROSIS),
    "NETC": Segment(RED, NECROSIS),
    "ED": Segment(GREEN, EDEMA),
    "SNFH": Segment(GREEN, EDEMA),
    "ET": Segment((1.0, 0.9, 0.0), NEOPLASM),
    "RC": Segment((0.2, 0.45, 1.0), ("245849007", "Post-surgical anatomy")),
    "CC": Segment((0.0, 0.9, 0.9), ("367643001", "Cyst")),
    "GTV": Segment((1.0, 0.3, 0.9), ("228791009", "Gross tumor volume (observable entity)")),
}


def convention_segments(convention: LabelConvention) -> dict[int, tuple[str, Segment]]:
    """Label value -> (name, segment) for every label of `convention`, in value order."""
    return {value: (convention.labels[value], SEGMENTS[tissue]) for value, tissue in sorted(convention.tissues.items())}
