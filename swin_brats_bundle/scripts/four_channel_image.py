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

if __package__ in (None, ""):  # run as a file: make the bundle root importable so `scripts.*` resolves
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.atomic import atomic_path
from scripts.cases import dataset_info, inference_cases


def four_channel_image(case: dict) -> nib.Nifti1Image:
    """One inference case (`cases.inference_cases`) as a (x, y, z, 4) image in the network's channel order."""
    image = case["image"]
    if isinstance(image, str):  # one 4D file (MSD): reorder its channels
        source = nib.load(image)
        data = np.asarray(source.dataobj)[..., case["channel_indices"]]
    else:  # one file per modality, already listed in the network's order
        sources = [nib.load(path) for path in image]
        data, source = np.stack([np.asarray(s.dataobj) for s in sources], axis=-1), sources[0]
    return nib.Nifti1Image(data, source.affine)


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
