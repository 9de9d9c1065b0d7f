"""End to end through `python -m monai.bundle`: train -> evaluate -> infer on each dataset layout."""

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import BUNDLE, DECLARED_LAYOUTS, LAYOUTS, REPO, TINY, run_bundle
from monai.networks.nets import SwinUNETR
from scripts.cases import discover
from scripts.labels import CONVENTIONS, labels_to_regions
from scripts.prepare_datalist import write_datalist

TRAIN_EVALUATE = "['configs/train.json','configs/evaluate.json']"


def _input_grid(case: dict) -> nib.Nifti1Image:
    image = case["image"]
    return nib.load(image[0] if isinstance(image, list) else image)


def _assert_on_input_grid(prediction: Path, case: dict) -> np.ndarray:
    written, source = nib.load(prediction), _input_grid(case)
    assert written.shape == source.shape[:3], prediction
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-5)
    assert written.get_data_dtype() == np.uint8
    return np.asarray(written.dataobj)


def _dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    if not truth.any() and not prediction.any():
        return 1.0
    return 2.0 * np.logical_and(prediction, truth).sum() / (prediction.sum() + truth.sum())


@pytest.mark.parametrize("layout", LAYOUTS)
def test_train_evaluate_infer(make_dataset, tmp_path: Path, layout: str) -> None:
    data = make_dataset(layout)
    info = discover(data, num_folds=3, seed=0)
    convention = CONVENTIONS[DECLARED_LAYOUTS[layout].convention]
    common = ["--dataset_dir", str(data), "--ckpt_dir", str(tmp_path / "models"), *TINY]
    if layout == "brats2023":  # through a datalist file: its folds win over --num_folds
        write_datalist(str(data), str(tmp_path / "datalist.json"), num_folds=3, seed=0)
        common += ["--datalist", str(tmp_path / "datalist.json"), "--num_folds", "99"]
    else:
        common += ["--num_folds", "3"]

    train = run_bundle("training", "--config_file", "configs/train.json", *common, "--epochs", "1",
                       "--output_dir", str(tmp_path / "train"))  # fmt: skip
    log = train.stdout + train.stderr
    for metric in ("train_loss", "train_mean_dice", "val_mean_dice_tc", "val_mean_dice_wt", "val_mean_dice_et"):
        assert metric in log
    state = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    SwinUNETR(4, 3, feature_size=12).load_state_dict(state)  # a plain state dict of the configured network
    assert list((tmp_path / "train").glob("events.out.tfevents.*"))

    for produced in ("training_log.csv", "training_curves.png", "validation/metrics.csv", "validation/summary.json"):
        assert (tmp_path / "train" / produced).is_file(), produced

    evaluation = tmp_path / "evaluation"
    run_bundle("--config_file", TRAIN_EVALUATE, *common, "--output_dir", str(evaluation))
    validation = [c for c in info["training"] if c["fold"] == 0]
    with open(evaluation / "metrics.csv") as f:
        rows = {row["case_id"]: row for row in csv.DictReader(f)}
    assert sorted(rows) == sorted(c["case_id"] for c in validation)
    assert list(next(iter(rows.values())))[:4] == ["case_id", "dice_et", "dice_tc", "dice_wt"]
    assert json.loads((evaluation / "summary.json").read_text())["cases"] == len(validation)
    assert sorted(p.name for p in (evaluation / "pictures").glob("*.png")) == sorted(f"{c}.png" for c in rows)
    for case in validation:
        painted = _assert_on_input_grid(evaluation / "predictions" / f"{case['case_id']}.nii.gz", case)
        assert set(np.unique(painted)) <= convention.allowed_values
        # metrics.csv scores exactly the saved label map: same regions, same BraTS empty rule.
        predicted = labels_to_regions(torch.as_tensor(painted), convention).numpy().astype(bool)
        truth = labels_to_regions(torch.as_tensor(np.asarray(nib.load(case["label"]).dataobj)), convention).numpy()
        for index, region in enumerate(("tc", "wt", "et")):
            expected = _dice(predicted[index], truth[index].astype(bool))
            assert float(rows[case["case_id"]][f"dice_{region}"]) == pytest.approx(expected, abs=1e-6)

    output = tmp_path / "predictions"
    run_bundle("inference", "--config_file", "configs/inference.json", "--dataset_dir", str(data),
               "--ckpt_dir", str(tmp_path / "models"), "--output_dir", str(output), *TINY)  # fmt: skip
    cases = info["training"] + info["testing"]
    assert sorted(p.name for p in output.iterdir()) == sorted(f"{c['case_id']}.nii.gz" for c in cases)
    for case in cases:
        assert (
            set(np.unique(_assert_on_input_grid(output / f"{case['case_id']}.nii.gz", case)))
            <= convention.allowed_values
        )


def _brain_box(case: dict) -> tuple[slice, ...]:
    """Bounding box of the voxels nonzero in any modality, on the input grid."""
    paths = case["image"] if isinstance(case["image"], list) else [case["image"]]
    volumes = [np.asarray(nib.load(path).dataobj) for path in paths]
    nonzero = np.any([v != 0 if v.ndim == 3 else (v != 0).any(-1) for v in volumes], axis=0)
    return tuple(slice(int(hits.min()), int(hits.max()) + 1) for hits in np.nonzero(nonzero))


@pytest.mark.parametrize(
    ("layout", "logits", "expected", "crop_to_brain"),
    [
        ("brats2021", (9.0, 9.0, 9.0), 4, True),  # TC+WT+ET everywhere -> enhancing tumour, in each dataset's value
        ("brats2023", (9.0, 9.0, 9.0), 3, True),
        ("msd", (-9.0, 9.0, -9.0), 1, False),  # WT only -> edema, which MSD calls 1 and BraTS calls 2
    ],
)
def test_inference_writes_the_dataset_label_values(
    make_dataset, tmp_path: Path, layout, logits, expected, crop_to_brain
) -> None:
    """A network whose output is constant shows which label value each region is painted with.

    With `crop_to_brain` the network only sees the brain's bounding box and everything outside it is background;
    without, the whole volume is tiled and painted.
    """
    network = SwinUNETR(4, 3, feature_size=12)
    with torch.no_grad():
        network.out.conv.conv.weight.zero_()
        network.out.conv.conv.bias.copy_(torch.tensor(logits))
    torch.save(network.state_dict(), tmp_path / "model.pt")
    data = make_dataset(layout, num_cases=1, num_unlabelled=1, seed=3)
    run_id = ["inference"] if layout != "msd" else []  # a plain `run` of inference.json infers too
    # brats2021 runs from the repository root: every path derives from --bundle_root
    where = {"cwd": REPO, "config": str(BUNDLE / "configs" / "inference.json"), "root": ["--bundle_root", str(BUNDLE)]}
    if layout != "brats2021":
        where = {"cwd": BUNDLE, "config": "configs/inference.json", "root": []}
    run_bundle(*run_id, "--config_file", where["config"], *where["root"], "--dataset_dir", str(data),
               "--ckpt_dir", str(tmp_path), "--output_dir", str(tmp_path / "out"),
               "--crop_to_brain", str(crop_to_brain), *TINY, cwd=where["cwd"])  # fmt: skip
    info = discover(data)
    cases = info["training"] + info["testing"]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.nii.gz")) == sorted(
        f"{c['case_id']}.nii.gz" for c in cases
    )
    for case in cases:
        painted = np.asarray(nib.load(tmp_path / "out" / f"{case['case_id']}.nii.gz").dataobj)
        if not crop_to_brain:
            assert np.unique(painted).tolist() == [expected]
            continue
        box = _brain_box(case)
        inside = np.zeros(painted.shape, bool)
        inside[box] = True
        assert not inside.all(), "the synthetic case should have background around the brain"
        assert np.unique(painted[inside]).tolist() == [expected]
        assert np.unique(painted[~inside]).tolist() == [0]


def test_plain_run_of_train_json_trains(make_dataset, tmp_path: Path) -> None:
    """`python -m monai.bundle run --config_file configs/train.json` without a run id runs `run`: it trains."""
    data, models, out = make_dataset("brats2021"), tmp_path / "models", tmp_path / "train"
    result = run_bundle("--config_file", "configs/train.json", "--dataset_dir", str(data), "--num_folds", "3",
                        "--ckpt_dir", str(models), "--output_dir", str(out), "--epochs", "1", *TINY)  # fmt: skip
    assert "SupervisedTrainer - INFO - Epoch[1] Complete" in result.stdout + result.stderr
    with open(out / "training_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["epoch"] for row in rows] == ["1"] and 0.0 < float(rows[0]["train_loss"]) < 10.0
    assert rows[0]["val_mean_dice"] != ""  # validated after the epoch
    assert torch.load(models / "checkpoint.pt", weights_only=True)["trainer"]["epoch"] == 1
    SwinUNETR(4, 3, feature_size=12).load_state_dict(torch.load(models / "model.pt", weights_only=True))


def test_a_bad_convention_names_the_file(make_dataset, tmp_path: Path) -> None:
    """BraTS 2021 files read as BraTS 2023 labels stop with the file and the value 4, before any training."""
    data = make_dataset("brats2021")
    result = run_bundle("--config_file", "configs/train.json", "--dataset_dir", str(data), "--num_folds", "3",
                        "--ckpt_dir", str(tmp_path), "--output_dir", str(tmp_path), "--epochs", "1",
                        "--label_convention", "brats2023", *TINY, expect_ok=False)  # fmt: skip
    assert result.returncode != 0
    assert "_seg.nii.gz: label values [4] are not part of the 'brats2023' convention" in result.stdout + result.stderr
    assert "Epoch[" not in result.stdout + result.stderr and not (tmp_path / "model.pt").exists()


@pytest.mark.parametrize(
    ("workflow", "config", "switches", "named"),
    [
        ("training", "configs/train.json", ["--resume", "false", "--amp", "False"], ["resume='false'"]),
        ("inference", "configs/inference.json", ["--flip_tta", "false", "--crop_to_brain", "true"],
         ["crop_to_brain='true'", "flip_tta='false'"]),
    ],
)  # fmt: skip
def test_a_lowercase_switch_is_refused_before_any_work(make_dataset, tmp_path: Path, workflow, config, switches, named):
    """The CLI reads `--resume false` as the truthy string "false": it must stop by name, not silently resume."""
    data = make_dataset("brats2021")
    places = ["--ckpt_dir", str(tmp_path / "m"), "--output_dir", str(tmp_path / "out")]
    result = run_bundle(workflow, "--config_file", config, "--dataset_dir", str(data), *places, *switches, *TINY,
                        expect_ok=False)  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    allowed = " is not allowed: True or False (capitalised on the command line)"
    assert result.stderr.strip().splitlines()[-1] == "error: " + "; ".join(key + allowed for key in named)
    assert not (tmp_path / "out").exists() and not (tmp_path / "m").exists()
