"""Atomic checkpoints: the best model as a plain state dict, a full training state every few epochs, and resume.

MONAI's `CheckpointSaver` writes with `atomic=False` (ignite's atomic mode leaves owner-only permissions), so a kill
during a save can leave a truncated `model.pt`; these handlers write a temporary file and rename it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

from scripts.atomic import atomic_write
from scripts.errors import first_line, stop

logger = logging.getLogger(__name__)

TRAINING_CHECKPOINT = "checkpoint.pt"


def save_atomic(obj: Any, path: str | Path) -> Path:
    """`torch.save` through `atomic_write`: readers never see a partial checkpoint."""
    with atomic_write(path, "wb") as f:
        torch.save(obj, f)
    return Path(path)


def unwrap(network: torch.nn.Module) -> torch.nn.Module:
    """The network inside a DistributedDataParallel wrapper, or the network itself."""
    return getattr(network, "module", network)


def plain_state_dict(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    """State dict without the DistributedDataParallel `module.` prefix, for export and inference."""
    return unwrap(network).state_dict()


def load_model(
    network: torch.nn.Module, path: str | Path, device: torch.device | str = "cpu", debug: bool = False
) -> torch.nn.Module:
    """Load a plain state dict with `weights_only=True`; refuse, naming the file, anything else.

    Failures exit with a one-line message instead of a traceback (unless `debug`): a missing or foreign checkpoint is
    a user error. A pickle payload never runs: `weights_only` unpickling rejects every callable it does not know.
    """
    path = Path(path)
    if not path.is_file():
        stop(f"no trained model at {path}; train one first or pass --ckpt_dir / --checkpoint.", debug)
    state = _load_weights(path, device, "not a plain weights file", debug)
    try:
        unwrap(network).load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
    except (RuntimeError, AttributeError, TypeError) as error:
        stop(f"{path} does not fit the configured network ({first_line(error)})", debug, error)
    logger.info(f"loaded weights from {path}")
    return network


def _load_weights(path: Path, device: torch.device | str, what: str, debug: bool) -> Any:
    """`torch.load(weights_only=True)`; any failure (truncated file, pickle payload) stops naming `path`."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # any unpickling failure: report the file, never run its payload
        stop(f"refused to load {path}: {what} ({first_line(error)})", debug, error)


class BestModelSaver:
    """Evaluator handler: write `model.pt` (plain state dict) whenever the key metric improves."""

    def __init__(self, network: torch.nn.Module, save_dir: str, metric_name: str, filename: str = "model.pt") -> None:
        self.network = network
        self.path = Path(save_dir) / filename
        self.metric_name = metric_name
        self.best_metric = float("-inf")
        self.best_epoch = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        value = float(engine.state.metrics[self.metric_name])
        if value > self.best_metric:
            self.best_metric, self.best_epoch = value, engine.state.epoch
            save_atomic(plain_state_dict(self.network), self.path)
            logger.info(f"saved {self.path} ({self.metric_name} {value:.4f} at epoch {engine.state.epoch})")


class TrainingCheckpoint:
    """Trainer handler: every `interval` epochs, the full training state to `<save_dir>/checkpoint.pt`, atomically."""

    def __init__(
        self,
        save_dir: str,
        network: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        lr_scheduler: Any = None,
        best_model: BestModelSaver | None = None,
        interval: int = 1,
        weight_average: Any = None,
    ) -> None:
        self.path = Path(save_dir) / TRAINING_CHECKPOINT
        self.network, self.optimizer, self.lr_scheduler = network, optimizer, lr_scheduler
        self.best_model = best_model
        self.weight_average = weight_average
        self.interval = interval

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)

    def __call__(self, engine: Engine) -> None:
        state = {
            "model": plain_state_dict(self.network),
            "optimizer": self.optimizer.state_dict(),
            "trainer": {"epoch": engine.state.epoch, "iteration": engine.state.iteration},
        }
        if self.lr_scheduler is not None:
            state["lr_scheduler"] = self.lr_scheduler.state_dict()
        scaler = getattr(engine, "scaler", None)
        if scaler is not None:
            state["scaler"] = scaler.state_dict()
        if self.best_model is not None:
            state["best_metric"] = {"value": self.best_model.best_metric, "epoch": self.best_model.best_epoch}
        if self.weight_average is not None and self.weight_average.enabled:
            state["ema_model"] = self.weight_average.network.state_dict()
        save_atomic(state, self.path)


def resume_training(
    trainer: Engine,
    ckpt_dir: str,
    network: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    lr_scheduler: Any = None,
    best_model: BestModelSaver | None = None,
    debug: bool = False,
    weight_average: Any = None,
) -> int:
    """Restore what `TrainingCheckpoint` saved so `trainer.run()` continues after its epoch; return that epoch.

    A missing, truncated or foreign `checkpoint.pt` stops with a one-line error naming it (a traceback under `debug`).
    """
    path = Path(ckpt_dir) / TRAINING_CHECKPOINT
    if not path.is_file():
        stop(f"--resume True, but there is no training checkpoint at {path}; train without --resume first.", debug)
    state = _load_weights(path, "cpu", "not a training checkpoint", debug)
    try:
        epoch, iteration = int(state["trainer"]["epoch"]), int(state["trainer"]["iteration"])
        unwrap(network).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if weight_average is not None and weight_average.enabled and "ema_model" in state:
            weight_average.load_state_dict(state["ema_model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        stop(f"{path} does not fit the configured network and optimiser ({first_line(error)})", debug, error)
    if lr_scheduler is not None and "lr_scheduler" in state:
        lr_scheduler.load_state_dict(state["lr_scheduler"])
    if getattr(trainer, "scaler", None) is not None and "scaler" in state:
        trainer.scaler.load_state_dict(state["scaler"])
    if best_model is not None and "best_metric" in state:
        best_model.best_metric = state["best_metric"]["value"]
        best_model.best_epoch = state["best_metric"]["epoch"]
    trainer.state.epoch, trainer.state.iteration = epoch, iteration
    logger.info(f"resumed from epoch {epoch} ({path})")
    return epoch
