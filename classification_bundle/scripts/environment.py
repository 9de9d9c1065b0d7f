"""Environment gate: the installed MONAI, PyTorch and required packages against the versions in metadata.json.

MONAI's bundle CLI reads `monai_version` and `required_packages_version` but never compares them with what is
installed (model-zoo issues report bundles breaking deep inside a transform after a MONAI upgrade), so this does.
A different MONAI major.minor version or a missing required package stops the run with one line and the pip command
that fixes it; any other difference is a warning. `check_versions` False skips the gate.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
from collections.abc import Mapping
from typing import Any

from scripts.errors import stop

logger = logging.getLogger(__name__)


def installed_version(package: str) -> str | None:
    """The installed distribution's version without a local tag (`2.13.0+cpu` -> `2.13.0`), None if absent."""
    try:
        return importlib.metadata.version(package).split("+")[0]
    except importlib.metadata.PackageNotFoundError:
        return None


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def expected_versions(meta: Mapping[str, Any]) -> dict[str, str]:
    """Package -> version the bundle was made with: MONAI, PyTorch and `required_packages_version`."""
    expected = {"monai": meta.get("monai_version"), "torch": meta.get("pytorch_version")}
    expected |= dict(meta.get("required_packages_version") or {})
    return {package: str(version) for package, version in expected.items() if version}


def version_problems(meta: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(blocking, warning) differences between the installed packages and `meta`, one phrase each."""
    blocking, warnings = [], []
    for package, expected in expected_versions(meta).items():
        installed = installed_version(package)
        if installed is None:
            blocking.append(f"{package} is not installed (expected {expected})")
        elif installed != expected:
            minor_differs = _release(installed)[:2] != _release(expected)[:2]
            phrase = f"{package} {installed} is installed, expected {expected}"
            (blocking if package == "monai" and minor_differs else warnings).append(phrase)
    return blocking, warnings


def require_versions(meta: Mapping[str, Any] | None, enabled: bool = True) -> None:
    """Stop on a blocking version difference (one `error:` line with the fix); log the others."""
    if not enabled:
        logger.warning("check_versions is False: installed package versions are not compared with metadata.json")
        return
    if not meta:
        logger.warning("no metadata.json was read: installed package versions are not checked")
        return
    blocking, warnings = version_problems(meta)
    for phrase in warnings:
        logger.warning(f"{phrase} (metadata.json); the bundle may still work")
    if blocking:
        fix = " ".join(f"{package}=={version}" for package, version in expected_versions(meta).items()
                       if any(phrase.startswith(f"{package} ") for phrase in blocking))  # fmt: skip
        stop(
            f"{'; '.join(blocking)} (this bundle's metadata.json). Fix: pip install {fix}"
            " (or pass --check_versions False to run anyway)"
        )
