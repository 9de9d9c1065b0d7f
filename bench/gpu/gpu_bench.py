"""The Swin UNETR bundle on one GPU in one short run: training speed and memory, inference seconds per case, the
training loader's waits, and model FLOPs against the GPU's bf16 peak. SYNTHETIC DATA, made on the machine it runs on.

Everything goes through the bundle's own configs, parsed by MONAI's ConfigParser / ConfigWorkflow:
- training: train.json's `train#trainer` (MONAI's SupervisedTrainer with the bundle's network, loss, optimizer, AMP
  and training post-processing), its handlers left out and fed one batch made by the bundle's own training
  preprocessing (a tumour-centred crop of a full-size case), so the loader is out of this number; at each ROI in fp32,
  AMP fp16 and AMP bf16, each with and without gradient checkpointing (`use_checkpoint`): seconds per iteration after
  warm-up (the device synchronised), peak GPU memory;
- inference: inference.json as `run inference` runs it (initialize, run, finalize), with the bundle's defaults, the
  reference whole-volume sliding window (bench/swin_brats/inference.py's REFERENCE: overlap 0.6, sw_batch_size 1),
  sw_batch_size 1 and 8, bf16 and flip TTA: seconds per full-size case, of which in the sliding-window inferer;
- loader: bench/swin_brats/training.py's measurement (the bundle's cached pipeline against the public scripts'
  uncached Dataset + DataLoader) with a small model, whose short step lets the loader's waits show;
- flops: model FLOPs of one window (forward) and of one training step (forward and backward) counted by
  torch.utils.flop_counter, against the measured time of bf16 windows and bf16 training iterations: the share of the
  GPU's dense bf16 peak (datasheet table below; null for an unknown GPU) and of a measured bf16 matrix product.
The model's weights are its random initialisation with the bundle's output-bias prior (no trained model travels):
its label maps are nearly empty, so post-processing and writing cost a little less than with a trained model.

The result JSON is rewritten (atomically) after every measurement; a failed measurement records its error and the run
goes on; measurements that would start past `--time_budget` are recorded as skipped, and a guard thread writes the
JSON and ends the process if the run outlives the budget by `--grace` seconds.

    python bench/gpu/gpu_bench.py OUTPUT_DIR [--commit HASH] [--time_budget 420] [--dry_run]
"""

from __future__ import annotations

import argparse
import datetime
import functools
import gc
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "swin_brats_bundle"
BENCH = REPO / "bench" / "swin_brats"
if str(BUNDLE) not in sys.path:  # the bundle's `scripts` package
    sys.path.insert(0, str(BUNDLE))

import monai  # noqa: E402
from ignite.engine import Events  # noqa: E402
from monai.bundle import ConfigParser, ConfigWorkflow  # noqa: E402
from scripts.atomic import atomic_write  # noqa: E402

RESULT_NAME = "gpu_swin_brats.json"
SECTIONS = ("matmul", "flops", "training", "inference", "loader")
"""The measurements; all but matmul need the synthetic cases, which the result records under `data`."""

# Dense bf16 tensor-core peaks, TFLOP/s: NVIDIA's datasheets state them with 2:4 structured sparsity, twice these.
# NVIDIA H100 Tensor Core GPU datasheet: BF16 1,979 (H100 SXM), 1,671 (H100 NVL), 1,513 (H100 PCIe) with sparsity.
# NVIDIA H200 Tensor Core GPU datasheet: BF16 1,979 (H200 SXM), 1,671 (H200 NVL) with sparsity.
# NVIDIA A100 Tensor Core GPU datasheet: BF16 312 dense (624 with sparsity), SXM and PCIe alike.
# Matched in this order against torch.cuda.get_device_name(), e.g. "NVIDIA H100 80GB HBM3" (SXM), "NVIDIA H100 PCIe".
PEAK_BF16_TFLOPS = (
    ("H200 NVL", 835.5),
    ("H200", 989.5),
    ("H100 NVL", 835.5),
    ("H100 PCIe", 756.5),
    ("H100", 989.5),
    ("A100", 312.0),
)

PRECISIONS = {
    "fp32": {"amp": False},
    "amp_fp16": {"amp": True, "amp_dtype": "float16"},
    "amp_bf16": {"amp": True, "amp_dtype": "bfloat16"},
}

# Full-size runs (a GPU) and the dry run (tiny, any device; CPU in `make test`).
FULL = {
    "feature_size": 48,
    "train_rois": [96, 128],
    "train_variants": [p + c for p in ("fp32", "amp_fp16", "amp_bf16") for c in ("", "_checkpoint")],
    "warmup": 2,
    "iterations": 5,
    "variant_cap_s": 25.0,
    "case_shape": None,  # the BraTS grid, 240 x 240 x 155 at 1 mm
    "train_cases": 8,
    "inference_cases": 3,  # None: inference runs on the training cases
    "inference_roi": 96,
    "inference_variants": ["bundle", "reference", "sw_batch_size_1", "sw_batch_size_8", "bf16", "flip_tta"],
    "loader_feature_size": 12,
    "loader_roi": 96,
    "loader_epochs": 3,
    "loader_workers": 4,
    "flops_rois": [96, 128],
    "window_batch": 4,
    "window_warmup": 2,
    "window_repeats": 5,
    "matmul_size": 8192,
}
DRY_RUN = {
    **FULL,
    "feature_size": 12,
    "train_rois": [64],
    "train_variants": ["fp32_checkpoint", "amp_bf16"],  # each switch once; on a CPU AMP computes what fp32 does
    "warmup": 0,
    "iterations": 1,
    "case_shape": [64, 64, 48],
    "train_cases": 1,
    "inference_cases": None,  # none of its own: the two training cases (two, so that `after_first` is computed)
    "inference_roi": 64,
    "inference_variants": ["bundle", "reference"],
    "loader_roi": 64,
    "loader_epochs": 2,
    "loader_workers": 0,
    "flops_rois": [64],
    "window_batch": 1,
    "window_warmup": 0,
    "window_repeats": 1,
    "matmul_size": 256,
}


def peak_bf16_tflops(gpu: str | None) -> float | None:
    """The dense bf16 peak of a GPU by its name (PEAK_BF16_TFLOPS); None for a CPU or a GPU not in the table."""
    for key, peak in PEAK_BF16_TFLOPS:
        if gpu and key.lower() in gpu.lower():
            return peak
    return None


def fast_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on a GPU or a CPU that computes it natively (scripts/runtime.py), else float32, which a CPU without
    native bfloat16 runs several times faster."""
    from scripts.runtime import cpu_bf16_supported

    return torch.bfloat16 if device.type == "cuda" or cpu_bf16_supported() else torch.float32


def significant(value: float, digits: int = 4) -> float:
    """`value` rounded to `digits` significant digits (rates that span from a CPU's to a GPU's)."""
    return float(f"{value:.{digits}g}")


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:400]


def cpu_model() -> str | None:
    """The first `model name` in /proc/cpuinfo (Linux), else what platform.processor() says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def git_commit() -> str:
    """HEAD, `+dirty` with uncommitted changes; `unknown` where the tree travelled without its .git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()  # fmt: skip
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment(device: torch.device, commit: str | None) -> dict:
    """What the numbers were measured on, and when."""
    versions = {}
    for package in ("nibabel", "ignite", "numpy", "scipy"):
        try:
            versions[package] = __import__(package).__version__
        except ImportError:
            versions[package] = None
    gpu = device.type == "cuda"
    props = torch.cuda.get_device_properties(device) if gpu else None
    return {
        "gpu": torch.cuda.get_device_name(device) if gpu else None,
        "gpu_memory_gib": round(props.total_memory / 2**30, 1) if gpu else None,
        "gpu_capability": f"{props.major}.{props.minor}" if gpu else None,
        "gpu_multiprocessors": props.multi_processor_count if gpu else None,
        "peak_bf16_dense_tflops": peak_bf16_tflops(torch.cuda.get_device_name(device) if gpu else None),
        "device": str(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if gpu else None,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "monai": monai.__version__,
        **versions,
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "machine": platform.platform(),
        "commit": commit or git_commit(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


class Recorder:
    """The result, rewritten atomically to `path` after every measurement. A guard thread marks the measurement in
    progress, writes the result one last time and ends the process when the run outlives `deadline` by `grace` s."""

    def __init__(self, path: Path, result: dict, start: float, budget: float, grace: float) -> None:
        self.path, self.result, self.start, self.deadline = path, result, start, start + budget
        self.lock = threading.RLock()
        self.current = "start"
        self.guard = threading.Timer(max(0.0, self.deadline - time.monotonic()) + grace, self._expire)
        self.guard.daemon = True
        self.guard.start()

    def left(self) -> float:
        """Seconds left of the time budget."""
        return self.deadline - time.monotonic()

    def put(self, keys: tuple[str, ...], value: Any) -> None:
        """Set result[keys[0]][keys[1]]... = value and write the file."""
        with self.lock:
            node = self.result
            for key in keys[:-1]:
                node = node.setdefault(key, {})
            node[keys[-1]] = value
            self.write()

    def write(self) -> None:
        """The whole result to `path`, complete or not at all (scripts/atomic.py)."""
        with self.lock:
            self.result["elapsed_s"] = round(time.monotonic() - self.start, 1)
            with atomic_write(self.path) as f:
                f.write(json.dumps(self.result, indent=4, default=str) + "\n")

    def _expire(self) -> None:
        with self.lock:
            self.result["status"] = f"stopped by the time guard during {self.current}"
            self.write()
        print(f"time guard: the run outlived its budget during {self.current}; result written", flush=True)
        os._exit(3)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_memory(device: torch.device) -> None:
    """Free what the last measurement left and start a new peak."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> dict:
    """Peak GPU memory since the last `reset_memory`, allocated by tensors and reserved by the caching allocator."""
    if device.type != "cuda":
        return {"peak_allocated_gib": None, "peak_reserved_gib": None}
    return {
        "peak_allocated_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2),
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved(device) / 2**30, 2),
    }


def bundle_parser(
    config: str, data: Path, settings: dict, overrides: dict, globals_: dict | None = None
) -> ConfigParser:
    """A bundle config (configs/<config>) read by MONAI's ConfigParser: the bundle's root, the synthetic dataset
    `data` (whose label convention sets the network's outputs), the run's feature size, then `overrides`."""
    parser = ConfigParser(globals=globals_)
    parser.read_config(str(BUNDLE / "configs" / config))
    parser.read_meta(str(BUNDLE / "configs" / "metadata.json"))
    base = {"bundle_root": str(BUNDLE), "dataset_dir": str(data), "feature_size": settings["feature_size"]}
    if config == "train.json":
        base["num_folds"] = settings["train_cases"] + 1  # as the loader measurement splits them
    parser.update({**base, "progress_bar": False, "check_versions": False, **overrides})
    return parser


def write_data(folder: Path, num_cases: int, seed: int, shape: list[int] | None) -> subprocess.Popen:
    """Start the bundle's synthetic data generator (scripts/synthetic_data.py) writing `num_cases` labelled BraTS 2021
    cases, one process per case."""
    command = [sys.executable, str(BUNDLE / "scripts" / "synthetic_data.py"), "--output_dir", str(folder),
               "--num_cases", str(num_cases), "--seed", str(seed), "--workers", str(num_cases)]  # fmt: skip
    if shape:
        command += ["--shape", *map(str, shape)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def make_data(work: Path, settings: dict) -> dict:
    """The training cases (one more than the loader trains on, held out as its validation fold) and the inference
    cases (where `inference_cases` is set), written at the same time."""
    start = time.perf_counter()
    jobs = {"train": write_data(work / "train_data", settings["train_cases"] + 1, 0, settings["case_shape"])}
    if settings["inference_cases"]:
        jobs["test"] = write_data(work / "test_data", settings["inference_cases"], 100, settings["case_shape"])
    for name, job in jobs.items():
        output, _ = job.communicate()
        if job.returncode != 0:
            raise RuntimeError(f"synthetic {name} data failed: {output.strip().splitlines()[-1:]}")
    return {
        "synthetic": True,
        "generator": "swin_brats_bundle/scripts/synthetic_data.py",
        "shape": json.loads((work / "train_data" / "cases.json").read_text())["shape"],
        "train_cases": settings["train_cases"] + 1,
        "inference_cases": settings["inference_cases"] or settings["train_cases"] + 1,
        "seconds": round(time.perf_counter() - start, 1),
    }


def matmul_tflops(size: int, device: torch.device, repeats: int = 10) -> dict:
    """TFLOP/s of a bf16 size x size x size matrix product on random data, after three warm-up products."""
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    seconds = (time.perf_counter() - start) / repeats
    return {
        "size": size,
        "s_per_product": significant(seconds),
        "bf16_tflops": significant(2 * size**3 / seconds / 1e12),
    }


def flops_for_roi(roi: int, data: Path, settings: dict, device: torch.device) -> dict:
    """Model FLOPs of one window and one training step at `roi`, and the measured time of bf16 windows.

    Counted on PyTorch's meta device (shapes only, no arithmetic, no memory) with explicit attention matmuls
    (use_flash_attention False: every product is an op the counter knows); timed as inference.json runs the model
    (SDPA attention), `window_batch` windows a call, under bf16 autocast (float32 on a CPU without native bfloat16).
    """
    from torch.utils.flop_counter import FlopCounterMode

    shape = (1, 4, roi, roi, roi)
    counted = {"roi_size": [roi] * 3, "use_checkpoint": False, "use_flash_attention": False}
    counted["device"] = "$torch.device('meta')"
    network = bundle_parser("train.json", data, settings, counted).get_parsed_content("network")
    with FlopCounterMode(display=False) as forward, torch.no_grad():
        network(torch.empty(shape, device="meta"))
    with FlopCounterMode(display=False) as step:
        network(torch.empty(shape, device="meta")).mean().backward()
    dtype = fast_dtype(device)
    parser = bundle_parser("inference.json", data, settings, {"roi_size": [roi] * 3})
    network = parser.get_parsed_content("network").eval()
    windows = torch.randn((settings["window_batch"], *shape[1:]), device=device)
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        for _ in range(settings["window_warmup"]):
            network(windows)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(settings["window_repeats"]):
            network(windows)
        synchronize(device)
    seconds = (time.perf_counter() - start) / (settings["window_repeats"] * settings["window_batch"])
    forward_flops = forward.get_total_flops()
    return {
        "forward_gflop_per_window": round(forward_flops / 1e9, 2),
        "train_step_gflop": round(step.get_total_flops() / 1e9, 2),
        "window_dtype": str(dtype).replace("torch.", ""),
        "s_per_window": significant(seconds),
        "window_batch": settings["window_batch"],
        "window_tflops": significant(forward_flops / seconds / 1e12),
        **peak_memory(device),
    }


class SyncTimer:
    """Wraps the evaluator's inferer: seconds of each call, the device synchronised before and after."""

    def __init__(self, inferer: Callable, device: torch.device) -> None:
        self.inferer, self.device, self.seconds = inferer, device, []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        synchronize(self.device)
        start = time.perf_counter()
        output = self.inferer(*args, **kwargs)
        synchronize(self.device)
        self.seconds.append(time.perf_counter() - start)
        return output


def training_batch(batches: dict, data: Path, roi: int, settings: dict, device: torch.device) -> dict:
    """batches[roi]: one batch of the bundle's training preprocessing (train.json `train#preprocessing`) of the first
    training case, a tumour-centred or random crop of `roi` voxels, flipped and intensity-jittered, on the device.
    Returns its shapes and tumour voxels."""
    parser = bundle_parser("train.json", data, settings, {"roi_size": [roi] * 3})
    item = parser.get_parsed_content("train#preprocessing")(parser.get_parsed_content("train#cases")[0])
    item = item[0] if isinstance(item, list) else item
    batches[roi] = {key: torch.as_tensor(item[key])[None].to(device) for key in ("image", "label")}
    return {
        "image_shape": list(batches[roi]["image"].shape),
        "label_shape": list(batches[roi]["label"].shape),
        "label_voxels_per_channel": batches[roi]["label"].sum(dim=(0, 2, 3, 4)).int().tolist(),
    }


def training_variant(
    batch: dict, roi: int, overrides: dict, data: Path, settings: dict, device: torch.device, cap_s: float
) -> dict:
    """Seconds per iteration of train.json's SupervisedTrainer on `batch`, after `warmup` iterations, and peak memory.

    The trainer is the config's own (network, loss, optimizer, AMP, post-processing and training metrics) without its
    handlers (validation, checkpoints, logs) and with a list of the same batch as its data; iterations stop early once
    `cap_s` seconds have passed.
    """
    warmup, iterations = settings["warmup"], settings["iterations"]
    batches = [batch] * (warmup + iterations)
    reset_memory(device)
    config = {"roi_size": [roi] * 3, "epochs": 1, **overrides}
    config |= {"train#handlers": [], "train#trainer#train_data_loader": "$bench_batches",
               "train#trainer#epoch_length": len(batches)}  # fmt: skip
    parser = bundle_parser("train.json", data, settings, config, {"bench_batches": batches})
    trainer = parser.get_parsed_content("train#trainer")
    marks: dict[str, float] = {}
    timed = []
    stop_at = time.perf_counter() + cap_s

    def started(engine: Any) -> None:
        if engine.state.iteration == warmup + 1:
            synchronize(device)
            marks["start"] = time.perf_counter()

    def completed(engine: Any) -> None:
        synchronize(device)
        if engine.state.iteration > warmup:
            timed.append(time.perf_counter())
        if time.perf_counter() > stop_at and timed:
            engine.terminate()

    trainer.add_event_handler(Events.ITERATION_STARTED, started)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, completed)
    trainer.run()
    seconds = (timed[-1] - marks["start"]) / len(timed)
    loss = float(
        trainer.state.output[0]["loss"] if isinstance(trainer.state.output, list) else trainer.state.output["loss"]
    )
    result = {
        "amp": bool(trainer.amp),
        "amp_dtype": str(trainer.amp_kwargs.get("dtype")) if trainer.amp else None,
        "use_checkpoint": bool(overrides["use_checkpoint"]),
        "iterations_timed": len(timed),
        "s_per_iteration": round(seconds, 4),
        "iterations_per_s": round(1 / seconds, 3),
        "last_loss": round(loss, 5) if math.isfinite(loss) else str(loss),
        **peak_memory(device),
    }
    del trainer, parser, batches
    return result


def inference_variant(name: str, overrides: dict, data: Path, models: Path, work: Path, settings: dict,
                      device: torch.device) -> dict:  # fmt: skip
    """`run inference` (inference.json: initialize, run, finalize) in this process with `overrides`: seconds per
    case, of which in the sliding-window inferer, and the waits for the next case."""
    reset_memory(device)
    roi = settings["inference_roi"]
    start = time.perf_counter()
    workflow = ConfigWorkflow(
        config_file=str(BUNDLE / "configs" / "inference.json"),
        meta_file=str(BUNDLE / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type="inference",
        **{"bundle_root": str(BUNDLE), "dataset_dir": str(data), "ckpt_dir": str(models),
           "output_dir": str(work / "predictions" / name), "progress_bar": False, "check_versions": False,
           "feature_size": settings["feature_size"], "roi_size": [roi] * 3, **overrides},
    )  # fmt: skip
    workflow.initialize()
    initialized = time.perf_counter()
    evaluator = workflow.parser.get_parsed_content("evaluator")
    timer = SyncTimer(evaluator.inferer, device)
    evaluator.inferer = timer
    done: list[float] = []
    waits: list[float] = []
    marks: dict[str, float] = {}
    evaluator.add_event_handler(Events.GET_BATCH_STARTED, lambda e: marks.__setitem__("batch", time.perf_counter()))
    evaluator.add_event_handler(
        Events.GET_BATCH_COMPLETED, lambda e: waits.append(time.perf_counter() - marks["batch"])
    )
    evaluator.add_event_handler(Events.ITERATION_COMPLETED, lambda e: done.append(time.perf_counter()))
    workflow.run()
    ran = time.perf_counter()
    workflow.finalize()
    finished = time.perf_counter()
    cases = len(done)
    expected = settings["inference_cases"] or settings["train_cases"] + 1
    if cases != expected:
        raise RuntimeError(f"{name}: {cases} of {expected} cases predicted")
    parser = workflow.parser
    result = {
        "settings": overrides,
        "sw_batch_size": parser["sw_batch_size"],
        "sw_overlap": parser["sw_overlap"],
        "crop_to_brain": parser["crop_to_brain"],
        "flip_tta": parser["flip_tta"],
        "precision": parser.get_parsed_content("precision"),
        "amp_dtype": parser["amp_dtype"],
        "cases": cases,
        "workflow_s": round(finished - start, 2),
        "initialize_s": round(initialized - start, 2),
        "finalize_s": round(finished - ran, 2),
        "s_per_case": round((ran - initialized) / cases, 3),
        "s_per_case_after_first": round((done[-1] - done[0]) / (cases - 1), 3) if cases > 1 else None,
        "inferer_s_per_case": round(sum(timer.seconds) / cases, 3),
        "inferer_s_per_case_after_first": round(sum(timer.seconds[1:]) / (cases - 1), 3) if cases > 1 else None,
        "wait_for_case_s": round(sum(waits) / cases, 3),
        **peak_memory(device),
    }
    del workflow, evaluator, timer
    return result


def save_model(models: Path, data: Path, settings: dict) -> dict:
    """models/model.pt for inference.json: the network as train.json starts it (`output_init`: PyTorch's
    initialisation, the output bias at the configured prior), on the CPU."""
    parser = bundle_parser("train.json", data, settings, {"device": "$torch.device('cpu')"})
    network = parser.get_parsed_content("output_init")
    models.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), models / "model.pt")
    return {"weights": "random initialisation, output bias at train.json's output_bias_prior", "file": "model.pt"}


def cpu_benchmarks() -> None:
    """Make bench/swin_brats's modules importable: the CPU benchmarks whose settings and measurements run here too."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))


def inference_variants(names: list[str]) -> dict[str, dict]:
    """The bundle's defaults, the reference settings of the CPU inference benchmark, and one knob changed at a time;
    those in `names`."""
    cpu_benchmarks()
    from inference import REFERENCE

    variants = {
        "bundle": {},
        "reference": dict(REFERENCE),
        "sw_batch_size_1": {"sw_batch_size": 1},
        "sw_batch_size_8": {"sw_batch_size": 8},
        "bf16": {"amp_dtype": "bfloat16"},
        "flip_tta": {"flip_tta": True},
    }
    return {name: variants[name] for name in names}


def loader_measurement(data: Path, work: Path, settings: dict) -> dict:
    """bench/swin_brats/training.py's `measure` for both pipelines: waits for data per iteration with a short step.

    Its train.json workflow runs `initialize`, whose version check would refuse the GPU machine (another torch, no
    mlflow or fire, which nothing here uses): the workflow that `measure` builds gets `check_versions` False.
    """
    cpu_benchmarks()
    import training

    training.ConfigWorkflow = functools.partial(ConfigWorkflow, check_versions=False)
    args = argparse.Namespace(num_cases=settings["train_cases"], epochs=settings["loader_epochs"],
                              feature_size=settings["loader_feature_size"], roi=settings["loader_roi"],
                              num_workers=settings["loader_workers"])  # fmt: skip
    result: dict = {"settings": vars(args)}
    for pipeline in ("reference", "bundle"):
        result[pipeline] = training.measure(pipeline, data, work / "loader", args)
    reference, bundle = result["reference"], result["bundle"]
    result["data_wait_ratio_reference_over_bundle"] = round(
        reference["data_wait_s_per_iteration_after_first"] / max(bundle["data_wait_s_per_iteration_after_first"], 1e-6),
        1,
    )
    result["epoch_time_ratio_reference_over_bundle"] = round(
        reference["epoch_s_after_first"] / bundle["epoch_s_after_first"], 2
    )
    return result


def needs(prerequisite: dict | None, function: Callable[[], dict]) -> Callable[[], dict]:
    """`function`, or, where a measurement it depends on failed or was skipped, one that records so."""
    if prerequisite is None:
        return lambda: {"error": "not measured: a step it depends on failed or was skipped"}
    return function


def summary(result: dict) -> dict:
    """The headline numbers, derived from the sections that have them."""
    out: dict = {}
    training = result.get("training", {})
    out["training_iterations_per_s"] = {
        roi: {name: v["iterations_per_s"] for name, v in variants.items() if "iterations_per_s" in v}
        for roi, variants in training.items()
    }
    inference = result.get("inference", {})
    out["inference_s_per_case"] = {
        name: v.get("s_per_case_after_first") or v["s_per_case"] for name, v in inference.items() if "s_per_case" in v
    }
    bundle, reference = out["inference_s_per_case"].get("bundle"), out["inference_s_per_case"].get("reference")
    if bundle and reference:
        out["inference_speedup_bundle_over_reference"] = round(reference / bundle, 2)
    peak = result.get("environment", {}).get("peak_bf16_dense_tflops")
    matmul = result.get("matmul", {}).get("bf16_tflops")
    shares: dict = {}
    for roi, flops in result.get("flops", {}).items():
        if "window_tflops" not in flops:
            continue
        entry = {"window_dtype": flops["window_dtype"], "window_tflops": flops["window_tflops"]}
        step = training.get(roi, {}).get("amp_bf16", {}).get("s_per_iteration")
        if step:
            entry["train_step_tflops"] = significant(flops["train_step_gflop"] / 1e3 / step)
        for key in [k for k in entry if k.endswith("_tflops")]:
            name = key.replace("_tflops", "")
            entry[f"{name}_share_of_peak"] = significant(entry[key] / peak) if peak else None
            entry[f"{name}_share_of_matmul"] = significant(entry[key] / matmul) if matmul else None
        shares[roi] = entry
    out["flops_share"] = shares
    loader = result.get("loader", {})
    if "data_wait_ratio_reference_over_bundle" in loader:
        out["loader_data_wait_s"] = {
            pipeline: loader[pipeline]["data_wait_s_per_iteration_after_first"] for pipeline in ("bundle", "reference")
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", type=Path, help=f"folder the result ({RESULT_NAME}) is written to")
    parser.add_argument("--commit", default=None, help="the commit measured (default: git rev-parse HEAD, if any)")
    parser.add_argument("--time_budget", type=float, default=420.0, help="seconds; no measurement starts after it")
    parser.add_argument("--grace", type=float, default=45.0, help="seconds past the budget before the guard stops")
    parser.add_argument("--dry_run", action="store_true", help="tiny sizes: every code path in a minute on a CPU")
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument("--work_dir", type=Path, default=None, help="synthetic cases and outputs (default: temporary)")
    args = parser.parse_args(argv)
    settings = dict(DRY_RUN if args.dry_run else FULL)
    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    start = time.monotonic()
    result: dict = {
        "benchmark": "Swin UNETR bundle on one GPU: training speed and memory, inference per case, loader waits, "
        "FLOPs against the bf16 peak (bench/gpu/gpu_bench.py)",
        "synthetic": "every case is synthetic (scripts/synthetic_data.py), made on the machine measured",
        "status": "running",
        "dry_run": args.dry_run,
        "settings": {**settings, "time_budget_s": args.time_budget, "sections": args.sections},
        "environment": environment(device, args.commit),
    }
    recorder = Recorder(args.output_dir / RESULT_NAME, result, start, args.time_budget, args.grace)
    recorder.write()
    temporary = args.work_dir is None
    work = (args.work_dir or Path(tempfile.mkdtemp(prefix="gpu_bench_"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    print(f"gpu_bench: {result['environment']['gpu'] or 'no GPU'} on {device}; work in {work}", flush=True)

    def measure(keys: tuple[str, ...], function: Callable[[], dict], needs_s: float = 0.0) -> dict | None:
        """Run one measurement and record its result, or its error, or that the budget had run out."""
        what = "/".join(keys)
        if recorder.left() < needs_s:
            recorder.put(keys, {"skipped": f"time budget: {recorder.left():.0f} s left, {needs_s:.0f} s needed"})
            print(f"{what}: skipped (time budget)", flush=True)
            return None
        recorder.current = what
        began = time.monotonic()
        try:
            value = function()
        except (Exception, SystemExit) as error:  # recorded, and the run goes on (out of memory, say)
            value = {"error": first_line(error)}
            traceback.print_exc()
        value = {**value, "measure_s": round(time.monotonic() - began, 1)}
        recorder.put(keys, value)
        print(f"{what}: {json.dumps(value, default=str)}", flush=True)
        reset_memory(device)
        return None if "error" in value else value

    sections = set(args.sections)
    train_data, models = work / "train_data", work / "models"
    test_data = work / "test_data" if settings["inference_cases"] else train_data
    data = measure(("data",), lambda: make_data(work, settings)) if sections - {"matmul"} else None
    if "matmul" in sections:
        measure(("matmul",), lambda: matmul_tflops(settings["matmul_size"], device))
    for roi in settings["flops_rois"] if "flops" in sections else ():
        measure(("flops", f"roi_{roi}"), needs(data, lambda roi=roi: flops_for_roi(roi, train_data, settings, device)))
    batches: dict[int, dict] = {}
    for roi in settings["train_rois"] if "training" in sections else ():
        batch = lambda roi=roi: training_batch(batches, train_data, roi, settings, device)  # noqa: E731
        made = measure(("training", f"roi_{roi}", "batch"), needs(data, batch))
        for name in settings["train_variants"]:
            overrides = {**PRECISIONS[name.removesuffix("_checkpoint")], "use_checkpoint": name.endswith("_checkpoint")}
            cap = min(settings["variant_cap_s"], max(recorder.left(), 1.0))
            measure(
                ("training", f"roi_{roi}", name),
                needs(
                    made,
                    lambda o=overrides, roi=roi, cap=cap: training_variant(
                        batches[roi], roi, o, train_data, settings, device, cap
                    ),
                ),
                needs_s=5,
            )
        batches.clear()
    if "inference" in sections:
        model = measure(("inference", "model"), needs(data, lambda: save_model(models, train_data, settings)))
        for name, overrides in inference_variants(settings["inference_variants"]).items():
            measure(
                ("inference", name),
                needs(
                    model,
                    lambda n=name, o=overrides: inference_variant(n, o, test_data, models, work, settings, device),
                ),
                needs_s=15,
            )
    if "loader" in sections:
        measure(("loader",), needs(data, lambda: loader_measurement(train_data, work, settings)), needs_s=60)
    recorder.current = "summary"
    with recorder.lock:
        result["summary"] = summary(result)
        failed = [k for k, v in result.items() if isinstance(v, dict) and _has(v, ("error", "skipped"))]
        result["status"] = "complete" if not failed else f"partial: errors or skips in {', '.join(failed)}"
        recorder.write()
    recorder.guard.cancel()
    if temporary:
        shutil.rmtree(work, ignore_errors=True)
    print(f"summary: {json.dumps(result['summary'], indent=1)}")  # the headline numbers, also in a log's tail
    print(f"gpu_bench: {result['status']} in {time.monotonic() - start:.0f} s; {recorder.path}", flush=True)
    return 0 if result["status"] == "complete" else 1


def _has(tree: Any, keys: tuple[str, ...]) -> bool:
    """Whether any dict in `tree` has one of `keys`."""
    if isinstance(tree, dict):
        return any(k in tree for k in keys) or any(_has(v, keys) for v in tree.values())
    return False


if __name__ == "__main__":
    sys.exit(main())
