"""Evaluator handler: score each case as its task's challenge does; at the end write the files and the worst/best
pictures.

The jobs it calls: `metrics` (the scores), `metrics_files` (metrics.csv, summary.json), `case_ranking` and
`case_pictures` (which cases get a picture, and drawing them).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events
from monai.data import decollate_batch

from scripts.case_pictures import ExtremeCasePictures
from scripts.labels import CONVENTIONS, LabelConvention
from scripts.metrics import DILATION_ITERATIONS, REGION_ORDER, case_metrics, metric_columns, region_metrics, summarise
from scripts.metrics_files import write_case_metrics
from scripts.naming import case_id_of
from scripts.tensor_meta import to_numpy, voxel_spacing

logger = logging.getLogger(__name__)


class CaseMetricsWriter:
    """Per-case metrics of an evaluator run, written at its end to `output_dir`.

    `metrics.csv`: one row per case (case_id, then `metrics.metric_columns(convention)`: the convention's scored
    groups, scored as its challenge does; 6 decimals); `summary.json`: mean, median and std per column (NaN, nothing
    to score, skipped), the case count, the convention and its scoring; `pictures/<case_id>.png`: the `num_pictures`
    worst and best cases by mean Dice. Without a `convention` the predictions are TC/WT/ET channels scored as BraTS
    2023 (`metrics.region_metrics`), with no pictures. Rows and summary also go on `engine.state.case_metrics`.
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
        self.dilation_iterations = dilation_iterations
        self.min_lesion_voxels = min_lesion_voxels
        self.rows: list[dict[str, Any]] = []
        self.pictures = ExtremeCasePictures(self.convention, num_pictures)

    def attach(self, engine: Engine) -> None:
        """Reset at each epoch's start, score each iteration, write at each epoch's end."""
        engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)

    def reset(self, engine: Engine | None = None) -> None:
        """Forget the rows and kept slices of an earlier run."""
        self.rows = []
        self.pictures.reset()

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
        settings = (self.dilation_iterations, self.min_lesion_voxels)
        if self.convention is None:
            metrics = region_metrics(to_numpy(pred), to_numpy(label), spacing, *settings)
        else:
            metrics = case_metrics(to_numpy(pred), to_numpy(label), self.convention, spacing, *settings)
        row = {"case_id": case_id, **metrics}
        self.rows.append(row)
        groups = REGION_ORDER if self.convention is None else self.convention.group_names
        logger.info(
            "%s: Dice %s, HD95 %s mm",
            case_id,
            " ".join(f"{g.upper()} {metrics[f'dice_{g}']:.4f}" for g in groups),
            " ".join(f"{g.upper()} {metrics[f'hd95_{g}']:.2f}" for g in groups),
        )
        self.pictures.offer(self.rows, case_id, pred, label, image)
        return row

    def write(self, engine: Engine) -> None:
        """metrics.csv, summary.json and the pictures; rows and summary onto `engine.state.case_metrics`."""
        summary = summarise(self.rows)
        if self.convention is not None:
            summary |= {"label_convention": self.convention.name, "scoring": self.convention.scoring}
        write_case_metrics(self.output_dir, self.rows, summary, metric_columns(self.convention))
        engine.state.case_metrics = {"rows": list(self.rows), "summary": summary}
        self.pictures.draw(self.rows, self.output_dir)
        logger.info("Per-case metrics of %d case(s) written to %s", len(self.rows), self.output_dir)
