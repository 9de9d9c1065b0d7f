"""deploy/app.py end to end: NIfTI and DICOM studies give `run inference`'s label map; DICOM SEG; input errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from conftest import DESCRIPTIONS, last_line, run_app, study_attributes, write_mr_series
from pydicom.sr.codedict import codes
from scripts.labels import CONVENTIONS
from scripts.layouts import CHANNELS as BUNDLE_CHANNELS
from scripts.layouts import LAYOUTS
from study import CHANNELS, SERIES_RULES, StudyError, find_nifti_study, nifti_layouts, select_series, series_modality

BRATS2021 = CONVENTIONS["brats2021"]
# BraTS 2021 file endings -> BraTS 2023 ones, channel by channel (flair -> t2f, ...)
TO_BRATS2023 = dict(zip(LAYOUTS["brats2021"].suffixes, LAYOUTS["brats2023"].suffixes, strict=True))


@pytest.fixture(scope="module")
def dicom_run(served: Path, dicom_study: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("dicom_out")
    result = run_app(dicom_study, output, served)
    assert result.returncode == 0, result.stderr[-4000:]
    return output


def test_nifti_study_gives_the_label_map_of_run_inference(
    served: Path, case: dict, bundle_prediction: nib.Nifti1Image, tmp_path: Path
) -> None:
    result = run_app(case["folder"], tmp_path, served)
    assert result.returncode == 0, result.stderr[-4000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{case['id']}.nii.gz"]  # no SEG, no partial files
    written = nib.load(tmp_path / f"{case['id']}.nii.gz")
    expected = np.asarray(bundle_prediction.dataobj)
    assert set(np.unique(expected)) == {0, 1, 2, 4}  # a non-trivial map in BraTS 2021 values
    np.testing.assert_array_equal(np.asarray(written.dataobj), expected)
    np.testing.assert_allclose(written.affine, bundle_prediction.affine, atol=1e-5)


def test_dicom_study_gives_the_same_label_map_and_a_dicom_seg(
    case: dict, bundle_prediction: nib.Nifti1Image, dicom_study: Path, dicom_run: Path
) -> None:
    written = nib.load(dicom_run / f"{dicom_study.name}.nii.gz")
    label = np.asarray(written.dataobj)
    np.testing.assert_array_equal(label, np.asarray(bundle_prediction.dataobj))
    np.testing.assert_allclose(
        written.affine, nib.load(case["folder"] / f"{case['id']}_flair.nii.gz").affine, atol=1e-3
    )

    seg = hd.seg.segread(dicom_run / f"{dicom_study.name}_seg.dcm")
    values = sorted(BRATS2021.labels)  # 1, 2, 4 -> segments 1, 2, 3
    assert seg.number_of_segments == len(values)
    for number, value in enumerate(values, 1):
        description = seg.get_segment_description(number)
        assert description.segment_label == BRATS2021.labels[value]
        assert description.segmented_property_category == codes.SCT.MorphologicallyAbnormalStructure
    types = [seg.get_segment_description(n).segmented_property_type for n in (1, 2, 3)]
    # DICOM's Brain Lesion Segmentation Type With Necrosis (CID 7168), as scripts/segments.py gives them
    assert types == [codes.SCT.Necrosis, codes.SCT.Edema, codes.NCIt.EnhancingLesion]
    assert [t.meaning for t in types] == ["Necrosis", "Edema", "Enhancing Lesion"]
    # one frame per segment and slice holding it (empty frames left out)
    assert seg.NumberOfFrames == sum(int((label == v).any(axis=(0, 1)).sum()) for v in values)

    flair = sorted((dicom_study / "FLAIR").glob("*.dcm"))  # written in slice order k = 0, 1, ...
    uids = [pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID for path in flair]
    segments = seg.get_pixels_by_source_instance(
        uids, combine_segments=True, relabel=False, assert_missing_frames_are_empty=True, skip_overlap_checks=True
    )
    painted = np.asarray([0, *values], dtype=np.uint8)[segments]  # segment numbers back to label values
    np.testing.assert_array_equal(painted, np.moveaxis(label, 2, 0).transpose(0, 2, 1))


def test_a_missing_series_stops_with_one_line_naming_it(served: Path, dicom_study: Path, tmp_path: Path) -> None:
    study = tmp_path / "no_t2"
    for channel in ("FLAIR", "T1ce", "T1"):
        shutil.copytree(dicom_study / channel, study / channel)
    result = run_app(study, tmp_path / "out", served)
    assert result.returncode == 2
    assert last_line(result).startswith(f"error: {study}: no DICOM MR series for T2 (series descriptions seen: ")
    assert "'AX T1 post-contrast'" in last_line(result)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_an_ambiguous_dicom_series_stops_with_one_line_naming_both(
    served: Path, case: dict, dicom_study: Path, tmp_path: Path
) -> None:
    study = tmp_path / "two_t1ce"
    shutil.copytree(dicom_study, study)
    image = nib.load(case["folder"] / f"{case['id']}_t1ce.nii.gz")
    shared = {key: getattr(pydicom.dcmread(next((study / "T1ce").glob("*.dcm"))), key) for key in study_attributes()}
    write_mr_series(np.asarray(image.dataobj), image.affine, "T1+C repeat", study / "repeat", shared, 5)
    result = run_app(study, tmp_path / "out", served)
    assert result.returncode == 2
    line = last_line(result)
    assert line.startswith(f"error: {study}: 2 DICOM MR series match T1ce: ") and line.endswith("; keep one.")
    assert "'AX T1 post-contrast' (" in line and "'T1+C repeat' (" in line


def test_an_ambiguous_nifti_file_stops_with_one_line_naming_both(served: Path, case: dict, tmp_path: Path) -> None:
    study = tmp_path / "two_t1ce"
    shutil.copytree(case["folder"], study)
    shutil.copy(study / f"{case['id']}_t1ce.nii.gz", study / f"{case['id']}_repeat_t1ce.nii.gz")
    result = run_app(study, tmp_path / "out", served)
    assert result.returncode == 2
    assert last_line(result) == (
        f"error: {study}: 2 T1ce files (*_t1ce.nii.gz): {case['id']}_repeat_t1ce.nii.gz, {case['id']}_t1ce.nii.gz."
    )


def test_series_rules_cover_the_documented_descriptions() -> None:
    expected = {
        "FLAIR": ["FLAIR", "AX T2 FLAIR", "t2-flair", "T2F", "t2_flair_tra"],
        "T1ce": [
            "T1ce",
            "T1c",
            "T1 CE",
            "T1 post-contrast",
            "T1+C",
            "AX T1 +C",
            "T1 C+",
            "T1 Gd",
            "T1w_gad",
            "T1 POST",
        ],
        "T1": ["T1", "AX T1", "T1w", "t1n", "T1_MPRAGE"],
        "T2": ["T2", "AX T2", "T2w", "t2_tse"],
    }
    for channel, descriptions in expected.items():
        assert [series_modality(d) for d in descriptions] == [channel] * len(descriptions), channel
    assert set(SERIES_RULES) == set(expected)
    for other in ("DWI", "ADC", "T10 map", "localizer", "SWI"):
        assert series_modality(other) is None, other
    assert list(DESCRIPTIONS) == ["FLAIR", "T1ce", "T1", "T2"]


def test_ambiguous_and_missing_dicom_series_name_the_series(tmp_path: Path) -> None:
    descriptions = {"1.1": "FLAIR", "1.2": "T1ce", "1.3": "T1 post-contrast", "1.4": "T1", "1.5": "T2"}
    with pytest.raises(StudyError, match=r"2 DICOM MR series match T1ce: 'T1ce' \(1.2\), 'T1 post-contrast' \(1.3\)"):
        select_series(tmp_path, descriptions)
    del descriptions["1.3"]
    assert select_series(tmp_path, descriptions) == {"FLAIR": "1.1", "T1ce": "1.2", "T1": "1.4", "T2": "1.5"}
    del descriptions["1.1"]
    with pytest.raises(StudyError, match="no DICOM MR series for FLAIR"):
        select_series(tmp_path, descriptions)


def test_the_apps_file_endings_come_from_the_bundles_layouts() -> None:
    """study.py takes the file endings from scripts.layouts; its CHANNELS (needed before the bundle is importable) is
    a copy, which must match."""
    assert CHANNELS == BUNDLE_CHANNELS
    assert nifti_layouts() == {
        "brats2021": ("_flair", "_t1ce", "_t1", "_t2"),
        "brats2023": ("-t2f", "-t1c", "-t1n", "-t2w"),
    }


def test_nifti_layouts_and_a_4d_file_are_found(case: dict, tmp_path: Path) -> None:
    brats2021 = find_nifti_study(case["folder"])
    assert brats2021.case_id == case["id"] and brats2021.layout == "brats2021"
    assert [p.name.split("_")[-1] for p in brats2021.files] == ["flair.nii.gz", "t1ce.nii.gz", "t1.nii.gz", "t2.nii.gz"]
    for old, new in TO_BRATS2023.items():
        shutil.copy(case["folder"] / f"{case['id']}_{old}.nii.gz", tmp_path / f"BraTS-GLI-00001-000-{new}.nii.gz")
    brats2023 = find_nifti_study(tmp_path)
    assert brats2023.case_id == "BraTS-GLI-00001-000" and brats2023.layout == "brats2023"
    assert [p.name[-10:] for p in brats2023.files] == ["t2f.nii.gz", "t1c.nii.gz", "t1n.nii.gz", "t2w.nii.gz"]
    (tmp_path / "BraTS-GLI-00001-000-t1n.nii.gz").unlink()
    with pytest.raises(StudyError, match=r"no T1 file \(\*-t1n.nii.gz\) for the brats2023 layout"):
        find_nifti_study(tmp_path)
    single = tmp_path / "single"
    single.mkdir()
    shutil.copy(case["folder"] / f"{case['id']}_flair.nii.gz", single / "case.nii.gz")
    assert find_nifti_study(single).files == (single / "case.nii.gz",)


def test_a_4d_file_loads_as_the_four_files_and_a_3d_one_is_refused(case: dict, tmp_path: Path) -> None:
    from brats_operators import load_nifti_study

    images = [nib.load(case["folder"] / f"{case['id']}_{s}.nii.gz") for s in ("flair", "t1ce", "t1", "t2")]
    stacked = np.stack([np.asarray(image.dataobj) for image in images], axis=-1)
    nib.save(nib.Nifti1Image(stacked, images[0].affine), tmp_path / "case.nii.gz")
    four, four_info = load_nifti_study(find_nifti_study(case["folder"]))
    single, single_info = load_nifti_study(find_nifti_study(tmp_path))
    np.testing.assert_array_equal(single.asnumpy(), four.asnumpy())
    assert single.asnumpy().shape == (4, *images[0].shape) and single.asnumpy().dtype == np.float32
    np.testing.assert_allclose(single_info.affine, four_info.affine, atol=1e-6)
    assert (four_info.detected_convention, single_info.detected_convention) == ("brats2021", None)
    (tmp_path / "case.nii.gz").unlink()
    shutil.copy(case["folder"] / f"{case['id']}_flair.nii.gz", tmp_path / "case.nii.gz")
    with pytest.raises(StudyError, match="a single NIfTI input must be 4D with 4 channels"):
        load_nifti_study(find_nifti_study(tmp_path))


def test_brats2023_names_get_brats2023_values_as_under_run_inference(
    served: Path, case: dict, bundle_prediction: nib.Nifti1Image, tmp_path: Path
) -> None:
    """`run inference` on a BraTS 2023 dataset writes 1 NCR, 2 ED, 3 ET; the app passes that case item on."""
    study = tmp_path / "BraTS-GLI-00001-000"
    study.mkdir()
    for old, new in TO_BRATS2023.items():
        shutil.copy(case["folder"] / f"{case['id']}_{old}.nii.gz", study / f"{study.name}-{new}.nii.gz")
    result = run_app(study, tmp_path / "out", served)
    assert result.returncode == 0, result.stderr[-4000:]
    written = np.asarray(nib.load(tmp_path / "out" / f"{study.name}.nii.gz").dataobj)
    expected = np.asarray(bundle_prediction.dataobj).copy()
    expected[expected == 4] = 3
    np.testing.assert_array_equal(written, expected)
