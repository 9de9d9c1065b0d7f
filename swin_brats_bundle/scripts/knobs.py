"""Every top-level knob of this bundle's configs, declared once: its rule, whether it is on/off, whether MLflow
records it.

The configs pass their knobs' values as the `knobs` item; `knob_check` runs first in `initialize`, so a bad value
stops before any data is read, and `tracking_params` derives from the same declarations. `ci/check_bundle.py knobs`
fails when a config has a knob missing here or from its `knobs` item.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scripts.datasets import CACHE_DTYPES, CACHES
from scripts.knob_rules import (
    Knob,
    anything,
    choice,
    integer,
    multiple_of,
    number,
    numbers,
    problems,
    require,
    sizes,
    switch,
    text,
)
from scripts.knob_rules import tracked as tracked_values
from scripts.labels import CONVENTIONS, REGIONS
from scripts.layouts import IDENTITY_CHANNEL_INDICES
from scripts.transforms import NORMALIZATIONS

# the keys of train.json's `loss_functions` and `optimizers` (tests/swin_brats/test_knobs.py keeps them equal)
LOSSES = ("dice", "dice_bce", "dice_focal")
OPTIMIZERS = ("adam", "adamw")

PATHS = (
    "bundle_root",
    "ckpt_dir",
    "output_dir",
    "dataset_dir",
    "datalist",
    "landmarks",
    "checkpoint",
    "cache_dir",
    "preflight_cache",
)
SWITCHES = ("use_checkpoint", "cpu_bf16_training", "crop_to_brain", "flip_tta")
FLAGS = (
    "use_flash_attention",
    "progress_bar",
    "debug",
    "check_versions",
    "resume",
    "mlflow_log_checkpoint",
    "check_submission",
    "load_pretrain",
    "preflight_voxels",
)

KNOBS: dict[str, Knob] = {
    **{name: text() for name in PATHS},
    **{name: switch(tracked=True) for name in SWITCHES},
    **{name: switch() for name in FLAGS},
    "amp": switch(),  # MLflow records whether amp took effect (`use_amp`), not the request
    "num_folds": integer(2, tracked=True),
    "fold": integer(0, tracked=True),
    "seed": integer(tracked=True),
    "label_convention": choice("auto", *CONVENTIONS),  # MLflow records the resolved convention
    "channel_indices": Knob(
        "auto or a permutation of 0-3",
        lambda v: v == "auto" or (isinstance(v, list) and sorted(v) == list(IDENTITY_CHANNEL_INDICES)),
    ),
    "normalization": choice(*NORMALIZATIONS, tracked=True),
    # Swin UNETR halves the grid five times and needs at least 2 voxels at the bottom
    "roi_size": sizes(3, multiple=32, minimum=64, tracked=True),
    "feature_size": multiple_of(12, tracked=True),  # its attention heads split the features in 12ths
    "amp_dtype": choice("float16", "bfloat16", tracked=True),
    "num_threads": integer(0),
    "epochs": integer(1, tracked=True),
    "val_interval": integer(1, tracked=True),
    "batch_size": integer(1, tracked=True),
    "learning_rate": number(0, low_open=True, tracked=True),
    "weight_decay": number(0, tracked=True),
    "warmup_epochs": integer(0, tracked=True),
    "ema_decay": number(0, 1, high_open=True, tracked=True),
    "output_bias_prior": Knob(
        "0 or null (PyTorch's initialisation), or a probability in (0, 1)",
        number(0, 1, high_open=True, optional=True).accepts,
        tracked=True,
    ),
    "loss": choice(*LOSSES, tracked=True),
    "dice_weight": number(0, tracked=True),  # the Dice term's weight in dice_bce / dice_focal (BCE / focal weigh 1)
    "optimizer_name": choice(*OPTIMIZERS),  # recorded as `optimizer`, its name in earlier runs
    "num_workers": integer(0),
    "loader_workers": Knob("auto or an integer >= 0", lambda v: v == "auto" or integer(0).accepts(v)),
    "cache": choice(*CACHES, tracked=True),
    "cache_rate": Knob("auto or a number in (0, 1]", lambda v: v == "auto" or number(0, 1, low_open=True).accepts(v)),
    "cache_memory_gb": Knob("auto or a number >= 0 (GB per rank)", lambda v: v == "auto" or number(0).accepts(v)),
    "cache_dtype": choice(*CACHE_DTYPES, tracked=True),  # the cached image's; fp16 rounds it, so MLflow records it
    "crop_tumour_fraction": number(0, 1, tracked=True),
    "num_samples": integer(1, tracked=True),
    "sw_batch_size": integer(1),
    "sw_overlap": number(0, 1, high_open=True, tracked=True),
    "sw_mode": choice("constant", "gaussian", tracked=True),
    "region_thresholds": numbers(len(REGIONS), 0, 1, tracked=True),
    "min_component_mm3": number(0, tracked=True),
    "min_enhancing_mm3": number(0, tracked=True),
    "min_coreless_lesion_mm3": number(0, tracked=True),
    "checkpoint_interval": integer(1),
    "dist_timeout_s": number(0, low_open=True),  # multi_gpu_train.json: how long a rank waits for a silent peer
    "num_pictures": integer(0),
    "device": anything(),
    "tracking_uri": text(),
    "experiment_name": text(optional=False),
    "run_name": text(),
    "parent_run_id": text(),
}


def require_valid(values: Mapping[str, Any]) -> None:
    """Stop at start naming each knob whose value its rule refuses, and a fold outside `num_folds`."""
    found = problems(values, KNOBS)
    fold, folds = values.get("fold"), values.get("num_folds")
    if isinstance(fold, int) and isinstance(folds, int) and fold >= folds > 0:
        found.append(f"fold={fold!r} is not allowed: 0 to {folds - 1} with num_folds={folds}")
    require(found, values.get("debug", False))


def tracked(values: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> dict:
    """The MLflow parameters of a run: its tracked knobs, then `extra` (what the run resolved, the bundle version)."""
    return tracked_values(values, KNOBS, extra)
