"""The one place where label conventions live: dataset label values <-> the three region channels TC, WT, ET."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from scripts.layouts import LAYOUTS

REGIONS = ("TC", "WT", "ET")
"""Network output channels, in order: tumour core, whole tumour, enhancing tumour."""


def region_keys() -> list[str]:
    """The regions in channel order as key suffixes (`pred_tc`, ...): the configs' `SplitDimd` postfixes."""
    return [region.lower() for region in REGIONS]


@dataclass(frozen=True)
class LabelConvention:
    """Label values of one dataset family and how they make up the nested regions ET ⊂ TC ⊂ WT."""

    name: str
    description: str
    labels: Mapping[int, str]
    enhancing: int
    core_only: int
    edema: int

    @property
    def allowed_values(self) -> frozenset[int]:
        return frozenset({0, *self.labels})

    @property
    def region_values(self) -> tuple[frozenset[int], frozenset[int], frozenset[int]]:
        """Label values making up TC, WT and ET, in the order of `REGIONS`."""
        core = frozenset({self.core_only, self.enhancing})
        return core, core | {self.edema}, frozenset({self.enhancing})


CONVENTIONS: dict[str, LabelConvention] = {
    convention.name: convention
    for convention in (
        LabelConvention(
            name="brats2021",
            description="BraTS 2018-2022: 1 NCR/NET, 2 ED, 4 ET",
            labels={1: "necrotic / non-enhancing tumour core", 2: "peritumoral edema", 4: "enhancing tumour"},
            enhancing=4,
            core_only=1,
            edema=2,
        ),
        LabelConvention(
            name="brats2023",
            description="BraTS 2023+ (GLI): 1 NCR, 2 ED, 3 ET",
            labels={1: "necrotic tumour core", 2: "peritumoral edema", 3: "enhancing tumour"},
            enhancing=3,
            core_only=1,
            edema=2,
        ),
        LabelConvention(
            name="msd",
            description="MSD Task01_BrainTumour: 1 ED, 2 NET, 3 ET",
            labels={1: "edema", 2: "non-enhancing tumour", 3: "enhancing tumour"},
            enhancing=3,
            core_only=2,
            edema=1,
        ),
    )
}


UNSCANNED_CONVENTION = "brats2021"
"""What label_convention `auto` writes where no dataset was scanned (MONAI Label, MONAI Deploy: one image each)."""

CASE_CONVENTION = "label_convention"
"""The item of an inference case that carries its dataset's detected convention (see `datalist.inference_cases`)."""


def label_names(convention: LabelConvention) -> dict[str, str]:
    """Label value -> name, background included: what MONAI Label and 3D Slicer show for the written label map."""
    return {"0": "background", **{str(value): name for value, name in sorted(convention.labels.items())}}


def get_convention(name: str, detected: str | None = None) -> LabelConvention:
    """Resolve a configured convention name; `auto` takes the one detected from the dataset layout."""
    resolved = detected if name == "auto" else name
    if resolved is None:
        raise ValueError("label_convention is 'auto' but no convention could be detected; pass --label_convention.")
    if resolved not in CONVENTIONS:
        raise ValueError(f"Unknown label_convention '{resolved}'; choose one of: auto, {', '.join(CONVENTIONS)}.")
    return CONVENTIONS[resolved]


def detect_convention(labels: Sequence[np.ndarray], four_dimensional: bool) -> LabelConvention:
    """Guess from label values where no layout is known: brats2021 when a label 4 (its ET alone) is present, else msd
    for a 4D (MSD-like) image, else brats2023."""
    brats2021 = CONVENTIONS["brats2021"]
    if any((np.asarray(label) == brats2021.enhancing).any() for label in labels):
        return brats2021
    return CONVENTIONS["msd" if four_dimensional else "brats2023"]


def auto_convention(
    layout: str | None, labels: Sequence[np.ndarray] = (), four_dimensional: bool = False
) -> LabelConvention:
    """The one `auto` rule: the convention of the dataset's layout (`layouts.LAYOUTS`) when it is known.

    Only without a layout (a lone file) do label values decide (`detect_convention`); with neither (one image to
    predict: MONAI Label, MONAI Deploy) it is `UNSCANNED_CONVENTION`.
    """
    if layout is not None:
        return CONVENTIONS[LAYOUTS[layout].convention]
    if labels:
        return detect_convention(labels, four_dimensional)
    return CONVENTIONS[UNSCANNED_CONVENTION]


def _like(result: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """`result` carrying `source`'s metadata when `source` is a MetaTensor (file name, affine for saving)."""
    if isinstance(source, MetaTensor):
        return MetaTensor(result, meta=source.meta, applied_operations=source.applied_operations)
    return result


def _source_name(data: torch.Tensor | np.ndarray) -> str:
    meta = getattr(data, "meta", None) or {}
    return str(meta.get("filename_or_obj", "<in-memory label>"))


def labels_to_regions(label: torch.Tensor, convention: LabelConvention) -> torch.Tensor:
    """Map a (1, H, W, D) or (H, W, D) label map to float (3, H, W, D) channels TC, WT, ET.

    Unknown label values raise a ValueError naming the file and the values.
    """
    values = torch.as_tensor(label)
    if values.ndim == 4 and values.shape[0] == 1:
        values = values[0]
    found = {int(v) for v in torch.unique(values.as_tensor() if isinstance(values, MetaTensor) else values)}
    unknown = sorted(found - convention.allowed_values)
    if unknown:
        raise ValueError(
            f"{_source_name(label)}: label values {unknown} are not part of the '{convention.name}' convention "
            f"({convention.description}); expected a subset of {sorted(convention.allowed_values)}. "
            "Pick the right --label_convention for this dataset."
        )
    plain = values.as_tensor() if isinstance(values, MetaTensor) else values
    channels = [
        torch.isin(plain, torch.tensor(sorted(group), device=plain.device)) for group in convention.region_values
    ]
    return _like(torch.stack(channels).to(torch.float32), label)


def nest_regions(regions: torch.Tensor) -> torch.Tensor:
    """Binary TC/WT/ET channels made nested (ET ⊂ TC ⊂ WT) by union: the regions a painted label map encodes."""
    tc, wt, et = (regions[i] > 0.5 for i in range(3))
    return _like(torch.stack([tc | et, wt | tc | et, et]).to(regions.dtype), regions)


def regions_to_labels(regions: torch.Tensor, convention: LabelConvention) -> torch.Tensor:
    """Paint binary (3, H, W, D) TC/WT/ET channels as a (1, H, W, D) uint8 label map in the convention's values.

    Painting WT, then TC, then ET enforces the nesting ET ⊂ TC ⊂ WT whatever the network predicted.
    """
    tc, wt, et = (regions[i] > 0.5 for i in range(3))
    painted = torch.zeros(regions.shape[1:], dtype=torch.uint8, device=regions.device)
    painted[wt] = convention.edema
    painted[tc] = convention.core_only
    painted[et] = convention.enhancing
    return _like(painted.unsqueeze(0), regions)


class LabelsToRegionsd(MapTransform):
    """Label map -> float TC/WT/ET channels for any supported convention.

    MONAI's `ConvertToMultiChannelBasedOnBratsClassesd` assumes label 1 is the necrotic core, which does not hold for
    MSD Task01 (1 is edema), and it accepts unknown values silently; this covers all conventions and refuses those.
    """

    def __init__(self, keys: KeysCollection, convention: LabelConvention, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.convention = convention

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = labels_to_regions(d[key], self.convention)
        return d


class NestRegionsd(MapTransform):
    """Make predicted regions nested, so metrics score exactly what a saved label map holds."""

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = nest_regions(d[key])
        return d


class RegionsToLabelsd(MapTransform):
    """Binary TC/WT/ET channels -> uint8 label map in the dataset's own label values (for saving predictions).

    `convention` is a `LabelConvention` or its name; "auto" takes each case's `label_convention` item (set by
    `cases.inference_cases` from a scanned dataset) and, for a case without one (MONAI Label, MONAI Deploy),
    `UNSCANNED_CONVENTION`, whose values metadata.json's `channel_def` names.
    """

    def __init__(
        self, keys: KeysCollection, convention: LabelConvention | str, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if isinstance(convention, str):
            get_convention(convention, UNSCANNED_CONVENTION)  # an unknown name stops here, not at the first case
        self.convention = convention

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        convention = self.convention
        if isinstance(convention, str):
            convention = get_convention(convention, d.get(CASE_CONVENTION, auto_convention(None).name))
        for key in self.key_iterator(d):
            d[key] = regions_to_labels(d[key], convention)
        return d
