"""Data hooks: 3D MNIST .h5 and MedMNIST-3D .npz loaders, the embedded real-digit default set, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from cls_helpers import write_h5, write_npz


def test_h5_loader_splits_train_and_keeps_test(bundle_scripts, tmp_path):
    from scripts.data import datalist, load_splits

    path = tmp_path / "full_dataset_vectors.h5"
    arrays = write_h5(path, n_train_per_class=6, n_test_per_class=3)
    splits = load_splits(str(path), num_classes=10, seed=0, val_fraction=0.5)
    (xt, yt), (xv, yv), (xs, ys) = splits["train"], splits["validation"], splits["test"]
    assert xt.shape[1:] == xv.shape[1:] == xs.shape[1:] == (16, 16, 16)
    # validation is carved from X_train, stratified: 3 of the 6 per class each
    assert np.bincount(yt, minlength=10).tolist() == [3] * 10
    assert np.bincount(yv, minlength=10).tolist() == [3] * 10
    flat_train = {v.tobytes(): y for v, y in zip(arrays["X_train"], arrays["y_train"], strict=True)}
    for v, y in zip(np.concatenate([xt, xv]).reshape(-1, 4096), np.concatenate([yt, yv]), strict=True):
        assert flat_train[v.tobytes()] == y
    assert len(flat_train) == len(xt) + len(xv)
    # test split is X_test/y_test (reordered only)
    order = np.lexsort(arrays["X_test"].T)
    got = np.lexsort(xs.reshape(-1, 4096).T)
    np.testing.assert_array_equal(xs.reshape(-1, 4096)[got], arrays["X_test"][order])
    np.testing.assert_array_equal(ys[got], arrays["y_test"][order])
    items = datalist(splits, "test")
    assert len(items) == 30 and items[0]["image"].shape == (1, 16, 16, 16) and isinstance(items[0]["label"], int)


def test_npz_loader_reads_medmnist_layout(bundle_scripts, tmp_path):
    from scripts.data import load_splits

    path = tmp_path / "digits3d.npz"
    arrays = write_npz(path, (4, 2, 2))
    splits = load_splits(str(path), num_classes=10, seed=0)
    for split, key in (("train", "train"), ("validation", "val"), ("test", "test")):
        x, y = splits[split]
        assert x.shape == (len(arrays[f"{key}_labels"]), 28, 28, 28) and x.dtype == np.float32
        assert y.ndim == 1 and sorted(y.tolist()) == sorted(arrays[f"{key}_labels"].ravel().tolist())
        # each image stays paired with its label
        lookup = {
            v.tobytes(): int(lab) for v, lab in zip(arrays[f"{key}_images"], arrays[f"{key}_labels"][:, 0], strict=True)
        }
        assert all(lookup[v.astype(np.uint8).tobytes()] == lab for v, lab in zip(x, y, strict=True))
    # num_samples caps each split, class-balanced
    capped = load_splits(str(path), num_classes=10, seed=0, num_samples=20)
    assert np.bincount(capped["train"][1], minlength=10).tolist() == [2] * 10


def test_default_real_digits_are_deterministic_stratified_and_balanced(bundle_scripts):
    from scripts.data import load_splits
    from scripts.digits import load_mnist_5k

    images, labels = load_mnist_5k()
    assert images.shape == (5000, 28, 28) and np.bincount(labels).tolist() == [500] * 10
    kwargs = dict(num_classes=10, seed=3, num_samples=200, val_fraction=0.1, test_fraction=0.2, grid_size=16)
    a = load_splits(None, **kwargs)
    load_splits.cache_clear()
    b = load_splits(None, **kwargs)
    for split, n in (("train", 14), ("validation", 2), ("test", 4)):
        x, y = a[split]
        assert x.shape == (10 * n, 16, 16, 16) and x.dtype == np.float32
        assert x.min() >= 0.0 and x.max() == pytest.approx(1.0)
        assert np.bincount(y, minlength=10).tolist() == [n] * 10  # stratified and balanced
        np.testing.assert_array_equal(x, b[split][0])  # deterministic for a seed
        np.testing.assert_array_equal(y, b[split][1])
    # labels are mixed (the source rows are sorted by class) and splits do not share volumes
    assert len(set(a["train"][1][:10].tolist())) > 3
    seen = {v.tobytes() for v in a["train"][0]}
    assert not any(v.tobytes() in seen for v in a["test"][0])
    other = load_splits(None, **(kwargs | {"seed": 4}))
    assert not np.array_equal(other["train"][0], a["train"][0])


def test_lifted_digit_projects_back_to_the_source_digit(bundle_scripts):
    from scripts.digits import lift_digit, load_mnist_5k

    images, _ = load_mnist_5k()
    digit = images[0]  # a zero: a ring with an empty centre
    volume = lift_digit(digit, np.random.default_rng(0), grid_size=28, max_rotation=0.0, jitter=0.0)
    mip = volume.max(axis=2) > 0
    assert volume.shape == (28, 28, 28)
    assert mip[14, 14] == 0 and mip.sum() > 60
    # depth: the digit is thick along axis 2 but far from filling it
    depth = np.flatnonzero(volume.max(axis=(0, 1)) > 0)
    assert 2 <= len(depth) <= 10


@pytest.mark.parametrize(
    ("name", "writer", "message"),
    [
        ("bad.h5", lambda p: write_h5(p, 2, 1, labels_offset=1), r"labels out of range 0\.\.9 .*\[10\]"),
        ("bad.npz", lambda p: write_npz(p, (1, 1, 1), drop="val_labels"), r"missing arrays \['val_labels'\]"),
        ("notes.txt", lambda p: p.write_text("x"), r"unsupported format '\.txt'"),
        ("fake.h5", lambda p: p.write_text("not hdf5"), r"not a readable HDF5 file"),
    ],
)
def test_bad_files_raise_clear_errors(bundle_scripts, tmp_path, name, writer, message):
    from scripts.data import load_splits

    path = tmp_path / name
    writer(path)
    with pytest.raises((ValueError, KeyError), match=message) as err:
        load_splits(str(path), num_classes=10)
    assert name in str(err.value)


def test_h5_missing_keys_and_missing_file(bundle_scripts, tmp_path):
    import h5py
    from scripts.data import load_splits

    path = tmp_path / "partial.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("X_train", data=np.zeros((2, 4096), np.float32))
    with pytest.raises(KeyError, match=r"partial\.h5: missing HDF5 datasets \['y_train', 'X_test', 'y_test'\]"):
        load_splits(str(path))
    with pytest.raises(FileNotFoundError, match="nothere.npz"):
        load_splits(str(tmp_path / "nothere.npz"))
    write_npz(tmp_path / "digits.npz", (1, 1, 1))
    with pytest.raises(
        ValueError, match=r"digits\.npz \[train_labels\]: labels out of range 0\.\.2 .*\[3, 4, 5, 6, 7, 8, 9\]"
    ):
        load_splits(str(tmp_path / "digits.npz"), num_classes=3)
