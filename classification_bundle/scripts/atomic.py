"""Atomic file writes: a temporary file beside the target, renamed over it only once complete."""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside `path`; on success it is renamed to `path` (mode 0644), on error deleted.

    The temporary name is `.<name>.<random>.partial<suffix>`: `suffix` keeps an extension that a writer needs to pick
    its format. Readers and a killed process never see a half-written file under the final name. A SIGKILL cannot
    clean up, so temporary files of `path` left by a killed process are removed at its next write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.partial*"):
        stale.unlink(missing_ok=True)
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".partial{suffix}")
    os.close(handle)
    try:
        yield Path(partial)
        os.chmod(partial, 0o644)  # mkstemp creates owner-only files
        os.replace(partial, path)
    finally:
        Path(partial).unlink(missing_ok=True)


@contextmanager
def atomic_write(path: str | Path, mode: str = "w", **open_kwargs: str) -> Iterator[IO]:
    """`open(path, mode)` through `atomic_path`: the file appears complete under its name, or not at all."""
    with atomic_path(path) as partial, open(partial, mode, **open_kwargs) as f:
        yield f
