"""Timing helpers the benchmarks share; no bundle imports, so a process of either bundle can use them."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def timed_process(command: list[str], cwd: Path, log: Path, what: str) -> tuple[float, float]:
    """Run `command` with its output in `log`; wall seconds and that process's own peak RSS in MiB.

    `os.wait4` gives the peak of this child alone, not the largest child's so far (`RUSAGE_CHILDREN`); a failure
    stops the benchmark, naming `what` and the log.
    """
    start = time.perf_counter()
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"error: {what} failed; see {log}")
    return wall, usage.ru_maxrss / 1024


def median_seconds(call: Callable[[], Any], warm: int = 1, runs: int = 3) -> float:
    """Median wall seconds of `runs` calls after `warm` untimed ones, to 0.01 s."""
    for _ in range(warm):
        call()
    durations = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        durations.append(time.perf_counter() - start)
    return round(statistics.median(durations), 2)
