"""What a trained model predicts, kept beside its weights: `convention.json` in the checkpoint's folder names the label
convention it was trained on and that convention's regions (the network's output channels, in order).

Training writes it with `model.pt` (`ConventionRecord`); evaluation and inference read it, size the network from it
(`model_convention`) and refuse in one line a convention whose regions differ (`load_trained_model`). `model.pt` stays
a plain state dict (MONAI's loaders, the TorchScript export and the zoo read it as such), so the record sits beside it
and covers every model file of its folder (`model.pt`, `model.ts`, `checkpoint.pt`). A folder without one (weights
from before) is read as before: the configured `label_convention`, else `labels.UNSCANNED_CONVENTION`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from scripts.atomic import atomic_write
from scripts.errors import stop
from scripts.labels import (
    CONVENTIONS,
    UNSCANNED_CONVENTION,
    LabelConvention,
    describe,
    get_convention,
    label_names,
    painted_convention,
    same_regions,
)

if TYPE_CHECKING:
    from ignite.engine import Engine

logger = logging.getLogger(__name__)

RECORD = "convention.json"


def record_path(checkpoint: str | Path) -> Path:
    """The record of a model file (`models/model.pt` -> `models/convention.json`)."""
    return Path(checkpoint).parent / RECORD


def record_of(convention: LabelConvention) -> dict[str, Any]:
    """What the record holds: the convention's name, its regions with their label values, and the label names."""
    return {
        "label_convention": convention.name,
        "description": convention.description,
        "regions": [{"name": region.name, "labels": sorted(region.values)} for region in convention.regions],
        "labels": label_names(convention),
    }


def recorded_convention(checkpoint: str | Path, debug: bool = False) -> LabelConvention | None:
    """The convention recorded beside `checkpoint`, or None where there is no record; a record this bundle cannot
    read as one of its conventions (unknown name, other regions) stops naming the file."""
    path = record_path(checkpoint)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        name, regions = record["label_convention"], [region["name"] for region in record["regions"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        stop(f"{path}: not a convention record ({error})", debug, error)
    if name not in CONVENTIONS:
        stop(f"{path}: the model was trained on label convention '{name}', which this bundle does not know", debug)
    convention = CONVENTIONS[name]
    if tuple(regions) != convention.region_names:
        stop(f"{path}: recorded regions {', '.join(regions)} are not those of {describe(convention)}", debug)
    return convention


def require_same_regions(
    checkpoint: str | Path, trained: LabelConvention, wanted: LabelConvention, debug: bool = False
):
    """Stop in one line when a model trained on `trained` is asked to predict `wanted`, whose regions differ."""
    if not same_regions(trained, wanted):
        stop(
            f"{checkpoint} was trained on {describe(trained)} and cannot predict {describe(wanted)}: "
            f"pass --label_convention {trained.name}, or train on {wanted.name}",
            debug,
        )


def model_convention(checkpoint: str | Path, requested: str = "auto", debug: bool = False) -> LabelConvention:
    """The convention the network predicts, which sizes its output: the one recorded beside `checkpoint`; without a
    record an explicit `requested` one, else `UNSCANNED_CONVENTION`. An explicit request whose regions differ from the
    recorded ones stops."""
    trained = recorded_convention(checkpoint, debug)
    try:
        wanted = get_convention(requested, UNSCANNED_CONVENTION)
    except ValueError as error:
        stop(str(error), debug, error)
    if trained is None:
        return wanted
    if requested != "auto":
        require_same_regions(checkpoint, trained, wanted, debug)
    return trained


def output_convention(
    requested: str, info: dict[str, Any], model: LabelConvention, debug: bool = False
) -> LabelConvention:
    """The convention a scanned dataset's predictions are painted in (`labels.painted_convention`): the dataset's
    own where the model predicts its regions; one that cannot be painted stops in one line."""
    try:
        return painted_convention(requested, info.get("label_convention"), model, info.get("layout"))
    except ValueError as error:
        stop(str(error), debug, error)


def load_trained_model(
    network: torch.nn.Module,
    path: str | Path,
    convention: LabelConvention,
    device: torch.device | str = "cpu",
    debug: bool = False,
) -> torch.nn.Module:
    """`checkpoint.load_model`, after refusing a model recorded with other regions than `convention`'s."""
    from scripts.checkpoint import load_model  # ignite's: imported where weights load, not where inference.json is read

    trained = recorded_convention(path, debug)
    if trained is not None:
        require_same_regions(path, trained, convention, debug)
    return load_model(network, path, device, debug)


def write_record(save_dir: str | Path, convention: LabelConvention) -> Path:
    """Write `<save_dir>/convention.json` atomically (unchanged content is not rewritten)."""
    path = Path(save_dir) / RECORD
    text = json.dumps(record_of(convention), indent=4) + "\n"
    if not path.is_file() or path.read_text() != text:
        with atomic_write(path) as f:
            f.write(text)
    return path


class ConventionRecord:
    """Evaluator handler, after `checkpoint.BestModelSaver`: once `model.pt` exists, record beside it the convention
    the run trains on (the saver is a hook both bundles share and knows no conventions)."""

    def __init__(self, save_dir: str, convention: LabelConvention, model_file: str = "model.pt") -> None:
        self.save_dir, self.convention, self.model_file = Path(save_dir), convention, model_file

    def attach(self, engine: Engine) -> None:
        # not at the top: the MONAI Deploy environment reads this module without ignite
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine | None = None) -> None:
        if (self.save_dir / self.model_file).is_file():
            write_record(self.save_dir, self.convention)
