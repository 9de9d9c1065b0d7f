"""`ema_decay`: validation and `model.pt` use an exponential moving average of the weights; resume continues it."""

from pathlib import Path

import pytest
import torch
from conftest import TINY, run_bundle
from ignite.engine import Engine
from scripts.checkpoint import TRAINING_CHECKPOINT, TrainingCheckpoint, resume_training
from scripts.ema import WeightAverage
from scripts.runtime import cpu_bf16_forward


def _stepping_engine(network: torch.nn.Linear) -> Engine:
    """An engine whose every iteration sets the network's weight to its batch, as an optimiser step would."""

    def step(engine: Engine, batch: float) -> None:
        with torch.no_grad():
            network.weight.fill_(batch)

    return Engine(step)


def test_the_average_follows_the_ema_of_the_weights_and_zero_decay_is_the_live_network() -> None:
    network = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        network.weight.fill_(10.0)
    off = WeightAverage(network, 0.0)
    assert off.network is network and not off.enabled

    average = WeightAverage(network, 0.5)
    with torch.no_grad():
        network.weight.fill_(2.0)  # an output initialisation after the average was built: the average starts here
    engine = _stepping_engine(network)
    average.attach(engine)
    engine.run([4.0, 8.0], max_epochs=1)
    # starts at 2, then 0.5 * 2 + 0.5 * 4 = 3, then 0.5 * 3 + 0.5 * 8 = 5.5
    assert average.network.weight.item() == pytest.approx(5.5)
    assert network.weight.item() == 8.0
    assert average.network(torch.ones(1, 1)).item() == pytest.approx(5.5)


def test_the_average_runs_its_own_weights_when_training_forward_passes_are_patched_for_bf16(monkeypatch) -> None:
    # native bf16 faked present, so `cpu_bf16_training` patches `forward` and runs it in bf16 on any CPU
    for check in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, check, lambda: True, raising=False)
    network = cpu_bf16_forward(torch.nn.Linear(1, 1, bias=False), enabled=True)
    assert "forward" in vars(network)
    average = WeightAverage(network, 0.9)
    with torch.no_grad():
        network.weight.fill_(3.003)  # bf16 keeps 8 significant bits: 3.0
        average.network.weight.fill_(1.001)  # 1.0 in bf16
    assert network(torch.ones(1, 1)).item() == 3.0  # the live network's patched forward: bf16
    # the average: its own weights, through the plain forward (not the live network's, copied along with it)
    assert average.network(torch.ones(1, 1)).item() == pytest.approx(1.001, abs=1e-6)


@pytest.mark.parametrize("decay", [1.0, -0.1])
def test_a_decay_outside_zero_to_one_is_refused_naming_the_key(decay: float) -> None:
    with pytest.raises(ValueError, match=r"ema_decay must be in \[0, 1\)"):
        WeightAverage(torch.nn.Linear(1, 1), decay)


def test_a_resumed_run_continues_the_saved_average(tmp_path: Path) -> None:
    network = torch.nn.Linear(1, 1, bias=False)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    average = WeightAverage(network, 0.5)
    with torch.no_grad():
        network.weight.fill_(7.0)
        average.network.weight.fill_(1.5)
    trainer = Engine(lambda engine, batch: None)
    trainer.state.epoch, trainer.state.iteration = 1, 4
    TrainingCheckpoint(str(tmp_path), network, optimizer, weight_average=average)(trainer)
    assert torch.load(tmp_path / TRAINING_CHECKPOINT, weights_only=True)["ema_model"]["weight"].item() == 1.5

    resumed_network = torch.nn.Linear(1, 1, bias=False)
    resumed = WeightAverage(resumed_network, 0.5)
    resumed_trainer = Engine(lambda engine, batch: None)
    resume_training(resumed_trainer, str(tmp_path), resumed_network, torch.optim.SGD(resumed_network.parameters(), 0.1),
                    weight_average=resumed)  # fmt: skip
    resumed.start(resumed_trainer)  # what Events.STARTED calls: a restored average is kept
    assert resumed_network.weight.item() == 7.0 and resumed.network.weight.item() == 1.5


def test_training_with_ema_decay_saves_the_average_as_model_pt(make_dataset, tmp_path: Path) -> None:
    data, ckpt = make_dataset("brats2021"), tmp_path / "run"
    run_bundle("training", "--config_file", "configs/train.json", "--dataset_dir", str(data), "--num_folds", "3",
               "--ckpt_dir", str(ckpt), "--output_dir", str(ckpt), "--epochs", "1", "--learning_rate", "0.01",
               "--ema_decay", "0.9", *TINY)  # fmt: skip
    state = torch.load(ckpt / TRAINING_CHECKPOINT, weights_only=True)
    model = torch.load(ckpt / "model.pt", weights_only=True)  # saved at the one validation, after the last iteration
    assert model.keys() == state["model"].keys() == state["ema_model"].keys()
    assert all(torch.equal(model[key], state["ema_model"][key]) for key in model)
    assert not all(torch.equal(model[key], state["model"][key]) for key in model)
