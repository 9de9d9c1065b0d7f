"""Nyúl–Udupa histogram standardisation: scanner invariance, fitting on the training fold only, config wiring, CLI."""

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import BUNDLE, NO_POSTPROCESSING, TINY, run_bundle
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.inferers import SlidingWindowInferer
from monai.networks.nets import SwinUNETR
from monai.transforms import LoadImaged
from scripts import histogram
from scripts.cases import discover
from scripts.folds import fold_cases
from scripts.labels import CONVENTIONS, labels_to_regions
from scripts.landmarks import case_landmarks, fit_fold, quantiles, standard_landmarks
from scripts.layouts import LAYOUTS
from scripts.standardization import HistogramStandardized
from scripts.transforms import normalization_transform

# Per modality (FLAIR, T1ce, T1, T2): gain, offset, gamma of a monotone "other scanner" map of the brain voxels.
GAIN_OFFSET = ((1.7, 40.0, 1.0), (0.6, 150.0, 1.0), (2.5, 0.0, 1.0), (0.8, 300.0, 1.0))
SCANNERS = {
    "gamma_a": ((1.7, 40.0, 0.7), (0.6, 150.0, 1.4), (2.5, 0.0, 1.25), (0.8, 300.0, 0.8)),
    "gamma_b": ((0.5, 200.0, 1.3), (2.0, 10.0, 0.75), (0.9, 80.0, 0.8), (1.4, 0.0, 1.2)),
}
BRATS2021 = LAYOUTS["brats2021"]
MODALITIES = BRATS2021.suffixes  # BraTS 2021 file suffixes, in CHANNELS order
# "Nearly identical", in units of the output (z-scored, so standard deviations of the brain's intensities):
MEDIAN_TOLERANCE = 0.01  # median |difference| over each channel's brain voxels
P99_TOLERANCE = 0.1  # 99th percentile of |difference|; only the extrapolated 1 % tails may differ more
TEST_CASE = "BraTS2021_00003"  # the unlabelled case of make_dataset("brats2021"): never part of a fit


def _scanner_channel(x: torch.Tensor, gain: float, offset: float, gamma: float) -> torch.Tensor:
    """Another scanner's version of one modality: a monotone map of the brain voxels, background kept 0."""
    x = x.to(torch.float64)
    return torch.where(x != 0, gain * 1000.0 * (x.abs() / 1000.0) ** gamma + offset, 0.0).to(torch.float32)


def _scanner(image: torch.Tensor, profile: tuple) -> torch.Tensor:
    return torch.stack([_scanner_channel(x, *p) for x, p in zip(image, profile, strict=True)])


def _load(case_dir: Path, case_id: str) -> MetaTensor:
    files = [str(case_dir / BRATS2021.file_name(case_id, m)) for m in MODALITIES]
    return LoadImaged("image", ensure_channel_first=True, image_only=True)({"image": files})["image"]


def _apply(transform: Callable, image: torch.Tensor) -> torch.Tensor:
    """Run a normalisation on a copy: MONAI's NormalizeIntensityd overwrites a float32 input in place."""
    return transform({"image": image.clone()})["image"]


def _abs_differences(a: torch.Tensor, b: torch.Tensor, brain: torch.Tensor) -> list[torch.Tensor]:
    return [(a[c] - b[c]).abs()[brain[c]].to(torch.float64) for c in range(a.shape[0])]


@pytest.fixture(scope="module")
def fitted(make_dataset, tmp_path_factory) -> tuple[Path, Path]:
    """The shared 3+1 case dataset and landmarks fitted on the training cases of fold 0 of 3."""
    data = make_dataset("brats2021")
    path = tmp_path_factory.mktemp("landmarks") / "landmarks.json"
    fit_fold(discover(data, num_folds=3, seed=0), 0, path)
    return data, path


def test_scanner_transformed_copies_match_after_histogram_but_not_after_zscore_under_gamma(fitted) -> None:
    """Copies under per-modality gain, offset and gamma come out within the tolerances; z-score only copes with
    gain/offset (an affine map), and fails the same tolerance once gamma bends the histogram."""
    data, landmarks = fitted
    image = _load(data / TEST_CASE, TEST_CASE)
    brain = image != 0
    histogram_norm = normalization_transform("histogram", landmarks=landmarks)
    zscore_norm = normalization_transform("zscore")
    reference = {"h": _apply(histogram_norm, image), "z": _apply(zscore_norm, image)}

    affine_copy = _scanner(image, GAIN_OFFSET)
    for name, norm in (("h", histogram_norm), ("z", zscore_norm)):  # both are exactly affine-invariant
        for diff in _abs_differences(reference[name], _apply(norm, affine_copy), brain):
            assert float(diff.max()) < 1e-4

    for profile in SCANNERS.values():
        copy = _scanner(image, profile)
        standardized = _apply(histogram_norm, copy)
        assert torch.equal(standardized == 0, ~brain)  # background stays exactly 0, every brain voxel is kept
        h_diffs = _abs_differences(reference["h"], standardized, brain)
        z_diffs = _abs_differences(reference["z"], _apply(zscore_norm, copy), brain)
        for h, z in zip(h_diffs, z_diffs, strict=True):
            # measured: histogram median 0.0002-0.0022, p99 0.004-0.045; z-score median 0.015-0.038
            assert float(h.median()) <= MEDIAN_TOLERANCE
            assert float(torch.quantile(h, 0.99)) <= P99_TOLERANCE
            assert float(z.median()) > MEDIAN_TOLERANCE
            assert float(z.median()) > 5 * float(h.median())


def test_standardisation_is_monotone_deterministic_and_leaves_its_input_alone(fitted) -> None:
    data, landmarks = fitted
    image = _load(data / TEST_CASE, TEST_CASE)
    before = image.clone()
    transform = HistogramStandardized("image", landmarks, zscore=False)
    out = transform({"image": image})["image"]
    assert torch.equal(image, before) and out.dtype == torch.float32
    assert isinstance(out, MetaTensor) and torch.equal(out.affine, image.affine)
    assert torch.equal(transform({"image": image})["image"], out)  # deterministic: cacheable before augmentation
    record = json.loads(landmarks.read_text())
    percentiles = torch.tensor(record["percentiles"], dtype=torch.float64) / 100
    for channel in range(4):
        brain = image[channel] != 0
        x, y = image[channel][brain].to(torch.float64), out[channel][brain].to(torch.float64)
        assert (y[torch.argsort(x, stable=True)].diff() >= -1e-4).all()  # intensity order is kept
        # the case's own percentiles land on the standard landmarks
        np.testing.assert_allclose(quantiles(y, percentiles).numpy(), record["landmarks"][channel], atol=0.05)


def test_quantiles_of_more_values_than_torch_quantile_takes() -> None:
    values = torch.linspace(0.0, 1.0, 2**24 + 1) ** 2  # known quantiles: q**2
    q = torch.tensor([0.01, 0.5, 0.99])
    with pytest.raises(RuntimeError, match="too large"):
        torch.quantile(values, q)
    torch.testing.assert_close(quantiles(values, q), q**2, atol=1e-5, rtol=0)
    subsampled = quantiles(torch.rand(100_000, generator=torch.Generator().manual_seed(0)), q, max_elements=10_000)
    torch.testing.assert_close(subsampled, q, atol=0.02, rtol=0)  # a strided subsample of uniform values


def test_fit_cli_uses_the_training_fold_only_in_network_channel_order(make_dataset, tmp_path: Path, capsys) -> None:
    assert histogram.main(["fit", "--dataset_dir", str(tmp_path / "nowhere"), "--output", str(tmp_path / "x")]) == 1
    assert capsys.readouterr().err.startswith(f"error: dataset_dir {tmp_path / 'nowhere'} does not exist")
    data = make_dataset("brats2021")
    output = tmp_path / "models" / "landmarks.json"
    arguments = ["fit", "--dataset_dir", str(data), "--fold", "1", "--num_folds", "3", "--output", str(output)]
    assert histogram.main(arguments) == 0  # `python -m scripts.histogram fit ...`
    assert capsys.readouterr().out.startswith(f"{output}: landmarks for FLAIR, T1ce, T1, T2 from 2 training case(s)")
    record = json.loads(output.read_text())
    info = discover(data, num_folds=3, seed=0)
    train = {c["case_id"] for c in fold_cases(info, 1, "train")}
    validation = {c["case_id"] for c in fold_cases(info, 1, "val")}
    assert set(record["cases"]) == train and not validation & set(record["cases"])
    assert record["fold"] == 1 and record["mask"] == "nonzero"
    assert record["channels"] == ["FLAIR", "T1ce", "T1", "T2"] and record["percentiles"][0::10] == [1.0, 99.0]
    # the standard scale is the mean of each training case's landmarks mapped onto [0, 100]
    per_case = {c["case_id"]: case_landmarks(_load(Path(c["image"][0]).parent, c["case_id"])) for c in info["training"]}
    expected = standard_landmarks({k: v for k, v in per_case.items() if k in train})
    np.testing.assert_allclose(record["landmarks"], expected.numpy(), atol=1e-5)
    assert not np.allclose(record["landmarks"], standard_landmarks(per_case).numpy(), atol=1e-3)  # fold matters

    # MSD stores FLAIR, T1, T1ce, T2 in one 4D file: the same cases give the same landmarks in network order
    msd_output = tmp_path / "msd.json"
    fit_fold(discover(make_dataset("msd"), num_folds=3, seed=0), 1, msd_output)
    msd = json.loads(msd_output.read_text())["landmarks"]
    np.testing.assert_allclose(msd, record["landmarks"], atol=1e-5)
    assert not np.allclose(msd[1], msd[2], atol=1e-1)  # T1ce and T1 rows differ, so a swap would be caught


def _parser(config_files: list[str], **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / f) for f in config_files])
    parser.update({"bundle_root": str(BUNDLE), "num_folds": 3, "num_workers": 0, **overrides})
    parser.parse()
    return parser


def test_configs_fit_only_when_training_and_refuse_leaked_or_missing_files(make_dataset, tmp_path, monkeypatch):
    data = make_dataset("brats2021")
    landmarks = tmp_path / "models" / "landmarks.json"
    common = {"dataset_dir": str(data), "ckpt_dir": str(tmp_path / "models")}

    _parser(["train.json"], normalization="zscore", **common).get_parsed_content("normalize_transform")
    assert not landmarks.exists()  # z-score never fits

    for files in (["train.json", "evaluate.json"], ["inference.json"]):  # evaluation and inference never fit
        overrides = {"checkpoint": str(tmp_path / "models" / "model.pt")} if files == ["inference.json"] else {}
        parser = _parser(files, normalization="histogram", **common, **overrides)
        with pytest.raises(
            SystemExit, match=f"^error: normalization 'histogram' needs the landmarks file {landmarks},"
        ):
            parser.get_parsed_content("normalize_transform" if len(files) == 2 else "preprocessing")
        assert not landmarks.exists()

    with monkeypatch.context() as patched:  # under torchrun the file must exist before launch
        patched.setattr(torch.distributed, "is_initialized", lambda: True)
        parser = _parser(["train.json"], normalization="histogram", **common)
        with pytest.raises(SystemExit, match="under torchrun fit it before launching"):
            parser.get_parsed_content("normalize_transform")

    _parser(["train.json"], normalization="histogram", **common).get_parsed_content("normalize_transform")
    info = discover(data, num_folds=3, seed=0)
    assert json.loads(landmarks.read_text())["cases"] == [c["case_id"] for c in fold_cases(info, 0, "train")]
    evaluation = _parser(["train.json", "evaluate.json"], normalization="histogram", **common)
    assert evaluation.get_parsed_content("normalize_transform").transforms[0].source == str(landmarks)

    # fold 1 validates on a case fold 0's landmarks were fitted on: leakage, refused
    leaked = sorted({c["case_id"] for c in fold_cases(info, 1, "val")})
    parser = _parser(["train.json"], normalization="histogram", fold=1, **common)
    with pytest.raises(SystemExit, match=f"fitted on validation case\\(s\\) of fold 1 \\({leaked[0]}"):
        parser.get_parsed_content("normalize_transform")


def test_inference_without_landmarks_is_a_one_line_error(tmp_path: Path, make_dataset) -> None:
    torch.save(SwinUNETR(4, 3, feature_size=12).state_dict(), tmp_path / "model.pt")
    result = run_bundle("inference", "--config_file", "configs/inference.json", "--dataset_dir",
                        str(make_dataset("brats2021")), "--ckpt_dir", str(tmp_path), "--output_dir",
                        str(tmp_path / "out"), "--normalization", "histogram", *TINY, expect_ok=False)  # fmt: skip
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"error: normalization 'histogram' needs the landmarks file {tmp_path}/landmarks.json,")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.nii.gz"))


def _write_scanner_copy(source: Path, case_id: str, target: Path, copy_id: str, profile: tuple) -> None:
    """New NIfTI files of a case with another scanner's intensities: same affine, background kept 0."""
    (target / copy_id).mkdir(parents=True)
    for modality, params in zip(MODALITIES, profile, strict=True):
        original = nib.load(source / f"{case_id}_{modality}.nii.gz")
        copied = _scanner_channel(torch.as_tensor(np.asarray(original.dataobj)), *params).numpy()
        nib.save(nib.Nifti1Image(copied, original.affine), target / copy_id / f"{copy_id}_{modality}.nii.gz")


def _probabilities(case_dir: Path, case_id: str, network: torch.nn.Module, normalization: str, landmarks: Path):
    image = normalization_transform(normalization, landmarks=landmarks)({"image": _load(case_dir, case_id)})["image"]
    with torch.no_grad():
        logits = SlidingWindowInferer((64, 64, 64), sw_batch_size=4, overlap=0.5)(image[None].float(), network)
    return torch.sigmoid(logits[0]).as_tensor()


# PyTorch's output bias and no post-processing: label maps that cover much of the brain after one epoch.
UNSHAPED = ("--output_bias_prior", "0", *NO_POSTPROCESSING)


def test_histogram_trained_model_segments_a_case_and_its_scanner_copy_alike(make_dataset, tmp_path: Path) -> None:
    """Through the real CLI: train 1 epoch with `--normalization histogram` (landmarks fitted on the fly), then infer
    on a folder holding a case and a gamma/gain/offset copy of it.

    A 1-epoch model is no segmenter, but with PyTorch's output initialisation (not the 1 % prior, which paints nothing
    after one epoch) and no small-component rules its label maps are not trivial either: each region covers a sizeable
    part of the volume (asserted between 1 % and 90 %), so agreeing maps mean agreeing voxels. The same model
    fed z-scored inputs (in-process, same weights) is the control: without standardisation the copy changes the
    network's mean probabilities and the number of flipped brain voxels more than three times as much (asserted per
    region), so the agreement is the standardisation's doing, not an insensitive network."""
    data, models = make_dataset("brats2021"), tmp_path / "models"
    train = run_bundle("training", "--config_file", "configs/train.json", "--dataset_dir", str(data),
                       "--num_folds", "3", "--ckpt_dir", str(models), "--output_dir", str(tmp_path / "train"),
                       "--epochs", "1", "--normalization", "histogram", *UNSHAPED, *TINY)  # fmt: skip
    assert "fitting histogram landmarks on the 2 training case(s) of fold 0" in train.stdout + train.stderr
    info = discover(data, num_folds=3, seed=0)
    record = json.loads((models / "landmarks.json").read_text())
    assert record["cases"] == [c["case_id"] for c in fold_cases(info, 0, "train")]

    folder, copy_id = tmp_path / "cases", "BraTS2021_00099"
    shutil.copytree(data / TEST_CASE, folder / TEST_CASE)
    _write_scanner_copy(data / TEST_CASE, TEST_CASE, folder, copy_id, SCANNERS["gamma_a"])
    output = tmp_path / "predictions"
    run_bundle("inference", "--config_file", "configs/inference.json", "--dataset_dir", str(folder), "--ckpt_dir",
               str(models), "--output_dir", str(output), "--normalization", "histogram", *UNSHAPED, *TINY)  # fmt: skip

    convention = CONVENTIONS["brats2021"]
    maps = [nib.load(output / f"{case}.nii.gz") for case in (TEST_CASE, copy_id)]
    np.testing.assert_allclose(maps[0].affine, maps[1].affine)
    regions = [labels_to_regions(torch.as_tensor(np.asarray(m.dataobj)), convention).bool() for m in maps]
    for index, name in enumerate(("TC", "WT", "ET")):
        a, b = regions[0][index], regions[1][index]
        for region in (a, b):  # neither empty nor (nearly) everything
            assert 0.01 < float(region.float().mean()) < 0.9, (name, float(region.float().mean()))
        dice = 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())
        assert dice >= 0.97, (name, dice)  # measured: 0.9985-0.9998

    network = SwinUNETR(4, 3, feature_size=12)
    network.load_state_dict(torch.load(models / "model.pt", weights_only=True))
    network.eval()
    brain = (_load(folder / TEST_CASE, TEST_CASE) != 0).any(0)
    change, flips = {}, {}
    for normalization in ("histogram", "zscore"):
        p, q = (_probabilities(folder / c, c, network, normalization, models / "landmarks.json") for c in
                (TEST_CASE, copy_id))  # fmt: skip
        assert float(p.min()) < 0.1 and float(p.max()) > 0.9  # the output depends on the input: not a constant
        change[normalization] = (p - q).abs()[:, brain].mean(dim=1)  # mean |probability change| per region
        flips[normalization] = ((p > 0.5) != (q > 0.5))[:, brain].sum(dim=1)  # brain voxels whose label changes
    # measured: mean |change| histogram 0.0009-0.0010, z-score 0.011-0.012; flipped voxels (of 53433 in the brain)
    # histogram 72-125, z-score 1350-1812
    assert (change["histogram"] <= 0.005).all(), change
    assert (change["zscore"] > 3 * change["histogram"]).all(), change
    assert (flips["histogram"] <= 0.01 * int(brain.sum())).all(), flips
    assert (flips["zscore"] > 3 * flips["histogram"]).all(), flips
