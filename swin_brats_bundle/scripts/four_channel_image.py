"""Write each case of a dataset as one 4D NIfTI in the network's channel order, the one image MONAI Label serves.

MONAI Label and MONAI Deploy hand a bundle one image per study; BraTS keeps four files per case. The 4D file keeps the
first modality's affine and the source integer type; channels follow `cases.CHANNELS` (FLAIR, T1ce, T1, T2).

Run: python scripts/four_channel_image.py --dataset_dir D --output_dir OUT [--datalist F]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

if __package__ in (None, ""):  # run as a file: make the bundle root importable so `scripts.*` resolves
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.atomic import atomic_path
from scripts.datalist import dataset_info, inference_cases
from scripts.transforms import ReorderChannelsd

# inference.json's loading, with the source integer type kept (dtype None)
LOAD_IN_NETWORK_ORDER = Compose(
    [LoadImaged("image", image_only=True, dtype=None), EnsureChannelFirstd("image"), ReorderChannelsd("image")]
)


def four_channel_image(case: dict) -> nib.Nifti1Image:
    """One inference case (`datalist.inference_cases`) as a (x, y, z, 4) image in the network's channel order, loaded
    and reordered by the transforms inference.json runs (the case's own `channel_indices`)."""
    image = LOAD_IN_NETWORK_ORDER(dict(case))["image"]
    return nib.Nifti1Image(np.moveaxis(image.numpy(), 0, -1), image.affine.numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_dir", required=True)
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--datalist", default=None)
    args = parser.parse_args()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    cases = inference_cases(dataset_info(args.dataset_dir, args.datalist))
    for index, case in enumerate(cases, 1):
        with atomic_path(args.output_dir / f"{case['case_id']}.nii.gz", suffix=".nii.gz") as partial:
            nib.save(four_channel_image(case), partial)
        print(f"{index}/{len(cases)} {case['case_id']}", flush=True)


if __name__ == "__main__":
    main()
