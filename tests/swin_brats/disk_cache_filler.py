"""Run in spawned processes by test_datasets.py: fill a shared disk cache. Apart from the test module, whose `conftest`
import a spawned child could resolve to the repository's root conftest when both suites run in one pytest process."""

from __future__ import annotations

import multiprocessing.synchronize
from pathlib import Path

import torch
from monai.data import PersistentDataset


def fill_shared_cache(dataset: PersistentDataset, start: multiprocessing.synchronize.Barrier, out: Path) -> None:
    """One of the processes filling one cache_dir: all start together, then save what they got for the parent."""
    start.wait(timeout=120)
    torch.save([dataset._cachecheck(case) for case in dataset.data], out)
