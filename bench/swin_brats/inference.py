"""Benchmark whole-process `run inference` on full-size 240x240x155 cases: the bundle vs the reference settings.

The reference is what the public BraTS21 Swin UNETR scripts do: a sliding window over the whole volume, overlap
0.6, sw_batch_size 1. The bundle tiles only the brain's bounding box (overlap 0.5, sw_batch_size 4, SDPA
attention). Both run the same trained model through the same inference.json, each as its own process, timed from
start to exit, with the peak resident memory of that process and the Dice of its label maps against the truth.
A model is trained first for a few epochs (or pass --model_dir with a models/model.pt of the same feature size).

    .venv/bin/python bench/swin_brats/inference.py [--feature_size 12] [--roi 64] [--epochs 40] [--num_test 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from common import BRATS2021, BUNDLE, RESULTS, machine, write_fullsize_dataset, write_result
from measure import timed_process
from scripts.inferers import brain_box

REFERENCE = {"crop_to_brain": False, "sw_overlap": 0.6, "sw_batch_size": 1, "use_flash_attention": False}
VARIANTS = {
    "reference": REFERENCE,
    "bundle": {},
    "bundle_overlap_0.25": {"sw_overlap": 0.25},
    "bundle_overlap_0.6": {"sw_overlap": 0.6},
    "bundle_gaussian": {"sw_mode": "gaussian"},
    "bundle_sw_batch_1": {"sw_batch_size": 1},
}
REGIONS = {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}  # BraTS 2021 labels
PICTURED = {"reference": "reference: whole volume", "bundle": "bundle: brain box"}


def bundle_process(args: list[str], log: Path) -> tuple[float, float]:
    """Run `python -m monai.bundle run ...` from the bundle folder; return wall seconds and peak RSS in MiB."""
    command = [sys.executable, "-m", "monai.bundle", "run", *args, "--meta_file", "configs/metadata.json",
               "--logging_file", "configs/logging.conf"]  # fmt: skip
    return timed_process(command, BUNDLE, log, " ".join(command))


def dice(prediction: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Dice of each BraTS region; 1 when both are empty."""
    scores = {}
    for region, labels in REGIONS.items():
        p, t = np.isin(prediction, labels), np.isin(truth, labels)
        total = p.sum() + t.sum()
        scores[region] = 1.0 if total == 0 else float(2 * (p & t).sum() / total)
    return scores


def brain_box_mask(case: Path) -> np.ndarray:
    """True inside the bounding box of the case's nonzero voxels (any modality): where the bundle's window runs."""
    nonzero = np.any([np.asarray(nib.load(f).dataobj) != 0 for f in sorted(case.glob("*_[ft]*.nii.gz"))], axis=0)
    box = torch.zeros(nonzero.shape, dtype=torch.bool)
    box[brain_box(torch.from_numpy(nonzero)[None, None])] = True
    return box.numpy()


def score(
    predictions: Path, data: Path, against: Path | None = None, inside_brain_box: bool = False
) -> dict[str, float]:
    """Mean Dice per region over the cases, and over regions and cases, against the truth or another run's maps.

    `inside_brain_box` sets the predictions to background outside the brain's bounding box before scoring.
    """
    per_case = []
    for case in sorted(p for p in data.iterdir() if p.is_dir()):
        truth_file = (
            case / BRATS2021.file_name(case.name, BRATS2021.label)
            if against is None
            else against / f"{case.name}.nii.gz"
        )
        truth = np.asarray(nib.load(truth_file).dataobj)
        prediction = np.asarray(nib.load(predictions / f"{case.name}.nii.gz").dataobj)
        if inside_brain_box:
            prediction = np.where(brain_box_mask(case), prediction, 0)
        per_case.append(dice(prediction, truth))
    means = {region: float(np.mean([c[region] for c in per_case])) for region in REGIONS}
    means["mean"] = float(np.mean(list(means.values())))
    return {k: round(v, 4) for k, v in means.items()}


def picture(data: Path, predictions: Path, output: Path) -> None:
    """FLAIR slice through the first test case's largest tumour area: truth, reference and bundle label maps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    case = sorted(p for p in data.iterdir() if p.is_dir())[0]
    flair = np.asarray(nib.load(case / f"{case.name}_flair.nii.gz").dataobj)
    maps = {"truth": case / BRATS2021.file_name(case.name, BRATS2021.label)}
    maps |= {title: predictions / name / f"{case.name}.nii.gz" for name, title in PICTURED.items()}
    label_maps = {title: np.asarray(nib.load(path).dataobj) for title, path in maps.items()}
    axial = int(np.argmax((label_maps["truth"] > 0).sum((0, 1))))
    colours = ListedColormap([(0, 0, 0, 0), (1, 0, 0, 0.6), (0, 1, 0, 0.5), (0, 0, 0, 0), (1, 1, 0, 0.7)])
    figure, axes = plt.subplots(1, len(label_maps), figsize=(4 * len(label_maps), 4.4))
    for axis, (title, label_map) in zip(axes, label_maps.items(), strict=True):
        axis.imshow(np.rot90(flair[:, :, axial]), cmap="gray")
        axis.imshow(np.rot90(label_map[:, :, axial]), cmap=colours, vmin=0, vmax=4, interpolation="nearest")
        axis.set_title(title)
        axis.axis("off")
    figure.suptitle(f"{case.name}, axial slice {axial}, FLAIR: NCR red, ED green, ET yellow")
    figure.tight_layout()
    figure.savefig(output, dpi=70)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feature_size", type=int, default=12)
    parser.add_argument("--roi", type=int, default=64, help="training patch and sliding-window size")
    parser.add_argument("--num_train", type=int, default=10)
    parser.add_argument("--num_test", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--model_dir", type=Path, default=None, help="a folder with model.pt (skips training)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS)[:4], choices=list(VARIANTS))
    parser.add_argument("--work_dir", type=Path, default=None)
    args = parser.parse_args()
    work = (args.work_dir or Path(tempfile.mkdtemp(prefix="swin_brats_inference_bench_"))).resolve()
    model = ["--feature_size", str(args.feature_size), "--roi_size", str([args.roi] * 3).replace(" ", "")]
    result: dict = {"benchmark": "whole-process inference on full-size cases, bundle vs reference sliding window"}
    result["settings"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}

    test_data = write_fullsize_dataset(work / "test_data", args.num_test, seed=100)
    model_dir = args.model_dir
    if model_dir is None:
        model_dir = work / "models"
        train_data = write_fullsize_dataset(work / "train_data", args.num_train + 1, seed=0)
        train_s, _ = bundle_process(
            ["training", "--config_file", "configs/train.json", "--dataset_dir", str(train_data), "--num_folds",
             str(args.num_train + 1), "--ckpt_dir", str(model_dir), "--output_dir", str(work / "train"), "--epochs",
             str(args.epochs), "--val_interval", str(args.epochs), "--learning_rate", str(args.learning_rate),
             "--num_workers", "2", "--progress_bar", "False", "--use_checkpoint", "False", *model],
            work / "train.log",
        )  # fmt: skip
        result["model"] = {"trained_s": round(train_s, 1), "epochs": args.epochs, "train_cases": args.num_train}

    for name in args.variants:
        overrides = [item for key, value in VARIANTS[name].items() for item in (f"--{key}", str(value))]
        output = work / "predictions" / name
        wall, peak = bundle_process(
            ["inference", "--config_file", "configs/inference.json", "--dataset_dir", str(test_data), "--ckpt_dir",
             str(model_dir), "--output_dir", str(output), "--num_workers", "0", "--progress_bar", "False", *model,
             *overrides],
            work / f"inference_{name}.log",
        )  # fmt: skip
        result[name] = {
            "settings": VARIANTS[name],
            "process_wall_s": round(wall, 1),
            "wall_s_per_case": round(wall / args.num_test, 1),
            "peak_rss_mib": round(peak),
            "dice": score(output, test_data),
        }
        if name == "reference":  # where the two differ by construction: the reference also paints outside the brain
            result[name]["dice_inside_brain_box"] = score(output, test_data, inside_brain_box=True)
        if name != "reference" and "reference" in result:  # how far the label maps themselves moved
            result[name]["dice_with_reference_maps"] = score(output, test_data, work / "predictions" / "reference")
        print(name, result[name], flush=True)
    if {"reference", "bundle"} <= set(args.variants):
        result["speedup_bundle_over_reference"] = round(
            result["reference"]["process_wall_s"] / result["bundle"]["process_wall_s"], 2
        )
        result["mean_dice_difference"] = round(
            result["bundle"]["dice"]["mean"] - result["reference"]["dice"]["mean"], 4
        )
        picture(test_data, work / "predictions", RESULTS / "swin_brats_inference.png")
        result["picture"] = "bench/results/swin_brats_inference.png"
        result["mean_dice_difference_inside_brain_box"] = round(
            result["bundle"]["dice"]["mean"] - result["reference"]["dice_inside_brain_box"]["mean"], 4
        )
    result["machine"] = machine()
    write_result("swin_brats_inference", result)


if __name__ == "__main__":
    main()
