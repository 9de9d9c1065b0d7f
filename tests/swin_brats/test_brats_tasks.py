"""Every BraTS task of today: conventions (labels, regions, painting, scored groups) and the case-prefix layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scripts.cases import discover
from scripts.labels import (
    BRATS_EVALUATION,
    CONVENTIONS,
    RegionsToLabelsd,
    check_convention,
    get_convention,
    labels_to_regions,
    painted_convention,
    regions_to_labels,
)
from scripts.layouts import LAYOUTS, DatasetLayoutError, layout_of_file

# label value -> the regions holding it, in the convention's channel order; written out by hand from the tasks' docs
# (notes/brats_tasks.md): BraTS 2024 GLI and MET keep the resection cavity outside the whole tumour; PED's 1 is ET.
EXPECTED_REGIONS = {
    "brats2024": (("TC", "WT", "ET", "RC"), {0: (0, 0, 0, 0), 1: (1, 1, 0, 0), 2: (0, 1, 0, 0), 3: (1, 1, 1, 0),
                                             4: (0, 0, 0, 1)}),
    "met": (("TC", "WT", "ET", "RC"), {0: (0, 0, 0, 0), 1: (1, 1, 0, 0), 2: (0, 1, 0, 0), 3: (1, 1, 1, 0),
                                       4: (0, 0, 0, 1)}),
    "ped": (("WT", "TC", "ET", "CC"), {0: (0, 0, 0, 0), 1: (1, 1, 1, 0), 2: (1, 1, 0, 0), 3: (1, 1, 0, 1),
                                       4: (1, 0, 0, 0)}),
    "men": (("TC", "WT", "ET"), {0: (0, 0, 0), 1: (1, 1, 0), 2: (0, 1, 0), 3: (1, 1, 1)}),
    "goat": (("TC", "WT", "ET"), {0: (0, 0, 0), 1: (1, 1, 0), 2: (0, 1, 0), 3: (1, 1, 1)}),
    "men_rt": (("GTV",), {0: (0,), 1: (1,)}),
}  # fmt: skip

# The groups of the brats-evaluation 0.0.10 configs (config_<name>.yaml: LabelGroup / LabelMergeGroup value_labels).
EVALUATION_GROUPS = {
    "gli": {"et": {3}, "netc": {1}, "snfh": {2}, "rc": {4}, "tc": {1, 3}, "wt": {1, 2, 3}},
    "mets": {"et": {3}, "rc": {4}, "tc": {1, 3}, "wt": {1, 2, 3}},
    "ped": {"et": {1}, "netc": {2}, "cc": {3}, "ed": {4}, "tc": {1, 2, 3}, "wt": {1, 2, 3, 4}},
    "MenPre": {"et": {3}, "tc": {1, 3}, "wt": {1, 2, 3}},
    "GoAT": {"et": {3}, "tc": {1, 3}, "wt": {1, 2, 3}},
    "MenRT": {"gtv": {1}},
}


def _label_volume(values: list[int]) -> torch.Tensor:
    volume = torch.zeros((1, 2, 2, len(values)), dtype=torch.int64)
    for z, value in enumerate(values):
        volume[..., z] = value
    return volume


@pytest.mark.parametrize("name", list(EXPECTED_REGIONS))
def test_regions_and_output_channels_follow_the_task(name: str) -> None:
    convention = CONVENTIONS[name]
    channels, per_value = EXPECTED_REGIONS[name]
    assert convention.region_names == channels  # the network's outputs: len(regions) channels
    values = list(per_value)
    regions = labels_to_regions(_label_volume(values), convention)
    assert regions.shape == (len(channels), 2, 2, len(values))
    for z, value in enumerate(values):
        assert tuple(int(regions[c, 0, 0, z]) for c in range(len(channels))) == per_value[value], value


@pytest.mark.parametrize("name", list(CONVENTIONS))
def test_every_convention_paints_every_label_back(name: str) -> None:
    convention = CONVENTIONS[name]
    check_convention(convention)
    label = torch.as_tensor(np.random.default_rng(0).choice(sorted(convention.allowed_values), size=(1, 6, 6, 6)))
    painted = regions_to_labels(labels_to_regions(label, convention), convention)
    assert painted.dtype == torch.uint8 and torch.equal(painted.long(), label)


def test_painting_order_settles_overlapping_predictions() -> None:
    """Where the network predicts a tumour region and the cavity (or the cyst and ET) at once, the later one wins."""
    gli, ped = CONVENTIONS["brats2024"], CONVENTIONS["ped"]
    both = torch.zeros((4, 1, 1, 1))
    both[[1, 3]] = 1  # WT and RC
    assert int(regions_to_labels(both, gli)) == 2  # tumour over the cavity painted before it
    cyst_and_et = torch.ones((4, 1, 1, 1))  # WT, TC, ET and CC
    assert int(regions_to_labels(cyst_and_et, ped)) == 1  # ET painted last


@pytest.mark.parametrize("name", [n for n, c in CONVENTIONS.items() if c.scoring == BRATS_EVALUATION])
def test_scored_groups_are_the_official_configs(name: str) -> None:
    convention = CONVENTIONS[name]
    expected = EVALUATION_GROUPS[convention.evaluation_config]
    assert {group: set(values) for group, values in convention.groups} == expected


def test_a_region_mismatch_is_refused_in_one_line() -> None:
    """Four channels (a BraTS 2024 model) painted as BraTS 2023, whose three regions differ, stop naming both."""
    with pytest.raises(ValueError, match=r"4 predicted channels, but the 'brats2023' convention has 3 regions"):
        RegionsToLabelsd("pred", "brats2023")({"pred": torch.zeros((4, 2, 2, 2))})


def test_auto_paints_the_dataset_values_when_the_regions_match_else_the_models() -> None:
    brats2021, brats2024, ped = (CONVENTIONS[n] for n in ("brats2021", "brats2024", "ped"))
    assert painted_convention("auto", "brats2023", brats2021).name == "brats2023"  # same regions: the dataset's values
    assert painted_convention("auto", "brats2023", brats2024, layout="brats2023").name == "brats2024"  # GLI 2024
    assert painted_convention("auto", None, ped).name == "ped"  # nothing scanned: the model's
    with pytest.raises(ValueError, match=r"predicts brats2023 \(regions TC, WT, ET\).*labelled ped"):
        painted_convention("auto", "ped", CONVENTIONS["brats2023"], layout="brats_ped")
    assert get_convention("brats2024").groups[0] == ("et", frozenset({3}))


def _touch_case(root: Path, case_id: str, parts: tuple[str, ...] = ("t2f", "t1c", "t1n", "t2w", "seg")) -> None:
    (root / case_id).mkdir(parents=True)
    for part in parts:
        (root / case_id / f"{case_id}-{part}.nii.gz").touch()


@pytest.mark.parametrize(
    ("case_id", "layout", "convention"),
    [
        ("BraTS-GLI-00000-000", "brats2023", "brats2023"),
        ("BraTS-MEN-00000-000", "brats_men", "men"),
        ("BraTS-MET-00000-000", "brats_met", "met"),
        ("BraTS-PED-00000-000", "brats_ped", "ped"),
        ("BraTS-SSA-00000-000", "brats_ssa", "brats2023"),
        ("BraTS-GoAT-00000", "brats_goat", "goat"),
    ],
)
def test_the_case_prefix_names_the_task(tmp_path: Path, case_id: str, layout: str, convention: str) -> None:
    _touch_case(tmp_path, case_id)
    info = discover(tmp_path, num_folds=2)
    assert (info["layout"], info["label_convention"]) == (layout, convention)
    assert [c["case_id"] for c in info["training"]] == [case_id]
    assert layout_of_file(tmp_path / case_id / f"{case_id}-t2f.nii.gz") == layout
    assert LAYOUTS[layout].case_id(0) == case_id  # the synthetic writer names cases as the task does


def test_a_folder_mixing_tasks_is_refused(tmp_path: Path) -> None:
    _touch_case(tmp_path, "BraTS-PED-00000-000")
    _touch_case(tmp_path, "BraTS-MET-00001-000")
    with pytest.raises(DatasetLayoutError, match="mixes BraTS brain metastases .* and BraTS paediatric tumours"):
        discover(tmp_path)
