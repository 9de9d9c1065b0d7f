"""`make demo` as a user runs it, timed and scored: the numbers the README quotes for the demo. SYNTHETIC DATA.

Runs swin_brats_bundle/scripts/demo.sh (the script `make demo` runs after setting up .venv) in a fresh
demo_output/, then stores its demo_summary.json (seconds per step, best validation Dice during training, held-out
evaluation Dice) with the commit, date and machine.

    .venv/bin/python bench/swin_brats/demo.py      -> bench/results/swin_brats_demo.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time

from common import BUNDLE, REPO, write_result


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    start = time.perf_counter()
    subprocess.run(["bash", str(BUNDLE / "scripts" / "demo.sh")], cwd=REPO, check=True)
    wall = time.perf_counter() - start
    summary = json.loads((REPO / "demo_output" / "demo_summary.json").read_text())
    write_result(
        "swin_brats_demo",
        {
            "benchmark": "make demo after set-up: synthetic data, quick-recipe training, evaluation, inference",
            "synthetic_data": True,
            "wall_seconds": round(wall, 1),
            **summary,
        },
    )


if __name__ == "__main__":
    main()
