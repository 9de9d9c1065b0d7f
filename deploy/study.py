"""Find the four MR modalities of one study: BraTS-named NIfTI files, one 4D NIfTI, or DICOM series by description.

Modalities are returned in the network's channel order, `CHANNELS` (FLAIR, T1ce, T1, T2), so the bundle's
`ReorderChannelsd` ("auto", no case item) leaves them as they are. Every failure is a `StudyError` whose one-line
message names the folder or the series.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

CHANNELS = ("FLAIR", "T1ce", "T1", "T2")
"""The network's input channels, in order (the bundle's `scripts.layouts.CHANNELS` and metadata.json channel_def)."""

NIFTI_SUFFIXES = (".nii.gz", ".nii")

# DICOM series rules: a regular expression searched (case-insensitively) in SeriesDescription. A series is given the
# first modality, in this order, whose rule matches; T1ce is tried before T1 and FLAIR before T2, so "T1 post" is
# T1ce only and "T2 FLAIR" is FLAIR only. `_T1` excludes T10..T19; the T1ce markers are CE, C, +C, C+, Gd, Gad,
# gado..., post, contrast.
_T1 = r"(?<![a-z0-9])t1(?!\d)"
_CONTRAST = r"(?<![a-z0-9])(ce|c|gd|gad|gado\w*|post\w*|contrast\w*)(?![a-z0-9])|\+\s*c(?![a-z0-9])|(?<![a-z0-9])c\s*\+"
SERIES_RULES: dict[str, str] = {
    "FLAIR": r"flair|(?<![a-z0-9])t2[\s_-]*f(?![a-z0-9])",
    "T1ce": rf"{_T1}[\s_-]*w?[\s_-]*(ce|c|gd|gad)(?![a-z0-9])|{_T1}.*({_CONTRAST})",
    "T1": rf"{_T1}",
    "T2": r"(?<![a-z0-9])t2(?!\d)",
}
RULE_ORDER = ("FLAIR", "T1ce", "T1", "T2")


class StudyError(ValueError):
    """The input folder does not hold exactly one series or file per modality."""


@dataclass(frozen=True)
class NiftiStudy:
    """NIfTI input: four 3D files in CHANNELS order, or one 4D file already in that order."""

    case_id: str
    files: tuple[Path, ...]
    layout: str | None  # "brats2021" / "brats2023" for named files, None for a 4D file


def strip_nifti_suffix(name: str) -> str:
    """File name without .nii.gz / .nii."""
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def nifti_files(folder: Path) -> list[Path]:
    """NIfTI files directly in `folder`, sorted."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(NIFTI_SUFFIXES))


def nifti_layouts() -> dict[str, tuple[str, ...]]:
    """Lower-case file-name endings (separator + suffix) of each case-folder naming of the bundle, in CHANNELS order
    (the BraTS task layouts that share one naming are told apart by case prefix: `find_nifti_study`).

    Imported here rather than at the top: the app imports this module before the bundle it is given is on sys.path.
    """
    from scripts.layouts import CASE_FOLDER_LAYOUTS, LAYOUTS

    layouts = {name: LAYOUTS[name] for name in CASE_FOLDER_LAYOUTS if not LAYOUTS[name].case_prefix}
    return {name: tuple(f"{lay.separator}{s}".lower() for s in lay.suffixes) for name, lay in layouts.items()}


def find_nifti_study(folder: Path) -> NiftiStudy:
    """The modality files of the one study in `folder`: one 4D file, or BraTS 2021 / 2023 names."""
    files = nifti_files(folder)
    if not files:
        raise StudyError(f"{folder}: no NIfTI (.nii/.nii.gz) files found.")
    if len(files) == 1:
        return NiftiStudy(case_id=strip_nifti_suffix(files[0].name), files=(files[0],), layout=None)
    stems = {path: strip_nifti_suffix(path.name).lower() for path in files}
    layouts = nifti_layouts()
    for layout, endings in layouts.items():
        matches = {
            channel: [p for p, s in stems.items() if s.endswith(end)]
            for channel, end in zip(CHANNELS, endings, strict=True)
        }
        if not any(matches.values()):
            continue
        for channel, end in zip(CHANNELS, endings, strict=True):
            found = matches[channel]
            if not found:
                raise StudyError(f"{folder}: no {channel} file (*{end}.nii.gz) for the {layout} layout.")
            if len(found) > 1:
                raise StudyError(f"{folder}: {len(found)} {channel} files (*{end}.nii.gz): {_names(found)}.")
        chosen = tuple(matches[channel][0] for channel in CHANNELS)
        case_id = strip_nifti_suffix(chosen[0].name)[: -len(endings[0])]
        from scripts.layouts import layout_of_case  # the BraTS task its case prefix names (BraTS-PED-, ...)

        return NiftiStudy(case_id=case_id, files=chosen, layout=layout_of_case(layout, case_id))
    named_like = " or ".join("<case>" + "/".join(endings) for endings in layouts.values())
    raise StudyError(
        f"{folder}: {len(files)} NIfTI files but none named like {named_like}, "
        f"and not a single 4D file: {_names(files)}."
    )


def series_modality(description: str) -> str | None:
    """The modality SERIES_RULES give a SeriesDescription, or None."""
    text = description.lower()
    return next((channel for channel in RULE_ORDER if re.search(SERIES_RULES[channel], text)), None)


def select_series(folder: Path, descriptions: Mapping[str, str]) -> dict[str, str]:
    """Series UID per modality (CHANNELS order) from {SeriesInstanceUID: SeriesDescription} of the MR series."""
    by_channel: dict[str, list[str]] = {channel: [] for channel in CHANNELS}
    for uid, description in descriptions.items():
        channel = series_modality(description)
        if channel is not None:
            by_channel[channel].append(uid)
    seen = ", ".join(f"'{d}'" for d in sorted(descriptions.values())) or "none"
    for channel in CHANNELS:
        found = by_channel[channel]
        if not found:
            raise StudyError(f"{folder}: no DICOM MR series for {channel} (series descriptions seen: {seen}).")
        if len(found) > 1:
            named = ", ".join(f"'{descriptions[uid]}' ({uid})" for uid in sorted(found))
            raise StudyError(f"{folder}: {len(found)} DICOM MR series match {channel}: {named}; keep one.")
    return {channel: by_channel[channel][0] for channel in CHANNELS}


def is_nifti_folder(folder: Path) -> bool:
    """The input is NIfTI if `folder` holds any .nii/.nii.gz file; otherwise it is read as DICOM."""
    return bool(nifti_files(folder))


def _names(paths: Sequence[Path]) -> str:
    return ", ".join(p.name for p in paths)
