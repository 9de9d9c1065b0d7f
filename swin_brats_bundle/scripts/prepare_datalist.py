"""Write a Decathlon-style datalist (training cases with folds, unlabelled cases under `testing`) for a BraTS folder.

Run: python scripts/prepare_datalist.py --dataset_dir D --output F [--num_folds 5] [--seed 0]
Layouts: BraTS 2021 (<case>_flair.nii.gz ...), BraTS 2023+ (<case>-t2f.nii.gz ...), MSD Task01 (imagesTr/, labelsTr/).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the bundle root importable so `scripts.*` resolves
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.atomic import atomic_write
from scripts.cases import DatasetLayoutError, discover, to_relative


def write_datalist(dataset_dir: str, output: str, num_folds: int = 5, seed: int = 0) -> dict:
    """Discover the cases under `dataset_dir` and write their datalist to `output` (paths relative to dataset_dir)."""
    datalist = to_relative(discover(dataset_dir, num_folds, seed), dataset_dir)
    with atomic_write(output) as f:
        f.write(json.dumps(datalist, indent=4) + "\n")
    return datalist


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_dir", required=True, help="root folder of the dataset")
    parser.add_argument("--output", required=True, help="datalist JSON to write")
    parser.add_argument("--num_folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="seed of the fold assignment")
    args = parser.parse_args(argv)
    try:
        datalist = write_datalist(args.dataset_dir, args.output, args.num_folds, args.seed)
    except DatasetLayoutError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    folds = Counter(case["fold"] for case in datalist["training"])
    print(
        f"{args.output}: layout {datalist['layout']}, label convention {datalist['label_convention']}, "
        f"{len(datalist['training'])} labelled case(s) in folds {dict(sorted(folds.items()))}, "
        f"{len(datalist['testing'])} unlabelled."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
