"""Download the wheels bench/gpu/gpu_bench.py needs on the GPU machine, which has no package registry.

That machine has Python 3.12 with torch, numpy, scipy, einops, matplotlib, tqdm and tensorboard, but not MONAI or
what the bundle imports beside it: nibabel (NIfTI reading and writing), pytorch-ignite (MONAI's engines and the
bundle's handlers) and nilearn (only its wheel's brain template, which scripts/synthetic_data.py reads to make the
synthetic cases). All four are pure-Python wheels; each is fetched with --no-deps at the version requirements.txt pins
(their own needs, numpy, packaging and torch, are there). The folder is ignored by git and travels as a carried path.

    .venv/bin/python bench/gpu/download_wheels.py [--dest bench/gpu/wheels]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("monai", "nibabel", "pytorch-ignite", "nilearn")
CARRY_LIMIT_MIB = 64  # the most the GPU machine takes in carried (ignored) paths, all of them together
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64")


def pins(requirements: Path = REPO / "requirements.txt") -> dict[str, str]:
    """The `name==version` pin of each of PACKAGES in requirements.txt (`monai[extras]==v` counts as monai)."""
    found = {}
    for line in requirements.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^\s#;]+)", line.strip())
        if match and match.group(1).lower() in PACKAGES:
            found[match.group(1).lower()] = match.group(3)
    missing = [name for name in PACKAGES if name not in found]
    if missing:
        raise SystemExit(f"error: {requirements} pins no version of {', '.join(missing)}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=Path(__file__).resolve().parent / "wheels")
    args = parser.parse_args()
    args.dest.mkdir(parents=True, exist_ok=True)
    wanted = [f"{name}=={version}" for name, version in pins().items()]
    platforms = [item for platform in PLATFORMS for item in ("--platform", platform)]
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--python-version", "3.12", "--implementation", "cp", *platforms, "--dest", str(args.dest),
               *wanted]  # fmt: skip
    subprocess.run(command, check=True)
    wheels = sorted(args.dest.glob("*.whl"))
    for name in PACKAGES:  # one version of each: two would stop `pip install --target` there
        stem = name.replace("-", "_")
        versions = [w.name for w in wheels if w.name.lower().startswith(stem + "-")]
        if len(versions) != 1:
            raise SystemExit(f"error: {args.dest} holds {len(versions)} wheels of {name} ({', '.join(versions)})")
    total = sum(w.stat().st_size for w in wheels) / 2**20
    for wheel in wheels:
        print(f"{wheel.stat().st_size / 2**20:7.1f} MiB  {wheel.name}")
    print(f"{total:7.1f} MiB  in all, in {args.dest}")
    if total > CARRY_LIMIT_MIB:
        raise SystemExit(
            f"error: the wheels in {args.dest} take {total:.1f} MiB, over the {CARRY_LIMIT_MIB} MiB carried"
        )


if __name__ == "__main__":
    main()
