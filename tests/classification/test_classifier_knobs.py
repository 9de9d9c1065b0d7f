"""The classifier's knobs are checked at start: a bad value stops with one line naming key, value and what is
allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
from cls_helpers import CONFIGS
from monai.bundle import ConfigWorkflow


def _initialize(config: str, bundle_root: Path, tmp_path: Path, **overrides) -> None:
    workflow = ConfigWorkflow(
        config_file=str(CONFIGS / config),
        workflow_type="train" if config == "train.json" else "infer",
        bundle_root=str(bundle_root),
        dataset_path=str(tmp_path / "no_such_file.npz"),
        ckpt_dir=str(tmp_path / "models"),
        output_dir=str(tmp_path / "out"),
        **overrides,
    )
    workflow.initialize()


@pytest.mark.parametrize(
    ("config", "overrides", "message"),
    [
        ("train.json", {"feature_size": 10}, "feature_size=10 is not allowed: a positive multiple of 12"),
        ("train.json", {"batch_size": 0}, "batch_size=0 is not allowed: an integer >= 1"),
        ("train.json", {"roi_size": [14, 14]},
         "roi_size=[14, 14] is not allowed: a list of 3 integers, each at least 1"),
        ("train.json", {"val_fraction": 0.5, "test_fraction": 0.5},
         "val_fraction + test_fraction=1.0 is not allowed: below 1, to leave training samples"),
        ("train.json", {"pretrained_channel_reduction": "max"},
         "pretrained_channel_reduction='max' is not allowed: one of sum, mean"),
        ("inference.json", {"amp": "false"},
         "amp='false' is not allowed: True or False (capitalised on the command line)"),
        ("inference.json", {"num_classes": 1}, "num_classes=1 is not allowed: an integer >= 2"),
    ],
)  # fmt: skip
def test_a_bad_value_stops_at_start(config, overrides, message, bundle_scripts: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as stopped:
        _initialize(config, bundle_scripts, tmp_path, **overrides)
    assert str(stopped.value) == f"error: {message}"
    assert not (tmp_path / "out").exists() and not (tmp_path / "models").exists()


def test_mlflow_parameters_come_from_the_declarations(bundle_scripts: Path) -> None:
    from scripts.knobs import KNOBS

    workflow = ConfigWorkflow(
        config_file=str(CONFIGS / "train.json"), workflow_type="train", bundle_root=str(bundle_scripts)
    )
    params = workflow.parser.get_parsed_content("tracking_params", lazy=False)
    knobs = workflow.parser.get_parsed_content("knobs")
    assert set(params) == {key for key in knobs if KNOBS[key].tracked} | {"bundle_version"}
    assert params["learning_rate"] == knobs["learning_rate"] and "num_workers" not in params
