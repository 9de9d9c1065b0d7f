"""Exponential moving average of the weights (`ema_decay`): what validation scores and `model.pt` holds."""

from __future__ import annotations

import torch
from ignite.engine import Engine, Events
from ignite.handlers import EMAHandler

from scripts.checkpoint import unwrap


class WeightAverage:
    """Trainer handler keeping an exponential moving average of `network`'s weights, updated every iteration.

    `decay` 0 turns it off: `network` is then the live network itself. The average is ignite's `EMAHandler` (momentum
    `1 - decay`); this class chooses between it and the live network, starts the average from the weights training
    starts with (after output initialisation or a resume), and drops the instance-level `forward` that
    `cpu_bf16_training` patches onto the live network: copied, it would run the live weights, not the average.
    """

    def __init__(self, network: torch.nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) (0 turns the weight average off), got {decay}")
        self.live = unwrap(network)
        self.handler = EMAHandler(self.live, momentum=1.0 - decay) if decay else None
        if self.handler is not None:
            self.handler.ema_model.__dict__.pop("forward", None)
        self.network: torch.nn.Module = self.handler.ema_model if self.handler is not None else network
        self.restored = False

    @property
    def enabled(self) -> bool:
        return self.handler is not None

    def attach(self, engine: Engine) -> None:
        if self.handler is not None:
            engine.add_event_handler(Events.STARTED, self.start)
            self.handler.attach(engine)

    def start(self, engine: Engine) -> None:
        """Begin the average at the live weights, unless a resumed checkpoint brought the average itself."""
        if not self.restored:
            self.network.load_state_dict(self.live.state_dict())

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Continue a resumed run's average instead of restarting it at the resumed weights."""
        self.network.load_state_dict(state)
        self.restored = True


def as_handler(average: WeightAverage) -> WeightAverage:
    """`average` itself, for `train#handlers`: MONAI's property check reads every handler entry as a dict."""
    return average
