"""The training dataset behind the `cache` switch: transforms up to the first random one run once, not every epoch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from monai.data import CacheDataset, Dataset, PersistentDataset
from monai.data.utils import pickle_hashing
from monai.transforms import Compose

CACHES = ("memory", "disk", "none")


def cached_dataset(
    data: Sequence[dict],
    transform: Callable,
    cache: str = "memory",
    cache_rate: float = 1.0,
    cache_dir: str | None = None,
    num_workers: int | None = 1,
    progress: bool = True,
) -> Dataset:
    """`memory`: CacheDataset (`cache_rate` of the cases in RAM); `disk`: PersistentDataset in `cache_dir`; `none`."""
    if isinstance(transform, Compose):
        # caching stops at the first randomizable transform, and a nested Compose counts as one
        transform = transform.flatten()
    if cache == "memory":
        # no deep copy per item (a third of its time): the random part starts with a crop and then only makes new
        # tensors, so the cached cases are never written to (tests/swin_brats/test_datasets.py checks it)
        return CacheDataset(
            data, transform, cache_rate=cache_rate, num_workers=num_workers, progress=progress, copy_cache=False
        )
    if cache == "disk":
        if not cache_dir:
            raise ValueError("cache 'disk' needs --cache_dir, a folder for the preprocessed cases.")
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        # the pickled deterministic transforms (every setting, landmarks included) are part of each cache key, so
        # changed preprocessing never reuses stale files; MONAI's json_hashing would keep only the class names
        return PersistentDataset(data, transform, cache_dir=cache_dir, hash_transform=pickle_hashing)
    if cache == "none":
        return Dataset(data, transform)
    raise ValueError(f"Unknown cache '{cache}'; choose one of: {', '.join(CACHES)}.")
