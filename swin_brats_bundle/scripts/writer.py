"""The NIfTI writer of the configs' `SaveImaged`: atomic, and on the input's own voxel grid whatever its orientation."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from monai.data import NibabelWriter
from monai.utils import convert_data_type

from scripts.atomic import atomic_path

FORM_CODES = ("qform_code", "sform_code")


class PredictionWriter(NibabelWriter):
    """`NibabelWriter` fixed for three ways it can fail a prediction; use as `SaveImaged(writer="scripts.writer...")`.

    - MONAI writes the final file in place, so a kill mid-write leaves a truncated `<case_id>.nii.gz`; this writes a
      temporary sibling and renames it.
    - With `resample=False` MONAI 1.6.1 still runs the array through `SpatialResample`, which takes a channel-last 3D
      array for 2D and fails on any affine whose axes are permuted (e.g. a sagittally stored scan: "Affine ... is not
      invertible"). Nothing needs computing then: the array is written as it is, with its own affine.
    - MONAI marks both header forms with code 1 (scanner) whatever the input had; a BraTS upload compares the codes
      with the case's images, so the input's qform and sform codes are kept.
    """

    def set_metadata(self, meta_dict: Mapping | None, resample: bool = True, **options: Any) -> None:
        self.form_codes = {key: int(np.asarray(meta_dict[key])) for key in FORM_CODES if key in (meta_dict or {})}
        if resample:
            super().set_metadata(meta_dict, resample=resample, **options)
            return
        _, affine, _ = self.get_meta_info(meta_dict)
        if self.output_dtype is None and hasattr(self.data_obj, "dtype"):
            self.output_dtype = self.data_obj.dtype
        self.affine = None if affine is None else convert_data_type(affine, np.ndarray)[0]

    def write(self, filename: str | Path, verbose: bool = False, **obj_kwargs: Any) -> None:
        name = Path(filename).name
        extension = ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix  # nibabel picks the format by it
        with atomic_path(filename, suffix=extension) as partial:
            super().write(partial, verbose=verbose, **obj_kwargs)
            self._keep_form_codes(partial)

    def _keep_form_codes(self, path: Path) -> None:
        codes = getattr(self, "form_codes", {})
        if all(code == 1 for code in codes.values()):  # what MONAI wrote already
            return
        written = nib.load(path)
        image = nib.Nifti1Image(np.asanyarray(written.dataobj), written.affine, written.header)
        image.set_qform(written.affine, code=codes.get("qform_code", 1))
        image.set_sform(written.affine, code=codes.get("sform_code", 1))
        nib.save(image, path)
