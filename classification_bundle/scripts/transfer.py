"""Initialise the classifier's encoder from a SwinUNETR checkpoint (e.g. swin_brats_bundle's `models/model.pt`)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

PATCH_EMBED = "swinViT.patch_embed.proj.weight"
logger = logging.getLogger(__name__)


def adapt_input_channels(weight: torch.Tensor, channels: int, mode: str = "sum") -> torch.Tensor:
    """Fit the patch-embedding kernel (C_out, C_in, *k) to `channels` input channels.

    "sum": sum over the source channels, divided by the new count, so a volume repeated on every source channel gives
    the same response; "mean": average over the source channels, repeated.
    """
    if mode not in ("sum", "mean"):
        raise ValueError(f"channel reduction must be 'sum' or 'mean', got {mode!r}")
    reduced = weight.sum(1, keepdim=True) / channels if mode == "sum" else weight.mean(1, keepdim=True)
    return reduced.repeat(1, channels, *([1] * (weight.ndim - 2)))


def load_pretrained_encoder(network: nn.Module, path: str, channel_reduction: str = "sum") -> dict[str, list[str]]:
    """Load the `swinViT.*` tensors of a plain SwinUNETR state dict at `path` into `network`; return and log the keys.

    The returned dict lists `loaded`, `adapted` (patch embedding refitted to the input channels) and `missing` keys.
    """
    state = torch.load(Path(path).expanduser(), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    own = network.state_dict()
    encoder = {k: v for k, v in state.items() if k.startswith("swinViT.")}
    if not encoder:
        raise ValueError(
            f"{path}: no 'swinViT.*' keys; expected a plain SwinUNETR state dict (first: {list(state)[:3]})"
        )
    adapted = []
    if PATCH_EMBED in encoder and encoder[PATCH_EMBED].shape[1] != own[PATCH_EMBED].shape[1]:
        encoder[PATCH_EMBED] = adapt_input_channels(encoder[PATCH_EMBED], own[PATCH_EMBED].shape[1], channel_reduction)
        adapted.append(PATCH_EMBED)
    unknown = sorted(set(encoder) - set(own))
    wrong = [
        f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in encoder.items()
        if k in own and v.shape != own[k].shape
    ]
    if unknown or wrong:
        raise ValueError(
            f"{path}: encoder does not match (feature_size/window_size?): unknown {unknown[:5]}, shapes {wrong[:5]}"
        )
    network.load_state_dict(encoder, strict=False)
    report = {
        "loaded": sorted(encoder),
        "adapted": adapted,
        "missing": sorted(k for k in own if k.startswith("swinViT.") and k not in encoder),
    }
    logger.info(
        "pretrained encoder %s: loaded %d swinViT tensors (patch embedding adapted: %s), %d encoder keys missing %s",
        path, len(report["loaded"]), bool(adapted), len(report["missing"]), report["missing"][:5],
    )  # fmt: skip
    return report
