"""Benchmark scaling: inference time vs volume size (bundle vs reference sliding window), training vs case count.

Inference runs in-process on one synthetic case per size with an untrained network of the given feature size,
so it measures the tiling work only (the reference window too with
--with_reference); training reuses training.py's measurement of the bundle pipeline.

    .venv/bin/python bench/swin_brats/scaling.py [--feature_size 12] [--roi 96] [--cases 2 4 8]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from common import BRATS2021, machine, write_fullsize_dataset, write_result
from monai.inferers import SlidingWindowInferer
from monai.networks.nets import SwinUNETR
from scripts.inferers import BrainBoxInferer
from training import measure

SIZES = [(128, 128, 96), (192, 192, 128), (240, 240, 155)]


def load_case(folder: Path) -> torch.Tensor:
    """The 4 modalities of the first case as a z-scored (1, 4, H, W, D) batch, background kept 0."""
    case = next(p for p in sorted(folder.iterdir()) if p.is_dir())
    channels = [np.asarray(nib.load(case / BRATS2021.file_name(case.name, m)).dataobj, dtype=np.float32)
                for m in BRATS2021.suffixes]  # fmt: skip
    image = torch.from_numpy(np.stack(channels))[None]
    brain = image != 0
    mean = (image * brain).sum((2, 3, 4), keepdim=True) / brain.sum((2, 3, 4), keepdim=True)
    std = ((image - mean) ** 2 * brain).sum((2, 3, 4), keepdim=True) / brain.sum((2, 3, 4), keepdim=True)
    return torch.where(brain, (image - mean) / std.sqrt(), 0.0)


def time_inference(inferer, image: torch.Tensor, network: torch.nn.Module) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        inferer(image, network)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feature_size", type=int, default=12)
    parser.add_argument("--roi", type=int, default=96)
    parser.add_argument("--cases", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--train_roi", type=int, default=64)
    parser.add_argument("--with_reference", action="store_true", help="also time the whole-volume reference window")
    parser.add_argument("--work_dir", type=Path, default=None)
    args = parser.parse_args()
    work = (args.work_dir or Path(tempfile.mkdtemp(prefix="swin_brats_scaling_bench_"))).resolve()
    result: dict = {"benchmark": "scaling: inference vs volume size, training vs number of cases"}
    result["settings"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}

    roi = [args.roi] * 3
    reference = SlidingWindowInferer(roi, sw_batch_size=1, overlap=0.6)
    bundle = BrainBoxInferer(roi, sw_batch_size=4, overlap=0.5)
    plain = SwinUNETR(4, 3, feature_size=args.feature_size).eval()
    flash = SwinUNETR(4, 3, feature_size=args.feature_size, use_flash_attention=True).eval()
    flash.load_state_dict(plain.state_dict())
    rows = []
    for size in SIZES:
        image = load_case(write_fullsize_dataset(work / ("x".join(map(str, size))), 1, seed=7, shape=size))
        row = {
            "shape": list(size),
            "voxels": int(np.prod(size)),
            "bundle_s": round(time_inference(bundle, image, flash), 2),
        }
        if args.with_reference:
            row["reference_s"] = round(time_inference(reference, image, plain), 2)
            row["speedup"] = round(row["reference_s"] / row["bundle_s"], 2)
        rows.append(row)
        print(row, flush=True)
    result["inference_vs_volume_size"] = rows

    rows = []
    for count in args.cases:
        data = write_fullsize_dataset(work / f"train_{count}", count + 1, seed=0)
        settings = argparse.Namespace(num_cases=count, epochs=2, feature_size=args.feature_size,
                                      roi=args.train_roi, num_workers=2)  # fmt: skip
        measured = measure("bundle", data, work / f"run_{count}", settings)
        rows.append({"train_cases": count, "setup_s_incl_cache": measured["setup_s"], "epoch_s": measured["epoch_s"]})
        print(rows[-1], flush=True)
    result["training_vs_number_of_cases"] = rows
    result["machine"] = machine()
    write_result("swin_brats_scaling", result)


if __name__ == "__main__":
    main()
