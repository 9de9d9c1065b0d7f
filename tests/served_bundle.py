"""A copy of swin_brats_bundle served as MONAI Label and MONAI Deploy serve one: settings written into inference.json.

Shared by tests/swin_brats (the project's .venv) and tests/deploy (deploy/.venv); it imports only what both have.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from monai.bundle import ConfigParser

BUNDLE = Path(__file__).resolve().parents[1] / "swin_brats_bundle"


def serve_bundle(parent: Path, settings: dict) -> Path:
    """Copy the bundle into `parent`, write `settings` into its inference.json (the servers override nothing but
    `bundle_root`), and save a seeded, untrained `network_def` as its models/model.pt."""
    root = parent / "swin_brats_bundle"
    shutil.copytree(BUNDLE, root, ignore=shutil.ignore_patterns("__pycache__", "eval", "*.pt", "*.ts"))
    config_file = root / "configs" / "inference.json"
    config = json.loads(config_file.read_text())
    config.update(settings)
    config_file.write_text(json.dumps(config, indent=4) + "\n")
    parser = ConfigParser()
    parser.read_config(str(config_file))
    torch.manual_seed(0)
    (root / "models").mkdir(exist_ok=True)
    torch.save(parser.get_parsed_content("network_def").state_dict(), root / "models" / "model.pt")
    return root
