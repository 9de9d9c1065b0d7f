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
from scripts.labels import DESCRIP_PREFIX, PAINTED_CONVENTION

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

    A label map painted by `labels.RegionsToLabelsd` names its convention in the header's `descrip`
    (`label_convention=brats2024`), which the submission check reads.
    """

    @classmethod
    def create_backend_obj(cls, data_array: Any, affine: Any = None, dtype: Any = None, **kwargs: Any):
        descrip = kwargs.pop("descrip", None)
        image = super().create_backend_obj(data_array, affine=affine, dtype=dtype, **kwargs)
        if descrip:
            image.header["descrip"] = descrip
        return image

    def set_metadata(self, meta_dict: Mapping | None, resample: bool = True, **options: Any) -> None:
        painted = (meta_dict or {}).get(PAINTED_CONVENTION)
        self.descrip = f"{DESCRIP_PREFIX}{painted}" if painted else None
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
            super().write(partial, verbose=verbose, descrip=getattr(self, "descrip", None), **obj_kwargs)
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
