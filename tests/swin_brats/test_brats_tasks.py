"""Every BraTS task of today: conventions (labels, regions, painting, scored groups) and the case-prefix layouts."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import BUNDLE, SHAPE, TINY, run_bundle
from monai.bundle import ConfigWorkflow
from monai.networks.nets import SwinUNETR
from scipy import ndimage
from scripts.case_metrics import CaseMetricsWriter
from scripts.cases import discover
from scripts.check_submission import check_submission
from scripts.datalist import inference_cases
from scripts.labels import (
    BRATS_EVALUATION,
    CONVENTIONS,
    RegionsToLabelsd,
    check_convention,
    get_convention,
    labels_to_regions,
    nest_regions,
    painted_convention,
    regions_to_labels,
)
from scripts.layouts import LAYOUTS, DatasetLayoutError, layout_of_file
from scripts.metrics import (
    METRIC_COLUMNS,
    case_metrics,
    hd95_pooled,
    lesion_wise,
    matched_lesions,
    metric_columns,
    region_metrics,
)
from scripts.synthetic_data import write_dataset

CHECK = BUNDLE / "scripts" / "check_submission.py"

# label value -> the regions holding it, in the convention's channel order; written out by hand from the tasks' docs
# (notes/brats_tasks.md): BraTS 2024 GLI and MET keep the resection cavity outside the whole tumour; PED's 1 is ET.
EXPECTED_REGIONS = {
    "brats2024": (("TC", "WT", "ET", "RC"), {0: (0, 0, 0, 0), 1: (1, 1, 0, 0), 2: (0, 1, 0, 0), 3: (1, 1, 1, 0),
                                             4: (0, 0, 0, 1)}),
    "met": (("TC", "WT", "ET", "RC"), {0: (0, 0, 0, 0), 1: (1, 1, 0, 0), 2: (0, 1, 0, 0), 3: (1, 1, 1, 0),
                                       4: (0, 0, 0, 1)}),
    "ped": (("WT", "TC", "ET", "CC"), {0: (0, 0, 0, 0), 1: (1, 1, 1, 0), 2: (1, 1, 0, 0), 3: (1, 1, 0, 1),
                                       4: (1, 0, 0, 0)}),
    "men": (("TC", "WT", "ET"), {0: (0, 0, 0), 1: (1, 1, 0), 2: (0, 1, 0), 3: (1, 1, 1)}),
    "goat": (("TC", "WT", "ET"), {0: (0, 0, 0), 1: (1, 1, 0), 2: (0, 1, 0), 3: (1, 1, 1)}),
    "men_rt": (("GTV",), {0: (0,), 1: (1,)}),
}  # fmt: skip

# The groups of the brats-evaluation 0.0.10 configs (config_<name>.yaml: LabelGroup / LabelMergeGroup value_labels).
EVALUATION_GROUPS = {
    "gli": {"et": {3}, "netc": {1}, "snfh": {2}, "rc": {4}, "tc": {1, 3}, "wt": {1, 2, 3}},
    "mets": {"et": {3}, "rc": {4}, "tc": {1, 3}, "wt": {1, 2, 3}},
    "ped": {"et": {1}, "netc": {2}, "cc": {3}, "ed": {4}, "tc": {1, 2, 3}, "wt": {1, 2, 3, 4}},
    "MenPre": {"et": {3}, "tc": {1, 3}, "wt": {1, 2, 3}},
    "GoAT": {"et": {3}, "tc": {1, 3}, "wt": {1, 2, 3}},
    "MenRT": {"gtv": {1}},
}


def _label_volume(values: list[int]) -> torch.Tensor:
    volume = torch.zeros((1, 2, 2, len(values)), dtype=torch.int64)
    for z, value in enumerate(values):
        volume[..., z] = value
    return volume


@pytest.mark.parametrize("name", list(EXPECTED_REGIONS))
def test_regions_and_output_channels_follow_the_task(name: str) -> None:
    convention = CONVENTIONS[name]
    channels, per_value = EXPECTED_REGIONS[name]
    assert convention.region_names == channels  # the network's outputs: len(regions) channels
    values = list(per_value)
    regions = labels_to_regions(_label_volume(values), convention)
    assert regions.shape == (len(channels), 2, 2, len(values))
    for z, value in enumerate(values):
        assert tuple(int(regions[c, 0, 0, z]) for c in range(len(channels))) == per_value[value], value


@pytest.mark.parametrize("name", list(CONVENTIONS))
def test_every_convention_paints_every_label_back(name: str) -> None:
    convention = CONVENTIONS[name]
    check_convention(convention)
    label = torch.as_tensor(np.random.default_rng(0).choice(sorted(convention.allowed_values), size=(1, 6, 6, 6)))
    painted = regions_to_labels(labels_to_regions(label, convention), convention)
    assert painted.dtype == torch.uint8 and torch.equal(painted.long(), label)


def test_painting_order_settles_overlapping_predictions() -> None:
    """Where the network predicts a tumour region and the cavity (or the cyst and ET) at once, the later one wins."""
    gli, ped = CONVENTIONS["brats2024"], CONVENTIONS["ped"]
    both = torch.zeros((4, 1, 1, 1))
    both[[1, 3]] = 1  # WT and RC
    assert int(regions_to_labels(both, gli)) == 2  # tumour over the cavity painted before it
    cyst_and_et = torch.ones((4, 1, 1, 1))  # WT, TC, ET and CC
    assert int(regions_to_labels(cyst_and_et, ped)) == 1  # ET painted last


@pytest.mark.parametrize("name", [n for n, c in CONVENTIONS.items() if c.scoring == BRATS_EVALUATION])
def test_scored_groups_are_the_official_configs(name: str) -> None:
    convention = CONVENTIONS[name]
    expected = EVALUATION_GROUPS[convention.evaluation_config]
    assert {group: set(values) for group, values in convention.groups} == expected


def test_a_region_mismatch_is_refused_in_one_line() -> None:
    """Four channels (a BraTS 2024 model) painted as BraTS 2023, whose three regions differ, stop naming both."""
    with pytest.raises(ValueError, match=r"4 predicted channels, but the 'brats2023' convention has 3 regions"):
        RegionsToLabelsd("pred", "brats2023")({"pred": torch.zeros((4, 2, 2, 2))})


def test_auto_paints_the_dataset_values_when_the_regions_match_else_the_models() -> None:
    brats2021, brats2024, ped = (CONVENTIONS[n] for n in ("brats2021", "brats2024", "ped"))
    assert painted_convention("auto", "brats2023", brats2021).name == "brats2023"  # same regions: the dataset's values
    assert painted_convention("auto", "brats2023", brats2024, layout="brats2023").name == "brats2024"  # GLI 2024
    assert painted_convention("auto", None, ped).name == "ped"  # nothing scanned: the model's
    with pytest.raises(ValueError, match=r"predicts brats2023 \(regions TC, WT, ET\).*labelled ped"):
        painted_convention("auto", "ped", CONVENTIONS["brats2023"], layout="brats_ped")
    assert get_convention("brats2024").groups[0] == ("et", frozenset({3}))


def _touch_case(root: Path, case_id: str, parts: tuple[str, ...] = ("t2f", "t1c", "t1n", "t2w", "seg")) -> None:
    (root / case_id).mkdir(parents=True)
    for part in parts:
        (root / case_id / f"{case_id}-{part}.nii.gz").touch()


@pytest.mark.parametrize(
    ("case_id", "layout", "convention"),
    [
        ("BraTS-GLI-00000-000", "brats2023", "brats2023"),
        ("BraTS-MEN-00000-000", "brats_men", "men"),
        ("BraTS-MET-00000-000", "brats_met", "met"),
        ("BraTS-PED-00000-000", "brats_ped", "ped"),
        ("BraTS-SSA-00000-000", "brats_ssa", "brats2023"),
        ("BraTS-GoAT-00000", "brats_goat", "goat"),
    ],
)
def test_the_case_prefix_names_the_task(tmp_path: Path, case_id: str, layout: str, convention: str) -> None:
    _touch_case(tmp_path, case_id)
    info = discover(tmp_path, num_folds=2)
    assert (info["layout"], info["label_convention"]) == (layout, convention)
    assert [c["case_id"] for c in info["training"]] == [case_id]
    assert layout_of_file(tmp_path / case_id / f"{case_id}-t2f.nii.gz") == layout
    assert LAYOUTS[layout].case_id(0) == case_id  # the synthetic writer names cases as the task does


def test_a_folder_mixing_tasks_is_refused(tmp_path: Path) -> None:
    _touch_case(tmp_path, "BraTS-PED-00000-000")
    _touch_case(tmp_path, "BraTS-MET-00001-000")
    with pytest.raises(DatasetLayoutError, match="mixes BraTS brain metastases .* and BraTS paediatric tumours"):
        discover(tmp_path)


# --- scoring: each task as its challenge scores it (bench/brats_eval checks these against brats-evaluation itself) ---


def test_the_2021_2023_numbers_are_unchanged() -> None:
    """The old conventions score their painted groups exactly as `region_metrics` scores the TC/WT/ET channels."""
    rng = np.random.default_rng(4)
    label = torch.as_tensor(rng.choice([0, 0, 0, 1, 2, 4], size=(24, 24, 16)))
    truth = labels_to_regions(label, CONVENTIONS["brats2021"])
    pred = nest_regions(torch.as_tensor(rng.integers(0, 2, size=(3, 24, 24, 16)), dtype=torch.float32))
    for name in ("brats2021", "msd"):
        ours = case_metrics(pred.numpy(), truth.numpy(), CONVENTIONS[name], (1.0, 2.0, 1.0))
        assert list(ours) == METRIC_COLUMNS == metric_columns(CONVENTIONS[name])
        assert ours == region_metrics(pred.numpy(), truth.numpy(), (1.0, 2.0, 1.0))


def test_lesions_are_matched_one_to_one_and_averaged_over_matches() -> None:
    """Two true lesions, one found exactly, one missed, one false positive: lesion Dice 1 (the mean over matched
    pairs; misses and false positives only in the counts), unlike the 2023 scripts (which average them in as 0)."""
    truth, pred = np.zeros((20, 20, 20), bool), np.zeros((20, 20, 20), bool)
    truth[2:5, 2:5, 2:5] = truth[12:15, 12:15, 12:15] = True
    pred[2:5, 2:5, 2:5] = pred[2:4, 14:17, 2:4] = True
    scores = matched_lesions(pred, truth, (1.0, 1.0, 1.0))
    assert (scores.dice, scores.hd95, scores.truth, scores.missed, scores.false_positive) == (1.0, 0.0, 2, 1, 1)
    assert lesion_wise(pred, truth, (1.0, 1.0, 1.0), dilation_iterations=0).dice == pytest.approx(1 / 3)
    assert np.isnan(matched_lesions(pred & False, truth & False, (1.0, 1.0, 1.0)).dice)
    nothing = matched_lesions(pred & False, truth, (1.0, 1.0, 1.0))
    assert (nothing.dice, nothing.hd95, nothing.missed) == (0.0, 373.0, 2)


def test_hd95_pools_both_surfaces() -> None:
    """Truth voxels at z=0 and z=10, the prediction only the first: distances 0, 10 (truth) and 0 (prediction);
    the 95th percentile of the three pooled is 9.0, where the larger directional 95th percentile would be 9.5."""
    truth, pred = np.zeros((3, 3, 12), bool), np.zeros((3, 3, 12), bool)
    truth[1, 1, 0] = truth[1, 1, 10] = pred[1, 1, 0] = True
    assert hd95_pooled(pred, truth, (1.0, 1.0, 1.0)) == pytest.approx(9.0)


def test_a_post_treatment_case_is_scored_on_its_six_groups(tmp_path: Path) -> None:
    """metrics.csv and summary.json of a BraTS 2024 GLI evaluation: the official groups, NaN where both are empty."""
    gli = CONVENTIONS["brats2024"]
    label = torch.zeros((1, 16, 16, 16), dtype=torch.int64)
    label[0, 2:10, 2:10, 2:10], label[0, 4:8, 4:8, 4:8], label[0, 12:15, 12:15, 12:15] = 2, 3, 4  # no NETC
    regions = labels_to_regions(label, gli)
    writer = CaseMetricsWriter(str(tmp_path), convention=gli, num_pictures=1)
    row = writer.add_case({"pred": regions, "label": regions, "image": torch.ones((4, 16, 16, 16))})
    assert [c for c in row if c.startswith("dice_")] == [f"dice_{g}" for g in ("et", "netc", "snfh", "rc", "tc", "wt")]
    assert row["dice_rc"] == row["lesion_dice_rc"] == 1.0 and np.isnan(row["dice_netc"])
    engine = SimpleNamespace(state=SimpleNamespace())
    writer.write(engine)
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header == ["case_id", *metric_columns(gli)] and "lesions_false_positive_rc" in header
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["label_convention"], summary["scoring"]) == ("brats2024", BRATS_EVALUATION)
    assert list((tmp_path / "pictures").glob("*.png"))  # the pictures paint the cavity too


# --- end to end: train one epoch and infer on each task's synthetic cases, in its own label values ---

TASKS = {  # convention -> (layout, --label_convention to pass): GLI 2024 shares the 2023 names, so the user says it
    "brats2024": ("brats2023", "brats2024"),
    "ped": ("brats_ped", None),
    "met": ("brats_met", None),
}
TASK_TISSUE = {"brats2024": "RC", "ped": "CC", "met": None}  # the tissue its synthetic cases must show


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, Path, Path]]:
    """convention -> (dataset, models, outputs): 2 synthetic cases (one trains, one validates), trained one epoch
    when a test first asks (so each test's time limit covers one training)."""
    done: dict[str, tuple[Path, Path, Path]] = {}

    def train(name: str) -> tuple[Path, Path, Path]:
        if name not in done:
            layout, requested = TASKS[name]
            work = tmp_path_factory.mktemp(f"task_{name}")
            data = work / "data"
            write_dataset(data, layout, num_cases=2, num_unlabelled=0, shape=SHAPE, seed=0, convention=name)
            chosen = ["--label_convention", requested] if requested else []
            run_bundle("training", "--config_file", "configs/train.json", "--dataset_dir", str(data),
                       "--num_folds", "2", "--ckpt_dir", str(work / "models"), "--output_dir", str(work / "train"),
                       "--epochs", "1", *chosen, *TINY)  # fmt: skip
            done[name] = (data, work / "models", work)
        return done[name]

    return train


@pytest.mark.parametrize("name", list(TASKS))
def test_a_task_trains_and_predicts_in_its_own_values(trained, name: str) -> None:
    convention = CONVENTIONS[name]
    data, models, work = trained(name)
    labels = [np.asarray(nib.load(path).dataobj) for path in sorted(data.glob("*/*-seg.nii.gz"))]
    assert set(np.unique(np.concatenate([m.ravel() for m in labels]))) <= convention.allowed_values
    if TASK_TISSUE[name]:  # the task's own tissue is in its cases (a cavity, a cyst)
        value = next(v for v, t in convention.tissues.items() if t == TASK_TISSUE[name])
        assert any((m == value).any() for m in labels)
    else:  # several small metastases in one case
        assert max(ndimage.label(m > 0, np.ones((3, 3, 3)))[1] for m in labels) >= 3
    # the network has one output per region, and says what it is beside its weights
    SwinUNETR(4, len(convention.regions), feature_size=12).load_state_dict(torch.load(models / "model.pt"))
    record = json.loads((models / "convention.json").read_text())
    assert record["label_convention"] == name and [r["name"] for r in record["regions"]] == list(
        convention.region_names
    )
    # validation scored the task's own groups, as brats-evaluation does
    with open(work / "train" / "validation" / "metrics.csv") as f:
        header = next(csv.reader(f))
    assert header == ["case_id", *metric_columns(convention)]
    assert json.loads((work / "train" / "validation" / "summary.json").read_text())["scoring"] == BRATS_EVALUATION

    # `auto` infers with the model's convention (for BraTS-GLI names that is 2024 only because the model says so)
    output = work / "predictions"
    result = run_bundle("inference", "--config_file", "configs/inference.json", "--dataset_dir", str(data),
                        "--ckpt_dir", str(models), "--output_dir", str(output), *TINY)  # fmt: skip
    assert "submission check: 2 case(s), 0 problem(s)" in result.stdout + result.stderr  # in the task's values
    for path in sorted(output.glob("*.nii.gz")):
        image = nib.load(path)
        assert set(np.unique(np.asarray(image.dataobj))) <= convention.allowed_values
        assert image.header["descrip"].item().decode() == f"label_convention={name}"
    if name == "brats2024":  # the command line, told the convention the BraTS-GLI names cannot tell
        check = [sys.executable, str(CHECK), "--predictions", str(output), "--dataset_dir", str(data)]
        assert subprocess.run([*check, "--label_convention", name], capture_output=True, text=True).returncode == 0


def _initialize(config_files: list[str], data: Path, models: Path, output: Path, **settings) -> None:
    """The workflow of `config_files` (tiny settings) initialised on `data` and `models`: what runs before any case."""
    workflow = ConfigWorkflow(config_file=[str(BUNDLE / "configs" / name) for name in config_files],
                              workflow_type="infer", bundle_root=str(BUNDLE), dataset_dir=str(data),
                              ckpt_dir=str(models), output_dir=str(output), feature_size=12, roi_size=[64, 64, 64],
                              num_workers=0, progress_bar=False, **settings)  # fmt: skip
    workflow.initialize()


def test_a_2024_model_refuses_to_predict_2023_labels(trained, tmp_path: Path) -> None:
    """The GLI post-treatment model (TC, WT, ET, RC) asked for BraTS 2023's three regions stops in one line before it
    predicts; evaluating its data as BraTS 2023 (`auto` on BraTS-GLI names) stops at the labels, naming 2024."""
    data, models, _ = trained("brats2024")
    with pytest.raises(SystemExit) as stopped:
        _initialize(["inference.json"], data, models, tmp_path / "out", label_convention="brats2023")
    assert str(stopped.value) == (
        f"error: {models / 'model.pt'} was trained on brats2024 (regions TC, WT, ET, RC) and cannot predict "
        "brats2023 (regions TC, WT, ET): pass --label_convention brats2024, or train on brats2023"
    )
    assert not list((tmp_path / "out").glob("*.nii.gz"))
    with pytest.raises(SystemExit) as stopped:
        _initialize(["train.json", "evaluate.json"], data, models, tmp_path / "evaluation", num_folds=2)
    assert "label values [4] are not part of the 'brats2023' convention" in str(stopped.value)
    assert "(a brats2024 or met or ped label map?)" in str(stopped.value)


def test_the_submission_check_names_2023_and_2024_maps_handed_in_as_the_other(trained, tmp_path: Path) -> None:
    data, _, work = trained("brats2024")
    cases = inference_cases(discover(data))
    as_2023 = check_submission(work / "predictions", cases, CONVENTIONS["brats2023"])  # 2024 maps, checked as 2023
    assert not as_2023["passed"] and len(as_2023["problems"]) == 2
    assert all(p["problem"].startswith("written as a brats2024 label map") for p in as_2023["problems"])
    folder = tmp_path / "maps"
    shutil.copytree(work / "predictions", folder)
    first = sorted(folder.glob("*.nii.gz"))[0]
    image = nib.load(first)  # the same map as a BraTS 2023 model would write it: its values fit 2024 too
    image.header["descrip"] = b"label_convention=brats2023"
    nib.save(image, first)
    as_2024 = check_submission(folder, cases, CONVENTIONS["brats2024"])
    assert [(Path(p["file"]).name, p["problem"].split(" (")[0]) for p in as_2024["problems"]] == [
        (first.name, "written as a brats2023 label map")
    ]
