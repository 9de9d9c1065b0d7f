"""Pictures of an evaluation's worst and best cases, keeping only the current candidates' slices as cases come in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from scripts.case_ranking import ranked, worst_and_best
from scripts.labels import LabelConvention, regions_to_labels
from scripts.pictures import CaseViews, draw_views, extract_views, ras_spacing, reorient_to_ras
from scripts.tensor_meta import affine_of, to_numpy


def case_views(pred: Any, label: Any, image: Any, convention: LabelConvention) -> CaseViews:
    """FLAIR (channel 0) and both label maps, reoriented to RAS and sliced through the tumour centre."""
    affine = affine_of(label, pred, image)
    truth_map = to_numpy(regions_to_labels(torch.as_tensor(label), convention))[0]
    pred_map = to_numpy(regions_to_labels(torch.as_tensor(pred), convention))[0]
    flair = to_numpy(image[0]) if image is not None else np.zeros(truth_map.shape, dtype=np.float32)
    return extract_views(
        reorient_to_ras(flair, affine),
        reorient_to_ras(pred_map, affine),
        reorient_to_ras(truth_map, affine),
        ras_spacing(affine),
    )


class ExtremeCasePictures:
    """`pictures/<case_id>.png` of the `count` worst and best cases by mean Dice (`case_ranking`).

    Slices of the current worst/best candidates only are kept: whole volumes of every case would not fit in memory.
    """

    def __init__(self, convention: LabelConvention | None, count: int) -> None:
        self.convention, self.count = convention, count
        self.views: dict[str, CaseViews] = {}

    @property
    def enabled(self) -> bool:
        """Whether pictures are drawn at all (they need a count and a label convention)."""
        return self.count > 0 and self.convention is not None

    def reset(self) -> None:
        """Forget the kept slices, for a new run."""
        self.views = {}

    def offer(self, rows: list[dict[str, Any]], case_id: str, pred: Any, label: Any, image: Any) -> None:
        """Keep the slices of the case just scored (the last of `rows`) while it is among the worst or best."""
        if not self.enabled or case_id not in worst_and_best(rows, self.count):
            return
        self.views[case_id] = case_views(pred, label, image, self.convention)
        candidates = worst_and_best(rows, self.count)
        self.views = {k: v for k, v in self.views.items() if k in candidates}

    def draw(self, rows: list[dict[str, Any]], output_dir: Path) -> None:
        """One picture per worst/best case, titled with its rank and mean Dice."""
        if not self.enabled:
            return
        scores = dict(ranked(rows))
        for case_id, rank in worst_and_best(rows, self.count).items():
            if case_id in self.views:
                title = f"{case_id}: {rank}, mean Dice {scores[case_id]:.3f}"
                draw_views(self.views[case_id], output_dir / "pictures" / f"{case_id}.png", self.convention, title)
