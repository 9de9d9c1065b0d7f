"""TrainingCurves on a network-free ignite trainer with a fake validator that runs every second epoch."""

import csv
from pathlib import Path
from types import SimpleNamespace

import pytest
from ignite.engine import Engine, Events
from scripts.training_curves import COLUMNS, VALIDATION_COLUMNS, TrainingCurves, read_log

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _trainer(output_dir: Path, validator: SimpleNamespace, val_interval: int = 2) -> tuple[Engine, TrainingCurves]:
    """A trainer whose epoch e reports loss 1/e, train Dice 0.1e, lr 0.1/e; validation Dice 0.1e + 0.05."""
    engine = Engine(lambda engine, batch: None)
    engine.optimizer = SimpleNamespace(param_groups=[{"lr": 0.1}])

    @engine.on(Events.EPOCH_COMPLETED)
    def metrics_and_validation(engine: Engine) -> None:  # what MONAI's metric and validation handlers would do
        epoch = engine.state.epoch
        engine.state.metrics = {"train_loss": 1 / epoch, "train_mean_dice": 0.1 * epoch}
        if epoch % val_interval == 0:
            validator.state.epoch = epoch
            validator.state.metrics = {
                "val_mean_dice": 0.1 * epoch + 0.05,
                "val_mean_dice_tc": 0.1 * epoch,
                "val_mean_dice_wt": 0.1 * epoch + 0.1,
                "val_mean_dice_et": 0.1 * epoch - 0.05,
            }
        engine.optimizer.param_groups[0]["lr"] = 0.1 / (epoch + 1)  # the scheduler steps at epoch end

    curves = TrainingCurves(str(output_dir), validator=validator)
    curves.attach(engine)  # after the validation handler, as in train.json
    return engine, curves


def test_log_rows_and_plot(tmp_path: Path) -> None:
    validator = SimpleNamespace(state=SimpleNamespace(epoch=0, metrics={}))
    engine, _ = _trainer(tmp_path, validator)
    engine.run([0], max_epochs=4)
    with open(tmp_path / "training_log.csv", newline="") as f:
        table = list(csv.reader(f))
    assert tuple(table[0]) == COLUMNS
    assert [line[0] for line in table[1:]] == ["1", "2", "3", "4"]
    epoch1, epoch2 = dict(zip(COLUMNS, table[1], strict=True)), dict(zip(COLUMNS, table[2], strict=True))
    assert float(epoch1["train_loss"]) == 1.0 and float(epoch1["train_mean_dice"]) == pytest.approx(0.1)
    assert float(epoch1["lr"]) == 0.1 and float(epoch2["lr"]) == pytest.approx(0.05)  # lr used in that epoch
    assert all(epoch1[key] == "" for key in VALIDATION_COLUMNS)  # no validation in epoch 1
    assert all(float(row[COLUMNS.index("seconds")]) >= 0 for row in table[1:])  # wall time of each epoch
    assert float(epoch2["val_mean_dice"]) == pytest.approx(0.25)
    assert float(epoch2["val_mean_dice_wt"]) == pytest.approx(0.3)
    assert float(epoch2["val_mean_dice_et"]) == pytest.approx(0.15)
    assert (
        table[3][COLUMNS.index("val_mean_dice")] == ""
    )  # epoch 3: the validator still holds epoch 2's numbers, which must not be copied
    data = (tmp_path / "training_curves.png").read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 20_000
    assert not list(tmp_path.glob(".*partial"))


def test_without_validator(tmp_path: Path) -> None:
    engine = Engine(lambda engine, batch: None)
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: setattr(e.state, "metrics", {"train_loss": 0.5}))
    TrainingCurves(str(tmp_path)).attach(engine)
    engine.run([0], max_epochs=2)
    rows = read_log(tmp_path / "training_log.csv")
    assert [(row["epoch"], row["train_loss"], row["train_mean_dice"], row["lr"]) for row in rows] == [
        (1, 0.5, None, None),
        (2, 0.5, None, None),
    ]
    assert (tmp_path / "training_curves.png").stat().st_size > 10_000


def test_resumed_run_keeps_earlier_epochs(tmp_path: Path) -> None:
    validator = SimpleNamespace(state=SimpleNamespace(epoch=0, metrics={}))
    engine, _ = _trainer(tmp_path, validator)
    engine.run([0], max_epochs=4)
    # A run resumed from the epoch-2 checkpoint: epochs 3 and 4 are trained again and replace the old rows.
    resumed, _ = _trainer(tmp_path, validator)
    resumed.load_state_dict({"epoch": 2, "max_epochs": 5, "epoch_length": 1})
    resumed.run([0])
    assert [row["epoch"] for row in read_log(tmp_path / "training_log.csv")] == [1, 2, 3, 4, 5]
    # A fresh run starts a fresh log.
    fresh, _ = _trainer(tmp_path, validator)
    fresh.run([0], max_epochs=1)
    assert [row["epoch"] for row in read_log(tmp_path / "training_log.csv")] == [1]
