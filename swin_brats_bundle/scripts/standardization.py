"""The MONAI transform of Nyúl–Udupa histogram standardisation: each channel mapped onto learned landmarks."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from pathlib import Path

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from scripts.landmarks import load_landmarks, quantiles


class HistogramStandardized(MapTransform):
    """Nyúl–Udupa standardisation of each channel's nonzero voxels onto learned landmarks; background stays 0.

    Torch-native and deterministic (cacheable, GPU-capable). With `zscore` the mapped voxels are then z-scored over
    the same mask: `NormalizeIntensityd(nonzero=True)` would instead drop brain voxels that map to exactly 0.
    """

    def __init__(
        self,
        keys: KeysCollection,
        landmarks: str | Path,
        zscore: bool = True,
        allow_missing_keys: bool = False,
        debug: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        record = load_landmarks(landmarks, debug)
        self.source = str(landmarks)
        self.percentiles = torch.tensor(record["percentiles"], dtype=torch.float64) / 100.0
        self.landmarks = torch.tensor(record["landmarks"], dtype=torch.float64)
        self.zscore = zscore

    def standardize_channel(self, values: torch.Tensor, channel: int) -> torch.Tensor:
        """Map a 1-D tensor of one channel's brain voxels piecewise-linearly onto that channel's standard landmarks."""
        x = values.to(torch.float32)
        src = torch.cummax(quantiles(x, self.percentiles), dim=0).values
        # Ties (integer data, tiny masks) would give zero-width segments: force a small gap, many float32 ulps wide.
        gap = 1e-5 * float(src.abs().max().clamp(min=1e-12))
        src = src[0] + torch.cat([src.new_zeros(1), src.diff().clamp(min=gap).cumsum(0)])
        dst = self.landmarks[channel].to(x)
        # Segment of each voxel; values beyond the first/last landmark extrapolate along the end segments.
        idx = (torch.searchsorted(src, x, right=True) - 1).clamp(0, len(src) - 2)
        slope = (dst[1:] - dst[:-1]) / (src[1:] - src[:-1])
        y = dst[idx] + slope[idx] * (x - src[idx])
        if self.zscore:
            std = y.std(unbiased=False)
            y = (y - y.mean()) / (std if std > 0 else 1.0)
        return y

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = torch.as_tensor(d[key])
            if image.shape[0] != self.landmarks.shape[0]:
                source = getattr(image, "meta", {}).get("filename_or_obj", key)
                raise ValueError(f"{source}: {image.shape[0]} channels, {self.source} has {self.landmarks.shape[0]}.")
            out = image.to(torch.float32, copy=True)  # never modify the input (it may be a cached item)
            plain = out.as_tensor() if isinstance(out, MetaTensor) else out
            for channel in range(plain.shape[0]):
                mask = plain[channel] != 0
                if mask.any():
                    plain[channel][mask] = self.standardize_channel(plain[channel][mask], channel).to(plain.dtype)
            d[key] = out
        return d
