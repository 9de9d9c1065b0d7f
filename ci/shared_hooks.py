"""The hooks both bundles carry: written in swin_brats_bundle/scripts (the source), copied into the classifier.

Each bundle must zip and run alone, so these are copies, not imports. `make sync-hooks` copies the source over the
copies; tests/test_shared_hooks.py fails while any copy differs.

    python ci/shared_hooks.py [--copy]     # list the copies that differ; with --copy, overwrite them from the source
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "swin_brats_bundle" / "scripts"
COPIES = (REPO / "classification_bundle" / "scripts",)
HOOKS = (
    "atomic.py",
    "checkpoint.py",
    "distributed.py",
    "environment.py",
    "errors.py",
    "knob_rules.py",
    "progress.py",
    "tracking.py",
)


def differing() -> list[Path]:
    """The copies whose text is not the source's."""
    return [c / h for c in COPIES for h in HOOKS if (c / h).read_text() != (SOURCE / h).read_text()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copy", action="store_true", help="overwrite every differing copy from the source")
    args = parser.parse_args(argv)
    for copy in differing():
        if args.copy:
            shutil.copyfile(SOURCE / copy.name, copy)
            print(f"copied {SOURCE.relative_to(REPO) / copy.name} -> {copy.relative_to(REPO)}")
        else:
            print(f"differs from {SOURCE.relative_to(REPO) / copy.name}: {copy.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
