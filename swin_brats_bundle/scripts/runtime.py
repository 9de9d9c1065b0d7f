"""Run-time switches that depend on the device."""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)


def amp_enabled(amp: bool, device: torch.device) -> bool:
    """Mixed precision only on CUDA: MONAI's engines autocast for CUDA, so on CPU the switch is ignored, with a note."""
    if amp and device.type != "cuda":
        logger.info(f"amp=True is ignored on {device}: mixed precision runs on CUDA devices only.")
        return False
    return bool(amp)
