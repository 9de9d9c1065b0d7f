"""Post-processing on hand-made region maps: small islands removed per region, large ones untouched, coreless lesions,
the ET rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import BUNDLE  # noqa: F401  (puts the bundle on sys.path)
from monai.data import MetaTensor
from scripts.postprocessing import (
    RemoveCorelessLesionsd,
    RemoveSmallComponentsd,
    SmallEnhancingToCored,
    ThresholdRegionsd,
    region_postprocessing,
)

TC, WT, ET = 0, 1, 2


def _regions(spacing_mm: float = 1.0) -> MetaTensor:
    """(3, 24, 24, 24) nested regions: a 10³ tumour with a 6³ core holding a 4³ ET, and separate islands.

    Islands: a 2³ WT-only island (8 voxels) at one corner and a 3³ WT island with a 1-voxel ET inside it.
    """
    regions = torch.zeros(3, 24, 24, 24)
    regions[WT, 2:12, 2:12, 2:12] = 1
    regions[TC, 4:10, 4:10, 4:10] = 1
    regions[ET, 5:9, 5:9, 5:9] = 1
    regions[WT, 20:22, 20:22, 20:22] = 1
    regions[WT, 15:18, 2:5, 15:18] = 1
    regions[TC, 16, 3, 16] = regions[ET, 16, 3, 16] = 1
    return MetaTensor(regions, affine=torch.diag(torch.tensor([spacing_mm, spacing_mm, spacing_mm, 1.0])))


def test_small_islands_go_per_region_and_the_large_tumour_stays_untouched() -> None:
    regions = _regions()
    out = RemoveSmallComponentsd("pred", min_size_mm3=30)({"pred": regions})["pred"]
    # the big tumour: every voxel of every region kept
    box = (slice(None), slice(0, 13), slice(0, 13), slice(0, 13))
    assert torch.equal(out[box], regions[box])
    # the 8-voxel and the 27-voxel WT islands are removed, with the TC/ET voxel inside the second
    assert out[WT].sum() == 1000 and out[WT, 20:22, 20:22, 20:22].sum() == 0 and out[:, 15:18, 2:5, 15:18].sum() == 0
    assert out[TC].sum() == 216 and out[ET].sum() == 64
    # nested afterwards: ET ⊂ TC ⊂ WT
    assert bool((out[ET] <= out[TC]).all() and (out[TC] <= out[WT]).all())


def test_island_sizes_are_in_mm3_so_the_grid_does_not_matter() -> None:
    # at 2 mm the 8-voxel island is 64 mm³: kept under a 30 mm³ threshold, removed under 100 mm³
    coarse = _regions(spacing_mm=2.0)
    kept = RemoveSmallComponentsd("pred", min_size_mm3=30)({"pred": coarse})["pred"]
    assert kept[WT, 20:22, 20:22, 20:22].sum() == 8
    removed = RemoveSmallComponentsd("pred", min_size_mm3=100)({"pred": coarse})["pred"]
    assert removed[WT, 20:22, 20:22, 20:22].sum() == 0 and removed[WT].sum() == 1000 + 27


def test_a_coreless_lesion_goes_beside_a_cored_one_unless_it_is_large_and_a_case_without_any_core_keeps_all() -> None:
    regions = _regions()  # coreless: the 8-voxel WT island; the 27-voxel island and the big tumour have a core
    regions[WT, 14:19, 14:19, 0:4] = 1  # a 100-voxel coreless lesion
    removed = RemoveCorelessLesionsd("pred", min_size_mm3=101)({"pred": regions})["pred"]
    assert removed[WT, 20:22, 20:22, 20:22].sum() == 0 and removed[WT, 14:19, 14:19, 0:4].sum() == 0
    assert (
        removed[WT].sum() == 1000 + 27
        and torch.equal(removed[TC], regions[TC])
        and torch.equal(removed[ET], regions[ET])
    )
    large_kept = RemoveCorelessLesionsd("pred", min_size_mm3=100)({"pred": regions})["pred"]  # 100 is not below 100
    assert large_kept[WT, 14:19, 14:19, 0:4].sum() == 100 and large_kept[WT, 20:22, 20:22, 20:22].sum() == 0
    coreless_case = regions.clone()
    coreless_case[TC] = coreless_case[ET] = 0  # no lesion has a core: nothing to compare with, all stay
    assert torch.equal(RemoveCorelessLesionsd("pred", min_size_mm3=1e9)({"pred": coreless_case})["pred"], coreless_case)
    # sizes in mm³: at 2 mm the 8-voxel island is 64 mm³
    coarse = _regions(spacing_mm=2.0)
    assert RemoveCorelessLesionsd("pred", min_size_mm3=64)({"pred": coarse})["pred"][WT, 20:22, 20:22, 20:22].sum() == 8
    assert RemoveCorelessLesionsd("pred", min_size_mm3=65)({"pred": coarse})["pred"][WT, 20:22, 20:22, 20:22].sum() == 0


def test_a_small_enhancing_tumour_becomes_core_and_a_large_one_stays() -> None:
    regions = _regions()  # ET: 64 + 1 = 65 voxels at 1 mm
    relabelled = SmallEnhancingToCored("pred", min_size_mm3=70)({"pred": regions})["pred"]
    assert relabelled[ET].sum() == 0
    assert torch.equal(relabelled[TC], regions[TC]) and torch.equal(relabelled[WT], regions[WT])  # still tumour core
    kept = SmallEnhancingToCored("pred", min_size_mm3=65)({"pred": regions})["pred"]  # 65 mm³ is not below 65
    assert torch.equal(kept, regions)


def test_zero_switches_each_rule_off_and_negative_sizes_are_refused() -> None:
    regions = _regions()
    for rule in (RemoveSmallComponentsd, RemoveCorelessLesionsd, SmallEnhancingToCored):
        assert torch.equal(rule("pred", min_size_mm3=0)({"pred": regions})["pred"], regions)
        with pytest.raises(ValueError, match="min_size_mm3 must be 0"):
            rule("pred", min_size_mm3=-1)


def test_the_chain_thresholds_nests_then_applies_both_rules() -> None:
    logits = torch.full((3, 24, 24, 24), -5.0)
    logits[ET, 6:8, 6:8, 6:8] = 5.0  # ET alone, without TC or WT: nesting adds them
    logits[WT, 20:22, 20:22, 20:22] = 5.0  # an 8-voxel island
    pred = MetaTensor(logits, affine=torch.eye(4))
    nested_only = region_postprocessing("pred")({"pred": pred})["pred"]
    assert nested_only[TC].sum() == nested_only[WT, :12].sum() == nested_only[ET].sum() == 8
    cleaned = region_postprocessing("pred", min_component_mm3=5, min_enhancing_mm3=20)({"pred": pred})["pred"]
    assert cleaned[ET].sum() == 0 and cleaned[TC].sum() == 8  # the 8 mm³ ET is core now
    cleaned = region_postprocessing("pred", min_coreless_lesion_mm3=10)({"pred": pred})["pred"]
    assert cleaned[WT].sum() == 8 and cleaned[WT, 20:22].sum() == 0  # the coreless island beside the cored one
    cleaned = region_postprocessing("pred", min_component_mm3=10)({"pred": pred})["pred"]
    assert cleaned.sum() == 0  # every island is 8 mm³
    assert np.isclose(float(cleaned.affine[0, 0]), 1.0)  # metadata carried for saving


def test_each_region_has_its_own_threshold_and_bad_thresholds_are_refused() -> None:
    probabilities = torch.full((3, 4, 4, 4), 0.55)
    probabilities[:, 0] = 0.65
    out = ThresholdRegionsd("pred", thresholds=(0.5, 0.5, 0.6))({"pred": MetaTensor(probabilities)})["pred"]
    assert out[TC].sum() == out[WT].sum() == 64 and out[ET].sum() == 16 and out[ET, 0].all()
    assert isinstance(out, MetaTensor)
    for bad in ((0.5, 0.5), (0.5, 0.5, 1.0), (0.0, 0.5, 0.5)):
        with pytest.raises(ValueError, match=r"region_thresholds must be 3 probabilities in \(0, 1\)"):
            ThresholdRegionsd("pred", thresholds=bad)
    logits = torch.logit(probabilities)
    chained = region_postprocessing("pred", thresholds=(0.5, 0.5, 0.6))({"pred": MetaTensor(logits)})["pred"]
    assert torch.equal(chained.as_tensor(), out.as_tensor())
