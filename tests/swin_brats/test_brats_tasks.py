"""Every BraTS task of today: conventions (labels, regions, painting, scored groups) and the case-prefix layouts."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scripts.case_metrics import CaseMetricsWriter
from scripts.cases import discover
from scripts.labels import (
    BRATS_EVALUATION,
    CONVENTIONS,
    RegionsToLabelsd,
    check_convention,
    get_convention,
    labels_to_regions,
    nest_regions,
    painted_convention,
    regions_to_labels,
)
from scripts.layouts import LAYOUTS, DatasetLayoutError, layout_of_file
from scripts.metrics import (
    METRIC_COLUMNS,
    case_metrics,
    hd95_pooled,
    lesion_wise,
    matched_lesions,
    metric_columns,
    region_metrics,
)

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


# --- scoring: each task as its challenge scores it (bench/brats_eval checks these against brats-evaluation itself) ---


def test_the_2021_2023_numbers_are_unchanged() -> None:
    """The old conventions score their painted groups exactly as `region_metrics` scores the TC/WT/ET channels."""
    rng = np.random.default_rng(4)
    label = torch.as_tensor(rng.choice([0, 0, 0, 1, 2, 4], size=(24, 24, 16)))
    truth = labels_to_regions(label, CONVENTIONS["brats2021"])
    pred = nest_regions(torch.as_tensor(rng.integers(0, 2, size=(3, 24, 24, 16)), dtype=torch.float32))
    for name in ("brats2021", "msd"):
        ours = case_metrics(pred.numpy(), truth.numpy(), CONVENTIONS[name], (1.0, 2.0, 1.0))
        assert list(ours) == METRIC_COLUMNS == metric_columns(CONVENTIONS[name])
        assert ours == region_metrics(pred.numpy(), truth.numpy(), (1.0, 2.0, 1.0))


def test_lesions_are_matched_one_to_one_and_averaged_over_matches() -> None:
    """Two true lesions, one found exactly, one missed, one false positive: lesion Dice 1 (the mean over matched
    pairs; misses and false positives only in the counts), unlike the 2023 scripts (which average them in as 0)."""
    truth, pred = np.zeros((20, 20, 20), bool), np.zeros((20, 20, 20), bool)
    truth[2:5, 2:5, 2:5] = truth[12:15, 12:15, 12:15] = True
    pred[2:5, 2:5, 2:5] = pred[2:4, 14:17, 2:4] = True
    scores = matched_lesions(pred, truth, (1.0, 1.0, 1.0))
    assert (scores.dice, scores.hd95, scores.truth, scores.missed, scores.false_positive) == (1.0, 0.0, 2, 1, 1)
    assert lesion_wise(pred, truth, (1.0, 1.0, 1.0), dilation_iterations=0).dice == pytest.approx(1 / 3)
    assert np.isnan(matched_lesions(pred & False, truth & False, (1.0, 1.0, 1.0)).dice)
    nothing = matched_lesions(pred & False, truth, (1.0, 1.0, 1.0))
    assert (nothing.dice, nothing.hd95, nothing.missed) == (0.0, 373.0, 2)


def test_hd95_pools_both_surfaces() -> None:
    """Truth voxels at z=0 and z=10, the prediction only the first: distances 0, 10 (truth) and 0 (prediction);
    the 95th percentile of the three pooled is 9.0, where the larger directional 95th percentile would be 9.5."""
    truth, pred = np.zeros((3, 3, 12), bool), np.zeros((3, 3, 12), bool)
    truth[1, 1, 0] = truth[1, 1, 10] = pred[1, 1, 0] = True
    assert hd95_pooled(pred, truth, (1.0, 1.0, 1.0)) == pytest.approx(9.0)


def test_a_post_treatment_case_is_scored_on_its_six_groups(tmp_path: Path) -> None:
    """metrics.csv and summary.json of a BraTS 2024 GLI evaluation: the official groups, NaN where both are empty."""
    gli = CONVENTIONS["brats2024"]
    label = torch.zeros((1, 16, 16, 16), dtype=torch.int64)
    label[0, 2:10, 2:10, 2:10], label[0, 4:8, 4:8, 4:8], label[0, 12:15, 12:15, 12:15] = 2, 3, 4  # no NETC
    regions = labels_to_regions(label, gli)
    writer = CaseMetricsWriter(str(tmp_path), convention=gli, num_pictures=1)
    row = writer.add_case({"pred": regions, "label": regions, "image": torch.ones((4, 16, 16, 16))})
    assert [c for c in row if c.startswith("dice_")] == [f"dice_{g}" for g in ("et", "netc", "snfh", "rc", "tc", "wt")]
    assert row["dice_rc"] == row["lesion_dice_rc"] == 1.0 and np.isnan(row["dice_netc"])
    engine = SimpleNamespace(state=SimpleNamespace())
    writer.write(engine)
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header == ["case_id", *metric_columns(gli)] and "lesions_false_positive_rc" in header
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["label_convention"], summary["scoring"]) == ("brats2024", BRATS_EVALUATION)
    assert list((tmp_path / "pictures").glob("*.png"))  # the pictures paint the cavity too
