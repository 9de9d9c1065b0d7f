"""Command line of the case pictures: axial, sagittal and coronal FLAIR slices with label overlays, as a PNG.

Run: python scripts/visualize.py --image IMG [--prediction PRED] [--label SEG] [--label_convention auto]
     --output OUT.png
IMG is a FLAIR NIfTI file, a 4D MSD image (channel 0, FLAIR, is shown) or a BraTS case folder (its *_flair or
*-t2f file). PRED and SEG are label maps in the dataset's values; at least one is needed. `auto` takes the convention
of the layout the image's name and place show (`labels.auto_convention`); for a lone file named otherwise, brats2021
when a label 4 is present, else msd for a 4D image, else brats2023. The pictures themselves: `pictures.py`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the bundle root importable so `scripts.*` resolves
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.labels import CONVENTIONS, auto_convention
from scripts.layouts import layout_of_file
from scripts.naming import case_id_from_path
from scripts.pictures import check_values, find_flair, load_flair, load_label, render_case


def main(argv: list[str] | None = None) -> int:
    """Draw one case's picture: 0 when written, 1 with one `error:` line naming the file when not."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", required=True, help="FLAIR NIfTI, 4D MSD image or BraTS case folder")
    parser.add_argument("--prediction", help="predicted label map (NIfTI)")
    parser.add_argument("--label", help="ground-truth label map (NIfTI)")
    parser.add_argument("--label_convention", default="auto", choices=["auto", *CONVENTIONS])
    parser.add_argument("--output", required=True, help="PNG to write")
    parser.add_argument("--title", help="picture title (default: the case id)")
    args = parser.parse_args(argv)
    if args.prediction is None and args.label is None:
        parser.error("give --prediction, --label or both.")
    try:
        flair_file = find_flair(Path(args.image))
        flair, spacing, four_dimensional = load_flair(flair_file)
        prediction = load_label(Path(args.prediction), flair.shape) if args.prediction else None
        truth = load_label(Path(args.label), flair.shape) if args.label else None
        given = [label for label in (prediction, truth) if label is not None]
        convention = (
            auto_convention(layout_of_file(flair_file), given, four_dimensional)
            if args.label_convention == "auto"
            else CONVENTIONS[args.label_convention]
        )
        for path, label in ((args.prediction, prediction), (args.label, truth)):
            if label is not None:
                check_values(label, convention, Path(path))
        title = args.title or f"{case_id_from_path(flair_file)} ({convention.name})"
        output = render_case(flair, args.output, convention, prediction, truth, title, spacing)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
