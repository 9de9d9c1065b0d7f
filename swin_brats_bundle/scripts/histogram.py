"""Command line of Nyúl–Udupa histogram standardisation: fit the landmarks on the training cases of one fold.

Run: python -m scripts.histogram fit --dataset_dir D [--datalist F] [--fold 0] [--num_folds 5] [--seed 0]
         [--output models/landmarks.json] [--num_workers 0]
(`landmarks.py` holds the fitting, `standardization.py` the transform that applies it.)
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the bundle root importable so `scripts.*` resolves
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.cases import discover
from scripts.datalist import load_datalist
from scripts.errors import first_line
from scripts.landmarks import fit_fold
from scripts.layouts import DatasetLayoutError


def main(argv: list[str] | None = None) -> int:
    """`fit` from the command line: 0 when the landmarks are written, 1 with one `error:` line when not."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser("fit", help="fit landmarks on the training cases of one fold")
    fit.add_argument("--dataset_dir", required=True, help="root folder of the dataset")
    fit.add_argument("--datalist", default=None, help="datalist JSON with folds (else cases and folds are discovered)")
    fit.add_argument("--fold", type=int, default=0, help="the validation fold; its cases are left out")
    fit.add_argument("--num_folds", type=int, default=5)
    fit.add_argument("--seed", type=int, default=0, help="seed of the fold assignment")
    fit.add_argument("--output", default="models/landmarks.json", help="landmarks JSON to write, next to the weights")
    fit.add_argument("--num_workers", type=int, default=0, help="processes reading the cases")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.datalist:
            info = load_datalist(args.datalist, args.dataset_dir)
        else:  # unlike the workflows' dataset_info, stop at incomplete cases: there is no preflight check here
            info = discover(args.dataset_dir, args.num_folds, args.seed)
        record = fit_fold(info, args.fold, args.output, args.num_workers)
    except DatasetLayoutError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (OSError, ValueError, RuntimeError) as error:  # an unreadable case or datalist
        print(f"error: {first_line(error)}", file=sys.stderr)
        return 1
    print(f"{args.output}: landmarks for {', '.join(record['channels'])} from {len(record['cases'])} training case(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
