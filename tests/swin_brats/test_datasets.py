"""The training data path of train.json: deterministic part cached once, tumour-centred crops, untracked tensors."""

from __future__ import annotations

import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import train_workflow
from monai.bundle import ConfigWorkflow
from monai.data import CacheDataset, Dataset, NibabelReader, PersistentDataset
from monai.data.meta_tensor import MetaTensor
from monai.transforms import LoadImaged
from monai.utils import set_determinism
from scripts.datasets import cached_dataset
from scripts.layouts import LAYOUTS
from scripts.transforms import LoadImagePerThreadd


def _train_workflow(data: Path, tmp_path: Path, **overrides) -> ConfigWorkflow:
    return train_workflow(data, tmp_path / "models", tmp_path / "out", **{"roi_size": [64, 64, 64], **overrides})


def _train_dataset(data: Path, tmp_path: Path, **overrides) -> Dataset:
    return _train_workflow(data, tmp_path, **overrides).parser.get_parsed_content("train#dataset")


def test_memory_cache_holds_the_normalised_brain_and_crops_hold_tumour(make_dataset, tmp_path: Path) -> None:
    dataset = _train_dataset(make_dataset("brats2021"), tmp_path, crop_tumour_fraction=1.0)
    assert isinstance(dataset, CacheDataset) and len(dataset._cache) == len(dataset) == 2
    cached = dataset._cache[0]
    for channel in cached["image"]:  # z-scored once per channel, inside the brain only
        brain = channel != 0
        assert abs(float(channel[brain].mean())) < 1e-3
        assert float(channel[brain].std(unbiased=False)) == pytest.approx(1.0, abs=1e-3)
    # cropped to the brain's box (voxels above 0 in any modality) before caching, then padded up to the 64^3 ROI
    files = dataset.data[0]["image"]
    brain = np.any([np.asarray(nib.load(path).dataobj) > 0 for path in files], axis=0)
    box = [int(hits.max() - hits.min()) + 1 for hits in np.nonzero(brain)]
    assert box != [64, 64, 48], "the synthetic case should have background around the brain"
    assert tuple(cached["image"].shape[1:]) == tuple(max(side, 64) for side in box)
    assert cached["label"].shape[1:] == cached["image"].shape[1:]
    for _ in range(4):
        (sample,) = dataset[0]
        assert sample["image"].shape == (4, 64, 64, 64) and sample["label"].shape == (3, 64, 64, 64)
        assert not isinstance(sample["image"], MetaTensor)  # EnsureTyped(track_meta=False) ends the pipeline
        assert bool(sample["label"][1].any()), "with crop_tumour_fraction 1 every crop is centred on tumour"


def test_disk_cache_and_no_cache(make_dataset, tmp_path: Path) -> None:
    data = make_dataset("brats2021")
    disk = _train_dataset(data, tmp_path, cache="disk", cache_dir=str(tmp_path / "cache"))
    assert isinstance(disk, PersistentDataset)
    disk[0]
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1
    same = _train_dataset(data, tmp_path, cache="disk", cache_dir=str(tmp_path / "cache"))
    other_padding = _train_dataset(data, tmp_path, cache="disk", cache_dir=str(tmp_path / "cache"), roi_size=[96] * 3)
    assert same.transform_hash == disk.transform_hash != other_padding.transform_hash  # settings are in the key
    plain = _train_dataset(data, tmp_path, cache="none")
    assert type(plain) is Dataset
    with pytest.raises(ValueError, match="cache 'disk' needs --cache_dir"):
        cached_dataset([], lambda x: x, cache="disk")
    with pytest.raises(ValueError, match="Unknown cache 'ram'"):
        cached_dataset([], lambda x: x, cache="ram")


def test_random_crops_differ_between_epochs_and_never_write_to_the_cache(make_dataset, tmp_path: Path) -> None:
    """The cache is read without a deep copy (`copy_cache=False`), so no random transform may change it in place."""
    dataset = _train_dataset(make_dataset("brats2021"), tmp_path, crop_tumour_fraction=1.0, roi_size=[64] * 3)
    cached = [{key: dataset._cache[i][key].clone() for key in ("image", "label")} for i in range(len(dataset))]
    crops = []
    for _ in range(3):
        for index in range(len(dataset)):
            (sample,) = dataset[index]
            sample["image"] += 1.0  # what a later in-place step (the trainer, a user's transform) might do
            sample["label"] *= False
            crops.append(sample["image"])
    assert not all(torch.equal(crops[0], crop) for crop in crops[len(dataset) :: len(dataset)])
    for index, before in enumerate(cached):
        for key in ("image", "label"):
            assert torch.equal(dataset._cache[index][key], before[key]), f"cache of case {index} changed: {key}"


@pytest.mark.parametrize("cache, workers", [("memory", 0), ("disk", 3), ("none", 3)])
def test_loader_processes_only_where_the_cache_leaves_loading_to_do(cache, workers, make_dataset, tmp_path) -> None:
    """Cached in memory, the random part takes milliseconds: the loader's own thread runs it, no processes to feed."""
    workflow = _train_workflow(make_dataset("brats2021"), tmp_path, cache=cache, cache_dir=str(tmp_path), num_workers=3)
    loader = workflow.parser.get_parsed_content("train#dataloader")
    assert loader.num_workers == workers and loader.persistent_workers == (workers > 0)


def test_loader_workers_keep_each_crop_with_its_case_and_seeded_epochs_repeat(make_dataset, tmp_path: Path) -> None:
    """Workers must not share the random crop: a crop randomised for one case and applied to another is off its grid.

    Thread workers shared one `RandCropByPosNegLabeld` and broke both (image and label crops of different shapes on
    full-size cases); worker processes each own their transforms, seeded per worker, and persist across epochs.
    """
    data = make_dataset("brats2021", num_cases=4)

    def seeded_run(run: str) -> list[torch.Tensor]:
        set_determinism(seed=0)
        workflow = _train_workflow(data, tmp_path / run, num_workers=2, loader_workers=2, batch_size=1)
        loader = workflow.parser.get_parsed_content("train#dataloader")
        assert loader.persistent_workers
        batches = []
        for _ in range(2):
            for batch in loader:
                assert batch["image"].shape[2:] == batch["label"].shape[2:] == (64, 64, 64)
                batches.append(torch.cat([batch["image"], batch["label"].float()], 1))
        return batches

    first, second = seeded_run("first"), seeded_run("second")
    assert len(first) == len(second) > 2
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    epoch = len(first) // 2
    assert not all(torch.equal(a, b) for a, b in zip(first[:epoch], first[epoch:], strict=True)), "epochs repeat"


@pytest.mark.parametrize("loader_class", [LoadImaged, LoadImagePerThreadd], ids=["monai", "per_thread"])
def test_cache_filling_threads_each_load_their_own_case(loader_class, make_dataset, monkeypatch) -> None:
    """Thread A reads a case's 4 modality files, thread B then reads a 1-file image, then both take the data.

    MONAI's shared NibabelReader hands A the file list of B's read (1 channel); one loader per thread does not.
    """
    case = make_dataset("brats2021") / "BraTS2021_00000"
    layout = LAYOUTS["brats2021"]
    modalities = [str(case / layout.file_name("BraTS2021_00000", m)) for m in layout.suffixes]
    loader = loader_class(keys="image", ensure_channel_first=True, image_only=True)
    first_read_done, both_read = threading.Event(), threading.Barrier(2, timeout=30)
    get_data = NibabelReader.get_data

    def get_data_after_both_reads(self, image):
        first_read_done.set()
        both_read.wait()
        return get_data(self, image)

    monkeypatch.setattr(NibabelReader, "get_data", get_data_after_both_reads)
    channels: dict[str, int] = {}

    def load(name: str, files: list[str]) -> None:
        channels[name] = loader({"image": files})["image"].shape[0]

    four = threading.Thread(target=load, args=("four", modalities))
    four.start()
    assert first_read_done.wait(timeout=30)
    load("one", modalities[:1])
    four.join(timeout=30)
    expected = {"four": 4, "one": 1}
    if loader_class is LoadImaged:  # documents the MONAI 1.6.1 race the per-thread loader exists for
        assert channels != expected, "MONAI's LoadImaged is thread-safe now: LoadImagePerThreadd can go"
    else:
        assert channels == expected
