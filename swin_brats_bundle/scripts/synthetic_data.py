"""Realistic synthetic BraTS-like cases on real brain anatomy, written in any supported layout. SYNTHETIC DATA.

Anatomy: the MNI ICBM152 2009a T1 template and its white-matter map, read at run time from the installed nilearn
package (never copied into this repository), deformed per case (affine, elastic, tumour mass effect). FLAIR, T1ce and
T2 get their own CSF/grey/white-matter contrast; tumours have a necrotic core, an enhancing rim and edema that spreads
along white matter, irregular shapes and a spread of sizes; some cases have two lesions, some no enhancing tumour.
Each modality of each case has its own scanner: bias field, gain, offset, gamma and Rician noise.

Each task's label convention gets its own mix of cases (`TASK_DECKS`): post-treatment glioma (brats2024) mostly a
resection cavity (fluid, outside the tumour, a residual enhancing rim and edema around it), metastases (met) several
small lesions, paediatric tumours (ped) a cystic component inside the core. The first case of such a dataset is of
the task's own kind. Labels are written in the convention's values (`--label_convention`, by default the layout's).

Run: python scripts/synthetic_data.py --output_dir D [--layout brats2021 (any in scripts/layouts.py)] [--num_cases 20]
     [--label_convention brats2024 (one the layout may hold)] [--spacing 1|2 (mm; 1 = the 240x240x155 BraTS grid)]
     [--shape H W D] [--seed 0] [--preview PNG] [--workers N (processes; the data do not depend on it)]
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage
from scipy.special import expit

if __package__ in (None, ""):  # run as a file: make the bundle root importable so `scripts.*` resolves
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.labels import CONVENTIONS, label_names
from scripts.layouts import CHANNELS, DECATHLON_DESCRIPTION, LAYOUTS, TEST_IMAGES, TRAINING_IMAGES, TRAINING_LABELS

ANATOMY = (
    "MNI ICBM152 2009a nonlinear symmetric template (nilearn), randomly deformed per case. Copyright (C) 1993-2009 "
    "Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological Institute, McGill University "
    "(docs/data_license.txt has the full notice)"
)
BRATS_GRID = (240, 240, 155)
"""Voxels of a BraTS case at 1 mm; at spacing s the default grid is this divided by s, rounded up."""
TEMPLATE = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}

# Brain tissue on each channel (FLAIR, T1ce, T1, T2), relative to white matter: CSF, grey matter, white matter.
TISSUE_CONTRAST = {"csf": (0.35, 0.40, 0.38, 2.40), "gm": (1.25, 0.76, 0.72, 1.35), "wm": (1.0, 1.0, 1.0, 1.0)}
# Template T1 (white matter = 1) at which each tissue's contrast applies; intensities between them blend linearly.
TISSUE_T1 = {"csf": 0.34, "gm": 0.72, "wm": 1.0}
# Tumour sub-regions on each channel (FLAIR, T1ce, T1, T2), relative to white matter; a cyst holds proteinaceous
# fluid (brighter than CSF on FLAIR), a resection cavity CSF-like fluid.
TUMOUR_CONTRAST = {
    "edema": (1.80, 0.70, 0.70, 1.90),
    "necrosis": (1.10, 0.35, 0.40, 2.20),
    "non_enhancing": (1.50, 0.60, 0.60, 1.80),
    "enhancing": (1.40, 1.90, 0.80, 1.40),
    "cyst": (0.75, 0.45, 0.42, 2.30),
    "cavity": (0.38, 0.40, 0.38, 2.40),
}
# Unlabelled look-alikes on each channel, relative to white matter: white-matter hyperintensities (small-vessel
# disease, bright on FLAIR/T2 like edema) and enhancing vessels, dura and choroid plexus (bright on T1ce like ET).
MIMIC_CONTRAST = {"white_matter_lesion": (1.55, 0.85, 0.85, 1.60), "vessel": (0.95, 1.70, 1.00, 0.70)}
# A BraTS-like 1 mm affine (flipped x/y, shifted origin); `brats_affine` gives it for other grids and spacings.
AFFINE = np.array([[-1.0, 0, 0, 119.0], [0, -1.0, 0, 119.0], [0, 0, 1.0, -77.0], [0, 0, 0, 1.0]])

# Kinds of case, dealt in shuffled decks of ten so every ten cases hold this mix (BraTS has mostly large
# high-grade tumours, some small ones, a few multifocal, and some without enhancing tumour).
CASE_DECK = ("large",) * 3 + ("medium",) * 2 + ("small",) * 2 + ("two_lesions",) * 2 + ("no_enhancing",)
# Decks of the conventions whose tasks have their own tissues or lesion pattern; the first card leads a dataset.
TASK_DECKS = {
    "brats2024": ("resection_cavity",) * 5 + ("large",) * 2 + ("medium", "small", "no_enhancing"),
    "met": ("metastases",) * 7 + ("resection_cavity",) * 2 + ("small",),
    "ped": ("cystic",) * 4 + ("large",) * 2 + ("medium",) * 2 + ("small", "no_enhancing"),
}
CORE_RADIUS_MM = {
    "large": (13.0, 20.0),
    "medium": (8.0, 13.0),
    "small": (4.0, 7.0),
    "two_lesions": (6.0, 13.0),
    "resection_cavity": (11.0, 18.0),
    "cystic": (11.0, 18.0),
    "metastases": (2.5, 6.0),
}
METASTASES = (3, 7)
"""Lesions of a `metastases` case: from 3 to 6."""


@dataclass
class SyntheticCase:
    images: np.ndarray  # (4, H, W, D) int16 in CHANNELS order
    edema: np.ndarray  # (H, W, D) bool, whole tumour minus core
    necrosis: np.ndarray  # core minus enhancing tumour and cyst (necrotic or non-enhancing core)
    enhancing: np.ndarray
    affine: np.ndarray = field(default_factory=lambda: AFFINE.copy())
    kind: str = ""
    cyst: np.ndarray | None = None  # inside the core (a cystic component)
    cavity: np.ndarray | None = None  # outside the whole tumour (a resection cavity)

    def tissue(self, name: str) -> np.ndarray:
        """The voxels of one tissue of `labels.TISSUE_NAMES` (a cyst is core where a convention has no CC)."""
        empty = np.zeros(self.edema.shape, bool)
        cyst = self.cyst if self.cyst is not None else empty
        masks = {"ED": self.edema, "NCR": self.necrosis, "ET": self.enhancing, "CC": cyst, "RC": self.cavity}
        masks |= {"SNFH": self.edema, "NET": self.necrosis, "NETC": self.necrosis}
        masks["GTV"] = self.necrosis | self.enhancing | cyst
        return empty if masks[name] is None else masks[name]

    def label_map(self, convention: str) -> np.ndarray:
        """The case's labels in a convention's values; tissues it has no label for stay 0 (a cavity before 2024),
        but a cyst it has no label for is core."""
        spec = CONVENTIONS[convention]
        label = np.zeros(self.edema.shape, dtype=np.uint8)
        if self.cyst is not None and "CC" not in spec.tissues.values() and spec.core_only is not None:
            label[self.cyst] = spec.core_only
        for value, tissue in spec.tissues.items():
            label[self.tissue(tissue)] = value
        return label


@dataclass(frozen=True)
class Template:
    t1: np.ndarray  # float32, white matter ~1, background 0
    wm: np.ndarray  # white-matter probability in [0, 1]
    voxel_to_mm: np.ndarray
    brain_centre_mm: np.ndarray
    brain_extent_mm: np.ndarray


@functools.lru_cache(maxsize=1)
def load_template() -> Template:
    """The ICBM152 2009a T1 and white-matter maps from the installed nilearn wheel (read, not imported)."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("synthetic data needs the brain template of the nilearn package: pip install nilearn")
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    t1_image = nib.load(folder / TEMPLATE["t1"])
    t1 = np.asarray(t1_image.dataobj, dtype=np.float32)
    t1 /= np.percentile(t1[t1 > 0], 95)  # white matter ~1
    wm = np.asarray(nib.load(folder / TEMPLATE["wm"]).dataobj, dtype=np.float32) / 255.0
    voxels = np.argwhere(t1 > 0.05)
    low, high = voxels.min(0), voxels.max(0)
    to_mm = t1_image.affine
    centre = (to_mm @ np.append((low + high) / 2, 1))[:3]
    return Template(t1, wm, to_mm, centre, (high - low + 1) * np.abs(np.diag(to_mm)[:3]))


def brats_affine(shape: tuple[int, int, int], spacing: float) -> np.ndarray:
    """BraTS-like storage (x and y flipped) at `spacing` mm, the grid centred on the template brain's centre."""
    centre = load_template().brain_centre_mm
    affine = np.diag([-spacing, -spacing, spacing, 1.0])
    affine[:3, 3] = centre - affine[:3, :3] @ ((np.array(shape) - 1) / 2)
    return affine


def grid_for(shape: tuple[int, int, int] | None, spacing: float | None) -> tuple[tuple[int, int, int], float]:
    """Grid and isotropic spacing: the BraTS grid at `spacing`, or the spacing that fits the brain into `shape`."""
    if shape is None:
        spacing = 1.0 if spacing is None else float(spacing)
        return tuple(int(np.ceil(n / spacing)) for n in BRATS_GRID), spacing
    if spacing is None:
        spacing = float(np.max(load_template().brain_extent_mm * 1.02 / np.array(shape)))
    return tuple(int(n) for n in shape), float(spacing)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise, unit standard deviation, correlation length `sigma` voxels."""
    coarse = max(1, int(sigma // 2))  # filter a decimated field: the same look, far fewer voxels to filter
    small = ndimage.gaussian_filter(rng.standard_normal([-(-s // coarse) for s in shape]), sigma / coarse)
    field = ndimage.zoom(small, coarse, order=1)[tuple(slice(0, s) for s in shape)] if coarse > 1 else small
    return (field - field.mean()) / (field.std() + 1e-8)


def _rotation(rng: np.random.Generator, degrees: tuple[float, float, float]) -> np.ndarray:
    angles = np.radians([rng.uniform(-d, d) for d in degrees])
    matrix = np.eye(3)
    for axis, angle in enumerate(angles):
        c, s = np.cos(angle), np.sin(angle)
        a, b = [i for i in range(3) if i != axis]
        r = np.eye(3)
        r[a, a], r[a, b], r[b, a], r[b, b] = c, -s, s, c
        matrix = r @ matrix
    return matrix


@dataclass
class Lesion:
    centre: np.ndarray  # mm, in the case's world space
    core_radius: float  # mm
    edema_scale: float  # edema reach / core radius
    rim_mm: float  # thickness of the enhancing rim around the necrotic centre (a core thinner than it is solid)
    enhancing: bool


def _place_lesions(rng: np.random.Generator, kind: str, tissue_mm: np.ndarray, wm: np.ndarray, depth_mm: np.ndarray):
    """Lesions for a case `kind`, centred in white matter deep enough for their core."""
    count = 2 if kind == "two_lesions" else 1
    if kind == "metastases":
        count = int(rng.integers(*METASTASES))
    low, high = CORE_RADIUS_MM.get(kind, CORE_RADIUS_MM["medium"])
    lesions = []
    for _ in range(count):
        radius = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        candidates = np.flatnonzero((wm > 0.5) & (depth_mm > radius + 6.0))
        if candidates.size == 0:
            candidates = np.flatnonzero(depth_mm >= depth_mm.max() * 0.5)
        centre = tissue_mm[:, rng.choice(candidates)]
        lesions.append(
            Lesion(
                centre=centre,
                core_radius=radius,
                edema_scale=rng.uniform(1.4, 2.4),
                rim_mm=rng.uniform(3.0, 7.0),
                enhancing=kind != "no_enhancing",
            )
        )
    return lesions


def _mass_effect(points_mm: np.ndarray, lesions: list[Lesion]) -> np.ndarray:
    """Where each output point's tissue comes from: anatomy pushed away from each lesion (a fold-free radial warp)."""
    source = points_mm.copy()
    for lesion in lesions:
        offset = source - lesion.centre[:, None]
        distance = np.linalg.norm(offset, axis=0)
        sigma = lesion.core_radius * 1.5
        source = lesion.centre[:, None] + offset * (1.0 - 0.45 * np.exp(-((distance / sigma) ** 2)))
    return source


def _lesion_fields(
    rng: np.random.Generator, lesion: Lesion, points_mm: np.ndarray, shape: tuple[int, ...], spacing: float, wm, t1
):
    """Soft (0..1) whole-tumour, core and enhancing fields of one lesion on the output grid."""
    distance = np.linalg.norm(points_mm - lesion.centre[:, None], axis=0).reshape(shape)
    furthest = lesion.core_radius * max(lesion.edema_scale * 1.5, 1.6)  # no outline reaches beyond this
    reach = furthest + 8.0
    box = tuple(
        slice(max(0, int(np.min(idx)) - 1), int(np.max(idx)) + 2) for idx in np.nonzero(distance <= reach)
    ) or tuple(slice(0, s) for s in shape)
    d = distance[box]
    local = d.shape
    # irregular outlines: the radius varies with position by a smooth field a fraction of the lesion's size
    wobble_core = np.clip(_smooth_noise(rng, local, max(1.0, 0.6 * lesion.core_radius / spacing)), -2.5, 2.5)
    wobble_edema = np.clip(_smooth_noise(rng, local, max(1.0, 0.5 * furthest / spacing / 1.5)), -2.5, 2.5)
    soft = max(0.6, 1.0 / spacing)  # border width in voxels, about 1 mm
    core = expit((1.0 - d / (lesion.core_radius * (1 + 0.22 * wobble_core))) * lesion.core_radius / soft)
    # edema reaches further along white matter and stops at cortex and CSF
    wm_local, t1_local = wm[box], t1[box]
    edema_reach = lesion.core_radius * lesion.edema_scale * (0.5 + 0.7 * wm_local) * (1 + 0.25 * wobble_edema)
    edema_reach = np.minimum(edema_reach, furthest)
    edema = expit((edema_reach - d) / (2.0 * soft * spacing))
    edema *= np.clip((t1_local - 0.45) / 0.2, 0, 1)  # no edema in CSF
    whole = np.maximum(edema, core)
    enhancing = np.zeros(local, dtype=np.float32)
    if lesion.enhancing:
        wobble_necrosis = _smooth_noise(rng, local, max(1.0, 0.4 * lesion.core_radius / spacing))
        inner = (lesion.core_radius - lesion.rim_mm) * (1 + 0.3 * wobble_necrosis)
        necrotic = expit((inner - d) / (soft * spacing))
        enhancing = core * (1.0 - necrotic)
    fields = []
    for local_field in (whole, core, enhancing):
        full = np.zeros(shape, dtype=np.float32)
        full[box] = local_field
        fields.append(full)
    return fields


def _mimics(
    rng: np.random.Generator, points_mm: np.ndarray, spacing: float, t1, wm, depth_mm, tumour
) -> dict[str, np.ndarray]:
    """Soft weights of the unlabelled look-alikes: a few white-matter hyperintensities, and vessel, dura and choroid
    plexus enhancement in a band under the brain surface and inside the ventricles."""
    shape = t1.shape
    lesions = np.zeros(shape, np.float32)
    candidates = np.flatnonzero((wm.ravel() > 0.6) & (tumour.ravel() < 0.05) & (depth_mm.ravel() > 8.0))
    for _ in range(int(rng.integers(0, 7)) if candidates.size else 0):
        centre = points_mm[:, rng.choice(candidates)]
        radius = rng.uniform(1.5, 5.0)
        distance = np.linalg.norm(points_mm - centre[:, None], axis=0).reshape(shape)
        lesions = np.maximum(lesions, expit((radius - distance) / max(0.6, spacing / 2)))
    patches = _smooth_noise(rng, shape, max(1.0, 4.0 / spacing))
    surface = (depth_mm > 0) & (depth_mm < 4.0) & (patches > 1.3)
    ventricles = (t1 < 0.45) & (depth_mm > 15.0) & (patches > 1.6)
    vessels = ndimage.gaussian_filter((surface | ventricles).astype(np.float32), max(0.5, 0.7 / spacing))
    return {"white_matter_lesion": lesions * (1 - tumour), "vessel": np.clip(1.5 * vessels, 0, 1) * (1 - tumour)}


def _tissue_image(t1: np.ndarray) -> np.ndarray:
    """(4, ...) healthy-tissue intensities relative to white matter, from the template T1 by piecewise-linear maps."""
    knots_t1 = [0.0, TISSUE_T1["csf"], TISSUE_T1["gm"], TISSUE_T1["wm"], 1.3]
    images = []
    for channel in range(len(CHANNELS)):
        values = [0.0] + [TISSUE_CONTRAST[tissue][channel] for tissue in ("csf", "gm", "wm")]
        values.append(values[-1] + (values[-1] - values[-2]) * (1.3 - 1.0) / (1.0 - TISSUE_T1["gm"]))
        images.append(np.interp(t1, knots_t1, values))
    return np.stack(images).astype(np.float32)


def make_case(
    rng: np.random.Generator,
    shape: tuple[int, int, int] | None = None,
    spacing: float | None = None,
    kind: str | None = None,
) -> SyntheticCase:
    """One synthetic case on the template anatomy; `kind` is one of CASE_DECK's or TASK_DECKS' entries (random when
    None)."""
    template = load_template()
    shape, spacing = grid_for(shape, spacing)
    kind = kind or str(rng.choice(CASE_DECK))
    affine = brats_affine(shape, spacing)
    grid = np.indices(shape, dtype=np.float32).reshape(3, -1)
    points_mm = affine[:3, :3] @ grid + affine[:3, 3:4]

    # this case's anatomy: a random affine and elastic deformation of the template about the brain's centre
    centre = template.brain_centre_mm
    linear = _rotation(rng, (5.0, 5.0, 10.0)) * rng.uniform(0.90, 1.04) * rng.uniform(0.96, 1.04, 3)[:, None]
    shift = rng.uniform(-4.0, 4.0, 3)
    elastic = np.stack([_smooth_noise(rng, shape, 24.0 / spacing) for _ in range(3)]).reshape(3, -1)
    to_template = np.linalg.inv(template.voxel_to_mm)

    unlinear = np.linalg.inv(linear)

    def sample(world_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Template T1 and white matter at these points of the case."""
        anatomical = unlinear @ (world_mm - (centre + shift)[:, None]) + centre[:, None] + 3.0 * elastic
        voxels = to_template[:3, :3] @ anatomical + to_template[:3, 3:4]
        return tuple(
            ndimage.map_coordinates(volume, voxels, order=1, cval=0.0).reshape(shape)
            for volume in (template.t1, template.wm)
        )

    # lesions are placed on the undeformed-by-tumour anatomy, then the tissue around them is pushed aside
    t1_plain, wm_plain = sample(points_mm)
    brain_plain = t1_plain > 0.05
    depth_mm = ndimage.distance_transform_edt(brain_plain) * spacing
    lesions = _place_lesions(rng, kind, points_mm, wm_plain.ravel(), depth_mm.ravel())
    displaced = _mass_effect(points_mm, lesions)
    t1, wm = sample(displaced)
    brain = t1 > 0.05

    whole = np.zeros(shape, np.float32)
    core = np.zeros(shape, np.float32)
    enhancing = np.zeros(shape, np.float32)
    for lesion in lesions:
        w, c, e = _lesion_fields(rng, lesion, points_mm, shape, spacing, wm, t1)
        whole, core, enhancing = np.maximum(whole, w), np.maximum(core, c), np.maximum(enhancing, e)
    cavity = cyst = None
    if kind in ("resection_cavity", "cystic"):
        cavity, cyst = _fluid_fields(rng, kind, lesions[0], points_mm, shape, spacing)
        fluid = cavity if cavity is not None else cyst
        enhancing *= 1 - fluid
        if cavity is not None:  # the resected part is no longer tumour
            whole, core = whole * (1 - cavity), core * (1 - cavity)
    whole *= brain
    core, enhancing = np.minimum(core, whole), np.minimum(enhancing, core)

    labels_whole, labels_core, labels_enhancing = whole > 0.5, core > 0.5, enhancing > 0.5
    labels_core &= labels_whole
    labels_enhancing &= labels_core
    if not labels_whole.any():  # a lesion too small for this grid: keep the brightest voxel of its field
        labels_whole.flat[np.argmax(whole)] = labels_core.flat[np.argmax(whole)] = True
    labels_cavity = (cavity > 0.5) & brain & ~labels_whole if cavity is not None else None
    labels_cyst = (cyst > 0.5) & labels_core & ~labels_enhancing if cyst is not None else None

    images = _tissue_image(t1)
    for mimic, weight in _mimics(rng, points_mm, spacing, t1, wm, depth_mm, whole).items():
        for channel, level in enumerate(MIMIC_CONTRAST[mimic]):
            images[channel] = images[channel] * (1 - weight) + level * weight
    heterogeneity = 1.0 + 0.12 * _smooth_noise(rng, shape, max(1.0, 3.0 / spacing))
    core_kind = "necrosis" if any(lesion.enhancing for lesion in lesions) else "non_enhancing"
    weights = {
        "edema": np.clip(whole - core, 0, 1) * (0.75 + 0.25 * whole),
        core_kind: np.clip(core - enhancing, 0, 1),
        "enhancing": enhancing,
    }
    if cyst is not None:
        weights["cyst"] = np.minimum(cyst, core)
    if cavity is not None:
        weights["cavity"] = cavity * brain
    for channel in range(len(CHANNELS)):
        jitter = rng.uniform(0.9, 1.1)
        for region, weight in weights.items():
            level = TUMOUR_CONTRAST[region][channel] * jitter * heterogeneity
            images[channel] = images[channel] * (1 - weight) + level * weight

    # every modality of every case has its own scanner
    texture = 0.03 * _smooth_noise(rng, shape, max(1.0, 1.5 / spacing))
    for channel in range(len(CHANNELS)):
        bias = np.exp(rng.uniform(0.08, 0.25) * _smooth_noise(rng, shape, 60.0 / spacing))
        signal = np.clip(images[channel] * (1 + texture) * bias, 0, None) ** rng.uniform(0.85, 1.2)
        sigma = rng.uniform(0.015, 0.045)
        noisy = np.hypot(signal + rng.normal(0, sigma, shape), rng.normal(0, sigma, shape))  # Rician magnitude
        scaled = rng.uniform(250, 1500) * noisy + rng.uniform(0, 150)
        images[channel] = np.where(brain, scaled, 0.0)
    return SyntheticCase(
        np.clip(np.rint(images), 0, np.iinfo(np.int16).max).astype(np.int16),
        edema=labels_whole & ~labels_core,
        necrosis=labels_core & ~labels_enhancing & ~(labels_cyst if labels_cyst is not None else labels_enhancing),
        enhancing=labels_enhancing,
        affine=affine,
        kind=kind,
        cyst=labels_cyst,
        cavity=labels_cavity,
    )


def _fluid_fields(
    rng: np.random.Generator, kind: str, lesion: Lesion, points_mm: np.ndarray, shape: tuple[int, ...], spacing: float
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Soft (0..1) resection cavity or cyst of a lesion: a cavity where most of its core was (the residual tumour a
    rim around it), a cyst inside the core off its centre."""
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    if kind == "resection_cavity":
        radius, offset = lesion.core_radius * rng.uniform(0.7, 0.95), lesion.core_radius * rng.uniform(0.0, 0.3)
    else:
        radius, offset = lesion.core_radius * rng.uniform(0.3, 0.5), lesion.core_radius * rng.uniform(0.15, 0.35)
    centre = lesion.centre + offset * direction
    distance = np.linalg.norm(points_mm - centre[:, None], axis=0).reshape(shape)
    fluid = expit((radius - distance) / max(0.6, spacing / 2)).astype(np.float32)
    return (fluid, None) if kind == "resection_cavity" else (None, fluid)


def _save(array: np.ndarray, path: Path, affine: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))


def write_case(
    output_dir: Path,
    layout: str,
    case_id: str,
    case: SyntheticCase,
    labelled: bool,
    affine: np.ndarray | None = None,
    convention: str | None = None,
) -> None:
    """Write one case's files where `layout` (a key of `layouts.LAYOUTS`) expects them, on the case's own grid unless
    `affine` is given, its labels in `convention`'s values (by default the layout's)."""
    affine = case.affine if affine is None else affine
    spec = LAYOUTS[layout]
    convention = convention or spec.convention
    if spec.four_dimensional:
        order = [CHANNELS.index(name) for name in spec.file_order]
        stacked = np.moveaxis(case.images[order], 0, -1)
        _save(stacked, output_dir / (TRAINING_IMAGES if labelled else TEST_IMAGES) / f"{case_id}.nii.gz", affine)
        if labelled:
            _save(case.label_map(convention), output_dir / TRAINING_LABELS / f"{case_id}.nii.gz", affine)
        return
    folder = output_dir / case_id
    for modality, image in zip(spec.suffixes, case.images, strict=True):
        _save(image, folder / spec.file_name(case_id, modality), affine)
    if labelled:
        _save(case.label_map(convention), folder / spec.file_name(case_id, spec.label), affine)


def _write_decathlon_description(output_dir: Path, layout: str, training: list[str], testing: list[str]) -> None:
    """The dataset.json that marks a 4D layout's folder, as the Decathlon writes it."""
    spec = LAYOUTS[layout]
    images, labels, tests = TRAINING_IMAGES, TRAINING_LABELS, TEST_IMAGES
    description = {
        "name": "BRATS (synthetic)",
        "description": f"Synthetic cases in the layout of {spec.title}",
        "tensorImageSize": "4D",
        "modality": {str(index): name for index, name in enumerate(spec.modalities.values())},
        "labels": dict(spec.dataset_labels or label_names(CONVENTIONS[spec.convention])),
        "numTraining": len(training),
        "numTest": len(testing),
        "training": [{"image": f"./{images}/{c}.nii.gz", "label": f"./{labels}/{c}.nii.gz"} for c in training],
        "test": [f"./{tests}/{c}.nii.gz" for c in testing],
    }
    (output_dir / DECATHLON_DESCRIPTION).write_text(json.dumps(description, indent=4) + "\n")


def draw_preview(cases: dict[str, SyntheticCase], path: Path, convention: str = "brats2021") -> Path:
    """One row per case: FLAIR, T1ce, T1 and T2 through the tumour's centre, then FLAIR with the label overlay."""
    from matplotlib.figure import Figure

    from scripts.atomic import atomic_write
    from scripts.pictures import OVERLAY_ALPHA, TISSUE_COLOURS, reorient_to_ras

    figure = Figure(figsize=(12.5, 2.6 * len(cases)), layout="constrained")
    axes = figure.subplots(len(cases), 5, squeeze=False)
    tissues = CONVENTIONS[convention].tissues
    for row, (case_id, case) in zip(axes, cases.items(), strict=True):
        images = [reorient_to_ras(image.astype(np.float32), case.affine) for image in case.images]
        label = reorient_to_ras(case.label_map(convention), case.affine)
        roles = {tissues[value]: label == value for value in tissues}
        tumour = label > 0
        z = int(np.argmax(tumour.sum((0, 1)))) if tumour.any() else images[0].shape[2] // 2
        for ax, image, name in zip(row, [*images, images[0]], [*CHANNELS, "label"], strict=True):
            plane = image[:, :, z].T
            ax.imshow(plane, cmap="gray", origin="lower", vmin=0, vmax=np.percentile(plane[plane > 0], 99.5))
            ax.set_axis_off()
            ax.set_title(f"{case_id} ({case.kind})" if name == "FLAIR" else name, fontsize=8, loc="left")
        overlay = np.zeros((*images[0].shape[:2][::-1], 4))
        for role, mask in roles.items():
            overlay[mask[:, :, z].T] = (*TISSUE_COLOURS[role], OVERLAY_ALPHA)
        row[-1].imshow(overlay, origin="lower")
    figure.suptitle("Synthetic BraTS-like cases (synthetic data): axial slice through the tumour, RAS", fontsize=10)
    with atomic_write(path, "wb") as f:
        figure.savefig(f, format="png", dpi=80)
    return path


def case_kinds(num_cases: int, rng: np.random.Generator, convention: str | None = None) -> list[str]:
    """The kind of each case: the convention's deck (`TASK_DECKS`, else CASE_DECK) shuffled, deck after deck, so any ten
    consecutive cases keep its mix; a task's deck puts its own kind first, so even one case shows it."""
    deck = TASK_DECKS.get(convention, CASE_DECK)
    kinds: list[str] = []
    while len(kinds) < num_cases:
        kinds += [str(k) for k in rng.permutation(deck)]
    if convention in TASK_DECKS:
        first = kinds.index(deck[0])
        kinds[0], kinds[first] = kinds[first], kinds[0]
    return kinds[:num_cases]


def _write_one(task: tuple) -> tuple[str, dict, SyntheticCase | None]:
    """Make and write one case (a process-pool task): its id, its cases.json record and, if asked, the case."""
    output_dir, layout, case_id, labelled, kind, seed_sequence, shape, spacing, keep, convention = task
    case = make_case(np.random.default_rng(seed_sequence), shape, spacing, kind)
    write_case(output_dir, layout, case_id, case, labelled=labelled, convention=convention)
    voxel_ml = float(np.prod(np.abs(np.diag(case.affine)[:3]))) / 1000.0
    whole = case.edema | case.necrosis | case.enhancing | case.tissue("CC")
    record = {
        "kind": kind,
        "labelled": labelled,
        "whole_tumour_ml": round(float(whole.sum()) * voxel_ml, 2),
        "enhancing_ml": round(float(case.enhancing.sum()) * voxel_ml, 2),
    }
    for name, tissue in (("cyst_ml", "CC"), ("resection_cavity_ml", "RC")):
        if case.tissue(tissue).any():
            record[name] = round(float(case.tissue(tissue).sum()) * voxel_ml, 2)
    return case_id, record, case if keep else None


def write_dataset(
    output_dir: str | Path,
    layout: str = "brats2021",
    num_cases: int = 8,
    num_unlabelled: int = 0,
    shape: tuple[int, int, int] | None = None,
    seed: int = 0,
    spacing: float | None = None,
    preview: str | Path | None = None,
    workers: int = 1,
    convention: str | None = None,
) -> list[str]:
    """Write `num_cases` labelled and `num_unlabelled` unlabelled cases, labelled in `convention` (one the layout may
    hold; by default the layout's) with its task's mix of cases; return their case ids.

    The grid is `shape` voxels at `spacing` mm; with one of them missing it is the BraTS grid at `spacing` (1 mm by
    default) or the spacing that fits the brain into `shape`. Each case has its own random stream spawned from `seed`,
    so a dataset is the same whatever `workers` (processes) write it. `cases.json` records each case's kind and tumour
    volumes; `preview` names a PNG of the first five cases.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"Unknown layout '{layout}'; choose {', '.join(LAYOUTS)}.")
    convention = convention or LAYOUTS[layout].convention
    if convention not in LAYOUTS[layout].conventions:
        raise ValueError(
            f"A {layout} dataset holds {' or '.join(LAYOUTS[layout].conventions)} labels, not {convention}."
        )
    output_dir = Path(output_dir)
    count = num_cases + num_unlabelled
    ids = [LAYOUTS[layout].case_id(index) for index in range(count)]
    kinds = case_kinds(count, np.random.default_rng(seed), convention)
    streams = np.random.SeedSequence(seed).spawn(count)
    load_template()  # once, before any worker process is forked
    tasks = [
        (
            output_dir,
            layout,
            case_id,
            index < num_cases,
            kind,
            stream,
            shape,
            spacing,
            bool(preview) and index < 5,
            convention,
        )
        for index, (case_id, kind, stream) in enumerate(zip(ids, kinds, streams, strict=True))
    ]
    if workers > 1 and count > 1:
        with ProcessPoolExecutor(min(workers, count), mp_context=multiprocessing.get_context("fork")) as pool:
            results = list(pool.map(_write_one, tasks))
    else:
        results = [_write_one(task) for task in tasks]
    record = {case_id: entry for case_id, entry, _ in results}
    if LAYOUTS[layout].four_dimensional:
        _write_decathlon_description(output_dir, layout, ids[:num_cases], ids[num_cases:])
    grid, mm = grid_for(shape, spacing)
    summary = {"synthetic": True, "seed": seed, "shape": list(grid), "spacing_mm": round(mm, 4), "anatomy": ANATOMY}
    if convention != LAYOUTS[layout].convention:
        summary["label_convention"] = convention
    summary["cases"] = record
    (output_dir / "cases.json").write_text(json.dumps(summary, indent=4) + "\n")
    if preview:
        draw_preview({case_id: case for case_id, _, case in results if case is not None}, Path(preview), convention)
    return ids


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", required=True, help="folder to write the dataset into")
    parser.add_argument("--layout", default="brats2021", choices=list(LAYOUTS))
    parser.add_argument("--label_convention", default=None, choices=list(CONVENTIONS), help="default: the layout's")
    parser.add_argument("--num_cases", type=int, default=8, help="labelled cases")
    parser.add_argument("--num_unlabelled", type=int, default=0, help="cases without a label file")
    parser.add_argument("--spacing", type=float, default=None, help="mm per voxel (default 1, or fitted to --shape)")
    parser.add_argument("--shape", type=int, nargs=3, default=None, metavar=("H", "W", "D"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preview", default=None, help="PNG of the first five cases' four modalities and labels")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes writing cases")
    args = parser.parse_args(argv)
    shape = tuple(args.shape) if args.shape else None
    grid, spacing = grid_for(shape, args.spacing)
    ids = write_dataset(
        args.output_dir,
        args.layout,
        args.num_cases,
        args.num_unlabelled,
        shape,
        args.seed,
        spacing,
        args.preview,
        args.workers,
        args.label_convention,
    )
    print(f"Wrote {len(ids)} synthetic {args.layout} case(s), {grid} voxels at {spacing:.2f} mm, to {args.output_dir}")


if __name__ == "__main__":
    main()
