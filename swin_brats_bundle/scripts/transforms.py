"""Input transforms the configs share: thread-safe loading, canonical channel order and the `normalization` switch."""

from __future__ import annotations

import threading
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import Compose, LoadImaged, MapTransform, NormalizeIntensityd

from scripts.datalist import CASE_CHANNEL_INDICES
from scripts.layouts import IDENTITY_CHANNEL_INDICES
from scripts.standardization import HistogramStandardized

NORMALIZATIONS = ("zscore", "histogram")


class LoadImagePerThreadd(MapTransform):
    """`LoadImaged` with one loader per thread. MONAI 1.6.1's NibabelReader keeps the file list of its last `read` on
    itself, so the threads that fill a `CacheDataset` could pair one case's image with another's label file list (a
    4-modality image came back with 1 channel); MONAI has no thread-safe loader."""

    def __init__(self, keys: KeysCollection, **loader_kwargs: Any) -> None:
        super().__init__(keys, loader_kwargs.get("allow_missing_keys", False))
        self.loader_kwargs = {"keys": keys, **loader_kwargs}
        self._per_thread = threading.local()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        if not hasattr(self._per_thread, "loader"):
            self._per_thread.loader = LoadImaged(**self.loader_kwargs)
        return self._per_thread.loader(data)

    def __getstate__(self) -> dict[str, Any]:
        # pickled for PersistentDataset's cache key and by spawned workers: settings only, never the loaders
        return {key: value for key, value in self.__dict__.items() if key != "_per_thread"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._per_thread = threading.local()


class ReorderChannelsd(MapTransform):
    """Put image channels in the network's order (FLAIR, T1ce, T1, T2); MONAI has no channel-permutation transform.

    `indices` "auto" takes each case's own `channel_indices` item, which `datalist.inference_cases` sets from the
    dataset it scanned; a case without one (a MONAI Label or MONAI Deploy input) is taken to be in the network's order.
    """

    def __init__(self, keys: KeysCollection, indices: Sequence[int] | str = "auto", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        if isinstance(indices, str):
            if indices != "auto":
                raise ValueError(f"channel_indices must be 'auto' or a permutation of 0-3, got {indices!r}.")
        elif sorted(indices) != list(IDENTITY_CHANNEL_INDICES):
            raise ValueError(f"channel_indices must be 'auto' or a permutation of 0-3, got {list(indices)}.")
        self.indices = indices if isinstance(indices, str) else list(indices)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        own = d.pop(CASE_CHANNEL_INDICES, None)
        indices = self.indices if self.indices != "auto" else list(own if own is not None else IDENTITY_CHANNEL_INDICES)
        for key in self.key_iterator(d):
            image = d[key]
            if image.shape[0] != len(indices):
                source = getattr(image, "meta", {}).get("filename_or_obj", key)
                raise ValueError(f"{source}: expected {len(indices)} image channels, found {image.shape[0]}.")
            if indices != sorted(indices):
                d[key] = image[indices]
        return d


def normalization_transform(
    normalization: str, keys: KeysCollection = "image", landmarks: str | Path | None = None, debug: bool = False
) -> Compose:
    """Deterministic intensity normalisation selected by the `normalization` config key.

    `zscore`: per channel over nonzero voxels. `histogram`: Nyúl–Udupa standardisation onto the `landmarks` file,
    then z-score over the same voxels.
    """
    if normalization == "zscore":
        return Compose([NormalizeIntensityd(keys=keys, nonzero=True, channel_wise=True)])
    if normalization == "histogram":
        if landmarks is None:
            raise ValueError("normalization 'histogram' needs a landmarks file (the `landmarks` config key).")
        return Compose([HistogramStandardized(keys=keys, landmarks=landmarks, zscore=True, debug=debug)])
    raise ValueError(f"Unknown normalization '{normalization}'; choose one of: {', '.join(NORMALIZATIONS)}.")
