"""Every top-level knob of this bundle's configs, declared once: its rule, whether it is on/off, whether MLflow
records it.

The configs pass their knobs' values as the `knobs` item; `knob_check` runs first in `initialize`, so a bad value
stops before any data is read, and `tracking_params` derives from the same declarations. `ci/check_bundle.py knobs`
fails when a config has a knob missing here or from its `knobs` item.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scripts.knob_rules import (
    Knob,
    anything,
    choice,
    integer,
    multiple_of,
    number,
    problems,
    require,
    sizes,
    switch,
    text,
)
from scripts.knob_rules import tracked as tracked_values

PATHS = ("bundle_root", "ckpt_dir", "output_dir", "dataset_dir", "input_dir", "checkpoint")

KNOBS: dict[str, Knob] = {
    **{name: text() for name in PATHS},
    "dataset_path": text(tracked=True),
    "pretrained_encoder": text(tracked=True),
    "output_filename": text(optional=False),
    "mlflow_log_checkpoint": switch(),
    "use_checkpoint": switch(tracked=True),
    "amp": switch(tracked=True),
    "progress_bar": switch(),
    "check_versions": switch(),
    "load_pretrain": switch(),
    "resume": switch(tracked=True),
    "seed": integer(tracked=True),
    "num_classes": integer(2, tracked=True),
    "class_names": anything(),
    "in_channels": integer(1, tracked=True),
    "feature_size": multiple_of(12, tracked=True),  # Swin UNETR's encoder splits its features in 12ths
    "roi_size": sizes(3, multiple=1, minimum=1, tracked=True),
    "window_size": integer(1),
    "dropout": number(0, 1, high_open=True, tracked=True),
    "drop_path_rate": number(0, 1, high_open=True),
    "num_samples": integer(1, optional=True, tracked=True),
    "val_fraction": number(0, 1, high_open=True),
    "test_fraction": number(0, 1, high_open=True),
    "grid_size": integer(1),
    "max_rotation": number(0),
    "epochs": integer(1, tracked=True),
    "val_interval": integer(1),
    "batch_size": integer(1, tracked=True),
    "num_workers": integer(0),
    "learning_rate": number(0, low_open=True, tracked=True),
    "weight_decay": number(0, tracked=True),
    "num_threads": integer(0),
    "checkpoint_interval": integer(1),
    "dist_timeout_s": number(0, low_open=True),  # multi_gpu_train.json: how long a rank waits for a silent peer
    "pretrained_channel_reduction": choice("sum", "mean"),
    "device": anything(),
    "tracking_uri": text(),
    "experiment_name": text(optional=False),
    "run_name": text(),
}


def require_valid(values: Mapping[str, Any]) -> None:
    """Stop at start naming each knob whose value its rule refuses, and fractions that leave no training samples."""
    found = problems(values, KNOBS)
    held_out = [values.get(key) for key in ("val_fraction", "test_fraction")]
    if all(isinstance(x, int | float) for x in held_out) and sum(held_out) >= 1:
        found.append(
            f"val_fraction + test_fraction={sum(held_out)!r} is not allowed: below 1, to leave training samples"
        )
    require(found)


def tracked(values: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> dict:
    """The MLflow parameters of a run: its tracked knobs, then `extra` (the bundle version)."""
    return tracked_values(values, KNOBS, extra)
