"""Label conventions: regions from labels, labels painted back from regions, and refusal of unknown values."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import ConvertToMultiChannelBasedOnBratsClasses
from scripts.labels import (
    CONVENTIONS,
    UNSCANNED_CONVENTION,
    LabelsToRegionsd,
    RegionsToLabelsd,
    auto_convention,
    get_convention,
    labels_to_regions,
    nest_regions,
)
from scripts.layouts import LAYOUTS

EXPECTED_REGIONS = {  # label value -> (TC, WT, ET), written out by hand from each dataset's documentation
    "brats2021": {0: (0, 0, 0), 1: (1, 1, 0), 2: (0, 1, 0), 4: (1, 1, 1)},
    "brats2023": {0: (0, 0, 0), 1: (1, 1, 0), 2: (0, 1, 0), 3: (1, 1, 1)},
    "msd": {0: (0, 0, 0), 1: (0, 1, 0), 2: (1, 1, 0), 3: (1, 1, 1)},
}


def _label_volume(values: list[int]) -> torch.Tensor:
    """A (1, 4, 4, len) label map whose z-slices hold the given values."""
    volume = torch.zeros((1, 4, 4, len(values)), dtype=torch.int64)
    for z, value in enumerate(values):
        volume[..., z] = value
    return volume


@pytest.mark.parametrize("name", list(EXPECTED_REGIONS))
def test_regions_match_the_dataset_definition(name: str) -> None:
    values = list(EXPECTED_REGIONS[name])
    regions = labels_to_regions(_label_volume(values), CONVENTIONS[name])
    assert regions.shape == (3, 4, 4, len(values)) and regions.dtype == torch.float32
    for z, value in enumerate(values):
        assert tuple(int(regions[c, 0, 0, z]) for c in range(3)) == EXPECTED_REGIONS[name][value]


@pytest.mark.parametrize("name", list(EXPECTED_REGIONS))
def test_round_trip_restores_every_label(name: str) -> None:
    rng = np.random.default_rng(0)
    values = sorted(EXPECTED_REGIONS[name])
    label = torch.as_tensor(rng.choice(values, size=(1, 8, 8, 8)))
    painted = RegionsToLabelsd("x", CONVENTIONS[name])(LabelsToRegionsd("x", CONVENTIONS[name])({"x": label}))["x"]
    assert painted.dtype == torch.uint8 and painted.shape == label.shape
    assert torch.equal(painted.long(), label)


@pytest.mark.parametrize(("name", "et_label"), [("brats2021", 4), ("brats2023", 3)])
def test_brats_conventions_agree_with_monai_converter(name: str, et_label: int) -> None:
    label = torch.as_tensor(np.random.default_rng(1).choice([0, 1, 2, et_label], size=(1, 6, 6, 6)))
    ours = labels_to_regions(label, CONVENTIONS[name])
    monai = ConvertToMultiChannelBasedOnBratsClasses(et_label=et_label)(label)
    assert torch.equal(ours.bool(), torch.as_tensor(monai).bool())


def test_painting_enforces_nesting() -> None:
    """An ET voxel outside TC/WT is still painted ET; a TC voxel outside WT is painted core."""
    regions = torch.zeros((3, 1, 1, 3))
    regions[2, 0, 0, 0] = 1  # ET only
    regions[0, 0, 0, 1] = 1  # TC only
    regions[1, 0, 0, 2] = 1  # WT only
    painted = RegionsToLabelsd("x", CONVENTIONS["msd"])({"x": regions})["x"]
    assert painted.flatten().tolist() == [3, 2, 1]


def test_unknown_label_values_name_the_file_and_values() -> None:
    label = MetaTensor(_label_volume([0, 1, 4, 7]), meta={"filename_or_obj": "/data/case_7/case_7-seg.nii.gz"})
    with pytest.raises(ValueError, match=r"case_7-seg\.nii\.gz.*\[4, 7\].*brats2023"):
        labels_to_regions(label, CONVENTIONS["brats2023"])


def test_convention_resolution() -> None:
    assert get_convention("auto", "msd").name == "msd"
    assert get_convention("brats2023", "brats2021").name == "brats2023"
    with pytest.raises(ValueError, match="Unknown label_convention 'brats2019'"):
        get_convention("brats2019", None)
    with pytest.raises(ValueError, match="could be detected"):
        get_convention("auto", None)


def test_nesting_equals_paint_then_unpaint() -> None:
    regions = torch.as_tensor(np.random.default_rng(2).integers(0, 2, size=(3, 5, 5, 5)), dtype=torch.float32)
    painted = RegionsToLabelsd("x", CONVENTIONS["brats2021"])({"x": regions})["x"]
    assert torch.equal(nest_regions(regions), labels_to_regions(painted, CONVENTIONS["brats2021"]))


def test_one_auto_rule_layout_first_then_values() -> None:
    """A known layout decides; label values only where none is known (a lone file); with neither, the unscanned one."""
    four = np.array([0, 1, 2, 4])
    assert auto_convention("brats2023", [four]).name == "brats2023"  # the layout wins over the values
    assert auto_convention("msd").name == "msd"
    assert auto_convention(None, [four]).name == "brats2021"
    assert auto_convention(None, [np.array([0, 1, 2, 3])], four_dimensional=True).name == "msd"
    assert auto_convention(None).name == UNSCANNED_CONVENTION
    assert all(layout.convention in CONVENTIONS for layout in LAYOUTS.values())
