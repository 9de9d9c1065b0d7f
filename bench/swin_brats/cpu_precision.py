"""CPU inference in fp32 against bfloat16 (`--amp True` on a CPU with native bf16), and what torch.compile and ONNX
Runtime give for the same network. SYNTHETIC DATA.

1. Whole-process `python -m monai.bundle run inference` on full-size synthetic cases (240 x 240 x 155, 1 mm), fp32
   (`--amp False`) and bf16 (`--amp True`) runs interleaved, for feature size 48 (the default network; random weights:
   time only) and feature size 12; seconds per case and the process's peak memory.
2. Agreement of the label maps of a trained model (`--model`, e.g. the quick recipe's model from convergence.py)
   between fp32 and bf16: Dice per region on synthetic 2 mm cases.
3. One window forward pass of the default network (4 x 96^3) in this process: eager fp32, eager bf16, torch.compile
   (fp32) and ONNX Runtime (fp32, exported with the bundle's documented onnx_export settings).

    .venv/bin/python bench/swin_brats/cpu_precision.py [--model M --model_feature_size 12 --model_roi 64]
        [--num_cases 2] [--repeats 2] [--work DIR]        -> bench/results/swin_brats_cpu_precision.json
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from common import BUNDLE, write_fullsize_dataset, write_result
from measure import median_seconds, timed_process

sys.path.insert(0, str(BUNDLE))
from scripts.cases import discover  # noqa: E402
from scripts.labels import CONVENTIONS, labels_to_regions  # noqa: E402
from scripts.runtime import cpu_bf16_supported  # noqa: E402


def run_inference(data: Path, out: Path, settings: list[str], log: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one whole inference process."""
    command = [sys.executable, "-m", "monai.bundle", "run", "inference", "--config_file", "configs/inference.json",
               "--bundle_root", str(BUNDLE), "--dataset_dir", str(data), "--output_dir", str(out),
               "--progress_bar", "False", "--check_submission", "False", *settings]  # fmt: skip
    return timed_process(command, BUNDLE, log, "inference")


def random_checkpoint(folder: Path, feature_size: int) -> Path:
    from monai.networks.nets import SwinUNETR

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(SwinUNETR(4, 3, feature_size=feature_size).state_dict(), folder / "model.pt")
    return folder


def speed(data: Path, work: Path, cases: int, repeats: int) -> dict:
    results = {}
    for feature_size in (48, 12):
        models = random_checkpoint(work / f"random_fs{feature_size}", feature_size)
        times: dict[str, list[float]] = {"fp32": [], "bf16": []}
        memory: dict[str, float] = {}
        for repeat in range(repeats):
            for name, amp in (("fp32", "False"), ("bf16", "True")):  # interleaved, so drift hits both alike
                out = work / f"fs{feature_size}_{name}_{repeat}"
                seconds, peak = run_inference(data, out, ["--ckpt_dir", str(models), "--feature_size",
                                              str(feature_size), "--amp", amp], out.with_suffix(".log"))  # fmt: skip
                times[name].append(seconds / cases)
                memory[name] = max(memory.get(name, 0.0), peak)
        median = {name: statistics.median(values) for name, values in times.items()}
        results[f"feature_size_{feature_size}"] = {
            "seconds_per_case": {name: [round(v, 1) for v in values] for name, values in times.items()},
            "median_seconds_per_case": {name: round(v, 1) for name, v in median.items()},
            "speedup_bf16_over_fp32": round(median["fp32"] / median["bf16"], 2),
            "peak_rss_mib": {name: round(v) for name, v in memory.items()},
        }
    return results


def agreement(model: Path, feature_size: int, roi: int, work: Path) -> dict:
    """Dice per region between the fp32 and bf16 label maps of a trained model on 2 mm synthetic cases."""
    data = work / "agreement_data"
    subprocess.run([sys.executable, str(BUNDLE / "scripts" / "synthetic_data.py"), "--output_dir", str(data),
                    "--num_cases", "4", "--spacing", "2", "--seed", "4001"], check=True)  # fmt: skip
    common = ["--checkpoint", str(model), "--feature_size", str(feature_size), "--roi_size", f"[{roi},{roi},{roi}]"]
    for name, amp in (("fp32", "False"), ("bf16", "True")):
        run_inference(data, work / f"agree_{name}", [*common, "--amp", amp], work / f"agree_{name}.log")
    convention = CONVENTIONS["brats2021"]
    dice: dict[str, list[float]] = {"tc": [], "wt": [], "et": []}
    changed = []
    for case in discover(data)["training"]:
        maps = [
            np.asarray(nib.load(work / f"agree_{n}" / f"{case['case_id']}.nii.gz").dataobj) for n in ("fp32", "bf16")
        ]
        changed.append(float(np.mean(maps[0] != maps[1])))
        a, b = (labels_to_regions(torch.as_tensor(m), convention).bool() for m in maps)
        for index, region in enumerate(("tc", "wt", "et")):
            both = float(a[index].sum() + b[index].sum())
            dice[region].append(1.0 if both == 0 else 2 * float((a[index] & b[index]).sum()) / both)
    return {
        "model": str(model),
        "cases": len(changed),
        "dice_fp32_vs_bf16": {r: round(min(v), 4) for r, v in dice.items()},
        "note": "minimum over the cases of the Dice between the fp32 and the bf16 label map, per region",
        "voxels_changed_fraction": round(max(changed), 6),
    }


def window_pass(work: Path) -> dict:
    """One forward pass of the default network on a batch of 4 windows of 96^3, median of 3 after a warm-up."""
    from monai.networks.nets import SwinUNETR

    torch.manual_seed(0)
    network = SwinUNETR(4, 3, feature_size=48, use_flash_attention=True).eval()
    x = torch.randn(4, 4, 96, 96, 96)

    results = {}
    with torch.inference_mode():
        results["eager_fp32_s"] = median_seconds(lambda: network(x))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            results["eager_bf16_s"] = median_seconds(lambda: network(x))
    try:
        compiled = torch.compile(network)
        start = time.perf_counter()
        with torch.inference_mode():
            compiled(x)
            results["torch_compile_first_call_s"] = round(time.perf_counter() - start, 1)
            results["torch_compile_fp32_s"] = median_seconds(lambda: compiled(x), warm=0)
    except Exception as error:  # a failing compiler is the finding
        results["torch_compile_error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    try:
        import onnxruntime

        path = work / "fs48.onnx"
        axes = {"image": {0: "batch"}, "pred": {0: "batch"}}
        torch.onnx.export(network, x[:1], str(path), dynamo=False, opset_version=18, input_names=["image"],
                          output_names=["pred"], dynamic_axes=axes)  # fmt: skip
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feed = {"image": x.numpy()}
        results["onnxruntime_fp32_s"] = median_seconds(lambda: session.run(None, feed))
    except Exception as error:
        results["onnxruntime_error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="a trained model.pt for the label-map agreement")
    parser.add_argument("--model_feature_size", type=int, default=12)
    parser.add_argument("--model_roi", type=int, default=64)
    parser.add_argument("--num_cases", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="cpu_precision_"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "fullsize"
    if not data.is_dir():
        write_fullsize_dataset(data, args.num_cases, seed=4000)
    result = {
        "benchmark": "CPU inference: fp32 vs bf16 (whole process, full-size cases), torch.compile and ONNX Runtime",
        "synthetic_data": True,
        "cpu_bf16_supported": cpu_bf16_supported(),
        "whole_process_inference": speed(data, work, args.num_cases, args.repeats),
        "one_window_pass_fs48_4x96": window_pass(work),
    }
    if args.model:
        result["label_map_agreement"] = agreement(args.model, args.model_feature_size, args.model_roi, work)
    write_result("swin_brats_cpu_precision", result)


if __name__ == "__main__":
    main()
