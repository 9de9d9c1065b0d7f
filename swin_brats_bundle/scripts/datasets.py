"""The training dataset behind the `cache` switch: transforms up to the first random one run once, not every epoch."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from copy import deepcopy
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.data import CacheDataset, Dataset, PersistentDataset
from monai.data.utils import SUPPORTED_PICKLE_MOD, pickle_hashing
from monai.transforms import Compose, RandomizableTrait, Transform
from monai.utils import convert_to_tensor, look_up_option

from scripts.errors import first_line
from scripts.memory import GB, cache_budget

CACHES = ("memory", "disk", "none")
CACHE_DTYPES = ("float16", "float32")  # the cached image's dtype; the region channels are cached as uint8
SIZE_MARGIN = 1.25  # an estimated case may have a brain box this much larger than the measured one's, per voxel

logger = logging.getLogger(__name__)


def cached_case_bytes(item: Any) -> int:
    """Bytes of the tensors in one cached item (a dict of them, or a list of such dicts): what the cache holds."""
    if isinstance(item, torch.Tensor | np.ndarray):
        return int(item.nbytes)
    if isinstance(item, Mapping):
        return sum(cached_case_bytes(value) for value in item.values())
    if isinstance(item, list | tuple):
        return sum(cached_case_bytes(value) for value in item)
    return 0


def _gb(size: float) -> str:
    """Bytes as GB for the log: two decimals, or two significant digits below 0.1 GB (a test's tiny cases)."""
    return f"{size / GB:.2f}" if size >= 0.1 * GB else f"{size / GB:.2g}"


def _first_random(transform: Compose) -> int | None:
    """Where MONAI's caching datasets stop: the first randomizable transform, or one that is not a MONAI Transform."""
    return transform.get_index_of_first(lambda t: isinstance(t, RandomizableTrait) or not isinstance(t, Transform))


def _case_voxels(case: Mapping) -> int:
    """Voxels of a case's image grid, from the NIfTI header alone (a list of modality files share one grid)."""
    image = case["image"]
    path = image[0] if isinstance(image, list | tuple) else image
    return int(np.prod(nib.load(path).header.get_data_shape()[:3]))


def cases_that_fit(data: Sequence[Mapping], transform: Compose, budget: int) -> int:
    """How many of the first cases the cache can hold in `budget` bytes, estimated without loading them all.

    The first case runs through the deterministic transforms and is measured (`cached_case_bytes`); every other case is
    taken to be that size scaled by its image's voxel count over the first's (NIfTI headers only), times `SIZE_MARGIN`
    because the cache holds each brain's box, whose share of the grid varies from case to case. The first case is
    transformed twice (here, then by CacheDataset); the log reports the bytes actually held.
    """
    if not data or budget <= 0:
        return 0
    measured = cached_case_bytes(transform(deepcopy(data[0]), end=_first_random(transform), threading=True))
    per_voxel = measured / _case_voxels(data[0])
    total, count = measured, 0
    while total <= budget:
        count += 1
        if count == len(data):
            break
        total += per_voxel * _case_voxels(data[count]) * SIZE_MARGIN
    return count


def memory_cache(
    data: Sequence[dict],
    transform: Compose,
    cache_rate: float | str,
    cache_memory_gb: float | str,
    num_workers: int | None,
    progress: bool,
) -> CacheDataset:
    """CacheDataset of `cache_rate` of the cases, or (`auto`) as many as fit in `cache_memory_gb`; logs the outcome."""
    if cache_rate == "auto":
        budget, why = cache_budget(cache_memory_gb)
        count, rate = cases_that_fit(data, transform, budget), 1.0
        why = f"of a {_gb(budget)} GB budget ({why})"
    else:
        count, rate, why = len(data), float(cache_rate), f"(cache_rate {cache_rate})"
    # no deep copy per item (a third of its time): the random part starts with a crop and a cast that copies, so the
    # cached cases are never written to (tests/swin_brats/test_datasets.py checks it)
    dataset = CacheDataset(
        data, transform, cache_num=count, cache_rate=rate, num_workers=num_workers, progress=progress, copy_cache=False
    )
    held = sum(cached_case_bytes(item) for item in dataset._cache)
    rest = len(dataset) - dataset.cache_num
    logger.info(
        f"cache: {dataset.cache_num} of {len(dataset)} training case(s) in memory, {_gb(held)} GB {why}"
        + (f"; {rest} loaded each epoch" if rest else "")
    )
    return dataset


class SharedPersistentDataset(PersistentDataset):
    """PersistentDataset that several processes, ranks or nodes can fill in one `cache_dir`.

    MONAI 1.6.1 writes each file in a system temporary folder and `shutil.move`s it into `cache_dir`: across
    filesystems that is a copy then a delete, which another process can read half-done, and it re-raises the
    RuntimeError of a truncated file. Here each file is written under a unique name beside its final one and
    `os.replace`d (atomic on one filesystem), and a file that does not load is a miss: recomputed and replaced.
    """

    def _cachecheck(self, item_transformed: Any) -> Any:
        if self.cache_dir is None:
            return super()._cachecheck(item_transformed)
        hashfile = self.cache_dir / f"{self.hash_func(item_transformed).decode('utf-8')}{self.transform_hash}.pt"
        if hashfile.is_file():
            try:
                return torch.load(hashfile, weights_only=self.weights_only)
            except Exception as error:  # truncated, corrupt or from another torch: recompute it
                logger.warning(f"unreadable cache file {hashfile} ({first_line(error)}): recomputing it")
        item = self._pre_transform(deepcopy(item_transformed))  # keep the original hashed
        self._save(item, hashfile)
        return item

    def _save(self, item: Any, hashfile: Path) -> None:
        partial = None
        try:
            handle, partial = tempfile.mkstemp(
                dir=hashfile.parent, prefix=f".{hashfile.name}.{os.getpid()}.", suffix=".partial"
            )
            with os.fdopen(handle, "wb") as file:
                torch.save(
                    convert_to_tensor(item, convert_numeric=False, track_meta=self.track_meta),
                    file,
                    pickle_module=look_up_option(self.pickle_module, SUPPORTED_PICKLE_MOD),
                    pickle_protocol=self.pickle_protocol,
                )
            os.chmod(partial, 0o644)  # mkstemp creates owner-only files; other users may share the cache
            os.replace(partial, hashfile)
        except PermissionError:  # a read-only cache_dir: the item is used uncached, as MONAI does
            pass
        finally:
            if partial is not None:
                Path(partial).unlink(missing_ok=True)


def cached_dataset(
    data: Sequence[dict],
    transform: Callable,
    cache: str = "memory",
    cache_rate: float | str = 1.0,
    cache_dir: str | None = None,
    num_workers: int | None = 1,
    progress: bool = True,
    cache_memory_gb: float | str = "auto",
) -> Dataset:
    """`memory`: CacheDataset (`memory_cache`); `disk`: SharedPersistentDataset in `cache_dir`; `none`: Dataset."""
    if isinstance(transform, Compose):
        # caching stops at the first randomizable transform, and a nested Compose counts as one
        transform = transform.flatten()
    if cache == "memory":
        return memory_cache(data, transform, cache_rate, cache_memory_gb, num_workers, progress)
    if cache == "disk":
        if not cache_dir:
            raise ValueError("cache 'disk' needs --cache_dir, a folder for the preprocessed cases.")
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        # the pickled deterministic transforms (every setting, landmarks included) are part of each cache key, so
        # changed preprocessing never reuses stale files; MONAI's json_hashing would keep only the class names
        return SharedPersistentDataset(data, transform, cache_dir=cache_dir, hash_transform=pickle_hashing)
    if cache == "none":
        return Dataset(data, transform)
    raise ValueError(f"Unknown cache '{cache}'; choose one of: {', '.join(CACHES)}.")


def loader_workers(requested: int | str, dataset: Dataset, num_workers: int) -> int:
    """`auto`: 0 when the memory cache holds every case (the loader's own thread crops and flips), else `num_workers`
    processes to load the rest; a number is taken as it is."""
    if requested != "auto":
        return int(requested)
    return 0 if isinstance(dataset, CacheDataset) and dataset.cache_num >= len(dataset) else num_workers
