"""Input transforms the configs share: canonical channel order and the `normalization` switch."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import torch
from monai.config import KeysCollection
from monai.transforms import Compose, MapTransform, NormalizeIntensityd

from scripts.histogram import HistogramStandardized

NORMALIZATIONS = ("zscore", "histogram")


class ReorderChannelsd(MapTransform):
    """Put image channels in the network's order (FLAIR, T1ce, T1, T2); MONAI has no channel-permutation transform."""

    def __init__(self, keys: KeysCollection, indices: Sequence[int], allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.indices = list(indices)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            if image.shape[0] != len(self.indices):
                source = getattr(image, "meta", {}).get("filename_or_obj", key)
                raise ValueError(f"{source}: expected {len(self.indices)} image channels, found {image.shape[0]}.")
            if self.indices != sorted(self.indices):
                d[key] = image[self.indices]
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
