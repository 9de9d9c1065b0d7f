"""Model-zoo style property checks: the configs expose every id MONAI's train and inference workflows require."""

import json

import pytest
from conftest import BUNDLE
from monai.bundle import ConfigWorkflow

CONFIGS = BUNDLE / "configs"
WORKFLOWS = {
    "train": ("train", [CONFIGS / "train.json"]),
    "train+evaluate": ("train", [CONFIGS / "train.json", CONFIGS / "evaluate.json"]),
    "inference": ("infer", [CONFIGS / "inference.json"]),
}


@pytest.mark.parametrize("name", list(WORKFLOWS))
def test_check_properties_reports_nothing_missing(make_dataset, tmp_path, name: str) -> None:
    workflow_type, config_files = WORKFLOWS[name]
    workflow = ConfigWorkflow(
        config_file=[str(p) for p in config_files],
        meta_file=str(CONFIGS / "metadata.json"),
        logging_file=str(CONFIGS / "logging.conf"),
        workflow_type=workflow_type,
        bundle_root=str(BUNDLE),
        dataset_dir=str(make_dataset("brats2021")),
        output_dir=str(tmp_path),
        ckpt_dir=str(tmp_path),
        num_folds=3,
        feature_size=12,
        num_workers=0,
        load_pretrain=False,
    )
    workflow.initialize()
    assert workflow.check_properties() == []


@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("*.json")))
def test_configs_are_four_space_pretty_json(config: str) -> None:
    text = (CONFIGS / config).read_text()
    assert text == json.dumps(json.loads(text), indent=4) + "\n"


def test_every_knob_is_a_top_level_key() -> None:
    train = json.loads((CONFIGS / "train.json").read_text())
    knobs = {"bundle_root", "dataset_dir", "datalist", "fold", "label_convention", "roi_size", "feature_size"}
    knobs |= {"use_checkpoint", "amp", "epochs", "val_interval", "batch_size", "learning_rate", "num_workers"}
    knobs |= {"normalization", "output_dir", "ckpt_dir", "device"}
    assert knobs <= set(train)
    assert train["roi_size"] == [96, 96, 96] and train["feature_size"] == 48 and train["learning_rate"] == 1e-4
    assert train["label_convention"] == "auto" and train["normalization"] == "zscore"


def test_metadata_is_valid_against_the_vendored_schema() -> None:
    from monai.bundle import verify_metadata

    schema = BUNDLE.parent / "ci" / "meta_schema_20240725.json"
    metadata = json.loads((CONFIGS / "metadata.json").read_text())
    assert metadata["schema"].endswith("/" + schema.name)
    verify_metadata(meta_file=str(CONFIGS / "metadata.json"), filepath=str(schema))  # raises on any violation
    assert metadata["version"] in metadata["changelog"]
