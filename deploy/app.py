"""MONAI Deploy application: Swin UNETR brain-tumour segmentation of one MR study with the swin_brats bundle.

Run: deploy/.venv/bin/python deploy/app.py -i INPUT_DIR -o OUTPUT_DIR -m BUNDLE_DIR_OR_MODEL_TS

INPUT_DIR holds one study: BraTS 2021 (<case>_flair/_t1/_t1ce/_t2.nii.gz) or 2023 (<case>-t2f/-t1n/-t1c/-t2w.nii.gz)
NIfTI files, one 4D 4-channel NIfTI in the network's order (FLAIR, T1ce, T1, T2), or four DICOM MR series picked by
SeriesDescription (study.SERIES_RULES). The graph: loader -> MonaiBundleInferenceOperator (the bundle's inference.json
preprocessing, inferer and postprocessing) -> writer of <case>.nii.gz and, for DICOM input, <case>_seg.dcm.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

REPO_BUNDLE = Path(__file__).resolve().parents[1] / "swin_brats_bundle"
SCRIPTS_ENV = "SWIN_BRATS_BUNDLE"
"""Bundle folder whose `scripts` package a TorchScript model's configs import (default: the repository's bundle)."""


class BundleError(ValueError):
    """-m names neither a bundle folder nor a TorchScript bundle file."""


def is_bundle_dir(path: Path) -> bool:
    """A folder with configs/metadata.json and configs/inference.json."""
    return (path / "configs" / "metadata.json").is_file() and (path / "configs" / "inference.json").is_file()


def resolve_bundle(model_path: Path) -> tuple[Path, Path]:
    """(what MonaiBundleInferenceOperator reads, the bundle folder whose `scripts` it imports) for `-m`.

    A bundle folder is both; inside a MAP the models folder holds the bundle as its one sub-folder. A TorchScript file
    (ckpt_export: configs in its extra/ entries) takes `scripts` from $SWIN_BRATS_BUNDLE or the repository's bundle.
    """
    if model_path.is_dir():
        candidates = (
            [model_path] if is_bundle_dir(model_path) else [p for p in model_path.iterdir() if is_bundle_dir(p)]
        )
        if len(candidates) != 1:
            raise BundleError(f"{model_path}: not a bundle folder (configs/metadata.json, configs/inference.json).")
        return candidates[0], candidates[0]
    if model_path.is_file():
        scripts_root = Path(os.environ.get(SCRIPTS_ENV, REPO_BUNDLE))
        if not (scripts_root / "scripts" / "__init__.py").is_file():
            raise BundleError(f"{model_path}: a TorchScript bundle needs the bundle scripts; set {SCRIPTS_ENV}.")
        return model_path, scripts_root
    raise BundleError(f"{model_path}: no such bundle folder or model file.")


def bundle_from_argv(argv: list[str]) -> tuple[Path, Path]:
    """The bundle of this run's -m/--model (the SDK's own argument parser), resolved before anything imports it."""
    from monai.deploy.core import parse_args

    model = parse_args(argv).model or os.environ.get("HOLOSCAN_MODEL_PATH", "models")
    return resolve_bundle(Path(model))


def build_app_class() -> type:
    """The Application class; defined once the bundle's `scripts` are importable."""
    from brats_operators import (
        BratsBundleInferenceOperator,
        MRStudyToVolumeOperator,
        NiftiStudyLoaderOperator,
        StudyWriterOperator,
    )
    from monai.deploy.conditions import CountCondition
    from monai.deploy.core import AppContext, Application, Image, IOType
    from monai.deploy.operators.dicom_data_loader_operator import DICOMDataLoaderOperator
    from monai.deploy.operators.monai_bundle_inference_operator import IOMapping
    from study import StudyError, find_nifti_study, is_nifti_folder

    class SwinBratsSegApp(Application):
        """Loader -> MonaiBundleInferenceOperator -> writer, for one NIfTI or DICOM study."""

        def compose(self) -> None:
            context: AppContext = Application.init_app_context(self.argv)
            input_path, output_path = Path(context.input_path), Path(context.output_path)
            bundle_path, _ = resolve_bundle(Path(context.model_path))
            if bundle_path.is_dir():
                context.models = None  # the operator reads the folder itself (bundle_path); no model factory
            inference = BratsBundleInferenceOperator(
                self,
                input_mapping=[IOMapping("image", Image, IOType.IN_MEMORY)],
                output_mapping=[IOMapping("pred", Image, IOType.IN_MEMORY)],
                app_context=context,
                bundle_path=bundle_path if bundle_path.is_dir() else None,
                name="bundle_inference",
            )
            writer = StudyWriterOperator(self, output_folder=output_path, inference=inference, name="writer")
            if not input_path.is_dir():
                raise StudyError(f"{input_path}: -i must be the folder of one study.")
            if is_nifti_folder(input_path):
                study = find_nifti_study(input_path)  # fails here, before any model loads, on a bad folder
                loader = NiftiStudyLoaderOperator(self, CountCondition(self, 1), study=study, name="nifti_loader")
            else:
                dicom = DICOMDataLoaderOperator(
                    self, CountCondition(self, 1), input_folder=input_path, name="dicom_loader"
                )
                loader = MRStudyToVolumeOperator(self, folder=input_path, name="mr_series_to_volume")
                self.add_flow(dicom, loader, {("dicom_study_list", "dicom_study_list")})
            self.add_flow(loader, inference, {("image", "image")})
            self.add_flow(loader, writer, {("study", "study")})
            self.add_flow(inference, writer, {("pred", "seg_image")})

    return SwinBratsSegApp


def main() -> int:
    """Run the app on sys.argv; a bad input folder or bundle ends with one `error:` line and exit code 2."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from monai.deploy.exceptions import ItemNotExistsError
    from study import StudyError

    try:
        _, scripts_root = bundle_from_argv(sys.argv)
        if str(scripts_root) not in sys.path:
            sys.path.insert(1, str(scripts_root))
        build_app_class()().run()  # Holoscan reads sys.argv itself
    except (StudyError, BundleError, ItemNotExistsError) as error:  # the SDK's: no DICOM study in the folder
        logging.getLogger(__name__).debug("input error", exc_info=True)
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
