"""Issue #21: the training cache and the preflight at BraTS 2021 scale (1,251 training cases). SYNTHETIC DATA.

Measured in one run on this machine, through the bundle's own configs and hooks:

1. **Memory per cached full-size case**, before and after the compact cache: `train.json`'s training dataset
   (`cache memory`, every case cached) over full-size synthetic cases (the 1 mm 240 x 240 x 155 BraTS grid, a
   BraTS-sized brain), the bytes of what `CacheDataset` holds. *Before*: the deterministic chain without its final
   cast (float32 image and float32 regions, as the bundle cached until #21); *after*: as shipped (`cache_dtype`
   float16 image, uint8 regions).
2. **Each rank caches only its share**: a simulated 1,251-case dataset (a few small distinct cases hard-linked under
   1,251 case ids: headers and small arrays are enough for the counting) under `torchrun --nproc_per_node 2` on the
   CPU (gloo). Each rank builds the training dataset and loader from `train.json` + `multi_gpu_train.json`
   (`tests/swin_brats/shard_probe.py`) and records its shard, how many cases it cached and the cases one epoch visits.
3. **Preflight of the 1,251 cases**, first run and rerun (the memo in `preflight.json`), one process, and the same
   for the full-size cases.
4. **Projected host memory** for the 1,251 BraTS 2021 training cases on one node of 8 ranks, and per node on two
   such nodes: before (every rank caches every case, float32) and after (each rank its shard, compact).

    .venv/bin/python bench/swin_brats/cache_scale.py [--full_cases 3] [--cases 1251] [--ranks 2]
        -> bench/results/swin_brats_cache_scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BUNDLE, REPO, write_fullsize_dataset, write_result
from monai.bundle import ConfigParser
from scripts.cases import discover
from scripts.datasets import cached_case_bytes
from scripts.labels import get_convention
from scripts.preflight import preflight
from scripts.synthetic_data import write_dataset

BRATS2021_CASES = 1251
MB = 1e6
PROBE = REPO / "tests" / "swin_brats" / "shard_probe.py"


def cached_megabytes(data: Path, compact: bool) -> tuple[list[float], list[list[int]]]:
    """MB that train.json's memory cache holds for each case of `data` (every case, no fold held out), and the grid
    of each cached image (the brain's box)."""
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.json"))
    parser.update({"bundle_root": str(BUNDLE), "dataset_dir": str(data), "cache_rate": 1.0, "progress_bar": False,
                   "num_workers": 2, "train#cases": "$@dataset_info['training']"})  # fmt: skip
    chain = parser["train"]["deterministic_transforms"]
    assert chain[-1]["_target_"] == "CastToTyped", "the compact cast is the last deterministic transform"
    if not compact:
        parser["train"]["deterministic_transforms"] = chain[:-1]
    parser.parse(True)
    dataset = parser.get_parsed_content("train#dataset")
    sizes = [round(cached_case_bytes(item) / MB, 2) for item in dataset._cache]
    return sizes, [list(item["image"].shape[1:]) for item in dataset._cache]


def simulated_dataset(folder: Path, num_cases: int, distinct: int) -> Path:
    """`num_cases` BraTS 2021-layout cases made of `distinct` small synthetic ones, hard-linked under new case ids."""
    source = folder / "distinct"
    write_dataset(source, "brats2021", distinct, 0, (64, 64, 48), seed=21)
    data = folder / "data"
    for index in range(num_cases):
        case_id, original = f"BraTS2021_{index:05d}", f"BraTS2021_{index % distinct:05d}"
        (data / case_id).mkdir(parents=True)
        for file in (source / original).iterdir():
            os.link(file, data / case_id / file.name.replace(original, case_id))
    return data


def timed_preflight(data: Path, memo: Path) -> dict:
    """Seconds of a first preflight (every voxel read) and of a rerun (the memo), 2 threads, one process."""
    cases = discover(data)["training"]
    convention = get_convention("brats2021")
    memo.unlink(missing_ok=True)  # a first run reads everything
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        verdict = preflight(cases, convention, voxels=True, memo=str(memo), workers=2)
        seconds.append(round(time.perf_counter() - start, 3))
        assert not verdict.broken
    return {"cases": len(cases), "first_run_s": seconds[0], "rerun_s": seconds[1], "rerun_checked": verdict.checked,
            "rerun_remembered": verdict.remembered}  # fmt: skip


def sharded_run(data: Path, out: Path, ranks: int) -> dict:
    """The shard probe under torchrun: each rank's shard, cache and epoch; the bundle's own log lines about them."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}", str(PROBE),
               str(out), str(data), "num_folds=5", "num_workers=1"]  # fmt: skip
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    start = time.perf_counter()
    run = subprocess.run(command, cwd=BUNDLE, env=env, capture_output=True, text=True, check=False)
    seconds = round(time.perf_counter() - start, 1)
    if run.returncode:
        sys.exit(f"the shard probe failed:\n{(run.stdout + run.stderr)[-4000:]}")
    records = [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(ranks)]
    everything = records[0]["all_training"]
    shards = [set(record["shard"]) for record in records]
    visited = [case for record in records for case in record["visited"]]
    log = run.stdout + run.stderr
    return {
        "ranks": ranks,
        "training_cases": len(everything),
        "cases_per_rank": [len(record["shard"]) for record in records],
        "cached_per_rank": [record["cached"] for record in records],
        "shards_disjoint": all(not (a & b) for i, a in enumerate(shards) for b in shards[i + 1 :]),
        "shards_cover_every_case": set().union(*shards) == set(everything),
        "epoch_visits_every_case_once": sorted(visited) == sorted(everything),
        "seconds": seconds,
        "log": sorted(set(re.findall(r"(?:cache|preflight|rank \d of \d): [^\n]*", log))),
    }


def projection(before_mb: float, after_mb: float, ranks_per_node: int = 8) -> dict:
    """Host memory for the BraTS 2021 training cases' cache: one node of 8 ranks, and per node on two such nodes."""
    gb = 1e3

    def per_node(nodes: int) -> dict:
        share = -(-BRATS2021_CASES // (nodes * ranks_per_node))  # cases per rank, rounded up (padded shards)
        return {
            "before_gb": round(ranks_per_node * BRATS2021_CASES * before_mb / gb, 1),  # every rank caches every case
            "after_gb": round(ranks_per_node * share * after_mb / gb, 1),
            "after_per_rank_gb": round(share * after_mb / gb, 2),
            "cases_per_rank": share,
        }

    return {"cases": BRATS2021_CASES, "ranks_per_node": ranks_per_node, "one_node": per_node(1),
            "two_nodes_each": per_node(2)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full_cases", type=int, default=3)
    parser.add_argument("--cases", type=int, default=BRATS2021_CASES)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="cache_scale_"))

    full = work / "full"
    if not full.is_dir():
        write_fullsize_dataset(full, args.full_cases, seed=21)
    (before, grids), (after, _) = cached_megabytes(full, compact=False), cached_megabytes(full, compact=True)
    mean_before, mean_after = sum(before) / len(before), sum(after) / len(after)
    full_preflight = timed_preflight(full, work / "full_preflight.json")

    simulated = simulated_dataset(work / "simulated", args.cases, distinct=4)
    simulated_preflight = timed_preflight(simulated, work / "simulated_preflight.json")
    sharded = sharded_run(simulated, work / "probe", args.ranks)

    write_result(
        "swin_brats_cache_scale",
        {
            "benchmark": "training cache and preflight at BraTS 2021 scale: MB per cached full-size case before/after "
            "the compact cache, per-rank shards under torchrun on a simulated 1,251-case dataset, preflight first "
            "run and rerun, projected host memory for 1,251 cases on 8 ranks",
            "synthetic_data": True,
            "cached_case_mb": {
                "full_size_cases": args.full_cases,
                "grid": [240, 240, 155],
                "cached_brain_boxes": grids,
                "before_float32": before,
                "after_compact": after,
                "mean_before": round(mean_before, 1),
                "mean_after": round(mean_after, 1),
                "reduction": round(mean_before / mean_after, 2),
            },
            "preflight": {"full_size": full_preflight, "simulated": simulated_preflight},
            "sharded_cache": sharded,
            "projected_host_memory": projection(mean_before, mean_after),
        },
    )


if __name__ == "__main__":
    main()
