"""Training under torchrun (`multi_gpu_train.json`): the process group with a timeout, and a lost peer in one line.

A rank whose peer died or hangs waits in its next collective for the process group's timeout (PyTorch's default: 30
minutes on gloo), then ends in a traceback of the collective. `dist_timeout_s` bounds the wait, and `PeerLoss` turns the
collective's failure into one `error:` line (`scripts.errors.stop`), as the bundle's other errors end. MONAI has no
handler for either.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import NoReturn

import torch
import torch.distributed as dist
from ignite.engine import Engine, Events

from scripts.errors import InputError, first_line, stop

# gloo raises a plain RuntimeError naming its source file; NCCL's errors name NCCL
COLLECTIVE_FAILURE = re.compile(r"\bgloo\b|\bNCCL\b")


def init_process_group(timeout_s: float) -> None:
    """Join torchrun's process group (NCCL on CUDA, gloo on CPU) unless joined, with a `timeout_s` limit per wait."""
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))


def collective_failure(error: BaseException) -> BaseException | None:
    """`error`, or the error it was raised from, that is a collective or store failing (a peer died or went quiet)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, dist.DistError) or COLLECTIVE_FAILURE.search(str(seen)):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class PeerLoss:
    """Engine handler (first on each engine): a lost peer stops this rank with one `error:` line; any other exception
    goes on as it came. A handler for `EXCEPTION_RAISED` replaces ignite's re-raise, so this one always raises."""

    def __init__(self, timeout_s: float, debug: bool = False) -> None:
        self.timeout_s, self.debug = timeout_s, debug

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EXCEPTION_RAISED, self.stop)

    def stop(self, engine: Engine, error: BaseException) -> NoReturn:
        # SystemExit / InputError: already one line (or, under `debug`, this handler's own), met again by ignite's
        # outer loop or the trainer running the evaluator
        failure = None if isinstance(error, SystemExit | InputError) else collective_failure(error)
        if failure is None:
            raise error
        rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        reason = re.sub(r"^\[[^\]]*\]\s*", "", first_line(failure))  # gloo's "[<source file>:<line>] " prefix
        stop(
            f"rank {rank} of {world} lost its peer ranks ({reason}): a node died, or did not answer within "
            f"dist_timeout_s={self.timeout_s:g} s; after fixing it, restart every node with --resume True",
            self.debug,
            error,
        )
