"""Synthetic BraTS-like cases (4 MR contrasts, brain anatomy, nested tumour) written in any supported layout.

Run: python scripts/synthetic_data.py --output_dir D [--layout brats2021|brats2023|msd] [--num_cases 8] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

if __package__ in (None, ""):  # run as a file: make the bundle root importable so `scripts.*` resolves
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.cases import BRATS_LAYOUTS, CHANNELS
from scripts.labels import CONVENTIONS

# Mean tissue intensity per channel (FLAIR, T1ce, T1, T2): background, WM, GM, CSF, edema, necrosis, enhancing rim.
TISSUE_CONTRAST = {
    "wm": (0.60, 1.00, 1.00, 0.50),
    "gm": (0.80, 0.72, 0.70, 0.80),
    "csf": (0.20, 0.30, 0.30, 1.60),
    "edema": (1.50, 0.62, 0.60, 1.30),
    "necrosis": (0.90, 0.28, 0.35, 1.50),
    "enhancing": (1.20, 1.70, 0.55, 1.00),
}
MSD_FILE_ORDER = ("FLAIR", "T1", "T1ce", "T2")  # MSD's 4D channel order: FLAIR, T1w, t1gd, T2w
# A BraTS-like affine (1 mm, flipped x/y, shifted origin) so tests catch any output written on another grid.
AFFINE = np.array([[-1.0, 0, 0, 119.0], [0, -1.0, 0, 119.0], [0, 0, 1.0, -77.0], [0, 0, 0, 1.0]])


@dataclass
class SyntheticCase:
    images: np.ndarray  # (4, H, W, D) int16 in CHANNELS order
    edema: np.ndarray  # (H, W, D) bool, whole tumour minus core
    necrosis: np.ndarray  # core minus enhancing rim
    enhancing: np.ndarray

    def label_map(self, convention: str) -> np.ndarray:
        spec = CONVENTIONS[convention]
        label = np.zeros(self.edema.shape, dtype=np.uint8)
        label[self.edema] = spec.edema
        label[self.necrosis] = spec.core_only
        label[self.enhancing] = spec.enhancing
        return label


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], coarse: int = 4) -> np.ndarray:
    """Low-frequency random field in [-1, 1], the same size as `shape`."""
    grid = rng.uniform(-1, 1, size=(coarse,) * len(shape))
    field = ndimage.zoom(grid, [s / coarse for s in shape], order=3)[tuple(slice(0, s) for s in shape)]
    return np.clip(field, -1, 1)


def _blob(coords: np.ndarray, center: np.ndarray, radius: float, wobble: np.ndarray) -> np.ndarray:
    """Irregular ball: a sphere whose radius varies smoothly with position."""
    distance = np.linalg.norm(coords - center[:, None, None, None], axis=0)
    return distance <= radius * (1.0 + 0.25 * wobble)


def make_case(rng: np.random.Generator, shape: tuple[int, int, int]) -> SyntheticCase:
    """One case: ellipsoidal brain with WM/GM/ventricles, a nested tumour and per-scan scanner effects."""
    coords = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"))
    centre = np.array(shape, dtype=np.float32) / 2 + rng.uniform(-2, 2, 3)
    semi_axes = np.array(shape, dtype=np.float32) * rng.uniform(0.38, 0.44, 3)
    radial = np.sqrt((((coords - centre[:, None, None, None]) / semi_axes[:, None, None, None]) ** 2).sum(0))
    radial = radial * (1.0 + 0.05 * _smooth_field(rng, shape))
    brain, white_matter = radial <= 1.0, radial <= 0.72
    ventricles = np.zeros(shape, dtype=bool)
    for side in (-1, 1):
        offset = centre + np.array([side * semi_axes[0] * 0.18, 0, 0])
        ventricles |= (
            ((coords - offset[:, None, None, None]) / (semi_axes * [0.1, 0.3, 0.15])[:, None, None, None]) ** 2
        ).sum(0) <= 1

    # Tumour inside the brain, away from its edge: edema blob around an enhancing core with a necrotic centre.
    core_radius = rng.uniform(0.08, 0.14) * min(shape)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    tumour_centre = centre + direction * semi_axes * rng.uniform(0.0, 0.45)
    wobble = _smooth_field(rng, shape)
    edema_all = _blob(coords, tumour_centre, core_radius * rng.uniform(1.6, 2.2), wobble) & brain
    core = _blob(coords, tumour_centre, core_radius, wobble) & brain
    necrosis = _blob(coords, tumour_centre, core_radius * rng.uniform(0.4, 0.7), wobble) & core
    enhancing = core & ~necrosis
    edema = edema_all & ~core

    tissues = {
        "gm": brain & ~white_matter,
        "wm": white_matter & ~ventricles,
        "csf": ventricles & brain,
        "edema": edema,
        "necrosis": necrosis,
        "enhancing": enhancing,
    }
    images = np.zeros((len(CHANNELS), *shape), dtype=np.float32)
    for name, mask in tissues.items():
        for channel, level in enumerate(TISSUE_CONTRAST[name]):
            images[channel][mask] = level
    for channel in range(len(CHANNELS)):
        # Scanner effects differ per scan and contrast: smooth bias field, texture noise, gain, offset and gamma.
        bias = 1.0 + 0.15 * _smooth_field(rng, shape)
        noisy = images[channel] * bias + rng.normal(0, 0.05, shape)
        gain, offset, gamma = rng.uniform(300, 900), rng.uniform(0, 100), rng.uniform(0.85, 1.2)
        scaled = gain * np.clip(noisy, 0.01, None) ** gamma + offset
        images[channel] = np.where(brain, scaled, 0.0)
    return SyntheticCase(np.rint(images).astype(np.int16), edema, necrosis, enhancing)


def _save(array: np.ndarray, path: Path, affine: np.ndarray = AFFINE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))


def _case_id(layout: str, index: int) -> str:
    return {"brats2021": f"BraTS2021_{index:05d}", "brats2023": f"BraTS-GLI-{index:05d}-000"}.get(
        layout, f"BRATS_{index + 1:03d}"
    )


def write_case(
    output_dir: Path, layout: str, case_id: str, case: SyntheticCase, labelled: bool, affine: np.ndarray = AFFINE
) -> None:
    """Write one case's files where `layout` expects them, all on the voxel grid `affine`."""
    if layout == "msd":
        order = [CHANNELS.index(name) for name in MSD_FILE_ORDER]
        stacked = np.moveaxis(case.images[order], 0, -1)
        _save(stacked, output_dir / ("imagesTr" if labelled else "imagesTs") / f"{case_id}.nii.gz", affine)
        if labelled:
            _save(case.label_map("msd"), output_dir / "labelsTr" / f"{case_id}.nii.gz", affine)
        return
    spec = BRATS_LAYOUTS[layout]
    folder = output_dir / case_id
    for modality, image in zip(spec["modalities"], case.images, strict=True):
        _save(image, folder / f"{case_id}{spec['separator']}{modality}.nii.gz", affine)
    if labelled:
        _save(case.label_map(layout), folder / f"{case_id}{spec['separator']}{spec['label']}.nii.gz", affine)


def _write_msd_description(output_dir: Path, training: list[str], testing: list[str]) -> None:
    description = {
        "name": "BRATS (synthetic)",
        "description": "Synthetic cases in the layout of MSD Task01_BrainTumour",
        "tensorImageSize": "4D",
        "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"},
        "labels": {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"},
        "numTraining": len(training),
        "numTest": len(testing),
        "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in training],
        "test": [f"./imagesTs/{c}.nii.gz" for c in testing],
    }
    (output_dir / "dataset.json").write_text(json.dumps(description, indent=4) + "\n")


def write_dataset(
    output_dir: str | Path,
    layout: str = "brats2021",
    num_cases: int = 8,
    num_unlabelled: int = 0,
    shape: tuple[int, int, int] = (96, 96, 64),
    seed: int = 0,
) -> list[str]:
    """Write `num_cases` labelled and `num_unlabelled` unlabelled cases; return their case ids."""
    if layout not in ("brats2021", "brats2023", "msd"):
        raise ValueError(f"Unknown layout '{layout}'; choose brats2021, brats2023 or msd.")
    output_dir = Path(output_dir)
    rng = np.random.default_rng(seed)
    ids = [_case_id(layout, index) for index in range(num_cases + num_unlabelled)]
    for index, case_id in enumerate(ids):
        write_case(output_dir, layout, case_id, make_case(rng, tuple(shape)), labelled=index < num_cases)
    if layout == "msd":
        _write_msd_description(output_dir, ids[:num_cases], ids[num_cases:])
    return ids


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", required=True, help="folder to write the dataset into")
    parser.add_argument("--layout", default="brats2021", choices=["brats2021", "brats2023", "msd"])
    parser.add_argument("--num_cases", type=int, default=8, help="labelled cases")
    parser.add_argument("--num_unlabelled", type=int, default=0, help="cases without a label file")
    parser.add_argument("--shape", type=int, nargs=3, default=[96, 96, 64], metavar=("H", "W", "D"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    ids = write_dataset(args.output_dir, args.layout, args.num_cases, args.num_unlabelled, tuple(args.shape), args.seed)
    print(f"Wrote {len(ids)} synthetic {args.layout} case(s) to {args.output_dir}")


if __name__ == "__main__":
    main()
