"""Check every case before any work: a broken case is named with its file and reason, never met mid-run.

A case passes when each file exists and reads (a truncated gzip fails here), each image is a 3D volume (MSD: one 4D
file of 4 volumes) at least `MIN_EXTENT` voxels along every axis (smaller than the ROI is fine: it is padded), all
files share one voxel grid (shape and affine), intensities are finite, no image channel is all zero, and label values
belong to the label convention. Used by `prepare_datalist.py` (report, `--skip_bad`), training and evaluation
(`require_valid_cases`: refuse to start) and inference (`scripts/inference_cases.py`: predict the good cases, report
the others).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from scripts.errors import first_line, stop
from scripts.labels import LabelConvention
from scripts.layouts import CHANNELS

logger = logging.getLogger(__name__)

MIN_EXTENT = 16
"""Fewest voxels along any axis: below it a file is a slice or a thumbnail, not a brain volume worth padding."""
AFFINE_TOLERANCE_MM = 1e-3


class Refused(Exception):
    """The reason one file makes its case unusable."""


@dataclass(frozen=True)
class Problem:
    file: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}"


def describe(problems: Sequence[Problem]) -> str:
    """One line for all of a case's problems."""
    return "; ".join(map(str, problems))


def load_header(path: str) -> nib.spatialimages.SpatialImage:
    """The image with only its header read (voxels stay on disk)."""
    if not Path(path).is_file():
        raise Refused("missing file")
    try:
        return nib.load(path)
    except Exception as error:
        raise Refused(f"unreadable ({first_line(error)})") from error


def spatial_shape(image: nib.spatialimages.SpatialImage, channels: int | None) -> tuple[int, ...]:
    """(H, W, D) of a 3D volume, or of a 4D file stacking `channels` volumes (MSD) when `channels` is given."""
    shape = tuple(int(s) for s in image.shape)
    expected = 3 if channels is None else 4
    if len(shape) != expected:
        what = "a 3D volume" if channels is None else f"a 4D file of {channels} volumes (H, W, D, {channels})"
        raise Refused(f"{len(shape)}D image of shape {shape}; expected {what}")
    if channels is not None and shape[3] != channels:
        raise Refused(f"{shape[3]} channel(s) in shape {shape}; expected {channels} ({', '.join(CHANNELS)})")
    small = [f"{size} along axis {axis}" for axis, size in enumerate(shape[:3]) if size < MIN_EXTENT]
    if small:
        raise Refused(f"only {', '.join(small)} (shape {shape}); a brain volume needs at least {MIN_EXTENT} per axis")
    return shape[:3]


def grid_mismatch(image: nib.spatialimages.SpatialImage, shape: tuple, reference: tuple[str, Any, tuple]) -> str | None:
    """Why `image` (spatial `shape`) is not on the reference file's voxel grid, or None."""
    name, affine, reference_shape = reference
    if shape != reference_shape:
        return f"shape {shape} differs from {reference_shape} of {Path(name).name}"
    offset = float(np.abs(image.affine - affine).max())
    if offset > AFFINE_TOLERANCE_MM:
        return f"affine differs from that of {Path(name).name} (by up to {offset:.3g})"
    return None


def read_voxels(image: nib.spatialimages.SpatialImage) -> np.ndarray:
    """All voxels; a truncated or corrupt file fails here, after its header read fine."""
    try:
        return np.asanyarray(image.dataobj)
    except Exception as error:
        raise Refused(f"truncated or corrupt file, voxels unreadable ({first_line(error)})") from error


def check_intensities(data: np.ndarray, channels: int | None) -> None:
    """Refuse NaN/Inf intensities and an all-zero image (or channel of a 4D file): there would be no brain."""
    if np.issubdtype(data.dtype, np.floating):
        nan, inf = int(np.isnan(data).sum()), int(np.isinf(data).sum())
        if nan or inf:
            raise Refused(f"non-finite intensities ({nan} NaN, {inf} infinite voxels)")
    volumes = [data] if channels is None else [data[..., c] for c in range(channels)]
    empty = [index for index, volume in enumerate(volumes) if not volume.any()]
    if empty:
        raise Refused("all-zero image (no brain)" if channels is None else f"all-zero channel(s) {empty} (no brain)")


def check_label_values(data: np.ndarray, convention: LabelConvention) -> None:
    """Refuse label values outside the convention (e.g. BraTS 2021's 4 read as BraTS 2023, whose ET is 3)."""
    values = np.unique(data)
    unknown = [v for v in values.tolist() if v not in convention.allowed_values]
    if unknown:
        shown = [int(v) if float(v).is_integer() else v for v in unknown]
        raise Refused(
            f"label values {shown} are not part of the '{convention.name}' convention ({convention.description}); "
            f"expected a subset of {sorted(convention.allowed_values)}. Pick the right --label_convention."
        )


def image_files(case: Mapping[str, Any]) -> tuple[list[str], int | None]:
    """A case's image files and, for one 4D file (MSD), its expected channel count."""
    image = case["image"]
    return ([image], len(CHANNELS)) if isinstance(image, str) else (list(image), None)


def check_case(case: Mapping[str, Any], convention: LabelConvention | None = None) -> list[Problem]:
    """Every problem of one case, headers first (cheap), voxels only when all headers agree; [] when it is usable.

    The label file is checked when the case has one and a `convention` is given (inference needs no labels).
    """
    files, channels = image_files(case)
    label = case.get("label") if convention is not None else None
    headers, problems = {}, []
    for path in [*files, label] if label else files:
        try:
            image = load_header(path)
            headers[path] = (image, spatial_shape(image, channels if path != label else None))
        except Refused as refused:
            problems.append(Problem(path, str(refused)))
    if problems:
        return problems
    reference = (files[0], headers[files[0]][0].affine, headers[files[0]][1])
    for path, (image, shape) in headers.items():
        mismatch = grid_mismatch(image, shape, reference) if path != files[0] else None
        if mismatch:
            problems.append(Problem(path, mismatch))
    if problems:
        return problems
    for path, (image, _) in headers.items():
        try:
            if path == label:
                check_label_values(read_voxels(image), convention)
            else:
                check_intensities(read_voxels(image), channels)
        except Refused as refused:
            problems.append(Problem(path, str(refused)))
    return problems


def check_cases(
    cases: Sequence[Mapping[str, Any]], convention: LabelConvention | None = None, workers: int = 1
) -> dict[str, list[Problem]]:
    """The broken cases among `cases`, by case id in their order, each with all its problems."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # nibabel and numpy release the GIL while reading
        results = list(pool.map(lambda case: check_case(case, convention), cases))
    return {case["case_id"]: problems for case, problems in zip(cases, results, strict=True) if problems}


def report(broken: Mapping[str, Sequence[Problem]], total: int) -> str:
    """`N of M case(s) ...` then one line per broken case: its id, then each file with the reason."""
    lines = [f"{len(broken)} of {total} case(s) cannot be used:"]
    lines += [f"  {case_id}: {describe(problems)}" for case_id, problems in broken.items()]
    return "\n".join(lines)


def require_valid_cases(
    cases: Sequence[Mapping[str, Any]],
    convention: LabelConvention | None = None,
    debug: bool = False,
    workers: int = 1,
) -> Sequence[Mapping[str, Any]]:
    """Training and evaluation: stop before any work, naming every broken case at once; return `cases` otherwise."""
    broken = check_cases(cases, convention, workers)
    if broken:
        stop(
            f"{report(broken, len(cases))}\nFix or remove them; `python scripts/prepare_datalist.py ... --skip_bad` "
            "writes a datalist without them.",
            debug,
        )
    logger.info(f"preflight: {len(cases)} case(s) checked, all usable")
    return cases
