"""Case ids from file paths and tensor metadata, and the prediction files' names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scripts.layouts import strip_nifti_suffix


def case_id_from_path(path: str | Path) -> str:
    """Case id of an image file: its folder name for BraTS layouts (files are `<case>_<mod>`), else the file stem."""
    path = Path(path)
    stem = strip_nifti_suffix(path.name)
    if stem.startswith(path.parent.name) and stem != path.parent.name:
        return path.parent.name
    return stem


def case_id_of(*tensors: Any, default: str) -> str:
    """Case id from the first tensor whose metadata names its source file."""
    for tensor in tensors:
        source = (getattr(tensor, "meta", None) or {}).get("filename_or_obj")
        if isinstance(source, list | tuple):
            source = source[0] if source else None
        if source:
            return case_id_from_path(str(source))
    return default


def output_name(metadict: dict, saver: Any) -> dict[str, str]:
    """`SaveImage` name formatter: predictions are named `<case_id>` as in BraTS submissions."""
    return {"subject": case_id_from_path(metadict["filename_or_obj"]), "idx": None}
