"""How much memory the training cache may take (`cache_memory_gb`), read without psutil."""

from __future__ import annotations

import os
from pathlib import Path

GB = 1e9  # cache_memory_gb counts decimal gigabytes
AUTO_FRACTION = 0.5  # of the available memory, split between the local ranks: the rest for the model, workers, OS

# a cgroup's limit, usage and reclaimable page cache: v2, then v1 (v1's "no limit" is a huge number)
CGROUPS = (
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current", "inactive_file"),
    (
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        "total_inactive_file",
    ),
)


def _cgroup_headroom() -> int | None:
    """Bytes left under this container's memory limit, or None without one: /proc/meminfo shows the host's memory."""
    for limit_file, usage_file, inactive_key in CGROUPS:
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text())
            stat = Path(limit_file).with_name("memory.stat").read_text().split("\n")
        except (OSError, ValueError):
            continue
        if not limit.isdigit() or int(limit) >= 2**60:
            return None
        # the page cache the kernel can drop counts as usage: leave it out, as `docker stats` does
        inactive = next((int(line.split()[1]) for line in stat if line.startswith(f"{inactive_key} ")), 0)
        return max(0, int(limit) - (usage - inactive))
    return None


def available_memory() -> int:
    """Bytes this machine can still give without swapping: MemAvailable (free pages where /proc/meminfo lacks it),
    capped by the headroom under a cgroup memory limit."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        pass
    if available is None:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    headroom = _cgroup_headroom()
    return available if headroom is None else min(available, headroom)


def local_ranks() -> int:
    """Processes on this machine that each fill their own cache: torchrun's LOCAL_WORLD_SIZE, else 1."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", 1)))


def cache_budget(cache_memory_gb: float | str) -> tuple[int, str]:
    """The bytes this process's cache may hold, and how they were chosen (for the log).

    `auto`: half of the available memory divided by the local ranks; a number: that many GB for each rank.
    """
    if cache_memory_gb != "auto":
        return int(float(cache_memory_gb) * GB), f"cache_memory_gb {cache_memory_gb}"
    available, ranks = available_memory(), local_ranks()
    return int(available * AUTO_FRACTION / ranks), (
        f"cache_memory_gb auto: half of {available / GB:.1f} GB available, {ranks} local rank{'s' if ranks > 1 else ''}"
    )
