"""Run in spawned processes by test_datasets.py: fill a shared disk cache.

A module of its own, and the dataset passed pickled: with both bundle suites in one pytest process, a spawned child
can resolve `conftest` or `scripts` to the other suite's, so the child puts this bundle first before unpickling.
"""

from __future__ import annotations

import multiprocessing.synchronize
import pickle
import sys
from pathlib import Path

import torch


def fill_shared_cache(bundle: str, dataset: bytes, start: multiprocessing.synchronize.Barrier, out: Path) -> None:
    """One of the processes filling one cache_dir: all start together, then save what they got for the parent."""
    sys.path.insert(0, bundle)
    for name in [name for name in sys.modules if name == "scripts" or name.startswith("scripts.")]:
        del sys.modules[name]
    shared = pickle.loads(dataset)
    start.wait(timeout=120)
    torch.save([shared._cachecheck(case) for case in shared.data], out)
