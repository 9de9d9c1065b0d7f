"""Check every case before any work: a broken case is named with its file and reason, never met mid-run.

A case passes when each file exists and reads (a truncated gzip fails here), each image is a 3D volume (MSD: one 4D
file of 4 volumes) at least `MIN_EXTENT` voxels along every axis (smaller than the ROI is fine: it is padded), all
files share one voxel grid (shape and affine), intensities are finite, no image channel is all zero, and label values
belong to the label convention. Used by `prepare_datalist.py` (report, `--skip_bad`), training and evaluation
(`require_valid_cases`: refuse to start) and inference (`scripts/inference_cases.py`: predict the good cases, report
the others).

Training and evaluation remember the cases that passed in a memo file (`preflight_cache`), keyed by a fingerprint of
their files (path, size, mtime) and of what was checked, so a rerun reads only new or changed cases; under
torch.distributed each rank checks its share of the cases and all ranks get the verdict on all of them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import nibabel as nib
import numpy as np
import torch

from scripts.atomic import atomic_write
from scripts.errors import first_line, stop
from scripts.labels import LabelConvention, other_conventions_hint
from scripts.layouts import CHANNELS

logger = logging.getLogger(__name__)

MIN_EXTENT = 16
"""Fewest voxels along any axis: below it a file is a slice or a thumbnail, not a brain volume worth padding."""
AFFINE_TOLERANCE_MM = 1e-3
CHECKS_VERSION = 1
"""Part of every fingerprint: bump it when the checks change, so that cases passed under the old ones are rechecked."""
MEMO_VERSION = 1


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
        found = {int(v) for v in values.tolist() if float(v).is_integer()}
        raise Refused(
            f"label values {shown} are not part of the '{convention.name}' convention ({convention.description}); "
            f"expected a subset of {sorted(convention.allowed_values)}{other_conventions_hint(found, convention)}. "
            "Pick the right --label_convention."
        )


def image_files(case: Mapping[str, Any]) -> tuple[list[str], int | None]:
    """A case's image files and, for one 4D file (MSD), its expected channel count."""
    image = case["image"]
    return ([image], len(CHANNELS)) if isinstance(image, str) else (list(image), None)


def case_files(case: Mapping[str, Any], convention: LabelConvention | None) -> list[str]:
    """The files `check_case` reads: the images, then the label when there is one and a `convention` to check it by."""
    files, _ = image_files(case)
    label = case.get("label") if convention is not None else None
    return [*files, label] if label else files


def check_case(
    case: Mapping[str, Any], convention: LabelConvention | None = None, voxels: bool = True
) -> list[Problem]:
    """Every problem of one case, headers first (cheap), voxels only when all headers agree; [] when it is usable.

    The label file is checked when the case has one and a `convention` is given (inference needs no labels). With
    `voxels` False the headers alone are checked (existence, readability, shape, grid).
    """
    files, channels = image_files(case)
    label = case.get("label") if convention is not None else None
    headers, problems = {}, []
    for path in case_files(case, convention):
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
    if problems or not voxels:
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
    cases: Sequence[Mapping[str, Any]], convention: LabelConvention | None = None, workers: int = 1, voxels: bool = True
) -> dict[str, list[Problem]]:
    """The broken cases among `cases`, by case id in their order, each with all its problems."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # nibabel and numpy release the GIL while reading
        results = list(pool.map(lambda case: check_case(case, convention, voxels), cases))
    return {case["case_id"]: problems for case, problems in zip(cases, results, strict=True) if problems}


def fingerprints(case: Mapping[str, Any], convention: LabelConvention | None, voxels: bool) -> list[str]:
    """The fingerprint of this check of `case` (path, size and mtime in ns of each file it reads, the convention,
    whether voxels are read), then, for a headers-only check, that of a full check, which stands for it too. [] when a
    file cannot be stat'ed: such a case is checked (and reported), never remembered."""
    try:
        files = [[os.path.abspath(p), (s := os.stat(p)).st_size, s.st_mtime_ns] for p in case_files(case, convention)]
    except OSError:
        return []
    name = convention.name if convention is not None else None
    what = [{"checks": CHECKS_VERSION, "files": files, "convention": name, "voxels": v} for v in (voxels, True)]
    return [hashlib.sha256(json.dumps(w, sort_keys=True).encode()).hexdigest() for w in what[: 1 if voxels else 2]]


def read_memo(path: str | None) -> dict[str, str]:
    """Case id -> fingerprint of the cases that passed before; {} without a memo, and for one that cannot be read (a
    warning, never an error: its cases are checked again)."""
    if not path or not Path(path).exists():
        return {}
    try:
        content = json.loads(Path(path).read_text())
        passed = content.get("passed") if isinstance(content, dict) and content.get("version") == MEMO_VERSION else 0
        if not isinstance(passed, dict) or not all(isinstance(v, str) for v in passed.values()):
            raise ValueError(f"not a version {MEMO_VERSION} preflight memo")
    except Exception as error:
        logger.warning(f"preflight: ignoring the memo {path} ({first_line(error)}); its cases are checked again")
        return {}
    return passed


def write_memo(path: str, passed: Mapping[str, str]) -> None:
    """`path` (atomically) with the passed cases' fingerprints; a failed write is a warning (the next run rechecks)."""
    try:
        with atomic_write(path) as f:
            f.write(json.dumps({"version": MEMO_VERSION, "passed": dict(sorted(passed.items()))}, indent=1) + "\n")
    except OSError as error:
        logger.warning(f"preflight: could not write the memo {path} ({first_line(error)}); the next run rechecks")


@dataclass(frozen=True)
class Verdict:
    """The preflight of all cases: the broken ones (by case id, in case order), how many cases were read now and how
    many were remembered from the memo."""

    broken: dict[str, list[Problem]]
    checked: int
    remembered: int


def preflight(
    cases: Sequence[Mapping[str, Any]],
    convention: LabelConvention | None = None,
    voxels: bool = True,
    memo: str | None = None,
    workers: int = 1,
) -> Verdict:
    """Check the cases that the `memo` file does not remember as passed with the same files, and remember those that
    pass (broken cases never are). Under torch.distributed each rank checks `cases[rank::world_size]`, the ranks
    exchange their findings and all return the same verdict; rank 0 alone reads the memo (sent to the others) and
    writes it."""
    rank, world = idist.get_rank(), idist.get_world_size()
    loaded = [read_memo(memo) if rank == 0 else {}]
    if world > 1:
        torch.distributed.broadcast_object_list(loaded, src=0)
    known, passed, todo = loaded[0], {}, []
    for case in list(cases)[rank::world]:
        prints = fingerprints(case, convention, voxels) if memo else []
        if known.get(case["case_id"]) in prints:
            passed[case["case_id"]] = known[case["case_id"]]
        else:
            todo.append((case, prints[0] if prints else None))
    broken = check_cases([case for case, _ in todo], convention, workers, voxels)
    remembered = len(passed)
    passed |= {case["case_id"]: fp for case, fp in todo if fp and case["case_id"] not in broken}
    shares = [(broken, len(todo), remembered, passed)]
    if world > 1:
        shares = [None] * world
        torch.distributed.all_gather_object(shares, (broken, len(todo), remembered, passed))
    order = {case["case_id"]: index for index, case in enumerate(cases)}
    found = sorted((item for share in shares for item in share[0].items()), key=lambda item: order[item[0]])
    if rank == 0 and memo:
        content = {case_id: fp for case_id, fp in known.items() if case_id not in order}  # other datasets' cases
        content |= {case_id: fp for share in shares for case_id, fp in share[3].items()}
        if content != known:
            write_memo(memo, content)
    return Verdict(dict(found), sum(share[1] for share in shares), sum(share[2] for share in shares))


def summary(verdict: Verdict, total: int, voxels: bool, memo: str | None) -> str:
    """`preflight: 16 case(s) usable (4 checked, 12 remembered from <memo>)`, saying when voxels were not read."""
    usable = total - len(verdict.broken)
    details = [f"{verdict.checked} checked" + ("" if voxels else " by their headers only, voxels not read")]
    if memo:
        details.append(f"{verdict.remembered} remembered from {memo}")
    world = idist.get_world_size()
    if world > 1:
        details.append(f"shared over {world} ranks")
    counted = f"{usable} case(s)" if usable == total else f"{usable} of {total} case(s)"
    return f"preflight: {counted} usable ({', '.join(details)})"


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
    voxels: bool = True,
    memo: str | None = None,
) -> Sequence[Mapping[str, Any]]:
    """Training and evaluation: stop before any work, naming every broken case at once; return `cases` otherwise.

    Under torch.distributed rank 0 logs and names the broken cases; the other ranks exit with status 1 quietly.
    """
    verdict = preflight(cases, convention, voxels, memo, workers)
    rank = idist.get_rank()
    if rank == 0:
        logger.info(summary(verdict, len(cases), voxels, memo))
    if verdict.broken:
        if rank > 0:
            raise SystemExit(1)
        stop(
            f"{report(verdict.broken, len(cases))}\nFix or remove them; `python scripts/prepare_datalist.py ... "
            "--skip_bad` writes a datalist without them.",
            debug,
        )
    return cases
