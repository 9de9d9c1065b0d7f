"""Output-layer initialisation for training from scratch: start from the prior that almost every voxel is background.

PyTorch's default initialisation starts every sigmoid output near 0.5, and Adam moves the output bias by about one
learning rate per step, so at lr 1e-3 a network spends hundreds of iterations learning that ~99 % of voxels are not
tumour before it learns where tumour is (measured: tests/ and bench/swin_brats/convergence.py). Setting the bias to
log(p / (1 - p)) for a small prior p (Lin et al. 2017, "Focal Loss for Dense Object Detection", section 4.1) removes
that phase. MONAI has no such initialiser.
"""

from __future__ import annotations

import logging
import math

import torch

logger = logging.getLogger(__name__)


def set_output_prior(network: torch.nn.Module, prior: float | None) -> torch.nn.Module:
    """Set the bias of the network's last layer with a bias (Swin UNETR: `out.conv.conv`) to logit(`prior`).

    `prior` None or 0 keeps PyTorch's initialisation (the reference recipe's). Returns `network`.
    """
    if not prior:
        return network
    if not 0 < prior < 1:
        raise ValueError(f"output_bias_prior must be in (0, 1), or 0/null for PyTorch's initialisation; got {prior}.")
    last = [module for module in network.modules() if getattr(module, "bias", None) is not None][-1]
    with torch.no_grad():
        last.bias.fill_(math.log(prior / (1 - prior)))
    logger.info(f"output bias initialised to logit({prior}) = {math.log(prior / (1 - prior)):.2f}")
    return network
