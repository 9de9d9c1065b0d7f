"""Find BraTS-style cases on disk (BraTS 2021, BraTS 2023+, MSD Task01), assign folds, and read or write datalists."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scripts.errors import first_line, stop
from scripts.labels import CASE_CONVENTION

CHANNELS = ("FLAIR", "T1ce", "T1", "T2")
"""Network input channel order for every layout (the order of the reference recipe's brats21_folds.json)."""

NIFTI_SUFFIXES = (".nii.gz", ".nii")

# Per layout: the file suffix of each channel in CHANNELS order, the label suffix and the case-id/file separator.
BRATS_LAYOUTS: dict[str, dict[str, Any]] = {
    "brats2021": {"separator": "_", "modalities": ("flair", "t1ce", "t1", "t2"), "label": "seg"},
    "brats2023": {"separator": "-", "modalities": ("t2f", "t1c", "t1n", "t2w"), "label": "seg"},
}
# MSD stores one 4D image with channels FLAIR, T1w, t1gd, T2w: these indices put them in CHANNELS order.
MSD_CHANNEL_INDICES = (0, 2, 1, 3)
IDENTITY_CHANNEL_INDICES = (0, 1, 2, 3)
# The item of an inference case that carries its file's channel order (see `transforms.ReorderChannelsd`).
CASE_CHANNEL_INDICES = "channel_indices"
LAYOUT_CONVENTIONS = {"brats2021": "brats2021", "brats2023": "brats2023", "msd": "msd"}


class DatasetLayoutError(ValueError):
    """The dataset folder does not hold cases in a supported layout, or some cases are incomplete."""


def strip_nifti_suffix(name: str) -> str:
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


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


def anchor_pattern(layout: str) -> str:
    """Glob of a BraTS layout's first-modality (FLAIR) files, which identify its cases."""
    spec = BRATS_LAYOUTS[layout]
    return f"*{spec['separator']}{spec['modalities'][0]}.nii*"


def _anchor_files(root: Path, layout: str) -> list[Path]:
    """The first-modality files of a BraTS layout under `root` (macOS `._` stubs skipped)."""
    return sorted(p for p in root.rglob(anchor_pattern(layout)) if not p.name.startswith("._"))


def _brats_case_folders(dataset_dir: Path, layout: str) -> list[tuple[Path, str]]:
    """(folder, case id) of every case with at least one file of `layout` (a case missing its FLAIR still counts)."""
    spec = BRATS_LAYOUTS[layout]
    found = set()
    for suffix in (*spec["modalities"], spec["label"]):
        pattern = re.compile(rf"^(?P<case>.+){re.escape(spec['separator'])}{suffix}\.nii(\.gz)?$")
        for path in dataset_dir.rglob(f"*{spec['separator']}{suffix}.nii*"):
            match = pattern.match(path.name)
            if match is not None and not path.name.startswith("._"):
                found.add((path.parent, match["case"]))
    return sorted(found)


def _discover_brats(dataset_dir: Path, layout: str, allow_incomplete: bool) -> tuple[list[dict], list[dict]]:
    spec = BRATS_LAYOUTS[layout]
    sep = spec["separator"]
    training, testing, problems = [], [], []
    for folder, case_id in _brats_case_folders(dataset_dir, layout):
        found = {mod: _find_nifti(folder, f"{case_id}{sep}{mod}") for mod in spec["modalities"]}
        missing = [f"{case_id}{sep}{mod}.nii.gz" for mod, path in found.items() if path is None]
        if missing and not allow_incomplete:
            problems.append(f"{folder}: missing {', '.join(missing)}")
            continue
        # an incomplete case keeps the expected name of each missing file, for the preflight check to report
        images = [path or folder / f"{case_id}{sep}{mod}.nii.gz" for mod, path in found.items()]
        case = {"case_id": case_id, "image": [str(p) for p in images]}
        label = _find_nifti(folder, f"{case_id}{sep}{spec['label']}")
        if label is not None:
            training.append({**case, "label": str(label)})
        else:
            testing.append(case)
    if problems:
        raise DatasetLayoutError(f"{len(problems)} incomplete case(s) in {dataset_dir}:\n  " + "\n  ".join(problems))
    return training, testing


def _discover_msd(dataset_dir: Path) -> tuple[list[dict], list[dict]]:
    def images_in(sub: str) -> list[Path]:
        folder = dataset_dir / sub
        found = folder.glob("*.nii*") if folder.is_dir() else []
        return sorted(p for p in found if not p.name.startswith("._"))

    training, testing = [], []
    for image in images_in("imagesTr"):
        case = {"case_id": strip_nifti_suffix(image.name), "image": str(image)}
        label = dataset_dir / "labelsTr" / image.name
        if label.is_file():
            training.append({**case, "label": str(label)})
        else:
            testing.append(case)
    testing += [{"case_id": strip_nifti_suffix(p.name), "image": str(p)} for p in images_in("imagesTs")]
    return training, testing


def detect_layout(dataset_dir: str | Path) -> str:
    """Name the layout of `dataset_dir`: `msd`, `brats2021` or `brats2023`; raise if none or several match."""
    root = Path(dataset_dir)
    if not root.is_dir():
        raise DatasetLayoutError(f"dataset_dir {root} does not exist or is not a folder.")
    if (root / "dataset.json").is_file() and (root / "imagesTr").is_dir():
        return "msd"
    found = [layout for layout in BRATS_LAYOUTS if _anchor_files(root, layout)]
    if len(found) > 1:
        raise DatasetLayoutError(f"{root} mixes BraTS 2021 and BraTS 2023 file names; keep one layout per folder.")
    if not found:
        raise DatasetLayoutError(
            f"No cases found in {root}. Expected BraTS 2021 (<case>/<case>_flair.nii.gz ...), "
            "BraTS 2023 (<case>/<case>-t2f.nii.gz ...) or MSD Task01 (dataset.json, imagesTr/, labelsTr/)."
        )
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
    training, testing = _discover_msd(root) if layout == "msd" else _discover_brats(root, layout, allow_incomplete)
    return {
        "layout": layout,
        "label_convention": LAYOUT_CONVENTIONS[layout],
        "channels": list(CHANNELS),
        "channel_indices": list(MSD_CHANNEL_INDICES if layout == "msd" else IDENTITY_CHANNEL_INDICES),
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
