"""ci/check_doc_numbers.py fails on a wrong value, a wrong key, a missing citation, a wrong sign, an uncited speed-up
or range end, a percentage or minutes without a scale marker and unmarked synthetic data; it passes the documents."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "ci"))
from check_doc_numbers import DOCUMENTS, check_documents  # noqa: E402

RESULT = {
    "dice": {"mean": 0.6764, "difference": -0.147},
    "speedup": 9.38,
    "seconds": 664.7,
    "accuracy": 0.941,
    "folds": [0.755, 0.853],
    "waits": {"low": 41.2, "high": 45},
    "runs": {"quick, 8 epochs": {"best": 0.6351}, "overlap_0.25": 30.2},
    "tolerance": 7.6e-06,
    "label": "text",
}
FILE = "bench/results/run.json"


def cite(key: str, label: str = "run", target: str = FILE) -> str:
    return f'<sup>[{label}]({target} "{key}")</sup>'


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "bench" / "results").mkdir(parents=True)
    (tmp_path / FILE).write_text(json.dumps(RESULT))
    (tmp_path / "bench" / "results" / "synthetic.json").write_text(json.dumps({"synthetic_data": True, "dice": 0.5}))
    return tmp_path


def problems(root: Path, text: str, document: str = "README.md") -> list[str]:
    (root / document).parent.mkdir(parents=True, exist_ok=True)
    (root / document).write_text(text)
    return check_documents(root, [document])


CORRECT = f"""# Results

Mean Dice 0.676{cite("dice.mean")} and 0.68{cite("dice.mean")}, a change of −0.147{cite("dice.difference")}
(also -0.15{cite("dice.difference")}), **9.38x**{cite("speedup")} faster, 665 s{cite("seconds")} or
11.1 min{cite("seconds /60")}, accuracy 94.1 %{cite("accuracy *100")}, folds 0.755{cite("folds.0")} to
0.853{cite("folds.1")}, waits 41{cite("waits.low")}-45 s{cite("waits.high")}, a key with spaces
0.635{cite("runs[quick, 8 epochs].best")}, a key with a dot 30.2 s{cite("runs[overlap_0.25]")}, e-notation
7.6e-6{cite("tolerance")}, published 0.891<sup>[paper](https://arxiv.org/abs/2201.01266)</sup>.

| run | Dice |
|---|---|
| quick | 0.6764{cite("dice.mean")} |

Not measurements: MONAI 1.6.1, Python 3.11, arXiv:2201.01266, section 4.1, BraTS2021_00000, fp32, 3D, 96³ and
240 × 240 × 155 voxels, 5 folds, 16 training cases, `--learning_rate 2e-3`, `0.5` in code, [a link](x/0.5.md),
Apache License 2.0, <!-- 0.123 in a comment -->.

```bash
python run.py --overlap 0.6   # 12.5 s in a code block
```

On synthetic data: 0.5{cite("dice", "syn", "bench/results/synthetic.json")}.
"""


def test_correctly_cited_numbers_pass(root: Path) -> None:
    assert problems(root, CORRECT) == []


def test_a_citation_from_a_document_in_a_subfolder_resolves_against_that_folder(root: Path) -> None:
    text = f"Dice 0.676{cite('dice.mean', target='../../bench/results/run.json')}.\n"
    assert problems(root, text, "bundle/docs/README.md") == []
    assert problems(root, f"Dice 0.676{cite('dice.mean')}.\n", "bundle/docs/README.md") == [
        "bundle/docs/README.md:1: 0.676: cites bench/results/run.json, which is not a bench/results/*.json file"
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # a wrong value, at the precision written
        (f"Dice 0.677{cite('dice.mean')}.", '0.677: cites run.json "dice.mean" = 0.6764, which is not 0.677'),
        (f"Dice 0.6763{cite('dice.mean')}.", "which is not 0.6763"),
        (f"took 664 s{cite('seconds')}.", 'cites run.json "seconds" = 664.7, which is not 664'),
        # a wrong key, a key into a value, a list index out of range, a key that holds text
        (f"Dice 0.676{cite('dice.men')}.", "no key 'men' under dice"),
        (f"Dice 0.676{cite('dice.mean.x')}.", "dice.mean is a value, not an object"),
        (f"Dice 0.755{cite('folds.2')}.", "no index '2' in the list at folds (2 items)"),
        (f"Dice 0.755{cite('label')}.", "which holds 'text', not a number"),
        # a missing citation: a decimal, an integer with a unit, a speed-up, a percentage
        ("Dice 0.676 on the held-out cases.", "0.676 has no citation"),
        ("The demo took 665 s in all.", "665 s has no citation"),
        ("Inference is 9.38x faster.", "9.38 x has no citation"),
        ("Accuracy 94 % on the test split.", "94 % has no citation"),
        ("## Dice 0.676 in a heading", "0.676 has no citation"),
        ("| fold 0 | 0.81 |", "0.81 has no citation"),
        # a wrong sign, both ways
        (f"a change of 0.147{cite('dice.difference')}.", "which is not 0.147 (the sign differs)"),
        (f"a speed-up of -9.38x{cite('speedup')}.", "which is not -9.38 (the sign differs)"),
        # a wrong speed-up
        (f"Inference is 9.83x{cite('speedup')} faster.", "which is not 9.83"),
        # each end of a range needs its own citation
        (f"folds 0.755{cite('folds.0')} to 0.853.", "0.853 has no citation"),
        (f"folds 0.755 to 0.853{cite('folds.1')}.", "0.755 has no citation"),
        (f"waits 41-45 s{cite('waits.high')}.", "41 s has no citation"),
        # percentages and minutes only with a scale marker, and a marker only with its unit
        (f"accuracy 94.1 %{cite('accuracy')}.", 'is written in % but its citation run.json "accuracy" has no scale'),
        (f"accuracy 94.1{cite('accuracy *100')}.", "with the marker *100, which needs the number written in"),
        (f"took 11.1 min{cite('seconds')}.", "is written in min but its citation"),
        # citations: not a result file, no key, two on one number, none beside a number
        (f"Dice 0.676{cite('dice.mean', target='README.md')}.", "which is not a bench/results/*.json file"),
        ("Dice 0.676<sup>[run](bench/results/run.json)</sup>.", "without a key"),
        (f"Dice 0.676{cite('dice.mean')}{cite('dice.mean')}.", "0.676 has more than one citation"),
        (f"Dice {cite('dice.mean')} is good.", "citation [run] is not beside a number"),
        # a number from a synthetic-data file in a paragraph that does not say so
        (f"Dice 0.5{cite('dice', 'syn', 'bench/results/synthetic.json')}.", "0.5: synthetic data, but neither"),
    ],
)
def test_a_planted_fault_is_named_by_file_line_and_number(root: Path, line: str, expected: str) -> None:
    found = problems(root, f"# Results\n\n{line}\n")
    assert len(found) == 1 and found[0].startswith("README.md:3: ") and expected in found[0], found


def test_the_command_line_exits_1_on_a_fault_and_0_when_every_number_holds(root: Path) -> None:
    problems(root, "Dice 0.81 on the held-out cases.\n")
    command = [sys.executable, str(REPO / "ci" / "check_doc_numbers.py"), "--root", str(root), "README.md"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 1 and result.stdout.startswith("README.md:1: 0.81 has no citation"), result.stdout
    problems(root, CORRECT)
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("ok:"), result.stdout


def test_every_measured_number_in_the_documents_is_cited_and_equals_its_result() -> None:
    assert check_documents(REPO) == []
    assert {"README.md", "bench/README.md", "swin_brats_bundle/docs/README.md"} <= set(DOCUMENTS)
