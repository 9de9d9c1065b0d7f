"""Check a folder of label maps against its dataset before a BraTS upload: one line per problem, naming case and file.

Each case of the dataset needs `<case_id>.nii.gz` (the BraTS submission name): on the grid of the case's images
(shape, affine, qform and sform codes), stored as an integer type, holding only label values of the task's convention
(a BraTS 2021 map with 4 in a BraTS 2023 folder, or a 2024 post-treatment map with its resection cavity 4, is named as
such), and not written for a convention with other label values (the bundle names its convention in each map's NIfTI
`descrip`: a BraTS 2023 map handed in as BraTS 2024 is named though its values fit). A NIfTI file that names no case,
or a case under another name, is a problem; other files are listed to remove before upload. Empty maps are counted,
not refused.
Exit status 0 only when every case passes; a JSON report is written beside the predictions folder.

Run: python scripts/check_submission.py --predictions P --dataset_dir D [--label_convention auto|brats2021|...]
     [--datalist F] [--report R]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

if __package__ in (None, ""):  # run as a file: make the bundle root importable so `scripts.*` resolves
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.atomic import atomic_write
from scripts.datalist import dataset_info, inference_cases
from scripts.errors import first_line, stop
from scripts.labels import CONVENTIONS, DESCRIP_PREFIX, LabelConvention, get_convention, other_conventions_hint
from scripts.layouts import CASE_FOLDER_LAYOUTS, NIFTI_SUFFIXES, strip_nifti_suffix

logger = logging.getLogger(__name__)

AFFINE_TOLERANCE_MM = 1e-3
SUBMISSION_LAYOUTS = CASE_FOLDER_LAYOUTS
"""Layouts with a challenge submission format: the case-folder (BraTS) ones; MSD Task01 predictions are not uploaded
anywhere."""


def _first_image(case: Mapping[str, Any]) -> str:
    image = case["image"]
    return image[0] if isinstance(image, list | tuple) else image


def written_as(header: Any, convention: LabelConvention) -> str | None:
    """The problem with a map whose NIfTI `descrip` names a convention with other label values than `convention`'s
    (a BraTS 2023 map handed in as BraTS 2024), else None."""
    descrip = bytes(np.asarray(header["descrip"]).tobytes()).rstrip(b"\0").decode("ascii", "replace").strip()
    name = descrip[len(DESCRIP_PREFIX) :] if descrip.startswith(DESCRIP_PREFIX) else None
    other = CONVENTIONS.get(name) if name else None
    if other is None or other.allowed_values == convention.allowed_values:
        return None
    return f"written as a {name} label map ({other.description}; its NIfTI descrip), not {convention.name}"


def check_map(prediction: Path, reference: Path, convention: LabelConvention) -> tuple[list[str], bool]:
    """Problems of one prediction against the case's first image, and whether the map is empty."""
    try:
        predicted, image = nib.load(prediction), nib.load(reference)
    except Exception as error:
        return [f"unreadable ({first_line(error)})"], False
    problems = []
    if tuple(predicted.shape) != tuple(image.shape[:3]):
        problems.append(f"shape {tuple(predicted.shape)} differs from the case's images {tuple(image.shape[:3])}")
    elif not np.allclose(predicted.affine, image.affine, atol=AFFINE_TOLERANCE_MM):
        shift = np.abs(predicted.affine - image.affine).max()
        problems.append(f"affine differs from the case's images (by up to {shift:.3g} mm)")
    for code in ("qform_code", "sform_code"):
        mine, theirs = int(predicted.header[code]), int(image.header[code])
        if mine != theirs:
            problems.append(f"{code} {mine} differs from the case's images ({theirs})")
    dtype = predicted.get_data_dtype()
    if dtype.kind not in "iu":
        problems.append(f"stored as {dtype}, not an integer type (use uint8)")
    values = {int(v) for v in np.unique(np.asarray(predicted.dataobj))}
    unknown = sorted(values - convention.allowed_values)
    if unknown:
        problems.append(
            f"label values {unknown} are not in {convention.name} ({convention.description})"
            + other_conventions_hint(values, convention)
        )
    if (other := written_as(predicted.header, convention)) is not None:
        problems.append(other)
    return problems, values <= {0}


def check_submission(
    predictions: str | Path, cases: Sequence[Mapping[str, Any]], convention: LabelConvention
) -> dict[str, Any]:
    """The report: every problem as {case_id, file, problem}, other files, empty maps, and `passed`."""
    folder = Path(predictions)
    expected = {case["case_id"]: case for case in cases}
    files = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    nifti = [p for p in files if p.name.endswith(NIFTI_SUFFIXES)]
    problems, empty = [], []
    for case_id, case in expected.items():
        target = folder / f"{case_id}.nii.gz"
        if not target.is_file():
            near = [p.name for p in nifti if p.name != target.name and p.name.startswith(case_id)]
            hint = f"; found {', '.join(near)} instead" if near else ""
            problems.append({"case_id": case_id, "file": str(target), "problem": f"no prediction{hint}"})
            continue
        found, is_empty = check_map(target, Path(_first_image(case)), convention)
        problems += [{"case_id": case_id, "file": str(target), "problem": text} for text in found]
        if is_empty:
            empty.append(case_id)
    for path in nifti:
        if strip_nifti_suffix(path.name) in expected and path.name.endswith(".nii.gz"):
            continue
        owner = next((case_id for case_id in expected if path.name.startswith(case_id)), None)
        problem = f"not the submission name of case {owner} ({owner}.nii.gz)" if owner else "a prediction for no case"
        problems.append({"case_id": owner, "file": str(path), "problem": problem})
    others = [str(p) for p in files if p not in nifti]
    return {
        "predictions": str(folder),
        "label_convention": convention.name,
        "cases": len(expected),
        "passed": not problems,
        "problems": problems,
        "empty_maps": empty,
        "other_files": others,
    }


def report_path(predictions: str | Path) -> Path:
    """Beside the predictions folder, so the report is not uploaded with them."""
    folder = Path(predictions).resolve()
    return folder.parent / f"{folder.name}_submission_check.json"


def write_report(report: Mapping[str, Any], path: str | Path) -> Path:
    with atomic_write(Path(path)) as f:
        f.write(json.dumps(report, indent=4) + "\n")
    return Path(path)


def log_report(report: Mapping[str, Any], path: Path) -> None:
    for item in report["problems"]:
        logger.error(f"{item['case_id'] or '-'}: {item['file']}: {item['problem']}")
    for other in report["other_files"]:
        logger.warning(f"{other}: not a prediction; remove it before uploading")
    counts = (
        f"{report['cases']} case(s), {len(report['problems'])} problem(s), {len(report['empty_maps'])} empty map(s)"
    )
    (logger.info if report["passed"] else logger.error)(f"submission check: {counts}; report {path}")


def check_after_inference(
    predictions: str,
    info: Mapping[str, Any],
    convention: LabelConvention,
    skip: Sequence[str] = (),
    debug: bool = False,
) -> None:
    """`finalize` of `run inference` on a BraTS layout: check the written maps (cases that failed are reported by
    the inference itself and left out here); stop with exit status 1 if the bundle's own output would be refused."""
    if info.get("layout") not in SUBMISSION_LAYOUTS:
        return
    cases = [case for case in inference_cases(info) if case["case_id"] not in set(skip)]
    report = check_submission(predictions, cases, convention)
    path = write_report(report, report_path(predictions))
    log_report(report, path)
    if not report["passed"]:
        stop(f"{len(report['problems'])} problem(s) in the predictions a BraTS upload would refuse; see {path}", debug)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", required=True, help="folder of <case_id>.nii.gz label maps")
    parser.add_argument("--dataset_dir", required=True, help="the dataset the predictions were made from")
    parser.add_argument("--datalist", default=None, help="its datalist, if the predictions cover one")
    parser.add_argument("--label_convention", default="auto", choices=["auto", *CONVENTIONS])
    parser.add_argument("--report", default=None, help="JSON report (default: beside the predictions folder)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s - %(message)s")
    info = dataset_info(args.dataset_dir, args.datalist)
    try:
        convention = get_convention(args.label_convention, info.get("label_convention"))
    except ValueError as error:
        stop(str(error))
    if not Path(args.predictions).is_dir():
        stop(f"predictions folder {args.predictions} does not exist")
    report = check_submission(args.predictions, inference_cases(info), convention)
    path = write_report(report, args.report or report_path(args.predictions))
    log_report(report, path)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
