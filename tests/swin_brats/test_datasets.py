"""The training data path of train.json: deterministic part cached once, tumour-centred crops, untracked tensors."""

from __future__ import annotations

import multiprocessing
import pickle
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import BUNDLE, TINY, run_bundle, train_workflow
from disk_cache_filler import fill_shared_cache
from iteration_losses import iteration_losses
from monai.bundle import ConfigWorkflow
from monai.data import CacheDataset, Dataset, NibabelReader, PersistentDataset
from monai.data.meta_tensor import MetaTensor
from monai.data.utils import pickle_hashing
from monai.transforms import LoadImaged
from monai.utils import set_determinism
from scripts.datasets import SharedPersistentDataset, cached_case_bytes, cached_dataset
from scripts.layouts import LAYOUTS
from scripts.memory import GB, cache_budget
from scripts.transforms import LoadImagePerThreadd


def _train_workflow(data: Path, tmp_path: Path, **overrides) -> ConfigWorkflow:
    return train_workflow(data, tmp_path / "models", tmp_path / "out", **{"roi_size": [64, 64, 64], **overrides})


def _train_dataset(data: Path, tmp_path: Path, **overrides) -> Dataset:
    return _train_workflow(data, tmp_path, **overrides).parser.get_parsed_content("train#dataset")


def test_memory_cache_holds_the_normalised_brain_and_crops_hold_tumour(make_dataset, tmp_path: Path) -> None:
    dataset = _train_dataset(make_dataset("brats2021"), tmp_path, crop_tumour_fraction=1.0)
    assert isinstance(dataset, CacheDataset) and len(dataset._cache) == len(dataset) == 2
    cached = dataset._cache[0]
    for channel in cached["image"].float():  # z-scored once per channel, inside the brain only
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
    assert isinstance(disk, SharedPersistentDataset)
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


@pytest.mark.parametrize("cache_dtype", ["float16", "float32"])
def test_random_crops_differ_between_epochs_and_never_write_to_the_cache(cache_dtype, make_dataset, tmp_path) -> None:
    """The cache is read without a deep copy (`copy_cache=False`), so no random transform may change it in place."""
    dataset = _train_dataset(
        make_dataset("brats2021"), tmp_path, crop_tumour_fraction=1.0, roi_size=[64] * 3, cache_dtype=cache_dtype
    )
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


@pytest.mark.parametrize("cache_dtype, image_dtype", [("float16", torch.float16), ("float32", torch.float32)])
def test_the_cache_holds_compact_dtypes_and_crops_come_out_float32(cache_dtype, image_dtype, make_dataset, tmp_path):
    """Regions cached as uint8 and the image in `cache_dtype`; the random part hands the model float32 as before."""
    dataset = _train_dataset(make_dataset("brats2021"), tmp_path, cache_dtype=cache_dtype)
    cached = dataset._cache[0]
    assert cached["image"].dtype == image_dtype and cached["label"].dtype == torch.uint8
    assert set(cached["label"].unique().tolist()) == {0, 1}
    voxels = cached["image"][0].numel()
    box = cached["foreground_start_coord"].nbytes + cached["foreground_end_coord"].nbytes  # CropForegroundd's
    assert cached_case_bytes(cached) == voxels * (4 * image_dtype.itemsize + 3) + box
    assert cached_case_bytes([cached, {"id": "no tensors"}]) == cached_case_bytes(cached)
    (sample,) = dataset[0]
    assert sample["image"].dtype == sample["label"].dtype == torch.float32


def _seeded_losses(data: Path, out: Path, **overrides) -> list[float]:
    """The losses of one seeded epoch (2 cases, no validation) of train.json."""
    workflow = _train_workflow(data, out, epochs=1, val_interval=5, seed=7, feature_size=12, amp=False, **overrides)
    return iteration_losses(workflow)


def test_seeded_runs_give_equal_losses_with_the_compact_cache_and_without(make_dataset, tmp_path: Path) -> None:
    """Two seeded runs give the same losses, and one deterministic chain feeds every cache, so they are identical with
    the compact memory cache and with none."""
    data = make_dataset("brats2021")
    memory = _seeded_losses(data, tmp_path / "memory")
    assert len(memory) == 2  # 1 epoch x 2 training cases
    assert memory[0] != memory[1], f"the loss changes from one iteration to the next: {memory}"
    assert _seeded_losses(data, tmp_path / "none", cache="none") == memory


def test_auto_cache_rate_caches_what_fits_and_trains_on_the_rest(make_dataset, tmp_path: Path) -> None:
    """A tiny case caches 2.9 MB (64^3 after padding): a 4 MB budget holds the first of the 2 training cases."""
    data = make_dataset("brats2021")
    places = ["--ckpt_dir", str(tmp_path / "m"), "--output_dir", str(tmp_path / "out")]
    result = run_bundle("training", "--config_file", "configs/train.json", "--dataset_dir", str(data), *places, *TINY,
                        "--num_folds", "3", "--epochs", "1", "--val_interval", "5",
                        "--cache_memory_gb", "0.004")  # fmt: skip
    log = result.stdout + result.stderr
    line = "cache: 1 of 2 training case(s) in memory, 0.0029 GB of a 0.004 GB budget (cache_memory_gb 0.004)"
    assert f"{line}; 1 loaded each epoch" in log
    assert log.count("cache: ") == 1
    assert "Epoch[1] Complete" in log


def test_a_partial_memory_cache_loads_the_rest_in_worker_processes(make_dataset, tmp_path: Path) -> None:
    workflow = _train_workflow(make_dataset("brats2021"), tmp_path, cache_memory_gb=0, num_workers=3)
    loader = workflow.parser.get_parsed_content("train#dataloader")
    assert loader.dataset.cache_num == 0 and loader.num_workers == 3 and loader.persistent_workers


def test_auto_budget_is_half_the_available_memory_per_local_rank(monkeypatch) -> None:
    monkeypatch.setattr("scripts.memory.available_memory", lambda: int(80 * GB))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert cache_budget("auto") == (int(5 * GB), "cache_memory_gb auto: half of 80.0 GB available, 8 local ranks")
    assert cache_budget(0.5) == (int(0.5 * GB), "cache_memory_gb 0.5")


def _same_items(first: list[dict], second: list[dict]) -> bool:
    """The same cases (in any order) with equal image and label tensors."""
    first, second = (sorted(items, key=lambda item: item["case_id"]) for items in (first, second))
    return all(torch.equal(a[k], b[k]) for a, b in zip(first, second, strict=True) for k in ("image", "label"))


def test_processes_sharing_a_disk_cache_write_whole_files_and_recompute_broken_ones(make_dataset, tmp_path) -> None:
    """Two processes fill one cache_dir at once: every file loads, all agree, no temporary file is left; a truncated
    file (a killed writer, a half-copied file) is recomputed and replaced, where MONAI's PersistentDataset raises."""
    cache_dir = tmp_path / "cache"
    dataset = _train_dataset(make_dataset("brats2021"), tmp_path, cache="disk", cache_dir=str(cache_dir))
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(2)
    outs = [tmp_path / f"items_{n}.pt" for n in range(2)]
    blob = pickle.dumps(dataset)
    processes = [spawn.Process(target=fill_shared_cache, args=(str(BUNDLE), blob, start, out)) for out in outs]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
    assert [process.exitcode for process in processes] == [0, 0]
    first, second = (torch.load(out, weights_only=False) for out in outs)
    files = sorted(cache_dir.iterdir())
    assert len(files) == len(dataset.data) == 2 and all(f.suffix == ".pt" for f in files), files
    assert _same_items(first, second)
    assert _same_items(first, [dataset._cachecheck(case) for case in dataset.data])  # hits, read from the files

    files[0].write_bytes(files[0].read_bytes()[: files[0].stat().st_size // 2])
    monai = PersistentDataset(dataset.data, dataset.transform, cache_dir=cache_dir, hash_transform=pickle_hashing)
    with pytest.raises(RuntimeError):  # documents MONAI 1.6.1: SharedPersistentDataset can go once this passes
        [monai._cachecheck(case) for case in dataset.data]
    assert _same_items(first, [dataset._cachecheck(case) for case in dataset.data])
    assert sorted(cache_dir.iterdir()) == files
    assert _same_items(first, [torch.load(f, weights_only=True) for f in files])
