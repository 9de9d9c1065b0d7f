"""An ensemble of trained folds as one network: the mean of their sigmoid probabilities, returned as logits.

MONAI's `EnsembleEvaluator` + `MeanEnsembled` run every model over the whole volume and keep one prediction per model,
then need a post-processing chain of their own (the mean is already a probability). As a network, the ensemble goes
through the single model's own path instead: the brain-box sliding window and flip TTA call it per window batch (one
member's activations in memory at a time), and the same sigmoid, threshold and post-processing follow, so an ensemble
of one model is that model. Inference's per-case error handling (`preflight.InferenceCases`) keeps working unchanged.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

import torch

from scripts.checkpoint import load_model
from scripts.errors import stop

logger = logging.getLogger(__name__)

PROBABILITY_EPS = 1e-7  # logit of a mean probability of exactly 0 or 1 would be infinite


class FoldEnsemble(torch.nn.Module):
    """Copies of `network`, one per checkpoint (plain state dicts, loaded safely); forward gives logit(mean sigmoid)."""

    def __init__(
        self,
        network: torch.nn.Module,
        checkpoints: Sequence[str],
        device: torch.device | str = "cpu",
        normalization: str = "zscore",
        debug: bool = False,
    ) -> None:
        super().__init__()
        if not checkpoints:
            stop("no checkpoints for the ensemble: train folds first (scripts/cross_validate.py) or pass --checkpoints")
        if normalization != "zscore":
            stop(f"an ensemble needs normalization 'zscore': with '{normalization}' each fold has landmarks of its own")
        members = []
        for path in checkpoints:
            member = copy.deepcopy(network)
            load_model(member, path, device, debug)
            members.append(member.eval())
        self.members = torch.nn.ModuleList(members)
        logger.info(f"ensemble of {len(members)} model(s): {', '.join(map(str, checkpoints))}")

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        probability = torch.zeros((), device=inputs.device)
        for member in self.members:  # one member at a time: its activations are freed before the next runs
            probability = probability + torch.sigmoid(member(inputs).float())
        return torch.logit(probability / len(self.members), eps=PROBABILITY_EPS)
