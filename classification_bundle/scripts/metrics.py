"""Classification report from a multi-class confusion matrix: accuracy, macro/per-class P/R/F1, JSON, CSV and PNG."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from monai.metrics import compute_confusion_matrix_metric


def one_vs_rest_counts(matrix: torch.Tensor) -> torch.Tensor:
    """(K, 4) per-class [tp, fp, tn, fn] from a K x K confusion matrix (rows: true class, columns: predicted class).

    MONAI's ConfusionMatrixMetric works on one-hot inputs only; this converts ignite's K x K matrix to its layout.
    """
    m = torch.as_tensor(matrix, dtype=torch.float64)
    tp = m.diagonal()
    fp, fn = m.sum(0) - tp, m.sum(1) - tp
    return torch.stack([tp, fp, m.sum() - tp - fp - fn, fn], dim=1)


def summarise(matrix: torch.Tensor | np.ndarray, class_names: list[str] | None = None) -> dict:
    """Accuracy, macro precision/recall/F1 and a per-class table; an undefined ratio (0/0) counts as 0."""
    m = torch.as_tensor(np.asarray(matrix), dtype=torch.float64)
    counts = one_vs_rest_counts(m)
    per_metric = {
        name: torch.nan_to_num(compute_confusion_matrix_metric(key, counts), nan=0.0)
        for name, key in (("precision", "precision"), ("recall", "recall"), ("f1", "f1 score"))
    }
    names = class_names or [str(k) for k in range(len(m))]
    per_class = [
        {"class": names[k], "support": int(m[k].sum())} | {n: float(v[k]) for n, v in per_metric.items()}
        for k in range(len(m))
    ]
    return {
        "accuracy": float(m.diagonal().sum() / m.sum().clamp(min=1)),
        **{n: float(v.mean()) for n, v in per_metric.items()},
        "num_samples": int(m.sum()),
        "per_class": per_class,
        "confusion_matrix": m.long().tolist(),
    }


def plot_confusion_matrix(matrix: list[list[int]], class_names: list[str], path: Path) -> None:
    """Save the confusion matrix as an annotated PNG (rows: true class, columns: predicted class)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(m), 0.8 + 0.6 * len(m)))
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > m.max() / 2 else "black", fontsize=8)
    ax.set(xticks=range(len(m)), yticks=range(len(m)), xticklabels=class_names, yticklabels=class_names)
    ax.set(xlabel="predicted class", ylabel="true class", title="Confusion matrix")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_report(matrix: torch.Tensor, output_dir: str, class_names: list[str] | None = None) -> dict:
    """Write `metrics.json`, `per_class_metrics.csv` and `confusion_matrix.png` to `output_dir`; return the report."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = summarise(matrix, class_names)
    (out / "metrics.json").write_text(json.dumps(report, indent=4) + "\n")
    rows = ["class,precision,recall,f1,support"] + [
        f"{r['class']},{r['precision']:.4f},{r['recall']:.4f},{r['f1']:.4f},{r['support']}" for r in report["per_class"]
    ]
    (out / "per_class_metrics.csv").write_text("\n".join(rows) + "\n")
    plot_confusion_matrix(
        report["confusion_matrix"], [r["class"] for r in report["per_class"]], out / "confusion_matrix.png"
    )
    return report
