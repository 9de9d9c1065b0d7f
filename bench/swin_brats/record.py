"""What every benchmark result file records besides its numbers: commit, date, machine and CPU. No bundle imports, so
the classification and export benchmarks (whose processes hold the other bundle's `scripts`) can use it too."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
"""The flags that decide which CPU kernels run: AVX-512 bf16 and AMX (tile, bf16) make bf16 fast on a CPU."""
TORCH_CPU_CHECKS = ("_is_avx2_supported", "_is_avx512_supported", "_is_avx512_bf16_supported", "_is_amx_tile_supported")
"""torch.cpu's own capability checks (private, so each is read only where this torch has it)."""


def provenance() -> dict:
    """The commit (with `+dirty` when tracked files have uncommitted changes, and then which ones) and the UTC time."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout

    commit = git("rev-parse", "HEAD").strip() or "unknown"
    changed = sorted(line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines())
    return {
        "commit": commit + ("+dirty" if changed else ""),
        **({"uncommitted": changed} if changed else {}),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def cpuinfo(text: str) -> tuple[str | None, list[str]]:
    """The first processor's `model name` and `flags` in /proc/cpuinfo text (None and [] where a field is absent)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:  # the first processor's block ends here
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields.get("model name"), sorted(fields.get("flags", "").split())


def cpu() -> dict:
    """The CPU model, its flags (all of them, and the bf16/AMX ones by name) and torch's view of them."""
    try:
        model, flags = cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:  # not Linux
        model, flags = None, []
    checks = {name: bool(getattr(torch.cpu, name)()) for name in TORCH_CPU_CHECKS if hasattr(torch.cpu, name)}
    return {
        "model": model or platform.processor() or None,
        "flags_of_note": {flag: flag in flags for flag in CPU_FLAGS},
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_checks": checks,
        "flags": " ".join(flags),
    }


def machine() -> dict:
    """What the numbers were measured on."""
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "machine": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": cpu(),
    }


def write_result(name: str, result: dict) -> Path:
    """Print `result` as JSON and store it as bench/results/<name>.json, with the commit, date and machine."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {**result, **provenance(), "machine": result.get("machine", machine())}
    text = json.dumps(result, indent=4) + "\n"
    print(text)
    path = RESULTS / f"{name}.json"
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")  # whole or not at all: a rerun may be cut short
    partial.write_text(text)
    os.replace(partial, path)
    return path
