"""Each DDP rank's own part of a split, so that a rank loads and caches only its share, not every case.

MONAI's `partition_dataset` deals the cases; this hook only picks this rank's part, refuses a split with fewer cases
than ranks, and says in the log how many cases the rank holds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch.distributed as dist
from monai.data import partition_dataset

from scripts.layouts import DatasetLayoutError

logger = logging.getLogger(__name__)


def rank_shard(cases: Sequence[dict], split: str, even_divisible: bool, seed: int = 0) -> list[dict]:
    """This rank's cases: a seeded shuffle of `cases` dealt over the ranks, the same on every rank; all outside DDP.

    `even_divisible` (training): every rank gets as many cases, so no rank waits in DDP's gradient all-reduce for one
    that ran out; when the count does not divide, up to world size - 1 cases are seen twice an epoch (as with
    `DistributedSampler`). Off (validation): every case exactly once, so the gathered metric is the single-process one.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return list(cases)
    rank, world_size = dist.get_rank(), dist.get_world_size()
    if len(cases) < world_size:
        raise DatasetLayoutError(
            f"The {split} split has {len(cases)} case(s) for {world_size} ranks: every rank needs at least one. "
            "Use fewer processes, another --fold or --num_folds, or more cases."
        )
    shard = partition_dataset(
        list(cases), num_partitions=world_size, shuffle=True, seed=seed, even_divisible=even_divisible
    )[rank]
    logger.info(f"rank {rank} of {world_size}: {len(shard)} of the {len(cases)} {split} case(s)")
    return shard
