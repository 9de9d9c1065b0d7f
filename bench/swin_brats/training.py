"""Benchmark the training data path: the bundle's cached pipeline vs the public BraTS21 scripts' pipeline.

Same model, same cases, same trainer (the bundle's train.json); only the dataset and loader differ. The bundle side is
train.json's `train#dataset` and `train#dataloader` as shipped: the compact cache (the z-scored image cached in
`cache_dtype`, float16 by default, the region channels in uint8; the result records the dtypes actually cached). The
reference is a plain `Dataset` whose transforms (load, label conversion, foreground crop, normalisation, random crop,
flips, intensity) all run every epoch, read by torch's `DataLoader`, as in the public Swin UNETR BraTS21 scripts.
Prints and stores JSON with seconds per epoch and per iteration and the time each iteration waits for data, from the
second epoch on, then the seconds per batch of the same loader iterated alone (no model step).

    .venv/bin/python bench/swin_brats/training.py [--num_cases 4] [--epochs 3] [--feature_size 12] [--roi 96]
        [--note TEXT]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from common import BUNDLE, machine, write_fullsize_dataset, write_result
from ignite.engine import Events
from monai.bundle import ConfigWorkflow
from scripts.datasets import cached_case_bytes


def reference_transforms(roi: list[int]) -> list:
    """The BraTS21 scripts' training transforms after loading (their `ConvertToMultiChannel...` is our load step)."""
    both = ["image", "label"]
    return [
        {"_target_": "CropForegroundd", "keys": both, "source_key": "image", "k_divisible": roi},
        {"_target_": "RandSpatialCropd", "keys": both, "roi_size": roi, "random_size": False},
        *({"_target_": "RandFlipd", "keys": both, "prob": 0.5, "spatial_axis": axis} for axis in range(3)),
        {"_target_": "NormalizeIntensityd", "keys": "image", "nonzero": True, "channel_wise": True},
        {"_target_": "RandScaleIntensityd", "keys": "image", "factors": 0.1, "prob": 1.0},
        {"_target_": "RandShiftIntensityd", "keys": "image", "offsets": 0.1, "prob": 1.0},
    ]


def loader_only_epochs(loader, epochs: int) -> list[float]:
    """Seconds per epoch of iterating the training loader alone: the data path without a model step to hide it."""
    durations = []
    for _ in range(epochs):
        start = time.perf_counter()
        for _batch in loader:
            pass
        durations.append(time.perf_counter() - start)
    return durations


def what_is_cached(dataset) -> dict:
    """The dataset class, how many cases it caches, the cached image's and label's dtypes (none for a plain Dataset)."""
    cache = getattr(dataset, "_cache", None) or []
    first = cache[0] if cache else {}
    first = first[0] if isinstance(first, list) else first
    return {
        "dataset": type(dataset).__name__,
        "cached_cases": len(cache),
        "cached_dtypes": {key: str(first[key].dtype) for key in ("image", "label") if key in first},
        "cached_mb": round(sum(cached_case_bytes(item) for item in cache) / 1e6, 1),
    }


def measure(pipeline: str, data: Path, work: Path, args: argparse.Namespace) -> dict:
    """Train `args.epochs` epochs with one pipeline; time epochs, iterations and the waits for a batch."""
    roi = [args.roi] * 3
    overrides = {}
    if pipeline == "reference":
        overrides["reference_transforms"] = reference_transforms(roi)
        overrides["train#dataset"] = {
            "_target_": "Dataset",
            "data": {
                "_target_": "scripts.folds.fold_cases",
                "info": "@dataset_info",
                "fold": "@fold",
                "split": "train",
            },
            "transform": {"_target_": "Compose", "transforms": "$@load_transforms + @reference_transforms"},
        }
        # the scripts' loader: torch's DataLoader, worker processes started anew every epoch
        overrides["train#dataloader"] = {
            "_target_": "torch.utils.data.DataLoader",
            "dataset": "@train#dataset",
            "batch_size": "@batch_size",
            "shuffle": True,
            "num_workers": "@num_workers",
            "pin_memory": "$torch.cuda.is_available()",
        }
    workflow = ConfigWorkflow(
        config_file=str(BUNDLE / "configs" / "train.json"),
        workflow_type="train",
        bundle_root=str(BUNDLE),
        dataset_dir=str(data),
        num_folds=args.num_cases + 1,
        datalist=None,
        ckpt_dir=str(work / pipeline / "models"),
        output_dir=str(work / pipeline / "eval"),
        epochs=args.epochs,
        val_interval=args.epochs + 1,
        feature_size=args.feature_size,
        roi_size=roi,
        num_workers=args.num_workers,
        progress_bar=False,
        **overrides,
    )
    load_before = os.getloadavg()
    start = time.perf_counter()
    workflow.initialize()
    trainer = workflow.parser.get_parsed_content("train#trainer")
    setup_s = time.perf_counter() - start  # includes filling the cache for the bundle pipeline
    cached = what_is_cached(workflow.parser.get_parsed_content("train#dataset"))
    marks: dict[str, float] = {}
    waits: list[tuple[int, float]] = []
    iterations: list[tuple[int, float]] = []
    epochs: list[float] = []

    def stamp(name: str):
        return lambda engine: marks.__setitem__(name, time.perf_counter())

    trainer.add_event_handler(Events.GET_BATCH_STARTED, stamp("batch"))
    trainer.add_event_handler(Events.ITERATION_STARTED, stamp("iteration"))
    trainer.add_event_handler(Events.EPOCH_STARTED, stamp("epoch"))
    trainer.add_event_handler(
        Events.GET_BATCH_COMPLETED,
        lambda e: waits.append((e.state.epoch, time.perf_counter() - marks["batch"])),
    )
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED,
        lambda e: iterations.append((e.state.epoch, time.perf_counter() - marks["iteration"])),
    )
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: epochs.append(time.perf_counter() - marks["epoch"]))
    workflow.run()
    loader_epochs = loader_only_epochs(workflow.parser.get_parsed_content("train#dataloader"), args.epochs)
    workflow.finalize()
    iterations_per_epoch = len(iterations) // len(epochs)
    later_waits = [w for epoch, w in waits if epoch > 1]
    later_iterations = [t for epoch, t in iterations if epoch > 1]
    return {
        **cached,
        **({"cache_dtype_setting": workflow.parser["cache_dtype"]} if pipeline == "bundle" else {}),
        "load_average_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "setup_s": round(setup_s, 2),
        "epoch_s": [round(e, 2) for e in epochs],
        "epoch_s_after_first": round(statistics.mean(epochs[1:]), 2),
        "iteration_s_after_first": round(statistics.mean(later_iterations), 3),
        "data_wait_s_per_iteration_after_first": round(statistics.mean(later_waits), 4),
        "data_share_after_first": round(sum(later_waits) / (sum(later_waits) + sum(later_iterations)), 4),
        "iterations_per_epoch": iterations_per_epoch,
        "loader_only_epoch_s": [round(e, 3) for e in loader_epochs],
        "loader_only_s_per_batch_after_first": round(statistics.mean(loader_epochs[1:]) / iterations_per_epoch, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_cases", type=int, default=4, help="training cases (one more is held out)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--feature_size", type=int, default=12)
    parser.add_argument("--roi", type=int, default=96)
    parser.add_argument("--num_workers", type=int, default=2)
    parser.add_argument("--work_dir", type=Path, default=None)
    parser.add_argument("--note", default=None, help="stored in the result (e.g. other work shared the cores)")
    args = parser.parse_args()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="swin_brats_training_bench_"))
    data = write_fullsize_dataset(work / "data", args.num_cases + 1, seed=0)
    result = {"benchmark": "training data path, bundle (compact cache) vs reference (Dataset, transforms every epoch)"}
    result["settings"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    for pipeline in ("reference", "bundle"):
        result[pipeline] = measure(pipeline, data, work, args)
    reference, bundle = result["reference"], result["bundle"]
    result["data_wait_ratio_reference_over_bundle"] = round(
        reference["data_wait_s_per_iteration_after_first"] / max(bundle["data_wait_s_per_iteration_after_first"], 1e-6),
        1,
    )
    result["epoch_time_ratio_reference_over_bundle"] = round(
        reference["epoch_s_after_first"] / bundle["epoch_s_after_first"], 2
    )
    result["loader_only_ratio_reference_over_bundle"] = round(
        reference["loader_only_s_per_batch_after_first"] / max(bundle["loader_only_s_per_batch_after_first"], 1e-6), 1
    )
    if args.note:
        result["note"] = args.note
    result["machine"] = machine()
    write_result("swin_brats_training", result)


if __name__ == "__main__":
    main()
