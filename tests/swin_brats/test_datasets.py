"""The training data path of train.json: deterministic part cached once, tumour-centred crops, untracked tensors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import train_workflow
from monai.bundle import ConfigWorkflow
from monai.data import CacheDataset, Dataset, PersistentDataset
from monai.data.meta_tensor import MetaTensor
from monai.utils import set_determinism
from scripts.datasets import cached_dataset


def _train_workflow(data: Path, tmp_path: Path, **overrides) -> ConfigWorkflow:
    return train_workflow(data, tmp_path / "models", tmp_path / "out", **{"roi_size": [32, 32, 32], **overrides})


def _train_dataset(data: Path, tmp_path: Path, **overrides) -> Dataset:
    return _train_workflow(data, tmp_path, **overrides).parser.get_parsed_content("train#dataset")


def test_memory_cache_holds_the_normalised_brain_and_crops_hold_tumour(make_dataset, tmp_path: Path) -> None:
    dataset = _train_dataset(make_dataset("brats2021"), tmp_path, crop_tumour_fraction=1.0)
    assert isinstance(dataset, CacheDataset) and len(dataset._cache) == len(dataset) == 2
    cached = dataset._cache[0]
    brain = cached["image"][0] != 0
    assert abs(float(cached["image"][0][brain].mean())) < 1e-3  # z-scored once, inside the brain only
    assert cached["image"].shape[1:] != (64, 64, 48)  # cropped to the brain's box before caching
    for _ in range(4):
        (sample,) = dataset[0]
        assert sample["image"].shape == (4, 32, 32, 32) and sample["label"].shape == (3, 32, 32, 32)
        assert not isinstance(sample["image"], MetaTensor)  # EnsureTyped(track_meta=False) ends the pipeline
        assert bool(sample["label"][1].any()), "with crop_tumour_fraction 1 every crop is centred on tumour"


def test_disk_cache_and_no_cache(make_dataset, tmp_path: Path) -> None:
    data = make_dataset("brats2021")
    disk = _train_dataset(data, tmp_path, cache="disk", cache_dir=str(tmp_path / "cache"))
    assert isinstance(disk, PersistentDataset)
    disk[0]
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1
    same = _train_dataset(data, tmp_path, cache="disk", cache_dir=str(tmp_path / "cache"))
    other_padding = _train_dataset(data, tmp_path, cache="disk", cache_dir=str(tmp_path / "cache"), roi_size=[80] * 3)
    assert same.transform_hash == disk.transform_hash != other_padding.transform_hash  # settings are in the key
    plain = _train_dataset(data, tmp_path, cache="none")
    assert type(plain) is Dataset
    with pytest.raises(ValueError, match="cache 'disk' needs --cache_dir"):
        cached_dataset([], lambda x: x, cache="disk")
    with pytest.raises(ValueError, match="Unknown cache 'ram'"):
        cached_dataset([], lambda x: x, cache="ram")


def test_random_crops_still_differ_between_epochs(make_dataset, tmp_path: Path) -> None:
    dataset = _train_dataset(make_dataset("brats2021"), tmp_path)
    crops = [dataset[0][0]["image"] for _ in range(3)]
    assert not (torch.equal(crops[0], crops[1]) and torch.equal(crops[1], crops[2]))


def test_loader_workers_keep_each_crop_with_its_case_and_seeded_epochs_repeat(make_dataset, tmp_path: Path) -> None:
    """Workers must not share the random crop: a crop randomised for one case and applied to another is off its grid.

    Thread workers shared one `RandCropByPosNegLabeld` and broke both (image and label crops of different shapes on
    full-size cases); worker processes each own their transforms, seeded per worker.
    """
    workflow = _train_workflow(make_dataset("brats2021", num_cases=4), tmp_path, num_workers=2, batch_size=1)
    loader = workflow.parser.get_parsed_content("train#dataloader")

    def one_epoch() -> list[torch.Tensor]:
        set_determinism(seed=0)
        batches = []
        for batch in loader:
            assert batch["image"].shape[2:] == batch["label"].shape[2:] == (32, 32, 32)
            batches.append(torch.cat([batch["image"], batch["label"].float()], 1))
        return batches

    first, second = one_epoch(), one_epoch()
    assert len(first) == len(second) > 1
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
