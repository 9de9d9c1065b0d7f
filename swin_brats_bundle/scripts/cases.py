"""Find cases on disk in any layout of `layouts.LAYOUTS`, assign folds, and read or write datalists."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scripts.errors import first_line, stop
from scripts.labels import CASE_CONVENTION, auto_convention
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
    strip_nifti_suffix,
)

# The item of an inference case that carries its file's channel order (see `transforms.ReorderChannelsd`).
CASE_CHANNEL_INDICES = "channel_indices"


class DatasetLayoutError(ValueError):
    """The dataset folder does not hold cases in a supported layout, or some cases are incomplete."""


def case_id_from_path(path: str | Path) -> str:
    """Case id of an image file: its folder name for BraTS layouts (files are `<case>_<mod>`), else the file stem."""
    path = Path(path)
    stem = strip_nifti_suffix(path.name)
    if stem.startswith(path.parent.name) and stem != path.parent.name:
        return path.parent.name
    return stem


def _find_nifti(folder: Path, stem: str) -> Path | None:
    for suffix in NIFTI_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _anchor_files(root: Path, layout: str) -> list[Path]:
    """The first-channel files of a case-folder layout under `root` (macOS `._` stubs skipped)."""
    return sorted(p for p in root.rglob(LAYOUTS[layout].anchor_pattern()) if not p.name.startswith("._"))


def _case_folders(dataset_dir: Path, layout: str) -> list[tuple[Path, str]]:
    """(folder, case id) of every case with at least one file of `layout` (a case missing its FLAIR still counts)."""
    spec = LAYOUTS[layout]
    found = set()
    for suffix in (*spec.suffixes, spec.label):
        pattern = re.compile(rf"^(?P<case>.+){re.escape(spec.separator)}{suffix}\.nii(\.gz)?$")
        for path in dataset_dir.rglob(f"*{spec.separator}{suffix}.nii*"):
            match = pattern.match(path.name)
            if match is not None and not path.name.startswith("._"):
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
        raise DatasetLayoutError(f"No cases found in {root}. Expected {', '.join(examples[:-1])} or {examples[-1]}.")
    return found[0]


def assign_folds(cases: list[dict], num_folds: int, seed: int) -> list[dict]:
    """Give each case a `fold` in [0, num_folds): a seeded shuffle of the sorted case ids, dealt round robin."""
    if num_folds < 1:
        raise ValueError(f"num_folds must be at least 1, got {num_folds}.")
    order = sorted(cases, key=lambda case: case["case_id"])
    random.Random(seed).shuffle(order)
    folds = {case["case_id"]: index % num_folds for index, case in enumerate(order)}
    return [{**case, "fold": folds[case["case_id"]]} for case in cases]


def discover(
    dataset_dir: str | Path, num_folds: int = 5, seed: int = 0, allow_incomplete: bool = False
) -> dict[str, Any]:
    """Datalist of every case under `dataset_dir` with absolute paths, folds, layout and detected label convention.

    A BraTS case missing a modality file raises, all such cases named at once; with `allow_incomplete` it is listed
    with the missing file's expected path instead, for `scripts.preflight` to report with the other broken cases.
    """
    root = Path(dataset_dir).resolve()
    layout = detect_layout(root)
    if LAYOUTS[layout].four_dimensional:
        training, testing = _discover_decathlon(root)
    else:
        training, testing = _discover_case_folders(root, layout, allow_incomplete)
    return {
        "layout": layout,
        "label_convention": auto_convention(layout).name,
        "channels": list(CHANNELS),
        "channel_indices": list(LAYOUTS[layout].channel_indices),
        "num_folds": num_folds,
        "seed": seed,
        "training": assign_folds(training, num_folds, seed),
        "testing": testing,
    }


def _map_paths(datalist: dict[str, Any], convert: Callable[[str], str]) -> dict[str, Any]:
    """Copy of `datalist` with `convert` applied to every image and label path (other keys untouched)."""

    def convert_value(value: str | list[str]) -> str | list[str]:
        return [convert(v) for v in value] if isinstance(value, list) else convert(value)

    mapped = dict(datalist)
    for section in ("training", "testing"):
        mapped[section] = [
            {k: convert_value(v) if k in ("image", "label") else v for k, v in case.items()}
            for case in datalist.get(section, [])
        ]
    return mapped


def to_relative(datalist: dict[str, Any], dataset_dir: str | Path) -> dict[str, Any]:
    """The same datalist with image/label paths relative to `dataset_dir`, as Decathlon datalists are stored."""
    root = Path(dataset_dir).resolve()
    return _map_paths(datalist, lambda path: str(Path(path).relative_to(root)))


def load_datalist(datalist_file: str | Path, dataset_dir: str | Path) -> dict[str, Any]:
    """Read a datalist written by `prepare_datalist.py`, resolving its paths against `dataset_dir`.

    MONAI's `load_decathlon_datalist` would also rewrite `case_id` into a path whenever a folder of that name exists.
    """
    root = Path(dataset_dir).resolve()
    with open(datalist_file) as f:
        stored = json.load(f)
    info = {"channel_indices": list(IDENTITY_CHANNEL_INDICES), "label_convention": None, **stored}
    return _map_paths(info, lambda path: str(root / path))


def dataset_info(
    dataset_dir: str, datalist: str | None = None, num_folds: int = 5, seed: int = 0, debug: bool = False
) -> dict[str, Any]:
    """The cases a workflow uses: from the `datalist` file when given, else discovered under `dataset_dir`.

    Incomplete cases are kept (the configs' preflight check names them with every other broken case); a folder
    without cases or an unreadable datalist stops with a one-line error (a traceback under `debug`).
    """
    try:
        if datalist:
            return load_datalist(datalist, dataset_dir)
        return discover(dataset_dir, num_folds, seed, allow_incomplete=True)
    except DatasetLayoutError as error:
        stop(str(error), debug, error)
    except (OSError, json.JSONDecodeError) as error:
        where = f"datalist {datalist}" if datalist else f"dataset_dir {dataset_dir}"
        stop(f"cannot read {where} ({first_line(error)})", debug, error)


def fold_cases(info: dict[str, Any], fold: int, split: str) -> list[dict]:
    """Labelled cases of the training (`fold != fold`) or validation (`fold == fold`) split; raise if it is empty."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}.")
    cases = [c for c in info["training"] if (c["fold"] == fold) == (split == "val")]
    if not cases:
        folds = sorted({c["fold"] for c in info["training"]})
        raise DatasetLayoutError(
            f"The {split} split of fold {fold} is empty: {len(info['training'])} labelled case(s) in folds {folds}. "
            "Choose another --fold or --num_folds, or add labelled cases."
        )
    return cases


def inference_cases(info: dict[str, Any]) -> list[dict]:
    """Every case, labelled or not, as image items for inference, each with its dataset's channel order and (when
    detected) label convention, which the `auto` settings of inference.json read."""
    own = {CASE_CHANNEL_INDICES: list(info["channel_indices"])}
    if info.get("label_convention"):
        own[CASE_CONVENTION] = info["label_convention"]
    cases = [{"case_id": c["case_id"], "image": c["image"], **own} for c in info["training"] + info["testing"]]
    if not cases:
        raise DatasetLayoutError("No cases to predict.")
    return cases


def output_name(metadict: dict, saver: Any) -> dict[str, str]:
    """`SaveImage` name formatter: predictions are named `<case_id>` as in BraTS submissions."""
    return {"subject": case_id_from_path(metadict["filename_or_obj"]), "idx": None}
