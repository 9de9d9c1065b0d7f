"""The one place where label conventions live: each task's label values and names, the regions the network predicts
from them (its output channels), the order in which regions paint labels back, and the groups its challenge scores.

A convention is data: adding a task is one entry in `CONVENTIONS` (and a layout in `layouts.py` if its files are named
apart). The number of network outputs is `len(convention.regions)`; BraTS 2021, BraTS 2023 and MSD Task01 keep the
three outputs TC, WT, ET (`REGIONS`).
"""

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
"""Network output channels of the BraTS 2021/2023 and MSD conventions, in order: tumour core, whole tumour, enhancing
tumour. Other conventions have their own (`LabelConvention.region_names`)."""

LESION_WISE_2023 = "brats2023"
"""Scoring of the BraTS 2023 lesion-wise scripts: truth lesions dilated before matching, misses and false positives
averaged in (`metrics.lesion_wise`)."""
BRATS_EVALUATION = "brats-evaluation"
"""Scoring of the `brats-evaluation` package (BraTS 2024-2025): connected components matched one to one by Dice, the
mean over matched lesions, its edge cases (`metrics.matched_lesions`)."""

TISSUE_NAMES = {
    "NCR": "necrotic tumour core",
    "NET": "non-enhancing tumour",
    "NETC": "non-enhancing tumour core",
    "ED": "peritumoral edema",
    "SNFH": "surrounding non-enhancing FLAIR hyperintensity",
    "ET": "enhancing tumour",
    "RC": "resection cavity",
    "CC": "cystic component",
    "GTV": "gross tumour volume",
}
"""Every tissue a convention labels, by its short name (what pictures, MONAI Label and DICOM SEG segments key on)."""

_ROLES = {"enhancing": ("ET",), "core_only": ("NCR", "NET", "NETC"), "edema": ("ED", "SNFH")}


@dataclass(frozen=True)
class Region:
    """One network output channel: a region made of label values (a sigmoid, trained against their union)."""

    name: str
    values: frozenset[int]


@dataclass(frozen=True)
class LabelConvention:
    """Label values of one task, the regions the network predicts from them, how regions paint labels back, and the
    groups its challenge scores.

    `paint` lists region names in painting order: each paints the one value it holds that no later region holds, so
    later regions win where predictions overlap (ET over TC over WT). Painting the regions of a label map gives the map
    back (`check_convention`).
    """

    name: str
    description: str
    tissues: Mapping[int, str]  # label value -> tissue short name (a key of TISSUE_NAMES)
    regions: tuple[Region, ...]
    paint: tuple[str, ...]
    groups: tuple[tuple[str, frozenset[int]], ...]  # scored groups in column order: (name, label values)
    scoring: str = LESION_WISE_2023
    evaluation_config: str | None = None  # the brats-evaluation package's config that scores this task, if any
    label_names: Mapping[int, str] | None = None  # names where the task's documentation words them its own way

    @property
    def labels(self) -> dict[int, str]:
        """Label value -> name (what MONAI Label, 3D Slicer and DICOM SEG segments show)."""
        names = dict(self.label_names or {})
        return {value: names.get(value, TISSUE_NAMES[tissue]) for value, tissue in sorted(self.tissues.items())}

    @property
    def allowed_values(self) -> frozenset[int]:
        return frozenset({0, *self.tissues})

    @property
    def region_names(self) -> tuple[str, ...]:
        """The network's output channels, in order."""
        return tuple(region.name for region in self.regions)

    @property
    def region_values(self) -> tuple[frozenset[int], ...]:
        """Label values making up each region, in channel order."""
        return tuple(region.values for region in self.regions)

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.groups)

    def channel(self, region: str) -> int | None:
        """The output channel of `region` (TC, WT, ...), or None where this convention has no such region."""
        return self.region_names.index(region) if region in self.region_names else None

    def painted_value(self, region: str) -> int:
        """The label value `region` paints: the one it holds that no region painted after it holds."""
        later = self.paint[self.paint.index(region) + 1 :]
        left = set(self.regions[self.region_names.index(region)].values)
        for other in later:
            left -= self.regions[self.region_names.index(other)].values
        if len(left) != 1:
            raise ValueError(f"{self.name}: region {region} would paint {sorted(left)}; it must paint one value.")
        return next(iter(left))

    def _value_of(self, roles: Sequence[str]) -> int | None:
        return next((value for value, tissue in sorted(self.tissues.items()) if tissue in roles), None)

    @property
    def enhancing(self) -> int | None:
        """The enhancing tumour's value (None without one)."""
        return self._value_of(_ROLES["enhancing"])

    @property
    def core_only(self) -> int | None:
        """The value of the tumour core that is not enhancing (necrosis / non-enhancing core)."""
        return self._value_of(_ROLES["core_only"])

    @property
    def edema(self) -> int | None:
        """The value of the edema / FLAIR hyperintensity around the core."""
        return self._value_of(_ROLES["edema"])


def _regions(**values: Sequence[int]) -> tuple[Region, ...]:
    return tuple(Region(name, frozenset(v)) for name, v in values.items())


def _groups(**values: Sequence[int]) -> tuple[tuple[str, frozenset[int]], ...]:
    return tuple((name, frozenset(v)) for name, v in values.items())


def _brats_three(name: str, description: str, ncr: int, ed: int, et: int, **more) -> LabelConvention:
    """A convention with the three nested regions TC, WT, ET and the scored groups et, tc, wt."""
    core = (ncr, et)
    return LabelConvention(
        name=name,
        description=description,
        tissues=more.pop("tissues", {ncr: "NCR", ed: "ED", et: "ET"}),
        regions=_regions(TC=core, WT=(*core, ed), ET=(et,)),
        paint=("WT", "TC", "ET"),
        groups=_groups(et=(et,), tc=core, wt=(*core, ed)),
        **more,
    )


# BraTS 2024-2025 post-treatment glioma and metastases: 1 NETC, 2 SNFH, 3 ET, 4 RC; RC lies outside WT, painted first
# so tumour wins where both are predicted.
_POST_TREATMENT = {1: "NETC", 2: "SNFH", 3: "ET", 4: "RC"}
_POST_TREATMENT_REGIONS = _regions(TC=(1, 3), WT=(1, 2, 3), ET=(3,), RC=(4,))

CONVENTIONS: dict[str, LabelConvention] = {
    convention.name: convention
    for convention in (
        _brats_three(
            "brats2021",
            "BraTS 2018-2022: 1 NCR/NET, 2 ED, 4 ET",
            ncr=1,
            ed=2,
            et=4,
            label_names={1: "necrotic / non-enhancing tumour core"},
        ),
        _brats_three(
            "brats2023", "BraTS 2023 adult glioma and Africa (GLI, SSA): 1 NCR, 2 ED, 3 ET", ncr=1, ed=2, et=3
        ),
        _brats_three(
            "msd",
            "MSD Task01_BrainTumour: 1 ED, 2 NET, 3 ET",
            ncr=2,
            ed=1,
            et=3,
            tissues={1: "ED", 2: "NET", 3: "ET"},
            label_names={1: "edema"},
        ),
        LabelConvention(
            name="brats2024",
            description="BraTS 2024-2025 adult glioma, post-treatment (GLI): 1 NETC, 2 SNFH, 3 ET, 4 RC",
            tissues=_POST_TREATMENT,
            regions=_POST_TREATMENT_REGIONS,
            paint=("RC", "WT", "TC", "ET"),
            groups=_groups(et=(3,), netc=(1,), snfh=(2,), rc=(4,), tc=(1, 3), wt=(1, 2, 3)),
            scoring=BRATS_EVALUATION,
            evaluation_config="gli",
        ),
        LabelConvention(
            name="met",
            description="BraTS 2023-2025 brain metastases (MET): 1 NETC, 2 SNFH, 3 ET, 4 RC",
            tissues=_POST_TREATMENT,
            regions=_POST_TREATMENT_REGIONS,
            paint=("RC", "WT", "TC", "ET"),
            groups=_groups(et=(3,), rc=(4,), tc=(1, 3), wt=(1, 2, 3)),
            scoring=BRATS_EVALUATION,
            evaluation_config="mets",
        ),
        LabelConvention(
            name="ped",
            description="BraTS 2024-2025 paediatric tumours (PED): 1 ET, 2 NETC, 3 CC, 4 ED",
            tissues={1: "ET", 2: "NETC", 3: "CC", 4: "ED"},
            regions=_regions(WT=(1, 2, 3, 4), TC=(1, 2, 3), ET=(1,), CC=(3,)),
            paint=("WT", "TC", "CC", "ET"),
            groups=_groups(et=(1,), netc=(2,), cc=(3,), ed=(4,), tc=(1, 2, 3), wt=(1, 2, 3, 4)),
            scoring=BRATS_EVALUATION,
            evaluation_config="ped",
        ),
        _brats_three(
            "men",
            "BraTS 2023-2025 meningioma, pre-operative (MEN): 1 NETC, 2 SNFH, 3 ET",
            ncr=1,
            ed=2,
            et=3,
            tissues={1: "NETC", 2: "SNFH", 3: "ET"},
            scoring=BRATS_EVALUATION,
            evaluation_config="MenPre",
        ),
        _brats_three(
            "goat",
            "BraTS 2024-2025 generalisability (GoAT), 2023 labels scored by brats-evaluation: 1 NCR, 2 ED, 3 ET",
            ncr=1,
            ed=2,
            et=3,
            scoring=BRATS_EVALUATION,
            evaluation_config="GoAT",
        ),
        LabelConvention(
            name="men_rt",
            description="BraTS 2024-2025 meningioma radiotherapy (MEN-RT): 1 GTV",
            tissues={1: "GTV"},
            regions=_regions(GTV=(1,)),
            paint=("GTV",),
            groups=_groups(gtv=(1,)),
            scoring=BRATS_EVALUATION,
            evaluation_config="MenRT",
        ),
    )
}


def check_convention(convention: LabelConvention) -> None:
    """Raise unless the convention is consistent: tissues known, regions named once, every region painted once, and
    painting the regions of each label value gives that value back."""
    if unknown := sorted(set(convention.tissues.values()) - set(TISSUE_NAMES)):
        raise ValueError(f"{convention.name}: unknown tissues {unknown}; add them to TISSUE_NAMES.")
    names = convention.region_names
    if len(set(names)) != len(names) or sorted(convention.paint) != sorted(names):
        raise ValueError(f"{convention.name}: paint order {convention.paint} must name each region {names} once.")
    for value in sorted(convention.allowed_values):
        label = torch.full((1, 1, 1), value)
        if int(regions_to_labels(labels_to_regions(label, convention), convention).max()) != value:
            raise ValueError(f"{convention.name}: label {value} does not survive painting its regions back.")


UNSCANNED_CONVENTION = "brats2021"
"""What label_convention `auto` writes where no dataset was scanned and the model records no convention (MONAI Label,
MONAI Deploy: one image each)."""

PAINTED_CONVENTION = "painted_label_convention"
"""Metadata item of a painted label map: the convention it was painted in (`RegionsToLabelsd`), which the writer
records in the NIfTI header's `descrip` as `DESCRIP_PREFIX<name>`, and the submission check reads back."""
DESCRIP_PREFIX = "label_convention="

CASE_CONVENTION = "label_convention"
"""The item of an inference case that carries the convention its prediction is painted in (`datalist`)."""


def label_names(convention: LabelConvention) -> dict[str, str]:
    """Label value -> name, background included: what MONAI Label and 3D Slicer show for the written label map."""
    return {"0": "background", **{str(value): name for value, name in sorted(convention.labels.items())}}


def region_keys(convention: LabelConvention | None = None) -> list[str]:
    """The regions in channel order as key suffixes (`pred_tc`, ...): the configs' `SplitDimd` postfixes."""
    names = REGIONS if convention is None else convention.region_names
    return [region.lower() for region in names]


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


def same_regions(one: LabelConvention, other: LabelConvention) -> bool:
    """Whether a network trained on `one` predicts the regions of `other` (a model of either paints both)."""
    return one.region_names == other.region_names


def describe(convention: LabelConvention) -> str:
    """`name (regions TC, WT, ET)`, for one-line messages."""
    return f"{convention.name} (regions {', '.join(convention.region_names)})"


def painted_convention(
    requested: str, detected: str | None, model: LabelConvention, layout: str | None = None
) -> LabelConvention:
    """The convention a prediction of `model` (what the network predicts) is painted in.

    An explicit `requested` name wins (`model_labels.model_convention` has refused one with other regions). `auto`
    takes the dataset's convention (`detected`) when its regions are the model's, so a BraTS 2021 model writes a
    BraTS 2023 dataset's values; else the model's own, where the dataset's layout may hold it (a BraTS 2024
    post-treatment model on BraTS-GLI names); else it stops in one line. Nothing detected: the model's.
    """
    if requested != "auto":
        return get_convention(requested)
    if detected is None:
        return model
    dataset = get_convention(detected)
    if same_regions(dataset, model):
        return dataset
    if layout is None or model.name in LAYOUTS[layout].conventions:
        return model
    raise ValueError(
        f"the model predicts {describe(model)}, but this {LAYOUTS[layout].title} dataset is labelled "
        f"{describe(dataset)}: use a model trained on it, or pass --label_convention."
    )


def _like(result: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """`result` carrying `source`'s metadata when `source` is a MetaTensor (file name, affine for saving)."""
    if isinstance(source, MetaTensor):
        return MetaTensor(result, meta=source.meta, applied_operations=source.applied_operations)
    return result


def _source_name(data: torch.Tensor | np.ndarray) -> str:
    meta = getattr(data, "meta", None) or {}
    return str(meta.get("filename_or_obj", "<in-memory label>"))


def fitting_conventions(found: set[int], convention: LabelConvention) -> list[str]:
    """The other conventions whose values hold `found` most tightly (fewest values beyond them): {1, 2, 4} names
    brats2021 alone, {1, 2, 3, 4} the BraTS 2024-2025 ones."""
    fits = [other for other in CONVENTIONS.values() if other.name != convention.name and found <= other.allowed_values]
    tightest = min((len(other.allowed_values) for other in fits), default=0)
    return [other.name for other in fits if len(other.allowed_values) == tightest]


def other_conventions_hint(found: set[int], convention: LabelConvention) -> str:
    """' (a brats2024 or ... label map?)' naming the conventions whose values fit, else ''."""
    fits = fitting_conventions(found, convention)
    return f" (a {' or '.join(fits)} label map?)" if fits else ""


def labels_to_regions(label: torch.Tensor, convention: LabelConvention) -> torch.Tensor:
    """Map a (1, H, W, D) or (H, W, D) label map to float (R, H, W, D) channels, one per region of the convention.

    Unknown label values raise a ValueError naming the file, the values and the conventions they fit.
    """
    values = torch.as_tensor(label)
    if values.ndim == 4 and values.shape[0] == 1:
        values = values[0]
    found = {int(v) for v in torch.unique(values.as_tensor() if isinstance(values, MetaTensor) else values)}
    unknown = sorted(found - convention.allowed_values)
    if unknown:
        raise ValueError(
            f"{_source_name(label)}: label values {unknown} are not part of the '{convention.name}' convention "
            f"({convention.description}); expected a subset of {sorted(convention.allowed_values)}"
            f"{other_conventions_hint(found, convention)}. Pick the right --label_convention for this dataset."
        )
    plain = values.as_tensor() if isinstance(values, MetaTensor) else values
    channels = [
        torch.isin(plain, torch.tensor(sorted(group), device=plain.device)) for group in convention.region_values
    ]
    return _like(torch.stack(channels).to(torch.float32), label)


def _check_channels(regions: torch.Tensor, convention: LabelConvention) -> None:
    if regions.shape[0] != len(convention.regions):
        raise ValueError(
            f"{_source_name(regions)}: {regions.shape[0]} predicted channels, but the '{convention.name}' convention "
            f"has {len(convention.regions)} regions ({', '.join(convention.region_names)}): the model was trained on "
            "another convention; pass its --label_convention."
        )


def regions_to_labels(regions: torch.Tensor, convention: LabelConvention) -> torch.Tensor:
    """Paint binary (R, H, W, D) region channels as a (1, H, W, D) uint8 label map in the convention's values.

    Regions paint in `convention.paint` order, later over earlier (BraTS: WT, then TC, then ET), which enforces the
    nesting ET ⊂ TC ⊂ WT whatever the network predicted.
    """
    _check_channels(regions, convention)
    painted = torch.zeros(regions.shape[1:], dtype=torch.uint8, device=regions.device)
    for name in convention.paint:
        painted[regions[convention.region_names.index(name)] > 0.5] = convention.painted_value(name)
    return _like(painted.unsqueeze(0), regions)


def nest_regions(regions: torch.Tensor, convention: LabelConvention | None = None) -> torch.Tensor:
    """Binary region channels made what a painted label map encodes (default: TC, WT, ET made nested by union).

    Painting then reading the regions back: for TC/WT/ET this is the union rule ET ⊂ TC ⊂ WT; with a resection cavity
    or a cystic component it also settles overlaps as the painting does.
    """
    convention = convention or CONVENTIONS[UNSCANNED_CONVENTION]
    painted = regions_to_labels(regions, convention)
    nested = labels_to_regions(torch.as_tensor(painted)[0], convention).to(regions.dtype)
    return _like(nested, regions)


class LabelsToRegionsd(MapTransform):
    """Label map -> float region channels for any supported convention.

    MONAI's `ConvertToMultiChannelBasedOnBratsClassesd` assumes label 1 is the necrotic core, which does not hold for
    MSD Task01 (1 is edema) or paediatric tumours (1 is enhancing), has no fourth region (resection cavity, cystic
    component), and accepts unknown values silently; this covers all conventions and refuses those.
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
    """Make predicted regions what a painted label map holds, so metrics score exactly the saved map."""

    def __init__(
        self, keys: KeysCollection, convention: LabelConvention | None = None, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.convention = convention

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = nest_regions(d[key], self.convention)
        return d


class RegionsToLabelsd(MapTransform):
    """Binary region channels -> uint8 label map in the dataset's own label values (for saving predictions).

    `convention` is a `LabelConvention` or its name; "auto" takes each case's `label_convention` item (set by
    `datalist.inference_cases` from a scanned dataset) when its regions are the model's, and otherwise, as for a case
    without one (MONAI Label, MONAI Deploy), `model`: the convention the network was trained on
    (`model_labels.model_convention`), by default `UNSCANNED_CONVENTION`, whose values metadata.json's `channel_def`
    names.
    """

    def __init__(
        self,
        keys: KeysCollection,
        convention: LabelConvention | str,
        model: LabelConvention | str = UNSCANNED_CONVENTION,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if isinstance(convention, str):
            get_convention(convention, UNSCANNED_CONVENTION)  # an unknown name stops here, not at the first case
        self.convention = convention
        self.model = get_convention(model) if isinstance(model, str) else model

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        convention = self.convention
        if isinstance(convention, str):
            convention = painted_convention(convention, d.get(CASE_CONVENTION), self.model)
        for key in self.key_iterator(d):
            painted = regions_to_labels(d[key], convention)
            if isinstance(painted, MetaTensor):  # a new dict: the regions' own metadata stays as it was
                painted.meta = {**painted.meta, PAINTED_CONVENTION: convention.name}
            d[key] = painted
        return d
