"""Shared by the segmentation benchmarks: full-size synthetic BraTS cases, the machine description, result files."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "swin_brats_bundle"
RESULTS = REPO / "bench" / "results"
if str(BUNDLE) not in sys.path:
    sys.path.insert(0, str(BUNDLE))

from scripts.synthetic_data import SyntheticCase, make_case, write_case  # noqa: E402

BRATS_SHAPE = (240, 240, 155)
# Skull-stripped BraTS brains fill about 140 x 175 x 140 voxels of the 240 x 240 x 155 grid; the synthetic brain is
# an ellipsoid spanning ~80 % of the box it is drawn in, so drawing it in this box gives that footprint.
BRAIN_BOX = (172, 212, 160)


def _pad_to(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    spatial = array.shape[-3:]
    before = [(full - part) // 2 for full, part in zip(shape, spatial, strict=True)]
    pads = [(0, 0)] * (array.ndim - 3) + [
        (b, full - part - b) for b, full, part in zip(before, shape, spatial, strict=True)
    ]
    return np.pad(array, pads)


def write_fullsize_dataset(folder: Path, num_cases: int, seed: int, shape: tuple[int, int, int] = BRATS_SHAPE) -> Path:
    """`num_cases` labelled BraTS 2021-layout cases on the `shape` grid with a BraTS-sized brain, mostly background."""
    rng = np.random.default_rng(seed)
    box = tuple(min(b, s) for b, s in zip(BRAIN_BOX, shape, strict=True)) if shape == BRATS_SHAPE else None
    for index in range(num_cases):
        drawn = make_case(rng, box or tuple(int(s * 0.72) for s in shape))
        case = SyntheticCase(*(_pad_to(a, shape) for a in (drawn.images, drawn.edema, drawn.necrosis, drawn.enhancing)))
        write_case(folder, "brats2021", f"BraTS2021_{index:05d}", case, labelled=True)
    return folder


def machine() -> dict:
    """What the numbers were measured on."""
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "machine": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def write_result(name: str, result: dict) -> Path:
    """Print `result` as JSON and store it as bench/results/<name>.json."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=4) + "\n"
    print(text)
    path = RESULTS / f"{name}.json"
    path.write_text(text)
    return path
