"""The served bundle's own code and configs, as the app reads them: one source for layouts, labels and checks."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import Any

from monai.bundle import ConfigParser
from monailabel.utils.others.class_utils import unload_module

MODULES = ("cases", "datalist", "errors", "folds", "labels", "layouts", "preflight", "segments")


def bundle_scripts(bundle: str | Path) -> SimpleNamespace:
    """The bundle's `scripts` modules the app calls, imported from `bundle` (MONAI Label's tasks re-import `scripts`
    from the bundle for each request; these module objects stay valid)."""
    path = str(Path(bundle).resolve())
    sys.path.insert(0, path)
    unload_module("scripts")
    try:
        return SimpleNamespace(**{name: importlib.import_module(f"scripts.{name}") for name in MODULES})
    finally:
        sys.path.remove(path)


def config_value(bundle: str | Path, config: str, key: str) -> object:
    """A top-level key of one of the bundle's configs as written (an expression stays a string)."""
    return json.loads((Path(bundle) / "configs" / config).read_text())[key]


def parsed(bundle: str | Path, configs: list[str], **overrides: object) -> ConfigParser:
    """The bundle's `configs` (later ones override earlier ones) with `bundle_root` and `overrides` set."""
    parser = ConfigParser()
    parser.read_config([str(Path(bundle) / "configs" / name) for name in configs])
    parser.update({"bundle_root": str(bundle), **overrides})
    return parser


def served(bundle: str | Path, key: str, dataset_info: dict[str, Any]) -> Any:
    """`key` of the served inference.json, parsed with `dataset_info` (what `run inference` discovers) set: the case
    list and label convention that `run inference` would give those cases, by the config's own rules."""
    path = str(Path(bundle).resolve())
    sys.path.insert(0, path)
    unload_module("scripts")
    try:  # a mapping the parser keeps whole, instead of parsing each case's paths as config
        return parsed(path, ["inference.json"], dataset_info=MappingProxyType(dataset_info)).get_parsed_content(key)
    finally:
        sys.path.remove(path)
