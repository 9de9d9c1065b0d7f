"""The hooks copied from swin_brats_bundle/scripts (ci/shared_hooks.py names them) stay identical in every copy."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ci"))
from shared_hooks import COPIES, HOOKS, SOURCE  # noqa: E402


@pytest.mark.parametrize("hook", HOOKS)
@pytest.mark.parametrize("copy", COPIES, ids=lambda path: path.parent.name)
def test_each_copy_is_the_source(copy: Path, hook: str) -> None:
    """A fix to a shared hook must reach both bundles: `make sync-hooks` copies it."""
    assert (copy / hook).read_text() == (SOURCE / hook).read_text(), f"run make sync-hooks: {copy / hook} differs"
