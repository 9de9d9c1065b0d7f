"""Post-processing of predicted regions as BraTS pipelines do it, alike in validation, evaluation, inference.

The rules work on binary region channels as a painted label map holds them (after `labels.NestRegionsd`) and keep them
so. They find TC, WT and ET by name in the convention's regions (PED orders them WT, TC, ET, CC); a rule whose
regions a convention lacks (MEN-RT has only GTV) leaves the prediction as it is. Sizes are in mm³, read from the
prediction's affine, so one setting means the same on a 1 mm and a 2 mm grid.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data.utils import affine_to_spacing
from monai.transforms import Activationsd, Compose, MapTransform
from scipy import ndimage

from scripts.labels import REGIONS, LabelConvention, NestRegionsd

ENHANCING = REGIONS.index("ET")
CORE = REGIONS.index("TC")
WHOLE = REGIONS.index("WT")
CONNECTIVITY = 3  # 26-connected in 3D


def voxel_volume_mm3(image: torch.Tensor) -> float:
    """Volume of one voxel of a (C, *spatial) image from its affine; 1 mm³ without one."""
    affine = getattr(image, "affine", None)
    if affine is None:
        return 1.0
    return float(np.prod(affine_to_spacing(torch.as_tensor(affine), r=image.ndim - 1).numpy()))


OTHER_REGION_THRESHOLD = 0.5
"""The threshold of a region other than TC, WT and ET (a resection cavity, a cystic component, a GTV)."""


class ThresholdRegionsd(MapTransform):
    """Binarise each region channel at its own probability threshold: `region_thresholds` for TC, WT and ET (in that
    order, wherever the convention's `regions` put them), `OTHER_REGION_THRESHOLD` for any other region.

    MONAI's `AsDiscreted` takes one threshold for every channel. A higher ET threshold keeps the few uncertain ET voxels
    that cost a case without enhancing tumour its whole ET score.
    """

    def __init__(
        self,
        keys: KeysCollection,
        thresholds: Sequence[float],
        regions: Sequence[str] = REGIONS,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        thresholds = [float(t) for t in thresholds]
        if len(thresholds) != len(REGIONS) or not all(0.0 < t < 1.0 for t in thresholds):
            raise ValueError(
                f"region_thresholds must be {len(REGIONS)} probabilities in (0, 1), one per region "
                f"({', '.join(REGIONS)}), got {thresholds}."
            )
        by_name = dict(zip(REGIONS, thresholds, strict=True))
        self.thresholds = [by_name.get(region, OTHER_REGION_THRESHOLD) for region in regions]

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            probabilities = d[key]
            shape = (len(self.thresholds),) + (1,) * (probabilities.ndim - 1)
            thresholds = torch.tensor(self.thresholds, dtype=probabilities.dtype, device=probabilities.device)
            d[key] = (probabilities >= thresholds.view(shape)).to(probabilities.dtype)
        return d


def remove_small_components(regions: torch.Tensor, min_voxels: float) -> torch.Tensor:
    """Clear every connected component (26-connected) of each channel smaller than `min_voxels`."""
    kept = regions.clone()
    structure = np.ones((CONNECTIVITY,) * (regions.ndim - 1), dtype=bool)
    for channel in range(regions.shape[0]):
        mask = regions[channel].detach().cpu().numpy() > 0.5
        components, count = ndimage.label(mask, structure=structure)
        if count == 0:
            continue
        sizes = np.bincount(components.ravel())
        small = np.flatnonzero(sizes < min_voxels)
        drop = np.isin(components, small[small > 0])
        kept[channel][torch.from_numpy(drop).to(regions.device)] = 0
    return kept


class SizeRuled(MapTransform):
    """A post-processing rule with a size in mm³ (`min_size_mm3`, 0: off), applied per key as `rule(regions,
    min_voxels)` with the size turned into voxels from the prediction's affine; `channels` maps the convention's
    region names to their channels (default TC, WT, ET)."""

    def __init__(
        self,
        keys: KeysCollection,
        min_size_mm3: float,
        convention: LabelConvention | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if min_size_mm3 < 0:
            raise ValueError(f"min_size_mm3 must be 0 (off) or positive, got {min_size_mm3}.")
        self.min_size_mm3 = float(min_size_mm3)
        names = REGIONS if convention is None else convention.region_names
        self.channels = {name: index for index, name in enumerate(names)}

    def rule(self, regions: torch.Tensor, min_voxels: float) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        if self.min_size_mm3 == 0:
            return d
        for key in self.key_iterator(d):
            d[key] = self.rule(d[key], self.min_size_mm3 / voxel_volume_mm3(d[key]))
        return d


class RemoveSmallComponentsd(SizeRuled):
    """Remove islands smaller than `min_size_mm3` from each region channel on its own.

    MONAI's `RemoveSmallObjectsd` labels the stacked channels as one 4-D image, so an island of TC or ET is joined
    (through the channel axis) to the WT voxels at the same places and is never removed (checked with MONAI 1.6.1 and
    scikit-image 0.26, which it also needs); this labels each channel apart with SciPy.
    With nested input the output stays nested: an island of an inner region lies inside a larger one of the outer.
    `min_size_mm3` 0 switches the rule off.
    """

    def rule(self, regions: torch.Tensor, min_voxels: float) -> torch.Tensor:
        return remove_small_components(regions, min_voxels)


def enhancing_to_core(regions: torch.Tensor, min_voxels: float, enhancing: int = ENHANCING) -> torch.Tensor:
    """Clear the ET channel when its voxels, all together, are fewer than `min_voxels` (TC still holds them)."""
    if not 0 < float((regions[enhancing] > 0.5).sum()) < min_voxels:
        return regions
    regions = regions.clone()
    regions[enhancing] = 0
    return regions


class SmallEnhancingToCored(SizeRuled):
    """Relabel a predicted enhancing tumour smaller than `min_size_mm3` in all as necrotic core.

    BraTS scores a case without enhancing tumour 1 for an empty ET prediction and 0 for any false positive, so a few
    stray ET voxels cost the whole case; the voxels stay tumour core (TC keeps them). MONAI has no such rule.
    `min_size_mm3` 0 switches it off.
    """

    def rule(self, regions: torch.Tensor, min_voxels: float) -> torch.Tensor:
        if "ET" not in self.channels or "TC" not in self.channels:
            return regions
        return enhancing_to_core(regions, min_voxels, self.channels["ET"])


def remove_coreless_lesions(
    regions: torch.Tensor, min_voxels: float, whole_channel: int = WHOLE, core_channel: int = CORE
) -> torch.Tensor:
    """Clear whole-tumour components without a tumour-core voxel smaller than `min_voxels`, if another has a core."""
    whole = regions[whole_channel].detach().cpu().numpy() > 0.5
    components, count = ndimage.label(whole, structure=np.ones((CONNECTIVITY,) * whole.ndim, dtype=bool))
    cored = np.unique(components[regions[core_channel].detach().cpu().numpy() > 0.5])
    cored = cored[cored > 0]
    if count == 0 or cored.size == 0:
        return regions
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    drop = np.setdiff1d(np.flatnonzero(sizes < min_voxels), np.append(cored, 0))
    if drop.size == 0:
        return regions
    kept = regions.clone()
    kept[:, torch.from_numpy(np.isin(components, drop)).to(regions.device)] = 0
    return kept


class RemoveCorelessLesionsd(SizeRuled):
    """Remove predicted lesions (whole-tumour components) that hold no tumour core and are under `min_size_mm3`,
    in a case where some lesion has a core: edema-like islands away from the tumour, false positives of a model that
    has seen few cases. A case whose lesions all lack a core keeps them (a tumour without a predicted core is still
    found), and so does a large coreless lesion. MONAI has no rule that looks at one region inside another.
    `min_size_mm3` 0 switches it off.
    """

    def rule(self, regions: torch.Tensor, min_voxels: float) -> torch.Tensor:
        if "WT" not in self.channels or "TC" not in self.channels:
            return regions
        return remove_coreless_lesions(regions, min_voxels, self.channels["WT"], self.channels["TC"])


def region_postprocessing(
    keys: KeysCollection = "pred",
    min_component_mm3: float = 0.0,
    min_enhancing_mm3: float = 0.0,
    min_coreless_lesion_mm3: float = 0.0,
    thresholds: Sequence[float] = (0.5, 0.5, 0.5),
    convention: LabelConvention | None = None,
) -> Compose:
    """Logits -> binary regions as a painted map holds them -> the three rules above: the one chain every workflow
    applies (default: the TC, WT, ET channels of the BraTS conventions)."""
    regions = REGIONS if convention is None else convention.region_names
    return Compose(
        [
            Activationsd(keys=keys, sigmoid=True),
            ThresholdRegionsd(keys=keys, thresholds=thresholds, regions=regions),
            NestRegionsd(keys=keys, convention=convention),
            RemoveSmallComponentsd(keys=keys, min_size_mm3=min_component_mm3, convention=convention),
            RemoveCorelessLesionsd(keys=keys, min_size_mm3=min_coreless_lesion_mm3, convention=convention),
            SmallEnhancingToCored(keys=keys, min_size_mm3=min_enhancing_mm3, convention=convention),
        ]
    )
