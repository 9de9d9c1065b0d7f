"""Broken cases (missing modality, truncated gzip, other shape or affine, foreign label value, NaN/Inf, all-zero
image, 2D image, 4D file with the wrong channel count) through the preflight check, the prepare_datalist CLI, and the
real `python -m monai.bundle run` training and inference; the memo of passed cases, the headers-only pass and the
preflight shared over two torch.distributed (gloo) ranks."""

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import BUNDLE, SHAPE, TINY, run_bundle
from ignite.engine import Events
from monai.bundle import ConfigWorkflow
from monai.inferers import SimpleInferer
from monai.networks.nets import SwinUNETR
from monai.transforms import Compose, Lambda
from scripts import preflight
from scripts.cases import discover
from scripts.datalist import dataset_info
from scripts.errors import InputError
from scripts.inference_cases import CaseDataset, CaseSafeEvaluator, InferenceCases
from scripts.labels import CONVENTIONS
from scripts.layouts import DatasetLayoutError
from scripts.preflight import check_case, require_valid_cases
from scripts.synthetic_data import make_case, write_case

Breaker = Callable[[Path, str], None]


def _rewrite(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> None:
    """Replace the voxels of `path`, keeping its own affine unless another is given."""
    nib.save(nib.Nifti1Image(data, nib.load(path).affine if affine is None else affine), str(path))


def _affine(path: Path) -> np.ndarray:
    return nib.load(path).affine


def _voxels(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _poisoned(path: Path, values: float, count: int) -> np.ndarray:
    data = _voxels(path).astype(np.float32)
    np.put(data, range(count), values)  # in place, whatever the memory order
    return data


def _label_3_in_brats2021(folder: Path, case: str) -> None:
    seg = folder / f"{case}_seg.nii.gz"
    data = _voxels(seg)
    data[0, 0, 0] = 3  # BraTS 2023's ET value; BraTS 2021 has 0, 1, 2, 4
    _rewrite(seg, data)


# kind -> (how to break a good BraTS 2021 case, the file it names, words of the reason)
BRATS_BREAKS: dict[str, tuple[Breaker, str, str]] = {
    "missing_modality": (lambda f, c: (f / f"{c}_t1ce.nii.gz").unlink(), "_t1ce.nii.gz", "missing file"),
    "truncated_gzip": (lambda f, c: _truncate(f / f"{c}_flair.nii.gz"), "_flair.nii.gz", "truncated or corrupt file"),
    "other_shape": (
        lambda f, c: _rewrite(f / f"{c}_t2.nii.gz", np.ones((64, 64, 40), np.int16)),
        "_t2.nii.gz",
        f"shape (64, 64, 40) differs from {SHAPE}",
    ),
    "other_affine": (
        lambda f, c: _rewrite(
            f / f"{c}_t1.nii.gz", _voxels(f / f"{c}_t1.nii.gz"), _affine(f / f"{c}_t1.nii.gz") + np.diag([0, 0, 0.2, 0])
        ),
        "_t1.nii.gz",
        "affine differs from that of",
    ),
    "foreign_label": (_label_3_in_brats2021, "_seg.nii.gz", "label values [3] are not part of the 'brats2021'"),
    "nan": (
        lambda f, c: _rewrite(f / f"{c}_flair.nii.gz", _poisoned(f / f"{c}_flair.nii.gz", np.nan, 5)),
        "_flair.nii.gz",
        "non-finite intensities (5 NaN, 0 infinite voxels)",
    ),
    "inf": (
        lambda f, c: _rewrite(f / f"{c}_t1ce.nii.gz", _poisoned(f / f"{c}_t1ce.nii.gz", np.inf, 3)),
        "_t1ce.nii.gz",
        "non-finite intensities (0 NaN, 3 infinite voxels)",
    ),
    "all_zero": (
        lambda f, c: _rewrite(f / f"{c}_t2.nii.gz", np.zeros(SHAPE, np.int16)),
        "_t2.nii.gz",
        "all-zero image (no brain)",
    ),
    "image_2d": (
        lambda f, c: _rewrite(f / f"{c}_t1.nii.gz", _voxels(f / f"{c}_t1.nii.gz")[:, :, 20]),
        "_t1.nii.gz",
        "2D image of shape (64, 64); expected a 3D volume",
    ),
}
GOOD_LABELLED, GOOD_UNLABELLED = ("BraTS2021_good_0", "BraTS2021_good_1"), ("BraTS2021_good_2",)
MSD_GOOD, MSD_THREE_CHANNELS, MSD_NAN = "BRATS_001", "BRATS_002", "BRATS_003"
MSD_BREAKS = {
    MSD_THREE_CHANNELS: "3 channel(s) in shape (64, 64, 48, 3); expected 4",
    MSD_NAN: "non-finite intensities (1 NaN, 0 infinite voxels)",
}


def _brats_id(kind: str) -> str:
    return f"BraTS2021_bad_{kind}"


@pytest.fixture(scope="module")
def broken_brats(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """BraTS 2021 folder: 2 good labelled cases, 1 good unlabelled case and one labelled case per kind of damage."""
    root = tmp_path_factory.mktemp("broken_brats")
    rng = np.random.default_rng(11)
    for case_id in (*GOOD_LABELLED, *GOOD_UNLABELLED, *map(_brats_id, BRATS_BREAKS)):
        write_case(root, "brats2021", case_id, make_case(rng, SHAPE), labelled=case_id not in GOOD_UNLABELLED)
    for kind, (breaker, _, _) in BRATS_BREAKS.items():
        breaker(root / _brats_id(kind), _brats_id(kind))
    return root


@pytest.fixture(scope="module")
def broken_msd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MSD folder: one good case, one 4D image of 3 channels instead of 4, one with a NaN."""
    root = tmp_path_factory.mktemp("broken_msd")
    rng = np.random.default_rng(12)
    for case_id in (MSD_GOOD, MSD_THREE_CHANNELS, MSD_NAN):
        write_case(root, "msd", case_id, make_case(rng, SHAPE), labelled=True)
    (root / "dataset.json").write_text("{}")
    image = root / "imagesTr" / f"{MSD_THREE_CHANNELS}.nii.gz"
    _rewrite(image, _voxels(image)[..., :3])
    image = root / "imagesTr" / f"{MSD_NAN}.nii.gz"
    _rewrite(image, _poisoned(image, np.nan, 1))
    return root


def _cases(root: Path) -> dict[str, dict]:
    info = discover(root, num_folds=2, allow_incomplete=True)
    return {case["case_id"]: case for case in info["training"] + info["testing"]}


def test_every_kind_of_damage_is_named_with_its_file(broken_brats: Path, broken_msd: Path) -> None:
    cases = _cases(broken_brats)
    convention = CONVENTIONS["brats2021"]
    for case_id in (*GOOD_LABELLED, *GOOD_UNLABELLED):
        assert check_case(cases[case_id], convention) == []
    for kind, (_, file_suffix, reason) in BRATS_BREAKS.items():
        problems = check_case(cases[_brats_id(kind)], convention)
        assert len(problems) == 1, (kind, problems)
        assert problems[0].file == str(broken_brats / _brats_id(kind) / f"{_brats_id(kind)}{file_suffix}"), kind
        assert reason in problems[0].reason, (kind, problems[0].reason)
    # inference checks images only: a foreign label value does not stop a prediction
    assert check_case(cases[_brats_id("foreign_label")], None) == []
    msd = _cases(broken_msd)
    assert check_case(msd[MSD_GOOD], CONVENTIONS["msd"]) == []
    for case_id, reason in MSD_BREAKS.items():
        (problem,) = check_case(msd[case_id], CONVENTIONS["msd"])
        assert problem.file.endswith(f"imagesTr/{case_id}.nii.gz") and reason in problem.reason


def test_a_tiny_volume_and_an_unreadable_header_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "BraTS2021_x"
    write_case(tmp_path, "brats2021", "BraTS2021_x", make_case(np.random.default_rng(0), (64, 64, 8)), labelled=False)
    (folder / "BraTS2021_x_t2.nii.gz").write_bytes(b"not a nifti file")
    problems = {Path(p.file).name: p.reason for p in check_case(_cases(tmp_path)["BraTS2021_x"])}
    assert "only 8 along axis 2 (shape (64, 64, 8))" in problems["BraTS2021_x_flair.nii.gz"]
    assert problems["BraTS2021_x_t2.nii.gz"].startswith("unreadable (")


def test_require_valid_cases_lists_all_broken_cases_in_one_error(broken_brats: Path) -> None:
    cases = list(_cases(broken_brats).values())
    with pytest.raises(SystemExit) as stopped:
        require_valid_cases(cases, CONVENTIONS["brats2021"], workers=2)
    message = str(stopped.value.code)
    assert message.startswith(f"error: {len(BRATS_BREAKS)} of {len(cases)} case(s) cannot be used:")
    assert sorted(line.split(":")[0].strip() for line in message.splitlines()[1:-1]) == sorted(
        map(_brats_id, BRATS_BREAKS)
    )
    good = [c for c in cases if c["case_id"] in GOOD_LABELLED]
    assert require_valid_cases(good, CONVENTIONS["brats2021"]) == good


def _prepare(dataset: Path, output: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(BUNDLE / "scripts" / "prepare_datalist.py"), "--dataset_dir", str(dataset)]
    return subprocess.run([*command, "--output", str(output), *extra], capture_output=True, text=True, timeout=300)


def _named_lines(text: str, case_ids: list[str]) -> dict[str, str]:
    """The line naming each case id (as the first word of an indented report line)."""
    lines = {}
    for line in text.splitlines():
        for case_id in case_ids:
            if f"{case_id}: " in line:
                lines[case_id] = line
    return lines


def test_prepare_datalist_reports_every_broken_case_or_skips_them(broken_brats: Path, tmp_path: Path) -> None:
    output = tmp_path / "datalist.json"
    refused = _prepare(broken_brats, output, "--num_folds", "2")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert not output.exists()
    broken = list(map(_brats_id, BRATS_BREAKS))
    assert f"error: {len(broken)} of {len(broken) + 3} case(s) cannot be used:" in refused.stderr
    named = _named_lines(refused.stderr, broken)
    for kind, (_, file_suffix, reason) in BRATS_BREAKS.items():
        assert f"{_brats_id(kind)}{file_suffix}: {reason}" in named[_brats_id(kind)]
    assert "BraTS2021_good" not in refused.stderr

    skipped = _prepare(broken_brats, output, "--num_folds", "2", "--skip_bad")
    assert skipped.returncode == 0, skipped.stderr
    assert sorted(_named_lines(skipped.stderr, broken)) == sorted(broken)  # still reported, as a warning
    datalist = json.loads(output.read_text())
    assert sorted(c["case_id"] for c in datalist["training"]) == sorted(GOOD_LABELLED)
    assert [c["case_id"] for c in datalist["testing"]] == list(GOOD_UNLABELLED)
    assert sorted(c["fold"] for c in datalist["training"]) == [0, 1]  # folds dealt over the kept cases


def test_prepare_datalist_reports_a_4d_file_with_three_channels(broken_msd: Path, tmp_path: Path) -> None:
    refused = _prepare(broken_msd, tmp_path / "datalist.json")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    named = _named_lines(refused.stderr, [MSD_GOOD, *MSD_BREAKS])
    assert sorted(named) == sorted(MSD_BREAKS)
    for case_id, reason in MSD_BREAKS.items():
        assert f"imagesTr/{case_id}.nii.gz: {reason}" in named[case_id]


@pytest.mark.parametrize("layout", ["brats2021", "msd"])
def test_training_refuses_to_start_listing_every_broken_case(broken_brats, broken_msd, tmp_path, layout) -> None:
    data = broken_brats if layout == "brats2021" else broken_msd
    expected = list(map(_brats_id, BRATS_BREAKS)) if layout == "brats2021" else list(MSD_BREAKS)
    result = run_bundle("training", "--config_file", "configs/train.json", "--dataset_dir", str(data),
                        "--num_folds", "2", "--ckpt_dir", str(tmp_path / "models"), "--output_dir", str(tmp_path),
                        "--epochs", "1", *TINY, expect_ok=False)  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    error = result.stderr[result.stderr.index("error: ") :]
    assert error.startswith(f"error: {len(expected)} of ")
    assert sorted(_named_lines(error, expected)) == sorted(expected)
    assert "Epoch[" not in result.stdout + result.stderr and not (tmp_path / "models").exists()
    total, memo = len(expected) + (len(GOOD_LABELLED) if layout == "brats2021" else 1), tmp_path / "preflight.json"
    usable = f"preflight: {total - len(expected)} of {total} case(s) usable"
    assert f"{usable} ({total} checked, 0 remembered from {memo})" in result.stdout
    if layout == "brats2021":  # a rerun with the same --output_dir reads only the broken cases again
        rerun = run_bundle("training", "--config_file", "configs/train.json", "--dataset_dir", str(data),
                           "--num_folds", "2", "--ckpt_dir", str(tmp_path / "models"), "--output_dir", str(tmp_path),
                           "--epochs", "1", *TINY, expect_ok=False)  # fmt: skip
        assert rerun.returncode == 1 and rerun.stderr[rerun.stderr.index("error: ") :] == error
        assert f"{usable} ({len(expected)} checked, {total - len(expected)} remembered from {memo})" in rerun.stdout


def _constant_checkpoint(folder: Path) -> Path:
    """A feature-size-12 Swin UNETR predicting whole tumour everywhere (no training needed)."""
    network = SwinUNETR(4, 3, feature_size=12)
    with torch.no_grad():
        network.out.conv.conv.weight.zero_()
        network.out.conv.conv.bias.copy_(torch.tensor([-9.0, 9.0, -9.0]))
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), folder / "model.pt")
    return folder


def _infer(data: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_bundle("inference", "--config_file", "configs/inference.json", "--dataset_dir", str(data),
                      "--ckpt_dir", str(_constant_checkpoint(tmp_path / "models")),
                      "--output_dir", str(tmp_path / "out"), *TINY, *extra, expect_ok=False)  # fmt: skip


def test_inference_predicts_every_good_case_and_reports_each_broken_one(broken_brats: Path, tmp_path: Path) -> None:
    result = _infer(broken_brats, tmp_path)
    broken = [_brats_id(kind) for kind in BRATS_BREAKS if kind != "foreign_label"]  # labels are not read here
    predicted = [*GOOD_LABELLED, *GOOD_UNLABELLED, _brats_id("foreign_label")]
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    log = _named_lines(result.stdout, broken)  # one log line per broken case, with the file and the reason
    for kind in BRATS_BREAKS.keys() - {"foreign_label"}:
        _, file_suffix, reason = BRATS_BREAKS[kind]
        assert f"ERROR - {_brats_id(kind)}: " in log[_brats_id(kind)]
        assert f"{_brats_id(kind)}{file_suffix}: {reason}" in log[_brats_id(kind)]
    final = result.stderr.strip().splitlines()[-1]
    assert final.startswith(f"error: {len(broken)} of {len(broken) + len(predicted)} case(s) could not be predicted")
    assert all(case_id in final for case_id in broken)

    out = tmp_path / "out"
    assert sorted(p.name for p in out.glob("*.nii.gz")) == sorted(f"{c}.nii.gz" for c in predicted)
    for case_id in predicted:  # whole tumour only: edema, 2 (0 where the inferer leaves out the background)
        values = set(np.unique(_voxels(out / f"{case_id}.nii.gz")).tolist())
        assert 2 in values and values <= {0, 2}
    errors = json.loads((out / "errors.json").read_text())
    assert errors["cases"] == len(broken) + len(predicted)
    assert sorted(e["case_id"] for e in errors["failed"]) == sorted(broken)
    for entry in errors["failed"]:
        kind = entry["case_id"].removeprefix("BraTS2021_bad_")
        assert entry["stage"] == "preflight" and BRATS_BREAKS[kind][2] in entry["reason"]
        assert "\n" not in entry["reason"]


def test_inference_debug_shows_the_traceback_and_still_predicts_the_good_case(broken_msd, tmp_path) -> None:
    """MSD layout (a 4D file of 3 channels, a NaN) with `--debug True`: the same per-case handling, plus tracebacks."""
    debug = _infer(broken_msd, tmp_path, "--debug", "True")
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "InputError: 2 of 3 case(s) could not be predicted" in debug.stderr
    assert (tmp_path / "out" / f"{MSD_GOOD}.nii.gz").is_file()
    errors = json.loads((tmp_path / "out" / "errors.json").read_text())
    assert {e["case_id"]: e["reason"] for e in errors["failed"]}.keys() == MSD_BREAKS.keys()


def test_errors_json_exists_only_when_a_case_failed(broken_brats: Path, tmp_path: Path) -> None:
    cases, errors = _cases(broken_brats), tmp_path / "errors.json"
    errors.write_text('{"failed": [{"case_id": "from an earlier run"}]}')
    screen = InferenceCases([cases[c] for c in GOOD_LABELLED], str(errors))
    assert [c["case_id"] for c in screen.good] == list(GOOD_LABELLED)
    assert not errors.exists()
    screen.finish()  # nothing failed: no exit
    with pytest.raises(SystemExit, match="none of the 1 case"):  # nothing left to predict: stop at once
        InferenceCases([cases[_brats_id("nan")]], str(errors))
    assert json.loads(errors.read_text())["failed"][0]["case_id"] == _brats_id("nan")


def test_a_case_failing_mid_run_is_recorded_and_the_run_goes_on(tmp_path: Path) -> None:
    """A failure the preflight cannot foresee, in loading or in the iteration, costs only its own case."""
    screen = InferenceCases.__new__(InferenceCases)  # the screening of files is tested above
    screen.errors_file, screen.debug, screen.total, screen.failed = tmp_path / "errors.json", False, 4, {}

    def load(item: dict) -> dict:
        if item["case_id"] == "fails_to_load":
            raise OSError("disk read error")
        return {**item, "image": torch.full((1, 4, 4, 4), -1.0 if item["case_id"] == "fails_in_model" else 1.0)}

    class Network(torch.nn.Module):
        def forward(self, image: torch.Tensor) -> torch.Tensor:
            if (image < 0).any():
                raise RuntimeError("CUDA out of memory")
            return image

    data = [{"case_id": c} for c in ("a", "fails_to_load", "b", "fails_in_model")]
    evaluator = CaseSafeEvaluator(
        device=torch.device("cpu"),
        val_data_loader=torch.utils.data.DataLoader(CaseDataset(data, Compose([Lambda(load)])), batch_size=1),
        network=Network(),
        inferer=SimpleInferer(),
        cases=screen,
    )
    done = []
    evaluator.add_event_handler(Events.ITERATION_COMPLETED, lambda e: done.append(bool(e.state.output)))
    evaluator.run()
    assert done == [True, False, True, False]
    failed = json.loads((tmp_path / "errors.json").read_text())["failed"]
    assert [e["case_id"] for e in failed] == ["fails_to_load", "fails_in_model"]
    assert failed[0]["reason"] == "failed to load: disk read error"
    assert failed[1]["reason"] == "failed during inference: CUDA out of memory"
    with pytest.raises(SystemExit, match="2 of 4 case"):
        screen.finish()


def test_inference_json_wires_the_screen_into_loading_and_the_evaluator(make_dataset, tmp_path, monkeypatch) -> None:
    """inference.json as configured: after a clean preflight, one case fails to load and one fails in the network;
    both are recorded through the config's `CaseDataset` and `CaseSafeEvaluator`, the others are written, and
    `finalize` exits naming the two."""
    data = tmp_path / "data"
    shutil.copytree(make_dataset("brats2021"), data)
    out = tmp_path / "out"
    workflow = ConfigWorkflow(
        config_file=str(BUNDLE / "configs" / "inference.json"),
        workflow_type="infer",
        bundle_root=str(BUNDLE),
        dataset_dir=str(data),
        ckpt_dir=str(_constant_checkpoint(tmp_path / "models")),
        output_dir=str(out),
        feature_size=12,
        roi_size=[64, 64, 64],
        num_workers=0,
        progress_bar=False,
    )
    workflow.initialize()  # the preflight passes every case
    cases = [c["case_id"] for c in workflow.parser.get_parsed_content("case_screen").good]
    assert cases == ["BraTS2021_00000", "BraTS2021_00001", "BraTS2021_00002", "BraTS2021_00003"]
    fails_to_load, fails_in_network = cases[1], cases[2]
    _truncate(data / fails_to_load / f"{fails_to_load}_t2.nii.gz")  # damaged after the preflight read it

    evaluator = workflow.parser.get_parsed_content("evaluator")
    network = workflow.parser.get_parsed_content("network")
    current: dict[str, str] = {}
    evaluator.add_event_handler(Events.ITERATION_STARTED, lambda e: current.update(case=e.state.batch["case_id"][0]))
    forward = network.forward

    def forward_or_fail(image: torch.Tensor) -> torch.Tensor:
        if current["case"] == fails_in_network:
            raise RuntimeError("CUDA out of memory")
        return forward(image)

    monkeypatch.setattr(network, "forward", forward_or_fail)
    workflow.run()
    with pytest.raises(
        SystemExit, match=f"2 of 4 case\\(s\\) could not be predicted \\({fails_to_load}, {fails_in_network}\\)"
    ):
        workflow.finalize()

    assert sorted(p.name for p in out.glob("*.nii.gz")) == [f"{c}.nii.gz" for c in (cases[0], cases[3])]
    failed = json.loads((out / "errors.json").read_text())["failed"]
    assert [(e["case_id"], e["stage"]) for e in failed] == [
        (fails_to_load, "inference"),
        (fails_in_network, "inference"),
    ]
    assert failed[0]["reason"].startswith("failed to load: ") and "\n" not in failed[0]["reason"]
    assert failed[1]["reason"] == "failed during inference: CUDA out of memory"


def test_a_missing_dataset_or_datalist_stops_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=f"^error: dataset_dir {tmp_path / 'none'} does not exist"):
        dataset_info(str(tmp_path / "none"))
    with pytest.raises(SystemExit, match=f"^error: cannot read datalist {tmp_path / 'none.json'} \\(\\[Errno 2\\]"):
        dataset_info(str(tmp_path), str(tmp_path / "none.json"))
    with pytest.raises(InputError, match="No cases found") as debug:  # `--debug True`: a traceback with its cause
        dataset_info(str(tmp_path), debug=True)
    assert isinstance(debug.value.__cause__, DatasetLayoutError)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """The case ids whose files the preflight reads: headers (`nib.load`) and voxels (`read_voxels`), one per file."""
    seen: dict[str, list[str]] = {"headers": [], "voxels": []}
    load, voxels = preflight.nib.load, preflight.read_voxels

    def counted_load(path: str, *args, **kwargs):
        seen["headers"].append(Path(path).parent.name)
        return load(path, *args, **kwargs)

    def counted_voxels(image: nib.spatialimages.SpatialImage) -> np.ndarray:
        seen["voxels"].append(Path(image.get_filename()).parent.name)
        return voxels(image)

    monkeypatch.setattr(preflight.nib, "load", counted_load)
    monkeypatch.setattr(preflight, "read_voxels", counted_voxels)
    return seen


def _training_copy(make_dataset, folder: Path, broken: int | None = None) -> list[dict]:
    """The labelled cases of a copy of the tiny BraTS 2021 dataset; case number `broken` with a truncated FLAIR."""
    shutil.copytree(make_dataset("brats2021"), folder)
    cases = discover(folder, num_folds=2)["training"]
    if broken is not None:
        _truncate(Path(cases[broken]["image"][0]))
    return cases


def _reset(reads: dict[str, list[str]]) -> dict[str, list[str]]:
    """What `reads` holds, by case id once each, emptied for the next run."""
    found = {kind: sorted(set(ids)) for kind, ids in reads.items()}
    for ids in reads.values():
        ids.clear()
    return found


def test_a_rerun_reads_only_changed_and_broken_cases(make_dataset, tmp_path, reads, caplog) -> None:
    cases, memo = _training_copy(make_dataset, tmp_path / "data", broken=1), str(tmp_path / "out" / "preflight.json")
    ids, brats2021 = [c["case_id"] for c in cases], CONVENTIONS["brats2021"]
    _reset(reads)  # discovering the dataset read a header
    first = preflight.preflight(cases, brats2021, memo=memo)
    assert (list(first.broken), first.checked, first.remembered) == ([ids[1]], 3, 0)
    assert _reset(reads) == {"headers": ids, "voxels": ids}
    assert sorted(json.loads(Path(memo).read_text())["passed"]) == [ids[0], ids[2]]  # never the broken case

    again = preflight.preflight(cases, brats2021, memo=memo)  # unchanged: only the broken case is read again
    assert (list(again.broken), again.checked, again.remembered) == ([ids[1]], 1, 2)
    assert _reset(reads) == {"headers": [ids[1]], "voxels": [ids[1]]}

    stat = os.stat(cases[2]["label"])
    os.utime(cases[2]["label"], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # one file touched: its case is read
    touched = preflight.preflight(cases, brats2021, memo=memo)
    assert (touched.checked, touched.remembered) == (2, 1)
    assert _reset(reads)["headers"] == [ids[1], ids[2]]

    good = [cases[0], cases[2]]
    with caplog.at_level(logging.INFO, logger="scripts.preflight"):
        assert require_valid_cases(good, brats2021, memo=memo) == good
    assert f"preflight: 2 case(s) usable (0 checked, 2 remembered from {memo})" in caplog.text
    assert _reset(reads) == {"headers": [], "voxels": []}
    assert sorted(json.loads(Path(memo).read_text())["passed"]) == [ids[0], ids[2]]


def test_headers_only_pass_and_a_corrupt_memo(make_dataset, tmp_path, reads, caplog) -> None:
    """`voxels=False` reads no voxels and does not count as a full check; a full check stands for a headers-only one;
    an unreadable memo is a warning, and rewritten."""
    cases, memo = _training_copy(make_dataset, tmp_path / "data"), tmp_path / "preflight.json"
    ids, brats2021 = [c["case_id"] for c in cases], CONVENTIONS["brats2021"]
    memo.write_text('{"version": 1, "passed": {"BraTS2021_00000": ')  # cut off mid-write by an older tool
    _reset(reads)  # discovering the dataset read a header
    with caplog.at_level(logging.INFO, logger="scripts.preflight"):
        require_valid_cases(cases, brats2021, voxels=False, memo=str(memo))
    assert f"preflight: ignoring the memo {memo} (" in caplog.text
    assert f"3 case(s) usable (3 checked by their headers only, voxels not read, 0 remembered from {memo})" in (
        caplog.text
    )
    assert _reset(reads) == {"headers": ids, "voxels": []}

    full = preflight.preflight(cases, brats2021, voxels=True, memo=str(memo))
    assert (full.checked, full.remembered) == (3, 0)  # headers alone were not a full check
    assert _reset(reads) == {"headers": ids, "voxels": ids}
    headers = preflight.preflight(cases, brats2021, voxels=False, memo=str(memo))
    assert (headers.checked, headers.remembered) == (0, 3)
    assert _reset(reads) == {"headers": [], "voxels": []}
    other = preflight.preflight(cases, CONVENTIONS["brats2023"], memo=str(memo))  # another convention: read again
    assert (other.checked, other.remembered, len(other.broken)) == (3, 0, 3)


def _rank(rank: int, init: str, cases: list[dict], memo: str, out: str) -> None:
    """One of two gloo ranks: the preflight twice (the second finds the memo that rank 0 wrote), what it read and
    wrote, and how `require_valid_cases` ends, into `out/<rank>.json`."""
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    read, writes, runs = [], [], []
    load_header, write_memo = preflight.load_header, preflight.write_memo
    preflight.load_header = lambda path: read.append(Path(path).parent.name) or load_header(path)
    preflight.write_memo = lambda path, passed: writes.append(sorted(passed)) or write_memo(path, passed)
    for _ in range(2):
        verdict = preflight.preflight(cases, CONVENTIONS["brats2021"], memo=memo, workers=2)
        runs.append({"broken": list(verdict.broken), "read": sorted(set(read)), "checked": verdict.checked})
        read.clear()
    try:
        require_valid_cases(cases, CONVENTIONS["brats2021"], memo=memo)
        code = None
    except SystemExit as stopped:
        code = stopped.code
    torch.distributed.destroy_process_group()
    Path(out, f"{rank}.json").write_text(json.dumps({"runs": runs, "writes": writes, "exit": code}))


def test_two_ranks_share_the_preflight_and_its_verdict(make_dataset, tmp_path) -> None:
    """Each rank reads its half of the cases; both know the broken case from rank 1's half; rank 0 writes the memo
    with both halves' passed cases and names the broken case, rank 1 exits 1 quietly."""
    cases, memo = _training_copy(make_dataset, tmp_path / "data", broken=1), str(tmp_path / "preflight.json")
    ids = [c["case_id"] for c in cases]
    init = f"file://{tmp_path / 'rendezvous'}"
    torch.multiprocessing.start_processes(_rank, (init, cases, memo, str(tmp_path)), nprocs=2, start_method="fork")
    ranks = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in range(2)]
    assert [run["read"] for run in ranks[0]["runs"]] == [[ids[0], ids[2]], []]  # cases[rank::2], then nothing new
    assert [run["read"] for run in ranks[1]["runs"]] == [[ids[1]], [ids[1]]]  # its broken case, read each time
    for rank in ranks:
        assert [(run["broken"], run["checked"]) for run in rank["runs"]] == [([ids[1]], 3), ([ids[1]], 1)]
    assert (ranks[0]["writes"], ranks[1]["writes"]) == ([[ids[0], ids[2]]], [])  # once: the rerun changed nothing
    assert sorted(json.loads(Path(memo).read_text())["passed"]) == [ids[0], ids[2]]
    assert ranks[0]["exit"].startswith("error: 1 of 3 case(s) cannot be used:") and ids[1] in ranks[0]["exit"]
    assert ranks[1]["exit"] == 1
