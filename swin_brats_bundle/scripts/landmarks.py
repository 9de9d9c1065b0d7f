"""Nyúl–Udupa landmarks: per-case percentiles, their fit on a fold's training cases, the landmarks file and its policy.

MRI intensities have no physical unit; mapping each scan's percentiles piecewise-linearly onto a standard scale
learned from the training cases removes scanner/protocol intensity differences while keeping intensity order.
`standardization.HistogramStandardized` applies the landmarks; `histogram.py` is the command line that fits them.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.data import Dataset
from monai.transforms import LoadImage

from scripts.atomic import atomic_write
from scripts.errors import first_line, stop
from scripts.folds import fold_cases
from scripts.layouts import CHANNELS

logger = logging.getLogger(__name__)

PERCENTILES = (1.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 99.0)
"""Landmarks: the 1st/99th percentile cutoffs (robust to outliers and tumour tails) and the deciles between them."""
STANDARD_RANGE = (0.0, 100.0)
MASK_RULE = "nonzero"  # each channel's voxels != 0: the skull-stripped brain, never the tumour label
# Percentiles come from at most this many evenly strided voxels: as exact as needed (a BraTS brain has ~1.5M per
# channel), far cheaper than sorting every voxel, and below torch.quantile's limit of 2**24 elements.
QUANTILE_SAMPLE = 2**20
FIT_COMMAND = "python -m scripts.histogram fit --dataset_dir D --fold K --output FILE"


def quantiles(values: torch.Tensor, q: torch.Tensor, max_elements: int = QUANTILE_SAMPLE) -> torch.Tensor:
    """`torch.quantile` of a 1-D tensor, on an evenly strided subsample when it is larger (deterministic)."""
    if values.numel() > max_elements:
        step = -(-values.numel() // max_elements)  # ceil division
        values = values[::step]
    return torch.quantile(values, q.to(values))


def case_landmarks(image: torch.Tensor, percentiles: Sequence[float] = PERCENTILES) -> torch.Tensor:
    """Per channel, the percentiles of the nonzero voxels of a (C, ...) image: (C, K), NaN rows for empty channels."""
    q = torch.tensor(percentiles, dtype=torch.float64) / 100.0
    rows = []
    for channel in torch.as_tensor(image):
        values = channel[channel != 0].to(torch.float64)
        rows.append(quantiles(values, q) if values.numel() else torch.full((len(q),), float("nan"), dtype=q.dtype))
    return torch.stack(rows)


def standard_landmarks(
    per_case: Mapping[str, torch.Tensor], standard_range: Sequence[float] = STANDARD_RANGE
) -> torch.Tensor:
    """Map each case's [first, last] landmark linearly onto `standard_range` and average over cases: (C, K)."""
    low, high = standard_range
    stacked = torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in per_case.values()])  # (N, C, K)
    span = stacked[..., -1:] - stacked[..., :1]
    usable = torch.isfinite(span) & (span > 0)  # an empty or constant channel cannot define a scale
    mapped = low + (stacked - stacked[..., :1]) / torch.where(usable, span, 1.0) * (high - low)
    usable = usable.expand_as(mapped)
    counts = usable.sum(0)
    for case_id, case_usable in zip(per_case, usable[..., 0], strict=True):
        for channel, ok in enumerate(case_usable.tolist()):
            if not ok:
                logger.warning(f"{case_id}: channel {CHANNELS[channel]} is empty or constant, left out of the fit.")
    if (counts == 0).any():
        empty = [CHANNELS[c] for c in range(counts.shape[0]) if counts[c, 0] == 0]
        raise ValueError(f"No case has usable (nonzero, non-constant) voxels in channel(s) {', '.join(empty)}.")
    return torch.where(usable, mapped, 0.0).sum(0) / counts


class _CaseLandmarks:
    """Dataset transform: load one case in network channel order and return its landmarks (runs in loader workers)."""

    def __init__(self, channel_indices: Sequence[int], percentiles: Sequence[float]) -> None:
        self.loader = LoadImage(ensure_channel_first=True, image_only=True)
        self.channel_indices = list(channel_indices)
        self.percentiles = list(percentiles)

    def __call__(self, case: Mapping[str, Any]) -> dict[str, Any]:
        image = self.loader(case["image"])
        if image.shape[0] != len(self.channel_indices):
            raise ValueError(
                f"{case['case_id']}: expected {len(self.channel_indices)} channels, found {image.shape[0]}."
            )
        return {"case_id": case["case_id"], "landmarks": case_landmarks(image[self.channel_indices], self.percentiles)}


def fit_landmarks(
    cases: Iterable[Mapping[str, Any]],
    channel_indices: Sequence[int],
    percentiles: Sequence[float] = PERCENTILES,
    num_workers: int = 0,
) -> tuple[torch.Tensor, list[str]]:
    """Standard landmarks (C, K) of `cases` (datalist items) and the ids of the cases they were fitted on."""
    dataset = Dataset(list(cases), transform=_CaseLandmarks(channel_indices, percentiles))
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=num_workers)
    per_case = {}
    for index, item in enumerate(loader, start=1):
        per_case[item["case_id"]] = item["landmarks"]
        if index % 50 == 0 or index == len(dataset):
            logger.info(f"histogram landmarks: {index}/{len(dataset)} case(s) read")
    return standard_landmarks(per_case), list(per_case)


def fit_fold(info: Mapping[str, Any], fold: int, output: str | Path, num_workers: int = 0) -> dict[str, Any]:
    """Fit landmarks on the training cases of `fold` only (its validation cases never leak in) and save them."""
    cases = fold_cases(dict(info), fold, "train")
    logger.info(f"fitting histogram landmarks on the {len(cases)} training case(s) of fold {fold}")
    landmarks, case_ids = fit_landmarks(cases, info["channel_indices"], PERCENTILES, num_workers)
    record = {
        "method": "Nyul-Udupa histogram standardisation",
        "percentiles": list(PERCENTILES),
        "standard_range": list(STANDARD_RANGE),
        "mask": MASK_RULE,
        "channels": list(CHANNELS),
        "landmarks": [[round(v, 6) for v in row] for row in landmarks.tolist()],
        "fold": fold,
        "cases": case_ids,
    }
    save_landmarks(record, output)
    logger.info(f"saved histogram landmarks to {output}")
    return record


def save_landmarks(record: Mapping[str, Any], path: str | Path) -> Path:
    """Write the landmarks record as pretty JSON, atomically."""
    text = json.dumps(record, indent=4)
    # One line per list of numbers (percentiles, each channel's landmarks) keeps the file readable.
    text = re.sub(r"\[\s+([-+0-9.eE,\s]+?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    with atomic_write(path) as f:
        f.write(text + "\n")
    return Path(path)


def load_landmarks(path: str | Path, debug: bool = False) -> dict[str, Any]:
    """Read and check a landmarks file; a missing or malformed file stops with a one-line error naming it."""
    path = Path(path)
    if not path.is_file():
        stop(
            f"normalization 'histogram' needs the landmarks file {path}, which does not exist; training with "
            f"--normalization histogram writes it, or run `{FIT_COMMAND}` (another file: --landmarks FILE).",
            debug,
        )
    try:
        record = json.loads(path.read_text())
        percentiles, landmarks = record["percentiles"], torch.tensor(record["landmarks"], dtype=torch.float64)
        if landmarks.shape != (len(CHANNELS), len(percentiles)) or (landmarks.diff(dim=1) < 0).any():
            raise ValueError(f"landmarks must be {len(CHANNELS)} non-decreasing rows of {len(percentiles)} values")
    except (OSError, ValueError, KeyError, TypeError) as error:
        stop(f"{path} is not a histogram landmarks file ({first_line(error)})", debug, error)
    return record


def ensure_landmarks(
    path: str | Path,
    normalization: str,
    info: Mapping[str, Any],
    fold: int,
    num_workers: int = 0,
    debug: bool = False,
) -> str:
    """Training's landmarks file: with `histogram`, fitted on the fold's training cases when missing; return its path.

    An existing file is used as is unless it was fitted on validation cases of `fold` (leakage). Under DDP the file
    must exist before launch: fitting on one rank while the others wait could outlast the process-group timeout.
    """
    if normalization != "histogram":
        return str(path)
    path = Path(path)
    if path.is_file():
        validation = {c["case_id"] for c in info["training"] if c["fold"] == fold}
        leaked = sorted(validation & set(load_landmarks(path, debug).get("cases", [])))
        if leaked:
            stop(
                f"{path} was fitted on validation case(s) of fold {fold} ({', '.join(leaked[:3])}"
                f"{', ...' if len(leaked) > 3 else ''}); delete it, or pass --landmarks FILE fitted on this fold.",
                debug,
            )
        logger.info(f"using histogram landmarks {path}")
        return str(path)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        stop(
            f"no landmarks file {path}; under torchrun fit it before launching: `{FIT_COMMAND}` "
            f"with this run's --fold and --output {path}.",
            debug,
        )
    try:
        fit_fold(info, fold, path, num_workers)
    except (OSError, ValueError, RuntimeError) as error:
        stop(f"fitting histogram landmarks failed ({first_line(error)})", debug, error)
    return str(path)
