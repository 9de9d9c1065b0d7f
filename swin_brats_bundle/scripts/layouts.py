"""The one declaration of the dataset layouts: folder and file naming, case prefix, modality names, channel order, label
convention.

Discovery (`cases.py`), the synthetic writer (`synthetic_data.py`), the pictures' case lookup and `auto` convention
(`visualize.py`, `labels.auto_convention`), the MONAI Deploy app and the test fixtures all derive from `LAYOUTS`. A new
layout is one entry here (plus a convention in `labels.py` only if its label values are new).

The BraTS 2023+ tasks share one file naming (`<case>-t2f.nii.gz`) and differ by case prefix (`BraTS-PED-`, ...): a case
belongs to the layout of that naming whose prefix it starts with (the longest), `brats2023` taking the others.
BraTS 2023 and 2024-2025 adult glioma share names too; only the user knows which labels a folder holds, so the GLI
layout lists both conventions and `label_convention` (or a datalist written with it) picks the 2024 one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CHANNELS = ("FLAIR", "T1ce", "T1", "T2")
"""Network input channel order for every layout (the order of the reference recipe's brats21_folds.json)."""

NIFTI_SUFFIXES = (".nii.gz", ".nii")

# Medical Segmentation Decathlon folders: 4D layouts keep one file per case in these, named `<case>.nii.gz`.
DECATHLON_DESCRIPTION = "dataset.json"
TRAINING_IMAGES, TRAINING_LABELS, TEST_IMAGES = "imagesTr", "labelsTr", "imagesTs"


class DatasetLayoutError(ValueError):
    """The dataset folder does not hold cases in a supported layout, or some cases are incomplete."""


@dataclass(frozen=True)
class Layout:
    """How one dataset family names its cases and files, and which label convention (`labels.CONVENTIONS`) it uses.

    Case-folder layouts (`separator` set) keep `<case>/<case><separator><modality>.nii.gz`, one file per channel, and
    `<case><separator><label>.nii.gz`; 4D layouts (`separator` None) keep one Decathlon 4D file per case.
    """

    name: str
    title: str
    convention: str  # what `auto` reads the labels as
    modalities: Mapping[str, str]  # channel (CHANNELS name) -> the layout's name: file suffix, or 4D: in file order
    case_id_format: str  # synthetic case ids: `index` counts from 0, `number` from 1
    separator: str | None = None
    label: str = "seg"
    dataset_labels: Mapping[str, str] | None = None  # 4D: dataset.json's label names (default: the convention's)
    case_prefix: str = ""  # case ids start with it (BraTS-PED-); "" takes the cases no other layout of its naming does
    alternatives: tuple[str, ...] = ()  # other conventions a folder of this layout may hold (chosen by the user)

    @property
    def conventions(self) -> tuple[str, ...]:
        """The conventions a dataset of this layout may hold, `auto`'s first."""
        return (self.convention, *self.alternatives)

    @property
    def naming(self) -> tuple:
        """What its file names look like (separator, modality and label suffixes): layouts alike differ by prefix."""
        return (self.separator, self.suffixes, self.label)

    @property
    def four_dimensional(self) -> bool:
        """One 4D file per case (Decathlon folders) rather than one file per channel in a case folder."""
        return self.separator is None

    @property
    def suffixes(self) -> tuple[str, ...]:
        """The layout's name of each channel, in CHANNELS order."""
        return tuple(self.modalities[channel] for channel in CHANNELS)

    @property
    def file_order(self) -> tuple[str, ...]:
        """The channels (CHANNELS names) in the order a 4D file stores them."""
        return tuple(self.modalities)

    @property
    def channel_indices(self) -> tuple[int, ...]:
        """Per network channel, its index in the loaded image (a case folder's files load in CHANNELS order)."""
        order = self.file_order if self.four_dimensional else CHANNELS
        return tuple(order.index(channel) for channel in CHANNELS)

    def case_id(self, index: int) -> str:
        """The id of the `index`-th (from 0) synthetic case, named as the real dataset names its cases."""
        return self.case_id_format.format(index=index, number=index + 1)

    def file_name(self, case_id: str, part: str) -> str:
        """`<case><separator><part>.nii.gz` of a case-folder layout (`part`: a suffix or the label's)."""
        return f"{case_id}{self.separator}{part}.nii.gz"

    def anchor_pattern(self) -> str:
        """Glob of a case-folder layout's first-channel (FLAIR) files, which identify its cases (of any prefix: see
        `layout_of_case`)."""
        return f"*{self.separator}{self.suffixes[0]}.nii*"

    def example(self) -> str:
        """How the layout looks on disk, for messages."""
        if self.four_dimensional:
            return f"{self.title} ({DECATHLON_DESCRIPTION}, {TRAINING_IMAGES}/, {TRAINING_LABELS}/)"
        return f"{self.title} (<case>/{self.file_name('<case>', self.suffixes[0])} ...)"


LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout(
            name="brats2021",
            title="BraTS 2021",
            convention="brats2021",
            modalities={"FLAIR": "flair", "T1ce": "t1ce", "T1": "t1", "T2": "t2"},
            case_id_format="BraTS2021_{index:05d}",
            separator="_",
        ),
        Layout(
            name="brats2023",
            title="BraTS 2023",
            convention="brats2023",
            modalities={"FLAIR": "t2f", "T1ce": "t1c", "T1": "t1n", "T2": "t2w"},
            case_id_format="BraTS-GLI-{index:05d}-000",
            separator="-",
            alternatives=("brats2024",),
        ),
        *(
            Layout(
                name=f"brats_{task.lower()}",
                title=f"BraTS {title} (BraTS-{task})",
                convention=convention,
                modalities={"FLAIR": "t2f", "T1ce": "t1c", "T1": "t1n", "T2": "t2w"},
                case_id_format=f"BraTS-{task}-{{index:05d}}" + ("-000" if task != "GoAT" else ""),
                separator="-",
                case_prefix=f"BraTS-{task}-",
                alternatives=alternatives,
            )
            for task, title, convention, alternatives in (
                ("MEN", "meningioma", "men", ()),
                ("MET", "brain metastases", "met", ()),
                ("PED", "paediatric tumours", "ped", ()),
                ("SSA", "Sub-Saharan Africa glioma", "brats2023", ("goat",)),
                ("GoAT", "generalisability", "goat", ()),
            )
        ),
        Layout(
            name="msd",
            title="MSD Task01_BrainTumour",
            convention="msd",
            # MSD Task01 stores FLAIR, T1w, t1gd, T2w in its 4D files; its dataset.json spells "tumor" once
            modalities={"FLAIR": "FLAIR", "T1": "T1w", "T1ce": "t1gd", "T2": "T2w"},
            case_id_format="BRATS_{number:03d}",
            dataset_labels={"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"},
        ),
    )
}
CASE_FOLDER_LAYOUTS = tuple(name for name, layout in LAYOUTS.items() if not layout.four_dimensional)
IDENTITY_CHANNEL_INDICES = tuple(range(len(CHANNELS)))


def strip_nifti_suffix(name: str) -> str:
    """File name without .nii.gz / .nii."""
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def layout_of_case(layout: str, case_id: str) -> str:
    """The layout of a case named `case_id` in files of `layout`'s naming: the one whose case prefix it starts with
    (the longest), else the one of that naming without a prefix."""
    alike = [name for name in CASE_FOLDER_LAYOUTS if LAYOUTS[name].naming == LAYOUTS[layout].naming]
    owners = [name for name in alike if case_id.startswith(LAYOUTS[name].case_prefix)]
    return max(owners, key=lambda name: len(LAYOUTS[name].case_prefix), default=layout)


def layout_of_file(path: str | Path) -> str | None:
    """The layout an image file's name and place say it belongs to, or None (a lone file named otherwise)."""
    path = Path(path)
    stem = strip_nifti_suffix(path.name)
    for name in CASE_FOLDER_LAYOUTS:
        layout = LAYOUTS[name]
        for part in (*layout.suffixes, layout.label):
            if stem.endswith(f"{layout.separator}{part}"):
                return layout_of_case(name, stem[: -len(f"{layout.separator}{part}")])
    in_decathlon = path.parent.name in (TRAINING_IMAGES, TEST_IMAGES, TRAINING_LABELS)
    if in_decathlon and (path.parent.parent / DECATHLON_DESCRIPTION).is_file():
        return next((name for name, layout in LAYOUTS.items() if layout.four_dimensional), None)
    return None
