"""TorchScript and ONNX export of both bundles through the MONAI bundle CLI: time, peak memory, file size, parity.

For each network (swin_brats_bundle at feature size 12 on 64³ and 48 on 96³, classification_bundle at feature size 12
on 14³; random weights, seed 0): `ckpt_export` (traced TorchScript) and `onnx_export` with the TorchScript-based
exporter (`'dynamo': False`, the documented command), each as its own process, timed from start to exit with its peak
resident memory; then the largest absolute difference of each file from the eager network on fresh random inputs of
batch 1, 2 and 3, and for ONNX one patch's onnxruntime time against eager. The dynamo exporter is run once too, for
the feature-size-12 segmentation network, for the comparison the docs make.

    .venv/bin/python bench/export.py [--work DIR] [--skip_large]     -> bench/results/export.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench" / "swin_brats"))
from measure import median_seconds, timed_process  # noqa: E402  (no bundle imports: safe in either bundle's process)
from record import write_result  # noqa: E402  (no bundle imports either)

CASES = [  # bundle, feature size, input shape
    ("swin_brats_bundle", 12, [4, 64, 64, 64]),
    ("swin_brats_bundle", 48, [4, 96, 96, 96]),
    ("classification_bundle", 12, [1, 14, 14, 14]),
]


def run(command: list[str], cwd: Path, log: Path) -> dict:
    """Wall seconds and peak RSS (MiB) of one process; stops the benchmark if it fails."""
    seconds, peak = timed_process(command, cwd, log, f"{' '.join(command[:6])} ...")
    return {"seconds": round(seconds, 1), "peak_rss_mib": round(peak)}


def network(bundle: Path, feature_size: int) -> torch.nn.Module:
    """The bundle's `network_def` (its own `scripts` package importable: each case runs in a process of its own)."""
    from monai.bundle import ConfigParser

    sys.path.insert(0, str(bundle))

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["feature_size"] = feature_size
    torch.manual_seed(0)
    return parser.get_parsed_content("network_def").eval()


def converter_kwargs(dynamo: bool) -> str:
    axes = "'dynamic_axes': {'image': {0: 'batch'}, 'pred': {0: 'batch'}}, " if not dynamo else ""
    return ("{" + f"'dynamo': {dynamo}, 'opset_version': 18, 'input_names': ['image'], 'output_names': ['pred'], "
            + axes + "'verify': True, 'use_ort': True, 'device': 'cpu', 'rtol': 0.0, 'atol': 1e-4}")  # fmt: skip


def max_difference(eager: torch.nn.Module, call, shape: list[int]) -> float:
    worst = 0.0
    for batch in (1, 2, 3):
        x = torch.randn(batch, *shape)
        with torch.no_grad():
            worst = max(worst, float(np.abs(np.asarray(call(x)) - eager(x).numpy()).max()))
    return float(f"{worst:.2g}")


def onnx_report(session, eager: torch.nn.Module, shape: list[int], with_batches: bool) -> dict:
    """Parity on batches 1-3 (when the batch axis is dynamic) and one patch's onnxruntime time against eager."""
    input_name = session.get_inputs()[0].name

    def call(x: torch.Tensor) -> np.ndarray:
        return session.run(None, {input_name: x.numpy()})[0]

    report = {"max_abs_difference": max_difference(eager, call, shape)} if with_batches else {}
    x = torch.randn(1, *shape)
    with torch.no_grad():
        report["one_patch_s"] = {
            "onnxruntime": median_seconds(lambda: call(x)),
            "eager": median_seconds(lambda: eager(x)),
        }
    return report


def export_case(bundle_name: str, feature_size: int, shape: list[int], work: Path, with_dynamo: bool) -> dict:
    import onnxruntime

    bundle = REPO / bundle_name
    folder = work / f"{bundle_name}_fs{feature_size}"
    folder.mkdir(parents=True, exist_ok=True)
    eager = network(bundle, feature_size)
    torch.save(eager.state_dict(), folder / "model.pt")
    common = ["--ckpt_file", str(folder / "model.pt"), "--meta_file", "configs/metadata.json",
              "--config_file", "configs/inference.json", "--feature_size", str(feature_size),
              "--use_trace", "True", "--input_shape", str([1, *shape])]  # fmt: skip
    cli = [sys.executable, "-m", "monai.bundle"]
    ts = folder / "model.ts"
    result: dict = {"input": [1, *shape]}
    result["torchscript"] = run([*cli, "ckpt_export", "network_def", "--filepath", str(ts), *common], bundle,
                                folder / "ts.log")  # fmt: skip
    traced = torch.jit.load(str(ts)).eval()
    result["torchscript"]["file_mb"] = round(ts.stat().st_size / 1e6, 1)
    result["torchscript"]["max_abs_difference"] = max_difference(eager, lambda x: traced(x).detach(), shape)
    exporters = [("onnx_torchscript_exporter", False)] + ([("onnx_dynamo_exporter", True)] if with_dynamo else [])
    for name, dynamo in exporters:
        path = folder / f"{name}.onnx"
        command = [*cli, "onnx_export", "network_def", "--filepath", str(path), *common,
                   "--converter_kwargs", converter_kwargs(dynamo)]  # fmt: skip
        result[name] = run(command, bundle, folder / f"{name}.log")
        result[name]["file_mb"] = round(sum(p.stat().st_size for p in folder.glob(f"{name}.onnx*")) / 1e6, 1)
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        result[name].update(onnx_report(session, eager, shape, with_batches=not dynamo))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--skip_large", action="store_true", help="leave out the feature-size-48 network")
    parser.add_argument("--case", type=int, default=None, help=argparse.SUPPRESS)  # one case, in a child process
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="export_"))
    if args.case is not None:  # both bundles have a top-level `scripts` package: one process per bundle's case
        bundle_name, feature_size, shape = CASES[args.case]
        with_dynamo = bundle_name == "swin_brats_bundle" and feature_size == 12
        report = export_case(bundle_name, feature_size, shape, work, with_dynamo)
        (work / f"case{args.case}.json").write_text(json.dumps(report))
        return
    results = {}
    for index, (bundle_name, feature_size, shape) in enumerate(CASES):
        if args.skip_large and feature_size == 48:
            continue
        subprocess.run([sys.executable, __file__, "--case", str(index), "--work", str(work)], check=True)
        key = f"{bundle_name} feature_size {feature_size} input {'x'.join(map(str, shape[1:]))}"
        results[key] = json.loads((work / f"case{index}.json").read_text())
        print(key, results[key], flush=True)
    write_result("export", {"benchmark": "TorchScript and ONNX export through the bundle CLI, random weights",
                            "exports": results})  # fmt: skip


if __name__ == "__main__":
    main()
