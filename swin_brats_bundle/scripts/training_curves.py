"""Trainer handler: per-epoch wall-clock time, loss, train Dice and validation Dice per region in a CSV, and a plot."""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from scripts.atomic import atomic_write
from scripts.labels import region_keys

TRAIN_COLUMNS = ("train_loss", "train_mean_dice")
REGION_COLUMNS = tuple(f"val_mean_dice_{region}" for region in region_keys())
VALIDATION_COLUMNS = ("val_mean_dice", *REGION_COLUMNS)
COLUMNS = ("epoch", "seconds", *TRAIN_COLUMNS, "lr", *VALIDATION_COLUMNS)
REGION_STYLES = dict(zip(REGION_COLUMNS, ("tab:red", "tab:green", "tab:olive"), strict=True))


class TrainingCurves:
    """Keep `output_dir/<filename>` (one row per epoch) and `output_dir/<plot>` up to date during training.

    Attach it after MONAI's `ValidationHandler`, so that at EPOCH_COMPLETED the validator has already run when due;
    validation columns stay blank in epochs without validation. On a resumed run (the trainer's epoch restored
    before STARTED) the rows of the epochs already done are kept from the existing CSV.
    """

    def __init__(
        self,
        output_dir: str,
        validator: Any = None,
        filename: str = "training_log.csv",
        plot: str = "training_curves.png",
    ) -> None:
        self.output_dir = Path(output_dir)
        self.validator = validator
        self.csv_path = self.output_dir / filename
        self.plot_path = self.output_dir / plot
        self.rows: list[dict[str, float | None]] = []
        self._lr: float | None = None
        self._started = time.monotonic()
        self._seconds_before = 0.0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.load)
        engine.add_event_handler(Events.EPOCH_STARTED, self.note_lr)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.epoch_completed)

    def load(self, engine: Engine) -> None:
        """Rows of epochs up to the trainer's current epoch from an existing CSV (none on a fresh run)."""
        self.rows = [row for row in read_log(self.csv_path) if row["epoch"] <= engine.state.epoch]
        # a resumed run counts on from the time its last kept epoch ended
        self._seconds_before = float(self.rows[-1]["seconds"] or 0.0) if self.rows else 0.0
        self._started = time.monotonic()

    def note_lr(self, engine: Engine) -> None:
        # Read at epoch start: a scheduler stepping at EPOCH_COMPLETED has already moved on by the time we log.
        optimizer = getattr(engine, "optimizer", None)
        self._lr = float(optimizer.param_groups[0]["lr"]) if optimizer is not None else None

    def epoch_completed(self, engine: Engine) -> None:
        self.rows = [row for row in self.rows if row["epoch"] < engine.state.epoch]
        self.rows.append(self.epoch_row(engine))
        self.output_dir.mkdir(parents=True, exist_ok=True)
        write_log(self.rows, self.csv_path)
        plot_curves(self.rows, self.plot_path)

    def epoch_row(self, engine: Engine) -> dict[str, float | None]:
        """This epoch's numbers; validation ones only if the validator ran for this very epoch."""
        metrics = engine.state.metrics
        seconds = round(self._seconds_before + time.monotonic() - self._started, 1)
        row: dict[str, float | None] = {"epoch": engine.state.epoch, "seconds": seconds, "lr": self._lr}
        row |= {key: _number(metrics.get(key)) for key in TRAIN_COLUMNS}
        state = getattr(self.validator, "state", None)
        validated = state is not None and getattr(state, "epoch", None) == engine.state.epoch
        row |= {key: _number(state.metrics.get(key)) if validated else None for key in VALIDATION_COLUMNS}
        return row


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def read_log(path: Path) -> list[dict[str, float | None]]:
    """Rows of a training log CSV (blank cells as None); no file, no rows."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [
            {key: int(row["epoch"]) if key == "epoch" else _number(row.get(key) or None) for key in COLUMNS}
            for row in csv.DictReader(f)
        ]


def write_log(rows: list[dict[str, float | None]], path: Path) -> None:
    """The CSV, written through a temporary file so a reader never sees half of it."""
    with atomic_write(path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows([["" if row[key] is None else row[key] for key in COLUMNS] for row in rows])


def _series(rows: list[dict[str, float | None]], key: str) -> tuple[list[int], list[float]]:
    """Epochs and values where `key` has a finite value."""
    pairs = [(row["epoch"], row[key]) for row in rows if row[key] is not None and math.isfinite(row[key])]
    return [int(e) for e, _ in pairs], [float(v) for _, v in pairs]


def plot_curves(rows: list[dict[str, float | None]], path: Path) -> Path:
    """Two panels: train loss per epoch; train vs validation mean Dice and validation Dice per region."""
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    loss_ax, dice_ax = figure.subplots(1, 2)
    loss_ax.plot(*_series(rows, "train_loss"), marker="o", markersize=3, color="tab:blue", label="train loss")
    loss_ax.set(title="Training loss", xlabel="epoch", ylabel="loss")
    dice_ax.plot(*_series(rows, "train_mean_dice"), marker="o", markersize=3, color="tab:blue", label="train mean Dice")
    epochs, values = _series(rows, "val_mean_dice")
    best = f" (best {max(values):.4f} @ epoch {epochs[values.index(max(values))]})" if values else ""
    dice_ax.plot(epochs, values, marker="o", markersize=4, color="black", label=f"validation mean Dice{best}")
    for key, colour in REGION_STYLES.items():
        region = key.rsplit("_", 1)[1].upper()
        dice_ax.plot(*_series(rows, key), ls="--", lw=1, marker=".", color=colour, label=f"validation {region} Dice")
    dice_ax.set(title="Dice per epoch", xlabel="epoch", ylabel="Dice", ylim=(0.0, 1.02))
    for ax in (loss_ax, dice_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    last = rows[-1]["epoch"] if rows else 0
    figure.suptitle(f"Training curves after epoch {last}")
    with atomic_write(path, "wb") as f:
        figure.savefig(f, format="png", dpi=100)
    return path
