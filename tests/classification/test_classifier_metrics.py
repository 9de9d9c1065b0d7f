"""Metrics on constructed predictions, checked against values derived by hand."""

from __future__ import annotations

import json

import pytest
import torch
from ignite.engine import Engine
from ignite.metrics import ConfusionMatrix
from monai.handlers import from_engine

# 3 classes, 10 samples: rows = true class, columns = predicted class
LABELS = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
PREDS = [0, 0, 0, 1, 1, 1, 2, 2, 2, 0]
HAND_MATRIX = [[3, 1, 0], [0, 2, 1], [1, 0, 2]]
# class 0: tp 3, fp 1 (a true 2), fn 1 -> P 3/4, R 3/4;  class 1: tp 2, fp 1, fn 1 -> P 2/3, R 2/3
# class 2: tp 2, fp 1, fn 1 -> P 2/3, R 2/3;  F1 = P = R per class here
HAND = {"accuracy": 7 / 10, "precision": (3 / 4 + 2 / 3 + 2 / 3) / 3, "recall": (3 / 4 + 2 / 3 + 2 / 3) / 3}


def confusion_from_engine(preds: list[int], labels: list[int], num_classes: int) -> torch.Tensor:
    """Run ignite's ConfusionMatrix as configured in evaluate.json on decollated probability rows and integer labels."""
    probs = torch.nn.functional.one_hot(torch.tensor(preds), num_classes).float() * 0.8 + 0.2 / num_classes
    batches = [[{"pred": p, "label": int(y)} for p, y in zip(probs[i : i + 4], labels[i : i + 4], strict=True)]
               for i in range(0, len(labels), 4)]  # fmt: skip
    engine = Engine(lambda e, batch: batch)
    metric = ConfusionMatrix(num_classes, output_transform=from_engine(["pred", "label"]), skip_unrolling=False)
    metric.attach(engine, "cm")
    return engine.run(batches).metrics["cm"]


def test_confusion_matrix_and_macro_scores_match_hand_values(bundle_scripts):
    from scripts.metrics import one_vs_rest_counts, summarise

    matrix = confusion_from_engine(PREDS, LABELS, 3)
    assert matrix.tolist() == HAND_MATRIX
    assert one_vs_rest_counts(matrix)[0].tolist() == [3, 1, 5, 1]  # tp, fp, tn, fn of class 0
    report = summarise(matrix, ["zero", "one", "two"])
    assert report["accuracy"] == pytest.approx(HAND["accuracy"])
    assert report["precision"] == pytest.approx(HAND["precision"])
    assert report["recall"] == pytest.approx(HAND["recall"])
    assert report["f1"] == pytest.approx(HAND["precision"])
    assert report["num_samples"] == 10
    assert [r["class"] for r in report["per_class"]] == ["zero", "one", "two"]
    assert [r["support"] for r in report["per_class"]] == [4, 3, 3]
    assert report["per_class"][0]["precision"] == pytest.approx(0.75)
    assert report["per_class"][1]["f1"] == pytest.approx(2 / 3)


def test_unequal_precision_recall_and_undefined_class(bundle_scripts):
    from scripts.metrics import summarise

    # class 2 is never predicted (precision 0/0 -> 0) and class 1 absorbs its samples
    matrix = [[2, 0, 0], [0, 2, 0], [0, 2, 0]]
    report = summarise(matrix)
    p1, r1 = 2 / 4, 2 / 2
    assert report["per_class"][1]["precision"] == pytest.approx(p1)
    assert report["per_class"][1]["recall"] == pytest.approx(r1)
    assert report["per_class"][1]["f1"] == pytest.approx(2 * p1 * r1 / (p1 + r1))
    # without class names each class is named by its index
    assert [r["class"] for r in report["per_class"]] == ["0", "1", "2"]
    assert report["per_class"][2] == {
        "class": "2",
        "support": 2,
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
    }
    assert report["precision"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert report["recall"] == pytest.approx((1 + 1 + 0) / 3)
    assert report["accuracy"] == pytest.approx(4 / 6)


def test_save_report_writes_json_csv_and_png(bundle_scripts, tmp_path):
    from scripts.metrics import save_report

    save_report(torch.tensor(HAND_MATRIX), str(tmp_path), ["a", "b", "c"])
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["confusion_matrix"] == HAND_MATRIX and saved["accuracy"] == pytest.approx(0.7)
    rows = (tmp_path / "per_class_metrics.csv").read_text().splitlines()
    assert rows[0] == "class,precision,recall,f1,support" and rows[1] == "a,0.7500,0.7500,0.7500,4"
    assert (tmp_path / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
