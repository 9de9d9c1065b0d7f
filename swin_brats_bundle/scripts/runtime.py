"""Run-time switches that depend on the device: mixed precision on CUDA, bfloat16 on CPUs that compute it natively."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "cuda_amp", "cpu_bf16")


def as_device(device: torch.device | str) -> torch.device:
    """`device` as a `torch.device`: MONAI Label sets a bundle's `device` to a plain string ("cpu", "cuda:0")."""
    return torch.device(device)


def amp_enabled(amp: bool, device: torch.device | str) -> bool:
    """Mixed precision in MONAI's engines, which autocast for CUDA only; on CPU `precision` decides instead."""
    return bool(amp) and as_device(device).type == "cuda"


def cpu_bf16_supported() -> bool:
    """The processor has native bfloat16 arithmetic (AVX512-BF16 or AMX): only then is bf16 faster than fp32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def precision(amp: bool, device: torch.device | str, supported: Callable[[], bool] = cpu_bf16_supported) -> str:
    """`cuda_amp`, `cpu_bf16` or `fp32` for validation and inference with `amp`; the log says which and why."""
    device = as_device(device)
    if not amp:
        choice, reason = "fp32", "amp is False"
    elif device.type == "cuda":
        choice, reason = "cuda_amp", "amp on a CUDA device"
    elif device.type == "cpu" and supported():
        choice, reason = "cpu_bf16", "amp on a CPU with native bfloat16 (AVX512-BF16/AMX)"
    else:
        choice, reason = "fp32", f"this {device.type} has no native bfloat16, where bf16 would be slower"
    logger.info(f"precision {choice} ({reason})")
    return choice


def cpu_bf16_forward(network: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """Run `network`'s forward under CPU bfloat16 autocast, returning float32 (training: `cpu_bf16_training`).

    MONAI's trainer autocasts for CUDA only. Wrapping the bound forward keeps the module and its state dict as they
    are, so checkpoints stay interchangeable with fp32 runs. Returns `network`.
    """
    if not enabled:
        return network
    if not cpu_bf16_supported():
        logger.info("cpu_bf16_training ignored: this CPU has no native bfloat16")
        return network
    plain = network.forward

    def forward(*args: Any, **kwargs: Any) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return plain(*args, **kwargs).float()

    network.forward = forward
    logger.info("training forward passes run in bfloat16 on the CPU (cpu_bf16_training)")
    return network
