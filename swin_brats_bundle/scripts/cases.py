"""Find the cases on disk in any layout of `layouts.LAYOUTS` (or a plain folder of 4D files) and list them as a
datalist with folds; find the case of one image file (`discover_case`: MONAI Label sends one file per request)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nibabel as nib

from scripts.folds import assign_folds
from scripts.labels import auto_convention
from scripts.layouts import (
    CASE_FOLDER_LAYOUTS,
    CHANNELS,
    DECATHLON_DESCRIPTION,
    IDENTITY_CHANNEL_INDICES,
    LAYOUTS,
    NIFTI_SUFFIXES,
    TEST_IMAGES,
    TRAINING_IMAGES,
    TRAINING_LABELS,
    DatasetLayoutError,
    layout_of_case,
    layout_of_file,
    strip_nifti_suffix,
)


def _find_nifti(folder: Path, stem: str) -> Path | None:
    for suffix in NIFTI_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _anchor_files(root: Path, layout: str) -> list[Path]:
    """The first-channel files of a case-folder layout's cases under `root` (macOS `._` stubs skipped)."""
    spec = LAYOUTS[layout]
    ending = f"{spec.separator}{spec.suffixes[0]}"
    found = (p for p in root.rglob(spec.anchor_pattern()) if not p.name.startswith("._"))
    return sorted(p for p in found if layout_of_case(layout, strip_nifti_suffix(p.name)[: -len(ending)]) == layout)


def _case_folders(dataset_dir: Path, layout: str) -> list[tuple[Path, str]]:
    """(folder, case id) of every case with at least one file of `layout` (a case missing its FLAIR still counts)."""
    spec = LAYOUTS[layout]
    found = set()
    for suffix in (*spec.suffixes, spec.label):
        pattern = re.compile(rf"^(?P<case>.+){re.escape(spec.separator)}{suffix}\.nii(\.gz)?$")
        for path in dataset_dir.rglob(f"*{spec.separator}{suffix}.nii*"):
            match = pattern.match(path.name)
            if match is not None and not path.name.startswith("._") and layout_of_case(layout, match["case"]) == layout:
                found.add((path.parent, match["case"]))
    return sorted(found)


def _discover_case_folders(dataset_dir: Path, layout: str, allow_incomplete: bool) -> tuple[list[dict], list[dict]]:
    """Labelled and unlabelled cases of a case-folder layout (one file per channel)."""
    spec = LAYOUTS[layout]
    sep = spec.separator
    training, testing, problems = [], [], []
    for folder, case_id in _case_folders(dataset_dir, layout):
        found = {mod: _find_nifti(folder, f"{case_id}{sep}{mod}") for mod in spec.suffixes}
        missing = [spec.file_name(case_id, mod) for mod, path in found.items() if path is None]
        if missing and not allow_incomplete:
            problems.append(f"{folder}: missing {', '.join(missing)}")
            continue
        # an incomplete case keeps the expected name of each missing file, for the preflight check to report
        images = [path or folder / spec.file_name(case_id, mod) for mod, path in found.items()]
        case = {"case_id": case_id, "image": [str(p) for p in images]}
        label = _find_nifti(folder, f"{case_id}{sep}{spec.label}")
        if label is not None:
            training.append({**case, "label": str(label)})
        else:
            testing.append(case)
    if problems:
        raise DatasetLayoutError(f"{len(problems)} incomplete case(s) in {dataset_dir}:\n  " + "\n  ".join(problems))
    return training, testing


def _discover_decathlon(dataset_dir: Path) -> tuple[list[dict], list[dict]]:
    """Labelled and unlabelled cases of a 4D layout in Decathlon folders (one file per case)."""

    def images_in(sub: str) -> list[Path]:
        folder = dataset_dir / sub
        found = folder.glob("*.nii*") if folder.is_dir() else []
        return sorted(p for p in found if not p.name.startswith("._"))

    training, testing = [], []
    for image in images_in(TRAINING_IMAGES):
        case = {"case_id": strip_nifti_suffix(image.name), "image": str(image)}
        label = dataset_dir / TRAINING_LABELS / image.name
        if label.is_file():
            training.append({**case, "label": str(label)})
        else:
            testing.append(case)
    testing += [{"case_id": strip_nifti_suffix(p.name), "image": str(p)} for p in images_in(TEST_IMAGES)]
    return training, testing


def _is_four_dimensional(path: Path) -> bool:
    try:
        return len(nib.load(path).shape) == 4
    except Exception:  # an unreadable file is not evidence of a 4D folder
        return False


def _discover_four_channel_files(root: Path) -> list[dict]:
    """Cases of a plain folder of 4D files (x, y, z, 4), FLAIR, T1ce, T1, T2 (`four_channel_image.py`), one per case;
    [] unless one top-level file is 4D. Every top-level NIfTI file is listed: the preflight names a 3D one."""
    if not root.is_dir():
        return []
    files = sorted(p for p in root.iterdir() if p.name.endswith(NIFTI_SUFFIXES) and not p.name.startswith("._"))
    if not any(_is_four_dimensional(p) for p in files):
        return []
    return [{"case_id": strip_nifti_suffix(p.name), "image": str(p)} for p in files]


def detect_layout(dataset_dir: str | Path) -> str:
    """Name the layout of `dataset_dir` (a key of `LAYOUTS`); raise if none or several match."""
    root = Path(dataset_dir)
    if not root.is_dir():
        raise DatasetLayoutError(f"dataset_dir {root} does not exist or is not a folder.")
    if (root / DECATHLON_DESCRIPTION).is_file() and (root / TRAINING_IMAGES).is_dir():
        return next(name for name, layout in LAYOUTS.items() if layout.four_dimensional)
    found = [layout for layout in CASE_FOLDER_LAYOUTS if _anchor_files(root, layout)]
    if len(found) > 1:
        titles = " and ".join(LAYOUTS[layout].title for layout in found)
        raise DatasetLayoutError(f"{root} mixes {titles} file names; keep one layout per folder.")
    if not found:
        examples = [layout.example() for layout in LAYOUTS.values()]
        raise DatasetLayoutError(
            f"No cases found in {root}. Expected {', '.join(examples)} or 4D files (x, y, z, 4: {', '.join(CHANNELS)})."
        )
    return found[0]


def discover(
    dataset_dir: str | Path, num_folds: int = 5, seed: int = 0, allow_incomplete: bool = False
) -> dict[str, Any]:
    """Datalist of every case under `dataset_dir` with absolute paths, folds, layout and detected label convention.

    A BraTS case missing a modality file raises, all such cases named at once; with `allow_incomplete` it is listed
    with the missing file's expected path instead, for `scripts.preflight` to report with the other broken cases.
    """
    root = Path(dataset_dir).resolve()
    try:
        layout = detect_layout(root)
    except DatasetLayoutError:
        if not (testing := _discover_four_channel_files(root)):
            raise
        return _datalist(None, [], testing, num_folds, seed)
    if LAYOUTS[layout].four_dimensional:
        training, testing = _discover_decathlon(root)
    else:
        training, testing = _discover_case_folders(root, layout, allow_incomplete)
    return _datalist(layout, training, testing, num_folds, seed)


def _datalist(layout: str | None, training: list, testing: list, num_folds: int, seed: int) -> dict[str, Any]:
    """The datalist of cases found in `layout` (None: 4D files in network channel order, no known convention)."""
    return {
        "layout": layout,
        "label_convention": auto_convention(layout).name,
        "channels": list(CHANNELS),
        "channel_indices": list(LAYOUTS[layout].channel_indices if layout else IDENTITY_CHANNEL_INDICES),
        "num_folds": num_folds,
        "seed": seed,
        "training": assign_folds(training, num_folds, seed),
        "testing": testing,
    }


def discover_case(image: str | Path) -> dict[str, Any]:
    """The datalist of the one case `image` belongs to: a sequence file of a case folder (its four files, those
    missing listed by their expected names), a Decathlon 4D file (its label too) or a lone 4D file."""
    path = Path(image).resolve()
    if not path.is_file():
        raise DatasetLayoutError(f"{image} does not exist or is not a file.")
    layout = layout_of_file(path)
    if layout is None or LAYOUTS[layout].four_dimensional:
        case = {"case_id": strip_nifti_suffix(path.name), "image": str(path)}
        label = path.parent.parent / TRAINING_LABELS / path.name
        training = [{**case, "label": str(label)}] if layout and label.is_file() else []
        return _datalist(layout, training, [] if training else [case], 1, 0)
    spec, stem = LAYOUTS[layout], strip_nifti_suffix(path.name)
    case_id = next(
        stem[: -len(end)]
        for end in (f"{spec.separator}{p}" for p in (*spec.suffixes, spec.label))
        if stem.endswith(end)
    )
    training, testing = _discover_case_folders(path.parent, layout, allow_incomplete=True)
    found = [c for c in training + testing if c["case_id"] == case_id and Path(c["image"][0]).parent == path.parent]
    return _datalist(layout, [c for c in found if "label" in c], [c for c in found if "label" not in c], 1, 0)
