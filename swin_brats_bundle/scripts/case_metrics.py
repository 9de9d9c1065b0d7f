"""Evaluator handler: per-case BraTS metrics into metrics.csv and summary.json, and pictures of the worst/best cases."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor, decollate_batch
from monai.data.utils import affine_to_spacing

from scripts.atomic import atomic_write
from scripts.cases import case_id_from_path
from scripts.labels import CONVENTIONS, LabelConvention, regions_to_labels
from scripts.metrics import DILATION_ITERATIONS, METRIC_COLUMNS, REGION_ORDER, region_metrics, summarize
from scripts.pictures import CaseViews, draw_views, extract_views, ras_spacing, reorient_to_ras

logger = logging.getLogger(__name__)

DICE_COLUMNS = tuple(f"dice_{region}" for region in REGION_ORDER)


def voxel_spacing(*tensors: Any) -> tuple[float, float, float]:
    """Voxel size in mm of the grid the arrays are on: from the affine (MONAI's `affine_to_spacing`), else the
    header's pixdim[1:4].

    The affine follows every spatial transform MONAI applied, so it stays right if resampling is ever added; the
    stored `pixdim` is the file header's and only serves when there is no affine.
    """
    for tensor in tensors:
        meta = getattr(tensor, "meta", None) or {}
        if meta.get("affine") is not None:
            affine = np.asarray(torch.as_tensor(meta["affine"]).cpu(), dtype=np.float64)
            return tuple(float(s) for s in affine_to_spacing(affine, r=3, suppress_zeros=False))
        if meta.get("pixdim") is not None:
            return tuple(float(s) for s in np.asarray(torch.as_tensor(meta["pixdim"]).cpu())[1:4])
    logger.warning("No affine or pixdim in the metadata: HD95 is computed with 1 mm voxels.")
    return (1.0, 1.0, 1.0)


def case_id_of(*tensors: Any, default: str) -> str:
    """Case id from the first tensor whose metadata names its source file."""
    for tensor in tensors:
        source = (getattr(tensor, "meta", None) or {}).get("filename_or_obj")
        if isinstance(source, list | tuple):
            source = source[0] if source else None
        if source:
            return case_id_from_path(str(source))
    return default


def _affine(*tensors: Any) -> np.ndarray:
    for tensor in tensors:
        affine = (getattr(tensor, "meta", None) or {}).get("affine")
        if affine is not None:
            return np.asarray(torch.as_tensor(affine).cpu(), dtype=np.float64)
    return np.eye(4)


def _numpy(tensor: Any) -> np.ndarray:
    plain = tensor.as_tensor() if isinstance(tensor, MetaTensor) else torch.as_tensor(tensor)
    return plain.detach().cpu().numpy()


class CaseMetricsWriter:
    """Per-case metrics of an evaluator run, written at its end to `output_dir`.

    `metrics.csv`: one row per case (case_id, then `metrics.METRIC_COLUMNS`, 6 decimals); `summary.json`: mean,
    median and std per column and the case count; `pictures/<case_id>.png`: the `num_pictures` worst and best cases
    by mean Dice (needs `convention`). Rows and summary also go on `engine.state.case_metrics`.
    """

    def __init__(
        self,
        output_dir: str,
        pred_key: str = "pred",
        label_key: str = "label",
        image_key: str = "image",
        convention: LabelConvention | str | None = None,
        num_pictures: int = 3,
        dilation_iterations: int = DILATION_ITERATIONS,
        min_lesion_voxels: int = 0,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.pred_key, self.label_key, self.image_key = pred_key, label_key, image_key
        self.convention = CONVENTIONS[convention] if isinstance(convention, str) else convention
        self.num_pictures = num_pictures
        self.dilation_iterations = dilation_iterations
        self.min_lesion_voxels = min_lesion_voxels
        self.rows: list[dict[str, Any]] = []
        # Slices of the current worst/best candidates only: whole volumes of every case would not fit in memory.
        self._views: dict[str, CaseViews] = {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)

    def reset(self, engine: Engine | None = None) -> None:
        self.rows, self._views = [], {}

    def collect(self, engine: Engine) -> None:
        """Score every item of the iteration's (decollated) output."""
        output = engine.state.output
        items = decollate_batch(output) if isinstance(output, dict) else output
        for item in items:
            self.add_case(item)

    def add_case(self, item: dict[str, Any]) -> dict[str, Any]:
        """Score one decollated item; keep its picture slices while it is among the worst or best."""
        pred, label, image = item[self.pred_key], item[self.label_key], item.get(self.image_key)
        case_id = case_id_of(image, label, pred, default=f"case_{len(self.rows):04d}")
        spacing = voxel_spacing(label, pred, image)
        metrics = region_metrics(_numpy(pred), _numpy(label), spacing, self.dilation_iterations, self.min_lesion_voxels)
        row = {"case_id": case_id, **metrics}
        self.rows.append(row)
        logger.info(
            "%s: Dice ET %.4f TC %.4f WT %.4f, HD95 ET %.2f TC %.2f WT %.2f mm",
            case_id,
            *(metrics[f"dice_{r}"] for r in REGION_ORDER),
            *(metrics[f"hd95_{r}"] for r in REGION_ORDER),
        )
        if self._wants_picture() and case_id in self._candidates():
            self._views[case_id] = self._case_views(pred, label, image)
            self._views = {k: v for k, v in self._views.items() if k in self._candidates()}
        return row

    def _wants_picture(self) -> bool:
        return self.num_pictures > 0 and self.convention is not None

    def _ranked(self) -> list[tuple[str, float]]:
        """Cases from worst to best mean Dice (ties by case id, so the choice is reproducible)."""
        scores = [(row["case_id"], float(np.mean([row[c] for c in DICE_COLUMNS]))) for row in self.rows]
        return sorted(scores, key=lambda pair: (pair[1], pair[0]))

    def _candidates(self) -> dict[str, str]:
        """case id -> 'worst k' / 'best k' for the current `num_pictures` worst and best cases."""
        ranked = self._ranked()
        chosen = {case_id: f"best {k}" for k, (case_id, _) in enumerate(reversed(ranked[-self.num_pictures :]), 1)}
        chosen |= {case_id: f"worst {k}" for k, (case_id, _) in enumerate(ranked[: self.num_pictures], 1)}
        return chosen

    def _case_views(self, pred: Any, label: Any, image: Any) -> CaseViews:
        """FLAIR (channel 0) and both label maps, reoriented to RAS and sliced through the tumour centre."""
        affine = _affine(label, pred, image)
        truth_map = _numpy(regions_to_labels(torch.as_tensor(label), self.convention))[0]
        pred_map = _numpy(regions_to_labels(torch.as_tensor(pred), self.convention))[0]
        flair = _numpy(image[0]) if image is not None else np.zeros(truth_map.shape, dtype=np.float32)
        return extract_views(
            reorient_to_ras(flair, affine),
            reorient_to_ras(pred_map, affine),
            reorient_to_ras(truth_map, affine),
            ras_spacing(affine),
        )

    def write(self, engine: Engine) -> None:
        """metrics.csv, summary.json and the pictures; rows and summary onto `engine.state.case_metrics`."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        summary = summarize(self.rows)
        with atomic_write(self.output_dir / "metrics.csv", newline="") as f:
            self._write_csv(f)
        with atomic_write(self.output_dir / "summary.json") as f:
            f.write(json.dumps(summary, indent=4) + "\n")
        engine.state.case_metrics = {"rows": list(self.rows), "summary": summary}
        if self._wants_picture():
            self._draw_pictures()
        logger.info("Per-case metrics of %d case(s) written to %s", len(self.rows), self.output_dir)

    def _write_csv(self, f: Any) -> None:
        writer = csv.writer(f)
        writer.writerow(["case_id", *METRIC_COLUMNS])
        for row in self.rows:
            writer.writerow([row["case_id"], *(f"{row[c]:.6f}" for c in METRIC_COLUMNS)])

    def _draw_pictures(self) -> None:
        scores = dict(self._ranked())
        for case_id, rank in self._candidates().items():
            if case_id in self._views:
                title = f"{case_id}: {rank}, mean Dice {scores[case_id]:.3f}"
                draw_views(
                    self._views[case_id], self.output_dir / "pictures" / f"{case_id}.png", self.convention, title
                )
