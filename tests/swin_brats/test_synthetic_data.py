"""The realistic synthetic cases (synthetic data): anatomy, per-modality contrasts, tumour make-up, scanners, grids."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import BUNDLE
from scipy import ndimage
from scripts.cases import discover
from scripts.layouts import CHANNELS
from scripts.synthetic_data import BRATS_GRID, CASE_DECK, case_kinds, load_template, make_case, write_dataset

FLAIR, T1CE, T1, T2 = (CHANNELS.index(name) for name in ("FLAIR", "T1ce", "T1", "T2"))


@pytest.fixture(scope="module")
def cases() -> dict[str, object]:
    """One case of every kind at 3 mm (fast), from one seed."""
    rng = np.random.default_rng(5)
    return {kind: make_case(rng, spacing=3.0, kind=kind) for kind in dict.fromkeys(CASE_DECK)}


def test_the_brain_is_the_template_anatomy_on_the_brats_grid(cases) -> None:
    case = cases["large"]
    assert case.images.shape == (4, 80, 80, 52) and case.images.dtype == np.int16
    assert np.allclose(np.abs(np.diag(case.affine)[:3]), 3.0)
    brain = case.images[T1] > 0
    # skull-stripped like BraTS: every modality is zero outside the same brain mask, and the brain is one piece
    assert all(np.array_equal(image > 0, brain) for image in case.images)
    assert ndimage.label(brain)[1] == 1
    # ~1.2-1.6 litres of brain, as adult brains (plus CSF) are
    volume_l = brain.sum() * 27 / 1e6
    assert 1.0 < volume_l < 1.9, volume_l
    assert load_template().t1.shape == (197, 233, 189)  # the ICBM152 2009a template of the nilearn wheel


def _median(image: np.ndarray, mask: np.ndarray) -> float:
    return float(np.median(image[mask]))


def test_each_modality_has_its_own_tissue_and_tumour_contrast(cases) -> None:
    case = cases["large"]
    label = case.label_map("brats2021")
    brain = case.images[T1] > 0
    healthy = brain & (label == 0)
    # CSF: the darkest tenth of healthy T1 (ventricles, sulci); white matter: the brightest tenth
    t1 = case.images[T1].astype(float)
    csf = healthy & (t1 < np.percentile(t1[healthy], 10))
    wm = healthy & (t1 > np.percentile(t1[healthy], 90))
    ratio = {c: _median(case.images[c], csf) / _median(case.images[c], wm) for c in (FLAIR, T1CE, T1, T2)}
    assert ratio[T2] > 1.5  # CSF bright on T2
    assert ratio[FLAIR] < 0.7 and ratio[T1] < 0.6  # and dark on FLAIR and T1
    edema, core, enhancing = label == 2, label == 1, label == 4
    assert _median(case.images[FLAIR], edema) > 1.3 * _median(case.images[FLAIR], wm)  # edema bright on FLAIR
    assert _median(case.images[T2], edema) > 1.3 * _median(case.images[T2], wm)  # and on T2
    assert _median(case.images[T1CE], enhancing) > 1.3 * _median(case.images[T1CE], wm)  # the rim enhances
    assert _median(case.images[T1CE], core) < 0.7 * _median(case.images[T1CE], enhancing)  # necrosis does not


def test_tumours_are_nested_irregular_and_of_every_kind(cases) -> None:
    for kind, case in cases.items():
        core = case.necrosis | case.enhancing
        assert core.any(), kind
        # nested: edema surrounds the core, as a whole tumour grows around its core (at least 40 % of the voxels just
        # outside the core are edema, 49-91 % in these cases; CSF, where edema does not spread, takes most of the rest)
        ring = ndimage.binary_dilation(core) & ~core
        share = float((ring & case.edema).sum() / ring.sum())
        assert share > 0.4, (kind, share)
        if kind == "no_enhancing":
            assert not case.enhancing.any() and case.necrosis.any()
        else:
            assert case.enhancing.any(), kind
    # sizes spread: a large tumour is several times a small one
    volume = {kind: (c.edema | c.necrosis | c.enhancing).sum() for kind, c in cases.items()}
    assert volume["large"] > 4 * volume["small"]
    # irregular: the whole tumour fills clearly less than its bounding ellipsoid would (a ball fills 52 % of its box)
    large = cases["large"].edema | cases["large"].necrosis | cases["large"].enhancing
    box = ndimage.find_objects(large.astype(int))[0]
    assert large[box].mean() < 0.5


def test_two_lesion_cases_have_two_tumours() -> None:
    rng = np.random.default_rng(0)
    counts = []
    for _ in range(3):
        case = make_case(rng, spacing=3.0, kind="two_lesions")
        core = case.necrosis | case.enhancing
        counts.append(ndimage.label(core, structure=np.ones((3, 3, 3)))[1])
    assert max(counts) >= 2, counts  # the two cores may touch in some cases, not in all


def test_every_scan_has_its_own_scanner(cases) -> None:
    # gain/offset/gamma differ per modality and per case: healthy-tissue medians differ between cases everywhere
    first, second = cases["large"], cases["medium"]
    for channel in range(4):
        a = _median(first.images[channel], first.images[channel] > 0)
        b = _median(second.images[channel], second.images[channel] > 0)
        assert abs(a - b) / max(a, b) > 0.02, CHANNELS[channel]


def test_kinds_come_in_decks_of_ten() -> None:
    kinds = case_kinds(20, np.random.default_rng(3))
    for deck in (kinds[:10], kinds[10:]):
        assert sorted(deck) == sorted(CASE_DECK)


def test_a_seed_gives_the_same_dataset_whoever_writes_it_and_another_seed_another(tmp_path: Path) -> None:
    for name, seed, workers in (("a", 4, 1), ("b", 4, 2), ("c", 5, 1)):
        write_dataset(tmp_path / name, "brats2023", 2, 1, shape=(48, 48, 32), seed=seed, workers=workers)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.nii.gz"))
    assert len(files) == 2 * 5 + 4  # two labelled cases (4 modalities + seg), one unlabelled
    for relative in files:
        a, b, c = (np.asarray(nib.load(tmp_path / n / relative).dataobj) for n in "abc")
        assert np.array_equal(a, b), relative
        assert not np.array_equal(a, c), relative
    record = json.loads((tmp_path / "a" / "cases.json").read_text())
    assert record["synthetic"] is True and record["seed"] == 4 and len(record["cases"]) == 3


def test_the_cli_writes_a_2mm_dataset_in_each_layout(tmp_path: Path) -> None:
    for layout in ("brats2021", "msd"):
        command = [
            sys.executable,
            str(BUNDLE / "scripts" / "synthetic_data.py"),
            "--output_dir",
            str(tmp_path / layout),
        ]
        command += ["--layout", layout, "--num_cases", "1", "--spacing", "2", "--seed", "9"]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        assert "(120, 120, 78) voxels at 2.00 mm" in result.stdout
        info = discover(tmp_path / layout, num_folds=1)
        (case,) = info["training"]
        image = nib.load(case["image"][0] if layout != "msd" else case["image"])
        assert image.shape[:3] == tuple(-(-n // 2) for n in BRATS_GRID)
        assert np.allclose(image.header.get_zooms()[:3], 2.0)
