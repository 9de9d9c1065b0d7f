"""Datalists: read and write them (paths relative to the dataset folder), or discover one; the inference items."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scripts.atomic import atomic_write
from scripts.cases import discover
from scripts.errors import first_line, stop
from scripts.labels import CASE_CONVENTION
from scripts.layouts import IDENTITY_CHANNEL_INDICES, DatasetLayoutError

# The item of an inference case that carries its file's channel order (see `transforms.ReorderChannelsd`).
CASE_CHANNEL_INDICES = "channel_indices"


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


def save_datalist(datalist: dict[str, Any], output: str | Path, dataset_dir: str | Path) -> None:
    """Write `datalist` to `output` atomically, its paths relative to `dataset_dir`."""
    with atomic_write(output) as f:
        f.write(json.dumps(to_relative(datalist, dataset_dir), indent=4) + "\n")


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


def inference_cases(info: dict[str, Any], convention: str | None = None) -> list[dict]:
    """Every case, labelled or not, as image items for inference, each with its dataset's channel order and the label
    convention its prediction is painted in (`convention`, else the detected one), which the `auto` settings of
    inference.json read."""
    own = {CASE_CHANNEL_INDICES: list(info["channel_indices"])}
    if convention or info.get("label_convention"):
        own[CASE_CONVENTION] = convention or info["label_convention"]
    cases = [{"case_id": c["case_id"], "image": c["image"], **own} for c in info["training"] + info["testing"]]
    if not cases:
        raise DatasetLayoutError("No cases to predict.")
    return cases
