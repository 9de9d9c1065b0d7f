"""Metrics on constructed volumes whose answers are worked out by hand in the comments."""

import math

import numpy as np
import pytest
from scripts.labels import REGIONS
from scripts.metrics import (
    HD95_EMPTY_MM,
    METRIC_COLUMNS,
    hd95_mm,
    lesion_wise,
    region_metrics,
    summarise,
)

SPACING = (2.0, 1.0, 3.0)  # anisotropic on purpose: a mix-up of axes changes every distance below


def _box(shape: tuple[int, ...], start: tuple[int, ...], size: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(a, a + s) for a, s in zip(start, size, strict=True))] = True
    return mask


def _regions(et: np.ndarray, tc: np.ndarray | None = None, wt: np.ndarray | None = None) -> np.ndarray:
    """(3, ...) masks in network channel order TC, WT, ET."""
    by_name = {"ET": et, "TC": et if tc is None else tc, "WT": et if wt is None else wt}
    return np.stack([by_name[name] for name in REGIONS])


@pytest.mark.parametrize(
    ("axis", "shift", "hd95"),
    [
        # Truth: a 10^3 cube. Prediction: the same cube shifted `shift` voxels along `axis`. The prediction's far
        # face (100 of its 488 boundary voxels, > 5%) lies `shift` voxels beyond the truth's face, and no boundary
        # voxel is farther from the other boundary, so the 95th percentile equals that distance: shift * spacing.
        (0, 2, 4.0),  # 2 voxels x 2 mm
        (2, 1, 3.0),  # 1 voxel x 3 mm
        (1, 3, 3.0),  # 3 voxels x 1 mm
    ],
)
def test_shifted_cube(axis: int, shift: int, hd95: float) -> None:
    shape = (20, 20, 20)
    truth = _box(shape, (5, 5, 5), (10, 10, 10))
    prediction = np.roll(truth, shift, axis=axis)
    row = region_metrics(_regions(prediction), _regions(truth), SPACING)
    overlap = 100 * (10 - shift)  # voxels shared by the two cubes of 1000
    for region in ("et", "tc", "wt"):
        assert row[f"dice_{region}"] == pytest.approx(2 * overlap / 2000)
        assert row[f"iou_{region}"] == pytest.approx(overlap / (2000 - overlap))
        assert row[f"hd95_{region}"] == pytest.approx(hd95)
        assert row[f"sensitivity_{region}"] == pytest.approx(overlap / 1000)
        # True negatives: 8000 - (1000 + 1000 - overlap); negatives in truth: 7000.
        assert row[f"specificity_{region}"] == pytest.approx((8000 - 2000 + overlap) / 7000)
        # One lesion each, matched: lesion-wise equals region-wise.
        assert row[f"lesion_dice_{region}"] == pytest.approx(2 * overlap / 2000)
        assert row[f"lesion_hd95_{region}"] == pytest.approx(hd95)


def test_two_voxel_shift_values_written_out() -> None:
    """The docstring example: 10^3 cubes 2 voxels apart along the 2 mm axis."""
    truth = _box((20, 20, 20), (5, 5, 5), (10, 10, 10))
    row = region_metrics(_regions(np.roll(truth, 2, axis=0)), _regions(truth), SPACING)
    assert (row["dice_et"], row["iou_et"], row["hd95_et"]) == pytest.approx((0.8, 800 / 1200, 4.0))
    assert (row["sensitivity_wt"], row["specificity_wt"]) == pytest.approx((0.8, 6800 / 7000))


def test_hd95_is_a_percentile_not_the_maximum() -> None:
    # A lone voxel 10 voxels (20 mm) beyond the cube is 1 of 489 prediction boundary voxels: the 95th percentile
    # of the prediction->truth distances stays 0, and every truth boundary voxel is on the prediction's boundary.
    truth = _box((30, 20, 20), (2, 5, 5), (10, 10, 10))
    prediction = truth.copy()
    prediction[21, 10, 10] = True
    assert hd95_mm(prediction, truth, SPACING) == 0.0
    row = region_metrics(_regions(prediction), _regions(truth), SPACING)
    assert row["dice_et"] == pytest.approx(2000 / 2001)
    # Lesion-wise the lone voxel is a false positive: (1 + 0) / 2 and (0 + 373) / 2.
    assert row["lesion_dice_et"] == pytest.approx(0.5)
    assert row["lesion_hd95_et"] == pytest.approx(HD95_EMPTY_MM / 2)
    assert (row["lesions_truth_et"], row["lesions_missed_et"], row["lesions_false_positive_et"]) == (1, 0, 1)


def test_missed_lesion() -> None:
    # Two 4^3 truth lesions 16 voxels apart (far beyond the 3-voxel dilation); only the first is predicted.
    first, second = _box((40, 12, 12), (4, 4, 4), (4, 4, 4)), _box((40, 12, 12), (24, 4, 4), (4, 4, 4))
    row = region_metrics(_regions(first), _regions(first | second), SPACING)
    assert row["dice_et"] == pytest.approx(2 * 64 / (64 + 128))
    assert row["sensitivity_et"] == pytest.approx(0.5)
    # Lesion-wise: found lesion Dice 1 / HD95 0, missed lesion Dice 0 / HD95 373, averaged over 2 lesions.
    assert row["lesion_dice_et"] == pytest.approx(0.5)
    assert row["lesion_hd95_et"] == pytest.approx(373.0 / 2)
    assert (row["lesions_truth_et"], row["lesions_missed_et"], row["lesions_false_positive_et"]) == (2, 1, 0)


def test_extra_lesion() -> None:
    # Truth: one 4^3 lesion; prediction: that lesion plus a 2^3 blob 16 voxels away.
    truth = _box((40, 12, 12), (4, 4, 4), (4, 4, 4))
    prediction = truth | _box((40, 12, 12), (24, 4, 4), (2, 2, 2))
    scores = lesion_wise(prediction, truth, SPACING)
    assert (scores.dice, scores.hd95) == pytest.approx((1 / 2, 373.0 / 2))
    assert (scores.truth, scores.missed, scores.false_positive) == (1, 0, 1)
    row = region_metrics(_regions(prediction), _regions(truth), SPACING)
    assert row["dice_et"] == pytest.approx(2 * 64 / (64 + 72))
    assert row["specificity_et"] == pytest.approx((40 * 12 * 12 - 72) / (40 * 12 * 12 - 64))


@pytest.mark.parametrize(
    ("offset", "matched"),
    [
        # From the cube's corner voxel (7, 7, 7). Each 18-connected dilation step moves at most 2 coordinates by 1,
        # so 3 steps reach L1 distance 6: (3, 0, 0) and (2, 2, 2) lie inside the dilated truth, (4, 0, 0) and
        # (3, 3, 3) do not (a 26-connected dilation would reach (3, 3, 3)).
        ((3, 0, 0), True),
        ((2, 2, 2), True),
        ((4, 0, 0), False),
        ((3, 3, 3), False),
    ],
)
def test_dilation_reach_decides_matching(offset: tuple[int, int, int], matched: bool) -> None:
    truth = _box((16, 16, 16), (4, 4, 4), (4, 4, 4))
    prediction = truth.copy()
    prediction[tuple(7 + d for d in offset)] = True  # never touching the cube: its own predicted component
    scores = lesion_wise(prediction, truth, SPACING)
    if matched:  # one lesion against the union: Dice 2*64 / (64 + 65)
        assert scores.dice == pytest.approx(128 / 129)
        assert scores.false_positive == 0
    else:  # a false positive: (1 + 0) / 2
        assert scores.dice == pytest.approx(0.5)
        assert scores.false_positive == 1


def test_close_truth_lesions_merge_into_one() -> None:
    # Two 4^3 truth cubes 2 voxels apart merge under the dilation into one lesion of 128 voxels; predicting one
    # cube scores Dice 2*64 / (128 + 64) for that single lesion (0.5 if they were scored separately).
    first, second = _box((24, 12, 12), (4, 4, 4), (4, 4, 4)), _box((24, 12, 12), (10, 4, 4), (4, 4, 4))
    scores = lesion_wise(first, first | second, SPACING)
    assert scores.dice == pytest.approx(2 / 3)
    assert (scores.truth, scores.missed, scores.false_positive) == (1, 0, 0)
    # Without dilation they are two lesions: (1 + 0) / 2.
    assert lesion_wise(first, first | second, SPACING, dilation_iterations=0).dice == pytest.approx(0.5)


def test_min_lesion_voxels_leaves_small_lesions_out() -> None:
    # A missed 2^3 lesion (8 voxels) is ignored when lesions need at least 9 voxels: only the found one counts.
    big, small = _box((40, 12, 12), (4, 4, 4), (4, 4, 4)), _box((40, 12, 12), (24, 4, 4), (2, 2, 2))
    assert lesion_wise(big, big | small, SPACING).dice == pytest.approx(0.5)
    assert lesion_wise(big, big | small, SPACING, min_lesion_voxels=9).dice == pytest.approx(1.0)


def test_both_empty() -> None:
    empty = np.zeros((3, 8, 8, 8), dtype=bool)
    row = region_metrics(empty, empty, SPACING)
    for region in ("et", "tc", "wt"):
        assert row[f"dice_{region}"] == 1.0 and row[f"iou_{region}"] == 1.0 and row[f"hd95_{region}"] == 0.0
        assert row[f"sensitivity_{region}"] == 1.0 and row[f"specificity_{region}"] == 1.0
        assert row[f"lesion_dice_{region}"] == 1.0 and row[f"lesion_hd95_{region}"] == 0.0


def test_specificity_without_truth_negatives() -> None:
    # Truth fills the volume: no negatives, so nothing can be a false positive; specificity is defined as 1.
    full = np.ones((3, 4, 4, 4), dtype=bool)
    assert region_metrics(full, full, SPACING)["specificity_wt"] == 1.0


def test_missed_region_and_predicted_region_without_truth() -> None:
    # ET absent from the prediction but present in truth; TC predicted where truth has none; WT identical.
    cube = _box((12, 12, 12), (4, 4, 4), (4, 4, 4))
    empty = np.zeros_like(cube)
    prediction = _regions(et=empty, tc=cube, wt=cube)
    truth = _regions(et=cube, tc=empty, wt=cube)
    row = region_metrics(prediction, truth, SPACING)
    assert (row["dice_et"], row["iou_et"], row["hd95_et"]) == (0.0, 0.0, HD95_EMPTY_MM)
    assert (row["sensitivity_et"], row["specificity_et"]) == (0.0, 1.0)
    assert (row["lesion_dice_et"], row["lesion_hd95_et"], row["lesions_missed_et"]) == (0.0, HD95_EMPTY_MM, 1)
    assert (row["dice_tc"], row["hd95_tc"]) == (0.0, HD95_EMPTY_MM)
    # No truth: sensitivity 0 because something was predicted; 64 of 1728 negatives are false positives.
    assert (row["sensitivity_tc"], row["specificity_tc"]) == pytest.approx((0.0, (1728 - 64) / 1728))
    assert (row["lesion_dice_tc"], row["lesion_hd95_tc"], row["lesions_false_positive_tc"]) == (0.0, 373.0, 1)
    assert (row["dice_wt"], row["hd95_wt"], row["lesion_dice_wt"]) == (1.0, 0.0, 1.0)


def test_columns_and_channel_order() -> None:
    assert METRIC_COLUMNS[:9] == [f"{m}_{r}" for m in ("dice", "iou", "hd95") for r in ("et", "tc", "wt")]
    assert METRIC_COLUMNS[9:21] == [
        f"{m}_{r}" for m in ("sensitivity", "specificity", "lesion_dice", "lesion_hd95") for r in ("et", "tc", "wt")
    ]
    # Only WT (channel 1) is predicted correctly: the dict must route channels to the right names.
    cube = _box((12, 12, 12), (4, 4, 4), (4, 4, 4))
    prediction = np.stack([np.zeros_like(cube), cube, np.zeros_like(cube)])
    truth = np.stack([cube, cube, cube])
    row = region_metrics(prediction, truth, (1, 1, 1))
    assert list(row) == METRIC_COLUMNS
    assert (row["dice_tc"], row["dice_wt"], row["dice_et"]) == (0.0, 1.0, 0.0)


def test_rejects_wrong_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(3, H, W, D\)"):
        region_metrics(np.zeros((2, 4, 4, 4)), np.zeros((2, 4, 4, 4)), (1, 1, 1))
    with pytest.raises(ValueError, match="differ in shape"):
        region_metrics(np.zeros((3, 4, 4, 4)), np.zeros((3, 4, 4, 5)), (1, 1, 1))


def test_summarise_by_hand() -> None:
    rows = [
        {"case_id": "a", "dice_et": 0.2, "hd95_et": 1.0},
        {"case_id": "b", "dice_et": 0.4, "hd95_et": 1.0},
        {"case_id": "c", "dice_et": 0.9, "hd95_et": 5.0},
        {"case_id": "d", "dice_et": 1.0, "hd95_et": 373.0},
    ]
    summary = summarise(rows)
    assert summary["cases"] == 4 and set(summary["metrics"]) == {"dice_et", "hd95_et"}
    dice = summary["metrics"]["dice_et"]
    # mean 2.5/4; median (0.4+0.9)/2; deviations -.425 -.225 .275 .375 -> variance .4475/4
    assert dice["mean"] == pytest.approx(0.625)
    assert dice["median"] == pytest.approx(0.65)
    assert dice["std"] == pytest.approx(math.sqrt(0.4475 / 4))
    assert summary["metrics"]["hd95_et"]["median"] == pytest.approx(3.0)
    assert summarise([]) == {"cases": 0, "metrics": {}}
