"""Fixtures for the classification bundle tests: the bundle's own `scripts` package on sys.path."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from cls_helpers import BUNDLE


def _scripts_modules() -> list[str]:
    return [name for name in sys.modules if name == "scripts" or name.startswith("scripts.")]


@pytest.fixture
def bundle_scripts() -> Iterator[Path]:
    """Put the bundle root first on sys.path with a fresh `scripts` package; restore sys.path and sys.modules after.

    Another bundle in this repository also has a top-level `scripts` package.
    """
    saved = {name: sys.modules.pop(name) for name in _scripts_modules()}
    threads = torch.get_num_threads()  # the classifier's configs set 1 thread in-process; the next suite wants its own
    sys.path.insert(0, str(BUNDLE))
    try:
        yield BUNDLE
    finally:
        torch.set_num_threads(threads)
        for name in _scripts_modules():
            del sys.modules[name]
        sys.modules.update(saved)
        sys.path.remove(str(BUNDLE))
