"""What a tensor's MONAI metadata says about its grid: the affine and the voxel size, and the plain array."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing

logger = logging.getLogger(__name__)


def to_numpy(tensor: Any) -> np.ndarray:
    """The values of a (Meta)tensor as a NumPy array on the CPU, without metadata."""
    plain = tensor.as_tensor() if isinstance(tensor, MetaTensor) else torch.as_tensor(tensor)
    return plain.detach().cpu().numpy()


def affine_of(*tensors: Any) -> np.ndarray:
    """The affine of the first tensor that has one, else the identity."""
    for tensor in tensors:
        affine = (getattr(tensor, "meta", None) or {}).get("affine")
        if affine is not None:
            return np.asarray(torch.as_tensor(affine).cpu(), dtype=np.float64)
    return np.eye(4)


def voxel_spacing(*tensors: Any) -> tuple[float, float, float]:
    """Voxel size in mm of the grid the arrays are on: from the affine (MONAI's `affine_to_spacing`), else the
    header's pixdim[1:4].

    The affine follows every spatial transform MONAI applied, so it stays right if resampling is ever added; the
    stored `pixdim` is the file header's and only serves when there is no affine.
    """
    for tensor in tensors:
        meta = getattr(tensor, "meta", None) or {}
        if meta.get("affine") is not None:
            affine = np.asarray(torch.as_tensor(meta["affine"]).cpu(), dtype=np.float64)
            return tuple(float(s) for s in affine_to_spacing(affine, r=3, suppress_zeros=False))
        if meta.get("pixdim") is not None:
            return tuple(float(s) for s in np.asarray(torch.as_tensor(meta["pixdim"]).cpu())[1:4])
    logger.warning("No affine or pixdim in the metadata: HD95 is computed with 1 mm voxels.")
    return (1.0, 1.0, 1.0)
