"""Release zips of MONAI bundles: `<bundle>_v<version>.zip` holding the bundle's source files and nothing it produced.

Run: python ci/package_bundle.py --out DIR [BUNDLE_DIR ...]   (default: both bundles of this repository)

Left out: `eval/`, `mlruns/`, caches (`__pycache__`, `.pytest_cache`, ...), generated datalists
(`configs/datalist*.json`), everything in `models/` but `.gitkeep` (weights, checkpoints, exports), weight and
database files anywhere (`*.pt`, `*.ts`, `*.onnx`, `*.db`, ...) and hidden files. Entries sit under `<bundle>/`, as in
model-zoo release zips, with fixed timestamps and sorted names, so the same files always give the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BUNDLES = (REPO / "swin_brats_bundle", REPO / "classification_bundle")
EXCLUDED_DIRS = {"eval", "mlruns", "__pycache__", ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints", ".git"}
EXCLUDED_SUFFIXES = {".pt", ".pth", ".ts", ".onnx", ".ckpt", ".safetensors", ".engine", ".plan", ".pyc", ".pyo"}
EXCLUDED_SUFFIXES |= {".db", ".db-journal", ".tmp"}
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def excluded_reason(relative: PurePosixPath) -> str | None:
    """Why a bundle-relative path stays out of a release (None: it goes in)."""
    if any(part in EXCLUDED_DIRS for part in relative.parts[:-1]):
        return "run output or cache folder"
    if relative.parts[0] == "models" and relative.name != ".gitkeep":
        return "trained model file (users produce models/ themselves)"
    if relative.parts[0] == "configs" and relative.name.startswith("datalist") and relative.suffix == ".json":
        return "generated datalist"
    if relative.suffix in EXCLUDED_SUFFIXES:
        return "weights, database or temporary file"
    if relative.name.startswith(".") and relative.name != ".gitkeep":
        return "hidden file"
    return None


def release_files(bundle: Path) -> list[PurePosixPath]:
    """Bundle-relative paths of the files a release of `bundle` contains, sorted; refuses symbolic links."""
    found = []
    for folder, dirs, files in os.walk(bundle):
        dirs[:] = sorted(d for d in dirs if d not in EXCLUDED_DIRS)
        for name in files:
            path = Path(folder) / name
            relative = PurePosixPath(path.relative_to(bundle).as_posix())
            if excluded_reason(relative):
                continue
            if path.is_symlink():
                raise ValueError(f"{path} is a symbolic link; a release holds plain files only")
            found.append(relative)
    return sorted(found)


def bundle_version(bundle: Path) -> str:
    """The `version` in the bundle's configs/metadata.json."""
    return json.loads((bundle / "configs" / "metadata.json").read_text())["version"]


def zip_name(bundle: Path) -> str:
    """Release file name, `<bundle folder>_v<version>.zip` as in the model zoo."""
    return f"{bundle.resolve().name}_v{bundle_version(bundle)}.zip"


def package(bundle: Path, out_dir: Path) -> Path:
    """Write the release zip of `bundle` into `out_dir` (atomically) and return its path."""
    bundle, out_dir = Path(bundle), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / zip_name(bundle)
    fd, temporary = tempfile.mkstemp(dir=out_dir, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for relative in release_files(bundle):
                source = bundle / relative
                info = zipfile.ZipInfo(f"{bundle.resolve().name}/{relative}", date_time=ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = (0o100755 if os.access(source, os.X_OK) else 0o100644) << 16
                archive.writestr(info, source.read_bytes())
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return target


def main(argv: list[str] | None = None) -> int:
    """CLI: package each bundle and print the zip path, its file count, size and SHA-256."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for the zips")
    parser.add_argument("bundles", nargs="*", type=Path, default=list(DEFAULT_BUNDLES), help="bundle folders")
    args = parser.parse_args(argv)
    for bundle in args.bundles:
        try:
            path = package(bundle, args.out)
        except (OSError, ValueError, KeyError) as error:
            print(f"error: cannot package {bundle}: {error}", file=sys.stderr)
            return 1
        with zipfile.ZipFile(path) as archive:
            count = len(archive.namelist())
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        print(f"{path}  {count} files  {path.stat().st_size} bytes  sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
