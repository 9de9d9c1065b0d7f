"""Unpack a bundle zip safely: every entry must land inside the target folder, as a plain file or folder.

Run: python ci/unpack_bundle.py BUNDLE.zip TARGET_DIR

Refused before anything is written (zip slip): absolute paths (`/x`, `\\x`, `C:x`), `..` path components, symbolic
links, and any entry that resolves outside TARGET_DIR (also through a link already inside it). The error is one
line naming the entry; the command then exits with status 1.
"""

from __future__ import annotations

import argparse
import re
import stat
import sys
import zipfile
from pathlib import Path


class UnsafeZipEntryError(ValueError):
    """A zip entry that would be written outside the target folder, or is not a plain file or folder."""


def entry_problem(info: zipfile.ZipInfo) -> str | None:
    """Why this entry may not be unpacked (None: it is safe by name and type)."""
    name = info.filename
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "is a symbolic link"
    if "\0" in name:
        return "has a NUL character in its name"
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "is an absolute path"
    if ".." in re.split(r"[\\/]+", name):
        return "contains a '..' path component"
    return None


def check_zip(archive: zipfile.ZipFile, target: Path) -> None:
    """Raise UnsafeZipEntryError for the first entry that is unsafe or would resolve outside `target`."""
    root = target.resolve()
    for info in archive.infolist():
        problem = entry_problem(info)
        if problem is None and not (root / info.filename).resolve().is_relative_to(root):
            problem = "resolves outside the target folder"
        if problem:
            label = archive.filename or "zip"
            raise UnsafeZipEntryError(f"refusing to unpack {label}: entry {info.filename!r} {problem}")


def safe_extract(zip_path: str | Path, target: str | Path) -> list[Path]:
    """Check every entry of `zip_path`, then unpack it into `target`; return the paths written."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    with zipfile.ZipFile(zip_path) as archive:
        check_zip(archive, target)
        for info in archive.infolist():
            path = Path(archive.extract(info, target))
            if not info.is_dir() and (info.external_attr >> 16) & 0o111:
                path.chmod(0o755)  # keep scripts such as demo.sh executable
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """CLI: unpack, print the top-level folders written; a refused or unreadable zip gives one error line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zip", type=Path)
    parser.add_argument("target", type=Path)
    args = parser.parse_args(argv)
    try:
        written = safe_extract(args.zip, args.target)
    except (UnsafeZipEntryError, zipfile.BadZipFile, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    tops = sorted({path.relative_to(args.target).parts[0] for path in written})
    for top in tops:
        print(args.target / top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
