"""Pictures of a case: axial, sagittal and coronal FLAIR slices through the tumour centre with label overlays.

The library behind `visualize.py` (the command line) and the evaluation's per-case pictures (`case_pictures.py`).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from monai.data.utils import affine_to_spacing

from scripts.atomic import atomic_write
from scripts.labels import LabelConvention
from scripts.layouts import CASE_FOLDER_LAYOUTS, LAYOUTS
from scripts.segments import SEGMENTS

# Overlay colour per tissue (RGB; `labels.TISSUE_NAMES`), the one MONAI Label and the DICOM SEG show too; the legend
# names each label with the convention's own text.
TISSUE_COLOURS = {tissue: segment.color for tissue, segment in SEGMENTS.items()}
ROLE_COLOURS = {"edema": TISSUE_COLOURS["ED"], "core_only": TISSUE_COLOURS["NCR"], "enhancing": TISSUE_COLOURS["ET"]}
OVERLAY_ALPHA = 0.45
# Per view: the sliced axis, and the side letters (left, right, top) of the picture for RAS-ordered arrays.
VIEWS = {"axial": (2, ("R", "L", "A")), "sagittal": (0, ("A", "P", "S")), "coronal": (1, ("R", "L", "S"))}
# Once per file naming (the BraTS task layouts share the 2023 one).
FLAIR_PATTERNS = tuple(dict.fromkeys(LAYOUTS[layout].anchor_pattern() for layout in CASE_FOLDER_LAYOUTS))
BACKGROUND_BLACK_GRAY = colormaps["gray"].with_extremes(bad="black")  # background is NaN in the FLAIR planes


@dataclass
class CaseViews:
    """The 2D planes a picture needs (display-oriented), so callers can keep them instead of whole volumes."""

    centre: tuple[int, int, int]
    flair: dict[str, np.ndarray]
    truth: dict[str, np.ndarray] | None
    prediction: dict[str, np.ndarray] | None
    aspect: dict[str, float]
    window: tuple[float, float]


def reorient_to_ras(volume: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The spatial (H, W, D) volume with its axes ordered and flipped to RAS+, so every picture shows the same way."""
    transform = nib.orientations.ornt_transform(
        nib.orientations.io_orientation(affine), nib.orientations.axcodes2ornt("RAS")
    )
    return nib.orientations.apply_orientation(volume, transform)


def ras_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along the RAS-reoriented axes: the affine's column norms, permuted like the axes."""
    columns = affine_to_spacing(np.asarray(affine, dtype=np.float64), r=3, suppress_zeros=False)
    order = nib.orientations.io_orientation(affine)[:, 0].astype(int)
    spacing = np.empty(3)
    spacing[order] = columns
    return tuple(float(s) for s in spacing)


def tumour_centre(shape: Sequence[int], truth: np.ndarray | None, prediction: np.ndarray | None) -> tuple[int, ...]:
    """Centre of mass of the whole tumour in truth, else in the prediction, else the volume centre (voxels)."""
    for label in (truth, prediction):
        if label is not None and label.any():
            return tuple(int(round(c)) for c in np.argwhere(label > 0).mean(axis=0))
    return tuple(s // 2 for s in shape)


def _plane(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    # Transposed so the second array axis runs vertically, then flipped so superior/anterior is up and
    # the patient's right is on the picture's left (radiological convention).
    return np.flip(np.take(volume, index, axis=axis).T)


def _aspect(spacing: Sequence[float], axis: int) -> float:
    """Height/width of one displayed pixel: the remaining axes' spacing, vertical over horizontal."""
    horizontal, vertical = (a for a in range(3) if a != axis)
    return float(spacing[vertical]) / float(spacing[horizontal])


def extract_views(
    flair: np.ndarray,
    prediction: np.ndarray | None = None,
    truth: np.ndarray | None = None,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
) -> CaseViews:
    """Slices of RAS-ordered (H, W, D) volumes through the tumour centre, with a FLAIR intensity window."""
    for name, label in (("prediction", prediction), ("truth", truth)):
        if label is not None and label.shape != flair.shape:
            raise ValueError(f"{name} shape {label.shape} differs from the FLAIR shape {flair.shape}.")
    centre = tumour_centre(flair.shape, truth, prediction)
    # Background is exactly 0 in raw and in nonzero-z-scored images alike: window on the rest, show it black.
    brain = flair[flair != 0]
    low, high = np.percentile(brain, (0.5, 99.5)) if brain.size else (0.0, 1.0)

    def planes(volume: np.ndarray | None) -> dict[str, np.ndarray] | None:
        if volume is None:
            return None
        return {view: _plane(volume, axis, centre[axis]).copy() for view, (axis, _) in VIEWS.items()}

    return CaseViews(
        centre=centre,
        flair={view: np.where(plane != 0, plane, np.nan).astype(np.float32) for view, plane in planes(flair).items()},
        truth=planes(truth),
        prediction=planes(prediction),
        aspect={view: _aspect(spacing, axis) for view, (axis, _) in VIEWS.items()},
        window=(float(low), float(high if high > low else low + 1.0)),
    )


def _overlay(label: np.ndarray, convention: LabelConvention) -> np.ndarray:
    """RGBA picture of a label plane: the tissue colours, semi-transparent, clear where the label is 0."""
    unknown = sorted({int(v) for v in np.unique(label)} - convention.allowed_values)
    if unknown:
        raise ValueError(f"label values {unknown} are not part of the '{convention.name}' convention.")
    rgba = np.zeros((*label.shape, 4), dtype=np.float32)
    for value, tissue in convention.tissues.items():
        rgba[label == value] = (*TISSUE_COLOURS[tissue], OVERLAY_ALPHA)
    return rgba


def _legend(convention: LabelConvention) -> list[Patch]:
    """One entry per label value of the convention, in its colour and with its name."""
    return [
        Patch(color=TISSUE_COLOURS[convention.tissues[value]], label=f"{value}: {name}")
        for value, name in convention.labels.items()
    ]


LEGEND_HANDLE_INCHES, LEGEND_CHARACTER_INCHES = 0.6, 0.07  # a legend entry at font size 8: handle, padding, letters


def _fitted_legend(convention: LabelConvention, width_inches: float) -> tuple[list[Patch], int]:
    """The legend's entries and as many columns (at most 3) as the figure's width holds; names too long for one
    column are wrapped, so none is cut off (MEN's "2: surrounding non-enhancing FLAIR hyperintensity")."""
    legend = _legend(convention)
    longest = max(len(patch.get_label()) for patch in legend)
    ncols = int(width_inches // (LEGEND_HANDLE_INCHES + LEGEND_CHARACTER_INCHES * longest))
    if ncols < 1:
        characters = max(12, int((width_inches - LEGEND_HANDLE_INCHES) / LEGEND_CHARACTER_INCHES))
        for patch in legend:
            patch.set_label(textwrap.fill(patch.get_label(), characters))
    return legend, max(1, min(len(legend), 3, ncols))


def draw_views(views: CaseViews, output_png: str | Path, convention: LabelConvention, title: str = "") -> Path:
    """Rows axial/sagittal/coronal, columns FLAIR, + ground truth, + prediction (those given); written atomically."""
    columns = [("FLAIR", None)]
    columns += [("FLAIR + ground truth", views.truth)] if views.truth is not None else []
    columns += [("FLAIR + prediction", views.prediction)] if views.prediction is not None else []
    figure = Figure(figsize=(3.2 * len(columns), 3.2 * len(VIEWS) + 0.9), layout="constrained")
    axes = figure.subplots(len(VIEWS), len(columns), squeeze=False)
    for row, (view, (axis, sides)) in enumerate(VIEWS.items()):
        for col, (heading, labels) in enumerate(columns):
            ax = axes[row][col]
            ax.imshow(views.flair[view], cmap=BACKGROUND_BLACK_GRAY, vmin=views.window[0], vmax=views.window[1])
            if labels is not None:
                ax.imshow(_overlay(labels[view], convention), interpolation="nearest")
            ax.set_aspect(views.aspect[view])
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(heading, fontsize=10)
            if col == 0:
                ax.set_ylabel(f"{view} ({'xyz'[axis]}={views.centre[axis]})", fontsize=9)
            _side_letters(ax, sides)
    legend, ncols = _fitted_legend(convention, figure.get_figwidth())
    figure.legend(handles=legend, loc="outside lower center", ncols=ncols, fontsize=8, frameon=False)
    if title:
        figure.suptitle(title, fontsize=11)
    return _save_atomically(figure, Path(output_png))


def _side_letters(ax, sides: tuple[str, str, str]) -> None:
    style = {"color": "white", "fontsize": 8, "transform": ax.transAxes, "fontweight": "bold"}
    ax.text(0.02, 0.5, sides[0], ha="left", va="center", **style)
    ax.text(0.98, 0.5, sides[1], ha="right", va="center", **style)
    ax.text(0.5, 0.98, sides[2], ha="center", va="top", **style)


def _save_atomically(figure: Figure, path: Path) -> Path:
    """Readers (a browser, a report) never see a half-written PNG."""
    with atomic_write(path, "wb") as f:
        figure.savefig(f, format="png", dpi=100)
    return path


def render_case(
    flair: np.ndarray,
    output_png: str | Path,
    convention: LabelConvention,
    prediction: np.ndarray | None = None,
    truth: np.ndarray | None = None,
    title: str = "",
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
) -> Path:
    """PNG of RAS-ordered (H, W, D) FLAIR with label maps in the convention's values (see `reorient_to_ras`)."""
    return draw_views(extract_views(flair, prediction, truth, spacing), output_png, convention, title)


def find_flair(image: Path) -> Path:
    """The FLAIR file of a BraTS case folder, or `image` itself when it is a file."""
    if image.is_file():
        return image
    if not image.is_dir():
        raise FileNotFoundError(f"{image}: no such file or folder.")
    found = sorted(p for pattern in FLAIR_PATTERNS for p in image.glob(pattern) if not p.name.startswith("._"))
    if not found:
        expected = " or ".join(pattern.replace(".nii*", ".nii(.gz)") for pattern in FLAIR_PATTERNS)
        raise FileNotFoundError(f"{image}: no {expected} file in this case folder.")
    return found[0]


def load_flair(image: Path) -> tuple[np.ndarray, tuple[float, float, float], bool]:
    """RAS FLAIR volume, its spacing and whether it came from a 4D (MSD) image, whose channel 0 is FLAIR."""
    path = find_flair(image)
    canonical = nib.as_closest_canonical(nib.load(str(path)))
    data = np.asanyarray(canonical.dataobj)
    if data.ndim == 4:
        return np.asarray(data[..., 0], dtype=np.float32), ras_spacing(canonical.affine), True
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 3D FLAIR or a 4D multi-contrast image, got shape {data.shape}.")
    return np.asarray(data, dtype=np.float32), ras_spacing(canonical.affine), False


def load_label(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """RAS label map as integers; its shape must match the image's."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such label file.")
    data = np.asanyarray(nib.as_closest_canonical(nib.load(str(path))).dataobj)
    data = data[..., 0] if data.ndim == 4 and data.shape[-1] == 1 else data
    if data.shape != shape:
        raise ValueError(f"{path}: label shape {data.shape} does not match the image shape {shape}.")
    return np.rint(data).astype(np.int16)


def check_values(label: np.ndarray, convention: LabelConvention, path: Path) -> None:
    """Refuse a label map with values outside the convention, naming the file."""
    unknown = sorted({int(v) for v in np.unique(label)} - convention.allowed_values)
    if unknown:
        raise ValueError(
            f"{path}: label values {unknown} are not part of the '{convention.name}' convention "
            f"({convention.description}); pass another --label_convention."
        )
