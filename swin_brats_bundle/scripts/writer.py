"""The NIfTI writer of the configs' `SaveImaged`: atomic, and on the input's own voxel grid whatever its orientation."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from monai.data import NibabelWriter
from monai.utils import convert_data_type

from scripts.atomic import atomic_path


class PredictionWriter(NibabelWriter):
    """`NibabelWriter` fixed for two ways it can fail a prediction; use as `SaveImaged(writer="scripts.writer...")`.

    - MONAI writes the final file in place, so a kill mid-write leaves a truncated `<case_id>.nii.gz`; this writes a
      temporary sibling and renames it.
    - With `resample=False` MONAI 1.6.1 still runs the array through `SpatialResample`, which takes a channel-last 3D
      array for 2D and fails on any affine whose axes are permuted (e.g. a sagittally stored scan: "Affine ... is not
      invertible"). Nothing needs computing then: the array is written as it is, with its own affine.
    """

    def set_metadata(self, meta_dict: Mapping | None, resample: bool = True, **options: Any) -> None:
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
