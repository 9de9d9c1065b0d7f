"""Write a Decathlon-style datalist (training cases with folds, unlabelled cases under `testing`) for a BraTS folder.

Run: python scripts/prepare_datalist.py --dataset_dir D --output F [--num_folds 5] [--seed 0] [--skip_bad]
Layouts: every one declared in scripts/layouts.py (listed at the end of --help).

Every case is checked first (scripts/preflight.py: files present and readable, 3D volumes on one voxel grid, finite,
not all zero, label values of the convention). Broken cases are listed, each with its file and reason, and no datalist
is written (exit status 1) unless --skip_bad, which writes it without them (folds dealt over the remaining cases).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the bundle root importable so `scripts.*` resolves
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.cases import discover
from scripts.datalist import save_datalist
from scripts.folds import assign_folds
from scripts.labels import CONVENTIONS, get_convention
from scripts.layouts import LAYOUTS, DatasetLayoutError
from scripts.preflight import Problem, check_cases, report


def checked_datalist(
    dataset_dir: str, num_folds: int = 5, seed: int = 0, label_convention: str = "auto", workers: int = 1
) -> tuple[dict, dict[str, list[Problem]]]:
    """The datalist of the usable cases under `dataset_dir` (folds dealt over them) and the broken ones."""
    info = discover(dataset_dir, num_folds, seed, allow_incomplete=True)
    convention = get_convention(label_convention, info["label_convention"])
    broken = check_cases(info["training"] + info["testing"], convention, workers)
    usable = {
        **info,
        "label_convention": convention.name,
        "training": assign_folds([c for c in info["training"] if c["case_id"] not in broken], num_folds, seed),
        "testing": [c for c in info["testing"] if c["case_id"] not in broken],
    }
    return usable, broken


def write_datalist(
    dataset_dir: str,
    output: str,
    num_folds: int = 5,
    seed: int = 0,
    label_convention: str = "auto",
    skip_bad: bool = False,
    workers: int = 1,
) -> tuple[dict, dict[str, list[Problem]]]:
    """Check the cases under `dataset_dir` and write their datalist to `output` (paths relative to dataset_dir).

    Raise `DatasetLayoutError` naming every broken case, writing nothing, unless `skip_bad` leaves them out.
    Return the datalist written and the broken cases.
    """
    datalist, broken = checked_datalist(dataset_dir, num_folds, seed, label_convention, workers)
    total = len(datalist["training"]) + len(datalist["testing"]) + len(broken)
    if broken and not skip_bad:
        raise DatasetLayoutError(f"{report(broken, total)}\nNo datalist written; fix these cases or pass --skip_bad.")
    if not datalist["training"] and not datalist["testing"]:
        raise DatasetLayoutError(f"{report(broken, total)}\nNo usable case left; no datalist written.")
    save_datalist(datalist, output, dataset_dir)
    return datalist, broken


def main(argv: list[str] | None = None) -> int:
    layouts = "\n".join(f"  {layout.example()}" for layout in LAYOUTS.values())
    parser = argparse.ArgumentParser(
        description=__doc__, epilog=f"layouts:\n{layouts}", formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset_dir", required=True, help="root folder of the dataset")
    parser.add_argument("--output", required=True, help="datalist JSON to write")
    parser.add_argument("--num_folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="seed of the fold assignment")
    parser.add_argument(
        "--label_convention", default="auto", choices=["auto", *CONVENTIONS], help="label values to accept"
    )
    parser.add_argument("--skip_bad", action="store_true", help="write the datalist without the broken cases")
    parser.add_argument("--workers", type=int, default=4, help="cases checked in parallel")
    args = parser.parse_args(argv)
    try:
        datalist, broken = write_datalist(
            args.dataset_dir,
            args.output,
            args.num_folds,
            args.seed,
            args.label_convention,
            args.skip_bad,
            args.workers,
        )
    except DatasetLayoutError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if broken:
        total = len(datalist["training"]) + len(datalist["testing"]) + len(broken)
        print(f"warning: {report(broken, total)}\nThey are left out of {args.output} (--skip_bad).", file=sys.stderr)
    folds = Counter(case["fold"] for case in datalist["training"])
    print(
        f"{args.output}: layout {datalist['layout']}, label convention {datalist['label_convention']}, "
        f"{len(datalist['training'])} labelled case(s) in folds {dict(sorted(folds.items()))}, "
        f"{len(datalist['testing'])} unlabelled."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
