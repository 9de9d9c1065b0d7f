"""Every decimal number in the READMEs and model cards is a value of a `bench/results/*.json`, at its printed rounding.

Run: python ci/check_doc_numbers.py [--root REPO]   (one line per unbacked number, exit status 1 if there is any)

A simple cross-reference, not a proof: a number passes if any result file holds a value that rounds to it at the
number's own precision, also read as a percentage (x 100) or as minutes (seconds / 60). Integers (counts, sizes,
epochs) are not checked, nor are code blocks, indented code, versions and arXiv identifiers.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = (
    "README.md",
    "bench/README.md",
    "ci/README.md",
    "swin_brats_bundle/docs/README.md",
    "swin_brats_bundle/docs/normalization.md",
    "classification_bundle/docs/README.md",
    "deploy/README.md",
)
RESULTS = "bench/results"
# a decimal not inside a word, a path, a version (1.6.1) or a longer number
DECIMAL = re.compile(r"(?<![\w./\-])(\d+\.\d+)(?![\w.]*\.?\w)")
NOT_MEASURED = re.compile(r"arXiv:\d+\.\d+|[Pp]ython \d+\.\d+|\d+\.\d+\.\d+")
SCALES = (1.0, 100.0, 1 / 60)  # as stored, as a percentage, seconds as minutes


def result_values(results_dir: Path) -> list[float]:
    """Every number (booleans aside) anywhere in the result files."""
    values: list[float] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)
        elif isinstance(node, (int, float)) and not isinstance(node, bool):
            values.append(float(node))

    for path in sorted(results_dir.glob("*.json")):
        walk(json.loads(path.read_text()))
    return values


def document_decimals(text: str) -> Iterator[tuple[int, str]]:
    """(line number, decimal as written) for the prose and tables of a Markdown text."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.startswith("    "):
            continue
        for match in DECIMAL.finditer(NOT_MEASURED.sub(" ", line)):
            yield number, match.group(1)


def backed(written: str, values: list[float]) -> bool:
    """Some value, at some scale, rounds to `written` at its own number of decimals."""
    target, half_step = float(written), 0.5 * 10 ** -len(written.split(".")[1])
    return any(abs(value * scale - target) <= half_step + 1e-9 for value in values for scale in SCALES)


def unbacked_numbers(root: Path) -> list[str]:
    """`file:line: number` for each decimal in the documents that no result file holds."""
    values = result_values(root / RESULTS)
    return [
        f"{document}:{line}: {written} is in no {RESULTS}/*.json"
        for document in DOCUMENTS
        if (root / document).is_file()
        for line, written in document_decimals((root / document).read_text())
        if not backed(written, values)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=REPO, help="repository root")
    problems = unbacked_numbers(parser.parse_args().root)
    print("\n".join(problems) if problems else f"ok: every decimal in {len(DOCUMENTS)} documents is in a result file")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
