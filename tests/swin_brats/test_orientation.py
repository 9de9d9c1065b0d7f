"""Inputs in other orientations (RAS, LPS, permuted oblique axes) or with anisotropic spacing are predicted on their own
voxel grid: same shape, same affine, and every voxel's prediction at that voxel."""

from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from conftest import FP32, NO_POSTPROCESSING, TINY, run_bundle, zscore_nonzero
from scipy.spatial.transform import Rotation
from scripts.synthetic_data import AFFINE, make_case, write_case


def _affine(axes: np.ndarray, spacing: tuple[float, float, float], origin: tuple[float, float, float]) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = axes * np.asarray(spacing)  # column j: world direction and length of voxel axis j
    affine[:3, 3] = origin
    return affine


PERMUTED = Rotation.from_euler("z", 15, degrees=True).as_matrix() @ np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0.0]])
GRIDS = {  # case id -> (shape, affine)
    "BraTS2021_lps": ((64, 64, 48), AFFINE),  # the BraTS storage: x and y flipped
    "BraTS2021_ras": ((64, 64, 48), _affine(np.eye(3), (1.0, 1.0, 1.0), (-32.0, -40.0, -20.0))),
    "BraTS2021_anisotropic": ((60, 52, 20), _affine(np.diag([-1.0, -1, 1]), (0.8, 1.0, 2.5), (30.0, 40.0, -25.0))),
    "BraTS2021_permuted_oblique": ((40, 64, 56), _affine(PERMUTED, (1.2, 0.9, 1.1), (10.0, -20.0, 5.0))),
}
SLOPE, THRESHOLD = 10.0, 0.1  # the network below predicts every region where the normalised T1ce exceeds THRESHOLD


def _t1ce_network_checkpoint(folder: Path) -> Path:
    """A 1x1x1 convolution, logit = SLOPE * (T1ce - THRESHOLD): each voxel's prediction depends on that voxel alone."""
    network = torch.nn.Conv3d(4, 3, 1)
    with torch.no_grad():
        network.weight.zero_()
        network.weight[:, 1] = SLOPE  # channel 1 of the network input is T1ce
        network.bias.fill_(-SLOPE * THRESHOLD)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), folder / "model.pt")
    return folder


def test_predictions_lie_on_each_input_grid(tmp_path: Path) -> None:
    data = tmp_path / "data"
    rng = np.random.default_rng(21)
    for case_id, (shape, affine) in GRIDS.items():
        write_case(data, "brats2021", case_id, make_case(rng, shape), labelled=False, affine=affine)
    run_bundle("inference", "--config_file", "configs/inference.json", "--dataset_dir", str(data),
               "--ckpt_dir", str(_t1ce_network_checkpoint(tmp_path / "models")), "--output_dir", str(tmp_path / "out"),
               "--network_def", "$torch.nn.Conv3d(4, 3, 1)", *NO_POSTPROCESSING, *FP32, *TINY)  # fmt: skip

    for case_id, (shape, affine) in GRIDS.items():
        source = nib.load(data / case_id / f"{case_id}_t1ce.nii.gz")
        written = nib.load(tmp_path / "out" / f"{case_id}.nii.gz")
        assert written.shape == source.shape == shape, case_id
        np.testing.assert_allclose(written.affine, source.affine, atol=1e-5, err_msg=case_id)
        np.testing.assert_allclose(written.affine, affine, atol=1e-4, err_msg=case_id)
        np.testing.assert_allclose(written.header.get_zooms(), source.header.get_zooms(), atol=1e-5, err_msg=case_id)

        z = zscore_nonzero(np.asarray(source.dataobj))
        expected = np.where(z > THRESHOLD, 4, 0)  # TC, WT and ET together paint BraTS 2021's ET value, 4
        decided = np.abs(z - THRESHOLD) > 1e-3  # leave float32-vs-float64 rounding at the threshold out
        predicted = np.asarray(written.dataobj)
        assert 0.02 < (expected == 4).mean() < 0.5, case_id  # the pattern is neither empty nor everything
        np.testing.assert_array_equal(predicted[decided], expected[decided], err_msg=case_id)
