"""Case pictures: slices through the tumour, RAS orientation and spacing, and the command line."""

import subprocess
import sys
from pathlib import Path

import matplotlib.image
import nibabel as nib
import numpy as np
import pytest
from scripts.labels import CONVENTIONS, TISSUE_NAMES, detect_convention
from scripts.pictures import OVERLAY_ALPHA, extract_views, ras_spacing, render_case, reorient_to_ras, tumour_centre
from scripts.segments import SEGMENTS
from scripts.visualize import main

BUNDLE = Path(__file__).resolve().parents[2] / "swin_brats_bundle"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _load_ras(path: Path) -> np.ndarray:
    return np.asanyarray(nib.as_closest_canonical(nib.load(str(path))).dataobj)


def _shifted_copy(label_file: Path, output: Path, shift: int = 4) -> Path:
    """A 'prediction': the ground truth moved `shift` voxels along the second array axis."""
    image = nib.load(str(label_file))
    moved = np.roll(np.asanyarray(image.dataobj), shift, axis=1).astype(np.uint8)
    nib.save(nib.Nifti1Image(moved, image.affine), str(output))
    return output


def test_render_case_with_truth_and_prediction(make_dataset, tmp_path: Path) -> None:
    case = make_dataset("brats2021") / "BraTS2021_00000"
    flair, truth = _load_ras(case / "BraTS2021_00000_flair.nii.gz"), _load_ras(case / "BraTS2021_00000_seg.nii.gz")
    prediction = np.roll(truth, 4, axis=1)
    views = extract_views(flair, prediction, truth)
    # Slices go through the centre of mass of the ground-truth tumour, and every view shows tumour.
    assert views.centre == tuple(int(round(c)) for c in np.argwhere(truth > 0).mean(axis=0))
    assert all(views.truth[view].any() and views.prediction[view].any() for view in views.truth)
    output = render_case(flair, tmp_path / "case.png", CONVENTIONS["brats2021"], prediction, truth, "BraTS2021_00000")
    width, height = _png_size(output)
    assert (width, height) == (960, 1050)  # 3 columns x 3 rows at 100 dpi
    assert output.stat().st_size > 50_000


def test_only_prediction_gives_two_columns(tmp_path: Path) -> None:
    flair = np.ones((16, 16, 8), dtype=np.float32)
    prediction = np.zeros((16, 16, 8), dtype=np.uint8)
    prediction[4:8, 4:8, 2:4] = 3
    width, _ = _png_size(render_case(flair, tmp_path / "p.png", CONVENTIONS["msd"], prediction=prediction))
    assert width == 640
    with pytest.raises(ValueError, match=r"label values \[4\]"):
        render_case(flair, tmp_path / "bad.png", CONVENTIONS["msd"], prediction=prediction + (prediction > 0))


def test_overlays_show_each_tissue_in_its_segments_colour(tmp_path: Path) -> None:
    """Every tissue, drawn over a black FLAIR, shows as its `segments.py` colour blended at OVERLAY_ALPHA: the colour
    MONAI Label and the DICOM SEG give it too."""
    conventions = ("brats2021", "msd", "brats2024", "ped", "men_rt")
    assert {t for name in conventions for t in CONVENTIONS[name].tissues.values()} == set(TISSUE_NAMES)
    for name in conventions:
        convention = CONVENTIONS[name]
        label = np.zeros((32, 32, 8), dtype=np.uint8)
        for i, value in enumerate(sorted(convention.labels)):  # one 12 x 12 x 4 block per value, quadrants
            label[16 * (i % 2) + 2 : 16 * (i % 2) + 14, 16 * (i // 2) + 2 : 16 * (i // 2) + 14, 2:6] = value
        picture = render_case(np.zeros(label.shape, np.float32), tmp_path / f"{name}.png", convention, prediction=label)
        rgb = matplotlib.image.imread(picture)[..., :3] * 255
        for value, tissue in convention.tissues.items():
            shown = OVERLAY_ALPHA * np.array(SEGMENTS[tissue].color) * 255  # over black
            assert (np.abs(rgb - shown).max(axis=-1) < 4).sum() > 12 * 12 * 4, (name, value, tissue)


def test_tumour_centre_fallbacks() -> None:
    truth, prediction = np.zeros((10, 10, 10)), np.zeros((10, 10, 10))
    assert tumour_centre(truth.shape, truth, prediction) == (5, 5, 5)
    prediction[1:4, 2, 3] = 1  # x 1..3 -> centre 2
    assert tumour_centre(truth.shape, truth, prediction) == (2, 2, 3)
    truth[7, 8, 9] = 2
    assert tumour_centre(truth.shape, truth, prediction) == (7, 8, 9)


def test_ras_reorientation_and_spacing() -> None:
    # Voxel axis 0 runs posterior at 2 mm (-y), axis 1 superior at 1 mm (+z), axis 2 right at 3 mm (+x).
    affine = np.array([[0, 0, 3.0, 0], [-2.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1]])
    volume = np.zeros((4, 5, 6))
    volume[0, 0, 0] = 1
    ras = reorient_to_ras(volume, affine)
    assert ras.shape == (6, 4, 5)  # RAS axes: x from voxel axis 2, y from axis 0, z from axis 1
    assert tuple(np.argwhere(ras)[0]) == (0, 3, 0)  # voxel axis 0 was flipped: index 0 is the most anterior
    assert ras_spacing(affine) == (3.0, 2.0, 1.0)


def test_anisotropic_aspect() -> None:
    views = extract_views(np.ones((8, 8, 8)), spacing=(2.0, 1.0, 3.0))
    # axial: y (1 mm) up, x (2 mm) across; sagittal: z (3) up, y (1) across; coronal: z (3) up, x (2) across.
    assert views.aspect == {"axial": 0.5, "sagittal": 3.0, "coronal": 1.5}


def test_detect_convention() -> None:
    three, four = np.array([0, 1, 2, 3]), np.array([0, 1, 2, 4])
    assert detect_convention([three, four], four_dimensional=False).name == "brats2021"
    assert detect_convention([three], four_dimensional=True).name == "msd"
    assert detect_convention([three], four_dimensional=False).name == "brats2023"


def test_cli_as_a_script_on_a_brats2023_folder(make_dataset, tmp_path: Path) -> None:
    case = make_dataset("brats2023") / "BraTS-GLI-00000-000"
    prediction = _shifted_copy(case / "BraTS-GLI-00000-000-seg.nii.gz", tmp_path / "BraTS-GLI-00000-000.nii.gz")
    output = tmp_path / "out" / "picture.png"
    command = [sys.executable, str(BUNDLE / "scripts" / "visualize.py"), "--image", str(case)]
    command += ["--prediction", str(prediction), "--output", str(output)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert str(output) in result.stdout
    assert _png_size(output) == (640, 1050)  # FLAIR and FLAIR + prediction


def test_cli_msd_image_with_ground_truth(make_dataset, tmp_path: Path, capsys) -> None:
    data = make_dataset("msd")
    image, label = data / "imagesTr" / "BRATS_001.nii.gz", data / "labelsTr" / "BRATS_001.nii.gz"
    output = tmp_path / "msd.png"
    assert main(["--image", str(image), "--label", str(label), "--output", str(output)]) == 0
    assert _png_size(output) == (640, 1050)


def test_cli_errors_name_the_file(make_dataset, tmp_path: Path, capsys) -> None:
    case = make_dataset("brats2021") / "BraTS2021_00000"
    small = tmp_path / "small.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), dtype=np.uint8), np.eye(4)), str(small))
    assert main(["--image", str(case), "--prediction", str(small), "--output", str(tmp_path / "x.png")]) == 1
    assert f"{small}: label shape (4, 4, 4) does not match" in capsys.readouterr().err
    assert main(["--image", str(tmp_path), "--label", str(small), "--output", str(tmp_path / "x.png")]) == 1
    assert f"{tmp_path}: no *_flair" in capsys.readouterr().err
    seg = case / "BraTS2021_00000_seg.nii.gz"
    arguments = [
        "--image",
        str(case),
        "--label",
        str(seg),
        "--label_convention",
        "msd",
        "--output",
        str(tmp_path / "x.png"),
    ]
    assert main(arguments) == 1
    assert f"{seg}: label values [4] are not part of the 'msd' convention" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("columns", [1, 2, 3])
@pytest.mark.parametrize("name", sorted(CONVENTIONS))
def test_the_legend_fits_inside_the_picture(name: str, columns: int) -> None:
    """Every convention's legend, laid out as draw_views lays it out, lies within the figure's width."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from scripts.pictures import _fitted_legend

    figure = Figure(figsize=(3.2 * columns, 4), layout="constrained")
    FigureCanvasAgg(figure)
    legend, ncols = _fitted_legend(CONVENTIONS[name], figure.get_figwidth())
    drawn = figure.legend(
        handles=legend,
        loc="outside lower center",
        ncols=ncols,
        fontsize=8,
        frameon=False,
    )
    renderer = figure.canvas.get_renderer()
    figure.draw(renderer)
    box, frame = drawn.get_window_extent(renderer), figure.bbox
    assert frame.x0 <= box.x0 and box.x1 <= frame.x1, f"{name}: legend {box} outside the figure {frame}"
