"""CaseMetricsWriter: per-case rows with spacing and case ids from the metadata, CSV/JSON files and pictures."""

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor
from scripts.case_metrics import CaseMetricsWriter
from scripts.case_ranking import DICE_COLUMNS
from scripts.labels import CONVENTIONS
from scripts.metrics import HD95_EMPTY_MM, METRIC_COLUMNS, region_metrics
from scripts.naming import case_id_of
from scripts.tensor_meta import voxel_spacing

SHAPE = (20, 20, 20)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _cube(shift: int = 0, axis: int = 0) -> torch.Tensor:
    """A 10^3 cube (all three nested regions), optionally shifted along one axis."""
    mask = torch.zeros(SHAPE)
    mask[5:15, 5:15, 5:15] = 1
    return torch.roll(mask, shift, dims=axis).expand(3, *SHAPE).clone()


def _item(case_id: str, pred: torch.Tensor, label: torch.Tensor, affine: np.ndarray) -> dict:
    meta = {"affine": torch.as_tensor(affine), "filename_or_obj": f"/data/{case_id}/{case_id}_flair.nii.gz"}
    image = torch.rand(4, *SHAPE) + 0.5  # FLAIR first; never 0, so the pictures show a "brain" everywhere
    return {
        "image": MetaTensor(image, meta=dict(meta)),
        "label": MetaTensor(label, meta=dict(meta)),
        "pred": MetaTensor(pred, meta=dict(meta)),
    }


def _run(writer: CaseMetricsWriter, batches: list[list[dict]]) -> Engine:
    engine = Engine(lambda engine, batch: batch)  # the "evaluator" outputs the decollated items it is given
    writer.attach(engine)
    engine.run(batches, max_epochs=1)
    return engine


@pytest.fixture
def items() -> list[dict]:
    # The x axis is flipped in every affine (as in BraTS files): spacing must come from column norms, not signs.
    anisotropic = np.diag([-2.0, 1.0, 3.0, 1.0])
    empty_et = _cube()
    empty_et[2] = 0  # ET channel (labels.REGIONS order TC, WT, ET) missed entirely
    return [
        _item("BraTS2021_00001", _cube(shift=2, axis=0), _cube(), anisotropic),  # 2 voxels x 2 mm
        _item("BraTS2021_00002", _cube(), _cube(), anisotropic),
        _item("BraTS2021_00003", empty_et, _cube(), np.diag([-1.0, 1.0, 1.0, 1.0])),
    ]


def test_rows_files_and_state(tmp_path: Path, items: list[dict]) -> None:
    writer = CaseMetricsWriter(str(tmp_path), num_pictures=0)
    engine = _run(writer, [items[:2], items[2:]])
    rows = engine.state.case_metrics["rows"]
    assert [row["case_id"] for row in rows] == ["BraTS2021_00001", "BraTS2021_00002", "BraTS2021_00003"]
    # Case 1: shifted cubes, Dice 2*800/2000, HD95 2 voxels * 2 mm (the x spacing, sign of the affine ignored).
    assert rows[0]["dice_wt"] == pytest.approx(0.8) and rows[0]["hd95_wt"] == pytest.approx(4.0)
    assert rows[1]["dice_et"] == 1.0 and rows[1]["hd95_et"] == 0.0
    assert (rows[2]["dice_et"], rows[2]["hd95_et"], rows[2]["dice_tc"]) == (0.0, HD95_EMPTY_MM, 1.0)

    with open(tmp_path / "metrics.csv", newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == ["case_id", *METRIC_COLUMNS]
    assert [line[0] for line in table[1:]] == ["BraTS2021_00001", "BraTS2021_00002", "BraTS2021_00003"]
    assert table[1][1 + METRIC_COLUMNS.index("dice_et")] == "0.800000"
    assert table[3][1 + METRIC_COLUMNS.index("hd95_et")] == "373.000000"

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["cases"] == 3
    # dice_et over the cases: 0.8, 1, 0 -> mean 0.6, median 0.8; hd95_et: 4, 0, 373 -> mean 377/3.
    assert summary["metrics"]["dice_et"]["mean"] == pytest.approx(0.6)
    assert summary["metrics"]["dice_et"]["median"] == pytest.approx(0.8)
    assert summary["metrics"]["hd95_et"]["mean"] == pytest.approx(377 / 3)
    assert summary == engine.state.case_metrics["summary"]
    assert not (tmp_path / "pictures").exists()
    assert not list(tmp_path.glob("*.partial"))


def test_rows_reset_each_run(tmp_path: Path, items: list[dict]) -> None:
    writer = CaseMetricsWriter(str(tmp_path), num_pictures=0)
    _run(writer, [items])
    engine = _run(writer, [items[:1]])
    assert len(engine.state.case_metrics["rows"]) == 1
    assert len((tmp_path / "metrics.csv").read_text().splitlines()) == 2


def test_pictures_of_worst_and_best(tmp_path: Path, items: list[dict]) -> None:
    # Mean Dice: case 1 0.8, case 2 1.0, case 3 2/3 -> worst is case 3, best is case 2; case 1 gets none.
    writer = CaseMetricsWriter(str(tmp_path), convention="brats2021", num_pictures=1)
    _run(writer, [[item] for item in items])
    pictures = sorted(p.name for p in (tmp_path / "pictures").iterdir())
    assert pictures == ["BraTS2021_00002.png", "BraTS2021_00003.png"]
    for name in pictures:
        data = (tmp_path / "pictures" / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 20_000
    assert set(writer.pictures.views) == {"BraTS2021_00002", "BraTS2021_00003"}  # only candidates' slices are kept


def test_spacing_and_case_id_sources() -> None:
    flipped = MetaTensor(torch.zeros(1, 2, 2, 2), meta={"affine": torch.diag(torch.tensor([-0.5, 2.0, 1.5, 1.0]))})
    assert voxel_spacing(flipped) == (0.5, 2.0, 1.5)
    header_only = SimpleNamespace(meta={"pixdim": [1.0, 0.9, 0.8, 2.5, 0, 0, 0, 0]})
    assert voxel_spacing(None, header_only) == pytest.approx((0.9, 0.8, 2.5))
    assert voxel_spacing(torch.zeros(2)) == (1.0, 1.0, 1.0)
    msd = SimpleNamespace(meta={"filename_or_obj": "/data/imagesTr/BRATS_007.nii.gz"})
    assert case_id_of(None, msd, default="x") == "BRATS_007"
    assert case_id_of(torch.zeros(1), default="case_0001") == "case_0001"


def _rescaled_copy(source: Path, target: Path, scale: tuple[float, float, float]) -> Path:
    """The dataset's BraTS 2021 case folders with the same voxels on another grid: affine columns times `scale`."""
    for path in source.glob("*/*.nii.gz"):
        image = nib.load(path)
        (target / path.parent.name).mkdir(parents=True, exist_ok=True)
        affine = image.affine @ np.diag([*scale, 1.0])
        nib.save(nib.Nifti1Image(np.asarray(image.dataobj), affine), target / path.parent.name / path.name)
    return target


def test_inside_a_monai_evaluator(tmp_path: Path, make_dataset) -> None:
    """Real loading, decollation and metadata: case ids from the files, HD95 in mm from the voxel size of their affine.

    The same cases are evaluated again stored on an anisotropic grid (the voxels unchanged, the affine's columns
    scaled by 2, 1 and 3): Dice is unchanged, and each HD95 is the one for the voxel size in the files' headers.
    """
    from monai.engines import SupervisedEvaluator
    from monai.transforms import Activationsd, AsDiscreted, Compose, LoadImaged, NormalizeIntensityd
    from scripts.cases import discover
    from scripts.labels import LabelsToRegionsd, NestRegionsd

    convention = CONVENTIONS["brats2021"]
    loading = Compose(
        [
            LoadImaged(keys=["image", "label"], ensure_channel_first=True, image_only=True),
            LabelsToRegionsd(keys="label", convention=convention),
            NormalizeIntensityd(keys="image", nonzero=True, channel_wise=True),
        ]
    )

    class BrightFlair(torch.nn.Module):
        """Calls every bright FLAIR voxel tumour: crude, but a real prediction for each case."""

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return (image[:, :1] > 1.0).float().repeat(1, 3, 1, 1, 1) * 20 - 10

    def evaluate(root: Path, output_dir: Path) -> tuple[dict, dict, dict]:
        """Rows by case id, the (pred, label) masks the writer was given, and each case's voxel size per nibabel."""
        cases = discover(root)["training"]
        evaluator = SupervisedEvaluator(
            device=torch.device("cpu"),
            val_data_loader=torch.utils.data.DataLoader(
                [loading(case) for case in cases], batch_size=2, collate_fn=__import__("monai").data.list_data_collate
            ),
            network=BrightFlair(),
            postprocessing=Compose(
                [Activationsd(keys="pred", sigmoid=True), AsDiscreted(keys="pred", threshold=0.5), NestRegionsd("pred")]
            ),
            val_handlers=[CaseMetricsWriter(str(output_dir), convention=convention, num_pictures=1)],
        )
        masks = {}

        def keep_masks(engine: Engine) -> None:
            for item in engine.state.output:
                case_id = case_id_of(item["label"], default="?")
                masks[case_id] = tuple(item[key].as_tensor().numpy() for key in ("pred", "label"))

        evaluator.add_event_handler(Events.ITERATION_COMPLETED, keep_masks)
        evaluator.run()
        rows = {row["case_id"]: row for row in evaluator.state.case_metrics["rows"]}
        assert sorted(rows) == sorted(masks) == sorted(case["case_id"] for case in cases)
        assert len(list((output_dir / "pictures").glob("*.png"))) == 2
        zooms = {
            case["case_id"]: tuple(float(z) for z in nib.load(case["label"]).header.get_zooms()[:3]) for case in cases
        }
        return rows, masks, zooms

    source = make_dataset("brats2021")
    original = evaluate(source, tmp_path / "original")
    rescaled = evaluate(_rescaled_copy(source, tmp_path / "rescaled", (2.0, 1.0, 3.0)), tmp_path / "anisotropic")
    hd95_columns = [column for column in METRIC_COLUMNS if "hd95" in column]
    for rows, masks, zooms in (original, rescaled):
        for case_id, row in rows.items():
            assert 0.0 < row["dice_wt"] < 1.0  # a real prediction: neither empty nor perfect
            expected = region_metrics(*masks[case_id], zooms[case_id])
            for column in hd95_columns:
                assert row[column] == pytest.approx(expected[column], rel=1e-5), (case_id, zooms[case_id], column)
    for case_id, row in original[0].items():
        scaled, voxel = rescaled[0][case_id], original[2][case_id]
        assert rescaled[2][case_id] == pytest.approx((2 * voxel[0], voxel[1], 3 * voxel[2]))
        assert [scaled[c] for c in DICE_COLUMNS] == [row[c] for c in DICE_COLUMNS]  # the same voxels
        assert scaled["hd95_wt"] > row["hd95_wt"] > 0.0  # longer voxels, longer distances
