"""Per-case BraTS metrics of a convention's scored groups: overlap, HD95 in mm and lesion-wise scores, each task as
its challenge scores it (`labels.LabelConvention.scoring`).

BraTS 2021 / 2023 / MSD (`LESION_WISE_2023`), the groups ET, TC, WT: prediction and truth both empty -> Dice 1,
HD95 0; exactly one empty -> Dice 0 and HD95 `HD95_EMPTY_MM`; lesion-wise scores of the BraTS 2023 scripts
(`lesion_wise`). MONAI's `DiceMetric` skips cases with empty truth by default (`ignore_empty=True`); here every case
scores, so the means are over all cases.

The BraTS 2024-2025 tasks (`BRATS_EVALUATION`: GLI post-treatment, MET, PED, MEN, GoAT, MEN-RT) as the
`brats-evaluation` package (0.0.10) scores them: global Dice NaN where prediction and truth are both empty (its means
skip NaN, as `summarise` does), HD95 pooled over both surfaces (`hd95_pooled`) and `HD95_EMPTY_MM` where the two do
not overlap, lesions matched one to one (`matched_lesions`). bench/brats_eval runs the package beside these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.metrics import (
    compute_confusion_matrix_metric,
    compute_dice,
    compute_hausdorff_distance,
    compute_iou,
    get_confusion_matrix,
)
from monai.transforms.utils import generate_spatial_bounding_box
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from scripts.labels import BRATS_EVALUATION, REGIONS, LabelConvention, regions_to_labels

HD95_EMPTY_MM = 373.0
"""BraTS's HD95 when exactly one of prediction and truth is empty: about the diagonal of the 240x240x155 1 mm grid."""

REGION_ORDER = ("et", "tc", "wt")
"""Column order of the regions (the network's channel order is `labels.REGIONS`: TC, WT, ET)."""

DILATION_ITERATIONS = 3
"""BraTS-GLI 2023: truth lesions are dilated 3 times (18-connected) to merge close lesions and to find matches."""

_SCORES = ("dice", "iou", "hd95", "sensitivity", "specificity", "lesion_dice", "lesion_hd95")
_COUNTS = ("lesions_truth", "lesions_missed", "lesions_false_positive")
METRIC_COLUMNS: list[str] = [f"{name}_{region}" for name in _SCORES + _COUNTS for region in REGION_ORDER]
"""Per-case columns of the ET/TC/WT conventions: dice_et, dice_tc, dice_wt, iou_*, hd95_*, sensitivity_*,
specificity_*, lesion_dice_*, lesion_hd95_*, then the lesion counts lesions_truth_*, lesions_missed_*,
lesions_false_positive_*. Other conventions: the same families over their groups (`metric_columns`)."""

MATCHING_THRESHOLD = 1e-6
"""brats-evaluation: a predicted and a true lesion may be matched when their Dice is at least this."""

_CONNECTIVITY_26 = np.ones((3, 3, 3), dtype=bool)
_DILATION_18 = ndimage.generate_binary_structure(3, 2)
_SURFACE_6 = ndimage.generate_binary_structure(3, 1)


def metric_columns(convention: LabelConvention | None = None) -> list[str]:
    """The per-case columns of a convention: each score family over its scored groups (`METRIC_COLUMNS` for the
    ET/TC/WT conventions)."""
    groups = REGION_ORDER if convention is None else convention.group_names
    return [f"{name}_{group}" for name in _SCORES + _COUNTS for group in groups]


@dataclass(frozen=True)
class LesionScores:
    """BraTS 2023 lesion-wise Dice and HD95 of one region, with the lesion counts behind them."""

    dice: float
    hd95: float
    truth: int
    missed: int
    false_positive: int


def _batched(masks: np.ndarray) -> torch.Tensor:
    """(C, H, W, D) bool -> (1, C, H, W, D) float, the one-hot batch layout MONAI's metric functions take."""
    return torch.from_numpy(np.ascontiguousarray(masks, dtype=np.float32))[None]


def dice_score(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two binary volumes; both empty -> 1 (`ignore_empty=False` makes MONAI score such cases)."""
    return float(compute_dice(_batched(prediction[None]), _batched(truth[None]), ignore_empty=False)[0, 0])


def hd95_mm(prediction: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> float:
    """Symmetric 95th-percentile Hausdorff distance in mm between boundary voxels; BraTS values for empty masks.

    MONAI measures between boundary-voxel centres; the BraTS scripts use surfel-area-weighted surface distances,
    so values can differ by a fraction of a voxel on curved surfaces.
    """
    has_prediction, has_truth = bool(prediction.any()), bool(truth.any())
    if not has_prediction and not has_truth:
        return 0.0
    if has_prediction != has_truth:
        return HD95_EMPTY_MM
    distance = compute_hausdorff_distance(
        _batched(prediction[None]), _batched(truth[None]), include_background=True, percentile=95, spacing=spacing
    )
    return float(distance[0, 0])


def _overlap_scores(prediction: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Dice, IoU, sensitivity and specificity per channel of (C, H, W, D) masks, with the BraTS empty rules.

    Sensitivity with empty truth is 1 if the prediction is empty too, else 0 (as the BraTS 2023 scripts, via
    GaNDLF); specificity without truth negatives (truth fills the volume) is 1, as nothing can be a false positive.
    """
    y_pred, y = _batched(prediction), _batched(truth)
    confusion = get_confusion_matrix(y_pred, y, include_background=True)
    sensitivity = compute_confusion_matrix_metric("sensitivity", confusion)[0].numpy()
    specificity = compute_confusion_matrix_metric("specificity", confusion)[0].numpy()
    no_prediction = ~prediction.reshape(len(prediction), -1).any(axis=1)
    return {
        "dice": compute_dice(y_pred, y, ignore_empty=False)[0].numpy(),
        "iou": compute_iou(y_pred, y, ignore_empty=False)[0].numpy(),
        "sensitivity": np.where(np.isnan(sensitivity), no_prediction.astype(float), sensitivity),
        "specificity": np.nan_to_num(specificity, nan=1.0),
    }


def _foreground_box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    """Bounding box of `mask` grown by `margin` voxels (clipped to the volume); `mask` must not be empty."""
    start, end = generate_spatial_bounding_box(mask[None], margin=margin, allow_smaller=True)
    return tuple(slice(int(a), int(b)) for a, b in zip(start, end, strict=True))


def _dilate(mask: np.ndarray, iterations: int) -> np.ndarray:
    # scipy repeats until nothing changes when iterations < 1, so 0 has to mean "no dilation" here.
    if iterations == 0:
        return mask.copy()
    return ndimage.binary_dilation(mask, structure=_DILATION_18, iterations=iterations)


def lesion_wise(
    prediction: np.ndarray,
    truth: np.ndarray,
    spacing: Sequence[float],
    dilation_iterations: int = DILATION_ITERATIONS,
    min_lesion_voxels: int = 0,
) -> LesionScores:
    """BraTS 2023 lesion-wise Dice and HD95 of one binary region (written here: MONAI has no lesion matching).

    Truth lesions are the 26-connected components of the truth dilated `dilation_iterations` times (18-connected),
    each restricted to the truth, so lesions closer than the dilation reach count as one. A truth lesion matches
    every 26-connected predicted component inside its dilated extent; its Dice and HD95 are against the union of
    those. Missed lesions and predicted components matching no lesion score Dice 0 and HD95 `HD95_EMPTY_MM`; the
    scores are averaged over truth lesions plus false positives, and both empty gives 1 and 0. Truth lesions
    under `min_lesion_voxels` voxels are left out of the averages (BraTS-GLI leaves out lesions of at most 50 mm³;
    by default nothing is left out).
    """
    if dilation_iterations < 0:
        raise ValueError(f"dilation_iterations must be at least 0, got {dilation_iterations}.")
    if not prediction.any() and not truth.any():
        return LesionScores(1.0, 0.0, 0, 0, 0)
    # Everything below happens within dilation reach of the foreground: crop for speed on 240x240x155 volumes.
    box = _foreground_box(prediction | truth, dilation_iterations + 1)
    prediction, truth = prediction[box], truth[box]
    # The dilated truth's component is exactly the dilation of the (merged) lesion it contains.
    extents, num_lesions = ndimage.label(_dilate(truth, dilation_iterations), structure=_CONNECTIVITY_26)
    components, _ = ndimage.label(prediction, structure=_CONNECTIVITY_26)
    matched_any: set[int] = set()
    dice, hd95, missed = [], [], 0
    for lesion_id in range(1, num_lesions + 1):
        extent = extents == lesion_id
        lesion = truth & extent
        matched = np.unique(components[extent])
        matched = matched[matched > 0]
        matched_any.update(int(m) for m in matched)
        if lesion.sum() < min_lesion_voxels:
            continue
        predicted = np.isin(components, matched)
        dice.append(dice_score(predicted, lesion))
        hd95.append(hd95_mm(predicted, lesion, spacing))
        missed += int(matched.size == 0)
    false_positive = len(set(np.unique(components[components > 0]).tolist()) - matched_any)
    count = len(dice) + false_positive
    if count == 0:  # only lesions below min_lesion_voxels, all found
        return LesionScores(1.0, 0.0, 0, 0, 0)
    return LesionScores(
        dice=float(sum(dice)) / count,
        hd95=(float(sum(hd95)) + false_positive * HD95_EMPTY_MM) / count,
        truth=len(dice),
        missed=missed,
        false_positive=false_positive,
    )


def _as_regions(array: Any, name: str) -> np.ndarray:
    masks = np.asarray(array) > 0.5
    if masks.ndim != 4 or masks.shape[0] != len(REGIONS):
        raise ValueError(f"{name} must have shape (3, H, W, D) with channels {', '.join(REGIONS)}; got {masks.shape}.")
    return masks


def _checked_spacing(prediction: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> list[float]:
    if prediction.shape != truth.shape:
        raise ValueError(f"prediction {prediction.shape} and truth {truth.shape} differ in shape.")
    spacing = [float(s) for s in spacing]
    if len(spacing) != 3:
        raise ValueError(f"spacing needs 3 values (mm per voxel along each axis), got {spacing}.")
    return spacing


def region_metrics(
    prediction: np.ndarray,
    truth: np.ndarray,
    spacing: Sequence[float],
    dilation_iterations: int = DILATION_ITERATIONS,
    min_lesion_voxels: int = 0,
) -> dict[str, float]:
    """All `METRIC_COLUMNS` of one case from binary (3, H, W, D) TC/WT/ET masks and the voxel spacing in mm."""
    prediction, truth = _as_regions(prediction, "prediction"), _as_regions(truth, "truth")
    spacing = _checked_spacing(prediction, truth, spacing)
    order = [REGIONS.index(region.upper()) for region in REGION_ORDER]
    return _lesion_wise_2023_metrics(
        prediction[order], truth[order], REGION_ORDER, spacing, dilation_iterations, min_lesion_voxels
    )


def _lesion_wise_2023_metrics(
    prediction: np.ndarray,
    truth: np.ndarray,
    groups: Sequence[str],
    spacing: list[float],
    dilation_iterations: int,
    min_lesion_voxels: int,
) -> dict[str, float]:
    """The columns of (G, H, W, D) group masks scored as the BraTS 2021/2023 scripts score them."""
    overlap = _overlap_scores(prediction, truth)
    row: dict[str, float] = {}
    for index, group in enumerate(groups):
        pred, true = prediction[index], truth[index]
        lesions = lesion_wise(pred, true, spacing, dilation_iterations, min_lesion_voxels)
        row |= {f"{name}_{group}": float(overlap[name][index]) for name in overlap}
        row |= {f"hd95_{group}": hd95_mm(pred, true, spacing), **_lesion_columns(lesions, group)}
    return {column: row[column] for name in _SCORES + _COUNTS for column in (f"{name}_{g}" for g in groups)}


def _lesion_columns(lesions: LesionScores, group: str) -> dict[str, float]:
    return {
        f"lesion_dice_{group}": lesions.dice,
        f"lesion_hd95_{group}": lesions.hd95,
        f"lesions_truth_{group}": float(lesions.truth),
        f"lesions_missed_{group}": float(lesions.missed),
        f"lesions_false_positive_{group}": float(lesions.false_positive),
    }


def group_masks(regions: Any, convention: LabelConvention) -> np.ndarray:
    """(G, H, W, D) masks of the convention's scored groups from binary region channels, through the label map they
    paint (so a score is the score of the saved map)."""
    painted = regions_to_labels(torch.as_tensor(np.asarray(regions) > 0.5), convention)[0].numpy()
    return np.stack([np.isin(painted, sorted(values)) for _, values in convention.groups])


def hd95_pooled(prediction: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> float:
    """95th percentile of both directions' surface distances pooled (brats-evaluation's HD95, not the larger of the two
    directions' 95th percentiles as `hd95_mm`); surfaces are the voxels a 6-connected erosion removes. Neither may be
    empty."""
    box = _foreground_box(prediction | truth, 2)
    prediction, truth = prediction[box], truth[box]
    pred_surface = prediction ^ ndimage.binary_erosion(prediction, structure=_SURFACE_6)
    true_surface = truth ^ ndimage.binary_erosion(truth, structure=_SURFACE_6)
    to_pred = ndimage.distance_transform_edt(~pred_surface, sampling=spacing)[true_surface]
    to_true = ndimage.distance_transform_edt(~true_surface, sampling=spacing)[pred_surface]
    return float(np.percentile(np.hstack((to_pred, to_true)), 95))


def matched_lesions(prediction: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> LesionScores:
    """brats-evaluation's lesion-wise Dice and HD95 of one group (written here: MONAI has no lesion matching).

    Lesions are 26-connected components; predicted and true lesions are matched one to one so that the matched pairs'
    Dice adds up to the most (pairs with Dice of at least `MATCHING_THRESHOLD`). The scores are the means over matched
    pairs; misses and false positives show only in the counts. No match: Dice 0 and HD95 `HD95_EMPTY_MM` (the
    package's infinity); nothing in either: NaN.
    """
    if not prediction.any() and not truth.any():
        return LesionScores(float("nan"), float("nan"), 0, 0, 0)
    box = _foreground_box(prediction | truth, 2)
    true_lesions, num_true = ndimage.label(truth[box], structure=_CONNECTIVITY_26)
    pred_lesions, num_pred = ndimage.label(prediction[box], structure=_CONNECTIVITY_26)
    pairs: list[tuple[int, int, float]] = []
    if num_true and num_pred:
        both = (true_lesions > 0) & (pred_lesions > 0)
        codes, shared = np.unique(true_lesions[both].astype(np.int64) * (num_pred + 1) + pred_lesions[both],
                                  return_counts=True)  # fmt: skip
        true_sizes, pred_sizes = np.bincount(true_lesions.ravel()), np.bincount(pred_lesions.ravel())
        cost = np.full((num_true, num_pred), 1.0 + MATCHING_THRESHOLD)
        for code, count in zip(codes.tolist(), shared.tolist(), strict=True):
            t, p = divmod(code, num_pred + 1)
            dice = 2.0 * count / (true_sizes[t] + pred_sizes[p])
            if dice >= MATCHING_THRESHOLD:
                cost[t - 1, p - 1] = 1.0 - dice
        rows, columns = linear_sum_assignment(cost)
        pairs = [(r + 1, c + 1, 1.0 - cost[r, c]) for r, c in zip(rows, columns, strict=True) if cost[r, c] < 1.0]
    if not pairs:
        return LesionScores(0.0, HD95_EMPTY_MM, num_true, num_true, num_pred)
    hd95 = [hd95_pooled(pred_lesions == p, true_lesions == t, spacing) for t, p, _ in pairs]
    return LesionScores(
        dice=float(np.mean([dice for _, _, dice in pairs])),
        hd95=float(np.mean(hd95)),
        truth=num_true,
        missed=num_true - len(pairs),
        false_positive=num_pred - len(pairs),
    )


def _evaluation_metrics(
    prediction: np.ndarray, truth: np.ndarray, groups: Sequence[str], spacing: list[float]
) -> dict[str, float]:
    """The columns of (G, H, W, D) group masks scored as brats-evaluation scores them (IoU, sensitivity and
    specificity, which it does not report, by the BraTS 2023 rules)."""
    overlap = _overlap_scores(prediction, truth)
    row: dict[str, float] = {}
    for index, group in enumerate(groups):
        pred, true = prediction[index], truth[index]
        row |= {f"{name}_{group}": float(overlap[name][index]) for name in overlap}
        if not pred.any() and not true.any():
            row[f"dice_{group}"] = row[f"hd95_{group}"] = float("nan")
        elif not (pred & true).any():
            row[f"hd95_{group}"] = HD95_EMPTY_MM  # its edge case: no overlap scores infinity, reported as 373
        else:
            row[f"hd95_{group}"] = hd95_pooled(pred, true, spacing)
        row |= _lesion_columns(matched_lesions(pred, true, spacing), group)
    return {column: row[column] for name in _SCORES + _COUNTS for column in (f"{name}_{g}" for g in groups)}


def case_metrics(
    prediction: Any,
    truth: Any,
    convention: LabelConvention,
    spacing: Sequence[float],
    dilation_iterations: int = DILATION_ITERATIONS,
    min_lesion_voxels: int = 0,
) -> dict[str, float]:
    """All `metric_columns(convention)` of one case from binary region channels (R, H, W, D) and the spacing in mm,
    scored as the convention's challenge scores them; the dilation and minimum lesion size are the 2023 scripts'."""
    prediction, truth = group_masks(prediction, convention), group_masks(truth, convention)
    spacing = _checked_spacing(prediction, truth, spacing)
    if convention.scoring == BRATS_EVALUATION:
        return _evaluation_metrics(prediction, truth, convention.group_names, spacing)
    return _lesion_wise_2023_metrics(
        prediction, truth, convention.group_names, spacing, dilation_iterations, min_lesion_voxels
    )


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean, median and (population) standard deviation of every numeric column over the cases; text is skipped.

    NaN (nothing to score in that case) is left out, as the brats-evaluation parser's means leave it out; a column
    with nothing to score in any case gets null.
    """
    columns = [key for key, value in rows[0].items() if _is_number(value)] if rows else []
    metrics = {}
    for column in columns:
        values = np.array([float(row[column]) for row in rows], dtype=np.float64)
        scored = values[~np.isnan(values)]
        metrics[column] = {
            "mean": float(scored.mean()) if scored.size else None,
            "median": float(np.median(scored)) if scored.size else None,
            "std": float(scored.std()) if scored.size else None,
        }
    return {"cases": len(rows), "metrics": metrics}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
