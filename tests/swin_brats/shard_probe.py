"""Run by tests under torchrun: this rank's cached training cases and the cases one epoch visits, as JSON.

Usage: torchrun ... shard_probe.py OUT_DIR DATASET_DIR [key=value ...]; writes OUT_DIR/rank<R>.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch.distributed as dist
from monai.bundle import ConfigWorkflow

BUNDLE = Path(__file__).resolve().parents[2] / "swin_brats_bundle"


def main(out_dir: str, dataset_dir: str, *overrides: str) -> None:
    workflow = ConfigWorkflow(
        config_file=[str(BUNDLE / "configs" / name) for name in ("train.json", "multi_gpu_train.json")],
        workflow_type="train",
        bundle_root=str(BUNDLE),
        dataset_dir=dataset_dir,
        output_dir=str(Path(out_dir) / "train"),
        ckpt_dir=str(Path(out_dir) / "models"),
        **{
            "progress_bar": False,
            "num_workers": 0,
            "feature_size": 12,
            "roi_size": [64, 64, 64],
            **{key: json.loads(value) for key, value in (item.split("=", 1) for item in overrides)},
        },
    )
    workflow.initialize()
    dataset = workflow.parser.get_parsed_content("train#dataset")
    loader = workflow.parser.get_parsed_content("train#dataloader")
    visited = [case_id for batch in loader for case_id in batch["case_id"]]
    record = {
        "rank": dist.get_rank(),
        "world_size": dist.get_world_size(),
        "all_training": [case["case_id"] for case in workflow.parser.get_parsed_content("train#cases")],
        "shard": [case["case_id"] for case in dataset.data],
        "cached": len(dataset._cache),  # CacheDataset fills `_cache` for its first `cache_num` cases
        "visited": visited,
        "validation": [case["case_id"] for case in workflow.parser.get_parsed_content("validate#dataset").data],
    }
    (Path(out_dir) / f"rank{record['rank']}.json").write_text(json.dumps(record))
    workflow.finalize()


if __name__ == "__main__":
    main(*sys.argv[1:])
