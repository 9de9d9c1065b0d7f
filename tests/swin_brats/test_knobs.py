"""Every knob's value is checked at start: a bad one stops with one line naming key, value and what is allowed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import BUNDLE, TINY, run_bundle
from monai.bundle import ConfigWorkflow
from scripts.knobs import KNOBS, LOSSES, OPTIMIZERS
from scripts.labels import CONVENTIONS

CONFIGS = BUNDLE / "configs"


def _initialize(config_files: list[str], tmp_path: Path, **overrides) -> ConfigWorkflow:
    """The workflow of `config_files` initialised on a dataset folder that does not exist: the check must come first."""
    workflow = ConfigWorkflow(
        config_file=[str(CONFIGS / name) for name in config_files],
        workflow_type="train" if "train.json" in config_files else "infer",
        bundle_root=str(BUNDLE),
        dataset_dir=str(tmp_path / "no_such_dataset"),
        ckpt_dir=str(tmp_path / "models"),
        output_dir=str(tmp_path / "out"),
        **overrides,
    )
    workflow.initialize()
    return workflow


@pytest.mark.parametrize(
    ("config", "key", "value", "allowed"),
    [
        ("train.json", "roi_size", [80, 80, 80], "a list of 3 integers, each a multiple of 32 and at least 64"),
        ("train.json", "fold", 7, "0 to 4 with num_folds=5"),
        ("train.json", "feature_size", 10, "a positive multiple of 12"),
        ("train.json", "cache", "ram", "one of memory, disk, none"),
        ("train.json", "cache_rate", 0, "auto or a number in (0, 1]"),
        ("train.json", "cache_rate", "all", "auto or a number in (0, 1]"),
        ("train.json", "cache_memory_gb", -1, "auto or a number >= 0 (GB per rank)"),
        ("train.json", "cache_memory_gb", "8GB", "auto or a number >= 0 (GB per rank)"),
        ("train.json", "cache_dtype", "bfloat16", "one of float16, float32"),
        ("train.json", "loader_workers", -1, "auto or an integer >= 0"),
        ("train.json", "sw_overlap", 1.5, "a number in [0, 1)"),
        ("train.json", "batch_size", 0, "an integer >= 1"),
        ("train.json", "label_convention", "brats2019", f"one of auto, {', '.join(CONVENTIONS)}"),
        ("train.json", "resume", "false", "True or False (capitalised on the command line)"),
        ("train.json", "loss", "focal", f"one of {', '.join(LOSSES)}"),
        ("train.json", "region_thresholds", [0.5, 1.2], "a list of 3 numbers, each in (0, 1)"),
        ("inference.json", "roi_size", [96, 96], "a list of 3 integers, each a multiple of 32 and at least 64"),
        ("inference.json", "channel_indices", [0, 1, 2, 2], "auto or a permutation of 0-3"),
        ("inference.json", "sw_mode", "linear", "one of constant, gaussian"),
    ],
)  # fmt: skip
def test_a_bad_value_stops_at_start_naming_key_value_and_what_is_allowed(config, key, value, allowed, tmp_path) -> None:
    with pytest.raises(SystemExit) as stopped:
        _initialize([config], tmp_path, **{key: value})
    assert str(stopped.value) == f"error: {key}={value!r} is not allowed: {allowed}"
    assert not (tmp_path / "out").exists() and not (tmp_path / "models").exists()


def test_every_refused_value_is_named_in_the_one_line(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as stopped:
        _initialize(["train.json", "evaluate.json"], tmp_path, epochs=0, load_pretrain="no", num_pictures=-1)
    assert str(stopped.value).splitlines() == [
        "error: epochs=0 is not allowed: an integer >= 1; "
        "load_pretrain='no' is not allowed: True or False (capitalised on the command line); "
        "num_pictures=-1 is not allowed: an integer >= 0"
    ]


def test_the_cli_stops_with_one_line_before_reading_data(make_dataset, tmp_path: Path) -> None:
    """Through `python -m monai.bundle`: no traceback, exit status 1, nothing written."""
    data = make_dataset("brats2021")
    places = ["--ckpt_dir", str(tmp_path / "m"), "--output_dir", str(tmp_path / "out")]
    result = run_bundle("training", "--config_file", "configs/train.json", "--dataset_dir", str(data), *places, *TINY,
                        "--roi_size", "[80,80,80]", "--amp", "false", expect_ok=False)  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: roi_size=[80, 80, 80] is not allowed: a list of 3 integers, each a multiple of 32 and at least 64; "
        "amp='false' is not allowed: True or False (capitalised on the command line)"
    )
    assert not (tmp_path / "out").exists() and not (tmp_path / "m").exists()


def test_the_choices_are_the_configs_own() -> None:
    """`loss` and `optimizer_name` index train.json's dicts: the declared choices must be exactly their keys."""
    train = json.loads((CONFIGS / "train.json").read_text())
    assert set(LOSSES) == set(train["loss_functions"]) and set(OPTIMIZERS) == set(train["optimizers"])


def test_mlflow_parameters_come_from_the_declarations(make_dataset) -> None:
    """Every tracked knob is an MLflow parameter under its own name; resolved values replace requests ('auto')."""
    workflow = ConfigWorkflow(
        config_file=str(CONFIGS / "train.json"),
        workflow_type="train",
        bundle_root=str(BUNDLE),
        dataset_dir=str(make_dataset("msd")),
    )
    params = workflow.parser.get_parsed_content("tracking_params", lazy=False)
    knobs = workflow.parser.get_parsed_content("knobs")
    expected = {key for key in knobs if KNOBS[key].tracked} | {"optimizer", "label_convention", "amp", "precision"}
    assert expected | {"bundle_version"} == set(params)
    assert params["roi_size"] == knobs["roi_size"] and params["optimizer"] == knobs["optimizer_name"] == "adamw"
    assert knobs["label_convention"] == "auto" and params["label_convention"] == "msd"
    assert isinstance(params["amp"], bool)


@pytest.mark.parametrize("loss", ["dice_bce", "dice_focal"])
def test_dice_weight_reaches_the_loss(loss: str) -> None:
    """`dice_weight` scales the Dice term of the losses that have one; the BCE or focal term keeps weight 1."""
    workflow = ConfigWorkflow(
        config_file=str(CONFIGS / "train.json"),
        workflow_type="train",
        bundle_root=str(BUNDLE),
        loss=loss,
        dice_weight=0.25,
    )
    loss_function = workflow.parser.get_parsed_content("loss_function")
    assert (loss_function.lambda_dice, loss_function.lambda_focal) == (0.25, 1.0)
