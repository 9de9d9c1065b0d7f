"""Every measured number in the documents cites the result file and key it comes from, and equals that value.

Run: python ci/check_doc_numbers.py [--root REPO] [DOCUMENT ...]   (one line per problem, exit status 1 if any)

A measured number is followed by a citation, rendered on GitHub as a small superscript link to the result file:

    0.676<sup>[demo](bench/results/swin_brats_demo.json "evaluation_mean_dice.mean")</sup>
    665 s<sup>[demo](bench/results/swin_brats_demo.json "total_seconds")</sup>
    94.1 %<sup>[cls](bench/results/classification_default.json "test_accuracy *100")</sup>

The link target is a `bench/results/*.json` file (relative to the document, as GitHub resolves it); the title is a
key path into it (dots between keys, `[...]` around a key that holds dots or spaces, a number indexes a list),
optionally followed by a scale marker: `*100` (a fraction shown as a percentage), `/60` (seconds shown as minutes),
`/3600` (seconds shown as hours), or `%`, `min`, `h` (stored in those units already). The number must equal the value
at the precision it is written with, sign included; a percentage, minutes or hours must say so with a marker, and a
marker needs that unit. A published value cites its publication instead: `0.891<sup>[paper](https://arxiv.org/...)</sup>`.

Measured-looking (must be cited): outside code, every number with a decimal point or an exponent, every number
followed by a unit (time, memory, volume, length, %, a factor `x`, or `cases`/`voxels`), and the first end of a range
whose second end is one. Not measured (ci/README.md gives the rule): code spans and fenced blocks, link targets, HTML
tags, numbers inside identifiers, versions and paths (`fp32`, `BraTS2021_00000`, `1.6.1`, `arXiv:2201.01266`, `Python
3.11`), shapes (`96³`, `240 × 240 × 155`), a locator after `section`, and integers without a unit.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = (
    "README.md",
    "bench/README.md",
    "ci/README.md",
    "swin_brats_bundle/docs/README.md",
    "swin_brats_bundle/docs/guide.md",
    "swin_brats_bundle/docs/normalization.md",
    "classification_bundle/docs/README.md",
    "deploy/README.md",
)
RESULTS = "bench/results"

CITATION = re.compile(r'<sup>\[(?P<label>[^\]\n]+)\]\((?P<target>[^\s)]+)(?:\s+"(?P<title>[^"\n]*)")?\)</sup>')
NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?(?:[eE][-+−]?\d+)?")
# what a measured number may be followed by, directly or after one space
TIME = {"ms", "s", "sec", "second", "seconds", "min", "mins", "minute", "minutes", "h", "hr", "hour", "hours", "days"}
MEMORY = {"B", "bytes", "kB", "KB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB"}
SIZE = {"mL", "ml", "mm", "mm³", "mm3", "cm", "cm³"}
FACTOR = {"x", "×", "times"}
COUNT = {"cases", "voxels"}
PERCENT = {"%", "percent"}
MINUTES = {"min", "mins", "minute", "minutes"}
HOURS = {"h", "hr", "hour", "hours"}
UNITS = TIME | MEMORY | SIZE | FACTOR | COUNT | PERCENT
UNIT_AFTER = re.compile(r"[ \u00a0\u202f]?(%|[A-Za-zµ]+³?|×)(?![\w³])")
# scale markers: (factor applied to the stored value, units the written number must carry)
MARKERS = {
    "*100": (Decimal(100), PERCENT),
    "%": (Decimal(1), PERCENT),
    "/60": (Decimal(1) / Decimal(60), MINUTES),
    "min": (Decimal(1), MINUTES),
    "/3600": (Decimal(1) / Decimal(3600), HOURS),
    "h": (Decimal(1), HOURS),
}
# a version or a locator, not a measurement: "Python 3.11", "MONAI Label 0.8", "section 4.1"
NAMED = re.compile(
    r"(?<![\w-])(?:Python|MONAI|PyTorch|torch|MLflow|Holoscan|CUDA|NumPy|numpy|nilearn|SDK|Slicer|Label|version|BraTS|"
    r"License|Licence|BY|BY-SA|section|§)"
    r"[ \u00a0]*$"
)
RANGE = re.compile(r"[\s\x01]*(?:-|–|—|to)[\s\x01]*")
KEY_PART = re.compile(r"\[(.*?)\](?=\.|\[|$)|([^.\[\]]+)")  # [a key with dots, spaces or brackets]


@dataclass
class Number:
    """A number as written in a line, with what follows it."""

    start: int
    end: int  # end of the number, or of its unit when one follows
    text: str  # as written, sign included, without thousands separators
    unit: str | None
    measured: bool
    citations: int = 0


@dataclass
class Citation:
    start: int
    end: int
    label: str
    target: str
    title: str | None


CITED = "\x01"  # what a citation is masked with: blank to the prose, but not a space before a sign


def mask(line: str, pattern: re.Pattern[str], text: str, fill: str = " ") -> str:
    """`text` with every match of `pattern` in `line` blanked out (same length, so positions stay)."""
    for match in pattern.finditer(line):
        text = text[: match.start()] + fill * (match.end() - match.start()) + text[match.end() :]
    return text


CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
LINK_TARGET = re.compile(r"(?<=\])\([^)\s]*(?:\s+\"[^\"]*\")?\)")
HTML = re.compile(r"<!--.*?-->|<[^>\n]+>")
URL = re.compile(r"https?://\S+")


def prose(line: str) -> tuple[str, list[Citation]]:
    """The line with code, citations, link targets, HTML and URLs blanked, and the citations it holds (not in code)."""
    text = mask(line, CODE_SPAN, line)
    citations = [
        Citation(m.start(), m.end(), m.group("label"), m.group("target"), m.group("title"))
        for m in CITATION.finditer(text)
    ]
    text = mask(text, CITATION, text, CITED)
    for pattern in (LINK_TARGET, HTML, URL):
        text = mask(text, pattern, text)
    return text, citations


def unit_after(text: str, end: int) -> tuple[str | None, int]:
    """The unit right after position `end` (attached or after one space) and where it ends."""
    if end < len(text) and text[end] == "%":
        return "%", end + 1
    match = UNIT_AFTER.match(text, end)
    if match and match.group(1) in UNITS:
        return match.group(1), match.end()
    return None, end


def numbers(text: str) -> list[Number]:
    """The numbers of a masked line that could be measurements, each marked measured-looking or not."""
    found: list[Number] = []
    for match in NUMBER.finditer(text):
        start, end = match.span()
        before = text[start - 1] if start else " "
        after = text[end] if end < len(text) else " "
        if before.isalnum() or before in "_./\\:#@$" or after == "³":
            continue  # inside an identifier, a path, a version or a shape
        if after == "." and text[end + 1 : end + 2].isdigit():
            continue  # a version such as 1.6.1
        sign = ""
        if before in "-−+":
            ahead = text[: start - 1].rstrip(CITED)[-1:] or " "
            if ahead.isalpha():
                continue  # an identifier such as feature-12
            if not ahead.isdigit():
                sign = "-" if before in "-−" else ""
                start -= 1
        if re.match(r"\s*[×x]\s*\d", text[end:]) or re.search(r"\d\s*[×x]\s*[-−]?$", text[:start]):
            continue  # an operand of a shape, 240 × 240 × 155
        if NAMED.search(text[:start]):
            continue
        unit, unit_end = unit_after(text, end)
        if unit is None and (after.isalpha() or after == "_"):
            continue  # 3D, 2nd, 64bit: part of a word
        written = match.group().replace(",", "")
        measured = unit is not None or "." in written or "e" in written.lower()
        found.append(Number(start, unit_end, sign + written.replace("−", "-"), unit, measured))
    # the first end of a range shares the second end's unit: "41-45 s", "3 to 4 mL"
    for first, second in reversed(list(zip(found, found[1:], strict=False))):
        if first.unit is None and RANGE.fullmatch(text[first.end : second.start]):
            first.unit = second.unit
            first.measured = first.measured or second.measured
    return found


def resolve(content: object, key: str) -> tuple[object, str | None]:
    """The value at a key path (`a.b.0`, `runs[quick, 8 epochs].final`), or the reason there is none."""
    node, done = content, []
    position = 0
    parts = []
    while position < len(key):
        match = KEY_PART.match(key, position)
        if not match:
            return None, f"cannot read key path {key!r}"
        parts.append(match.group(1) if match.group(1) is not None else match.group(2))
        position = match.end()
        if position < len(key) and key[position] == ".":
            position += 1
    if not parts:
        return None, "empty key"
    for part in parts:
        where = ".".join(done) or "the top level"
        if isinstance(node, dict):
            if part not in node:
                return None, f"no key {part!r} under {where}"
            node = node[part]
        elif isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                return None, f"no index {part!r} in the list at {where} ({len(node)} items)"
            node = node[int(part)]
        else:
            return None, f"{where} is a value, not an object"
        done.append(part)
    return node, None


def equals_as_written(value: Decimal, written: str) -> bool:
    """`value` rounds to `written` at the precision it is written with (its last digit), sign included."""
    target = Decimal(written)
    mantissa, _, exponent = written.lower().partition("e")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    step = Decimal(10) ** (int(exponent or 0) - decimals)
    if abs(value - target) > step / 2 * (1 + Decimal("1e-9")):
        return False
    return target == 0 or (value < 0) == (target < 0)


def check_citation(number: Number, citation: Citation, document: Path, root: Path) -> tuple[str | None, bool]:
    """A problem with one citation (None if it holds), and whether the cited file holds synthetic data."""
    if citation.target.startswith(("http://", "https://")):
        return None, False  # a published value, cited to its publication
    results = (root / RESULTS).resolve()
    path = (document.parent / citation.target.split("#")[0]).resolve()
    if path.parent != results or path.suffix != ".json":
        return f"cites {citation.target}, which is not a {RESULTS}/*.json file", False
    if not path.is_file():
        return f"cites {citation.target}, which does not exist", False
    if not citation.title:
        return f'cites {citation.target} without a key (the link title, "key.path")', False
    words = citation.title.split()
    marker = words[-1] if len(words) > 1 and words[-1] in MARKERS else None
    key = citation.title[: citation.title.rindex(marker)].strip() if marker else citation.title.strip()
    content = json.loads(path.read_text())
    synthetic = isinstance(content, dict) and content.get("synthetic_data") is True
    value, problem = resolve(content, key)
    cited = f'{path.name} "{key}"'
    if problem:
        return f"cites {cited}: {problem}", synthetic
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"cites {cited}, which holds {value!r}, not a number", synthetic
    unit = number.unit
    if marker:
        scale, units = MARKERS[marker]
        if unit not in units:
            return (
                f"cites {cited} with the marker {marker}, which needs the number written in {sorted(units)}",
                synthetic,
            )
    else:
        scale = Decimal(1)
        for units, needed in ((PERCENT, "*100 or %"), (MINUTES, "/60 or min"), (HOURS, "/3600 or h")):
            if unit in units:
                return f"is written in {unit} but its citation {cited} has no scale marker ({needed})", synthetic
    shown = Decimal(repr(value)) * scale
    if not equals_as_written(shown, number.text):
        written = Decimal(number.text)
        flipped = written != 0 and shown != 0 and (shown < 0) != (written < 0)
        marked = f" {marker}" if marker else ""
        return f"cites {cited} = {value}{marked}, which is not {number.text}" + (
            " (the sign differs)" if flipped else ""
        ), synthetic
    return None, synthetic


def line_problems(text: str, citations: list[Citation], document: Path, root: Path) -> tuple[list[str], list[str]]:
    """The problems of one masked line (without `file:line: `), and the cited numbers that come from synthetic data."""
    problems, synthetic_numbers = [], []
    found = numbers(text)
    for citation in citations:
        between = CITED + " *_"  # another citation, spaces or emphasis may sit between a number and its citation
        beside = [n for n in found if n.end <= citation.start and not text[n.end : citation.start].strip(between)]
        if not beside:
            problems.append(f"citation [{citation.label}] is not beside a number")
            continue
        number = beside[-1]
        number.citations += 1
        if number.citations > 1:
            problems.append(f"{number.text} has more than one citation")
            continue
        problem, synthetic = check_citation(number, citation, document, root)
        if problem:
            problems.append(f"{number.text}: {problem}")
        elif synthetic:
            synthetic_numbers.append(number.text)
    for number in found:
        if number.measured and not number.citations:
            unit = f" {number.unit}" if number.unit else ""
            problems.append(
                f"{number.text}{unit} has no citation "
                f'(<sup>[label]({RESULTS}/FILE.json "key")</sup>, or a publication link for a published value)'
            )
    return problems, synthetic_numbers


def document_problems(document: Path, root: Path) -> list[str]:
    """`file:line: ...` for each uncited, wrongly cited or unmarked synthetic number of a document."""
    name = document.relative_to(root).as_posix() if document.is_relative_to(root) else str(document)
    problems: list[str] = []
    fenced = commented = False
    heading, block, synthetic = "", [], []  # the section heading, the block's prose, its numbers from synthetic data

    def close_block() -> None:
        if synthetic and "synthetic" not in (heading + " ".join(block)).lower():
            problems.extend(f"{where}: synthetic data, but neither its paragraph, table nor heading says so"
                            for where in synthetic)  # fmt: skip
        block.clear()
        synthetic.clear()

    for line_number, line in enumerate(document.read_text().splitlines(), 1):
        if line.strip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if fenced:
            continue
        if commented:  # inside a multi-line HTML comment
            if "-->" not in line:
                continue
            commented, line = False, " " * (line.index("-->") + 3) + line[line.index("-->") + 3 :]
        elif "<!--" in line and "-->" not in line[line.index("<!--") :]:
            commented, line = True, line[: line.index("<!--")]
        if not line.strip():
            close_block()
            continue
        text, citations = prose(line)
        if line.lstrip().startswith("#"):
            close_block()
            heading = text
        else:
            block.append(text)
        found, from_synthetic = line_problems(text, citations, document, root)
        problems.extend(f"{name}:{line_number}: {problem}" for problem in found)
        synthetic.extend(f"{name}:{line_number}: {number}" for number in from_synthetic)
    close_block()
    return problems


def check_documents(root: Path, documents: tuple[str, ...] | list[str] = DOCUMENTS) -> list[str]:
    """The problems of every listed document that exists under `root`."""
    return [problem for document in documents if (root / document).is_file()
            for problem in document_problems(root / document, root)]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=REPO, help="repository root")
    parser.add_argument("documents", nargs="*", default=list(DOCUMENTS), help="documents relative to the root")
    args = parser.parse_args()
    problems = check_documents(args.root.resolve(), args.documents)
    print("\n".join(problems) if problems else f"ok: every measured number in {len(args.documents)} documents is cited")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
