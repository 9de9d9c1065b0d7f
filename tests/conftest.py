"""Bare `python -m pytest` from the repository root: both bundle suites here; tests/deploy in deploy/.venv only,
tests/label in label/.venv only."""

from __future__ import annotations

import importlib.util

# tests/deploy needs the MONAI Deploy SDK, which lives in deploy/.venv (its pins clash with ours); `make test` runs it
# there with deploy/.venv/bin/python -m pytest tests/deploy
DEPLOY_SDK = importlib.util.find_spec("monai.deploy") is not None
# tests/label needs MONAI Label, which lives in label/.venv (`make test`: label/.venv/bin/python -m pytest tests/label)
MONAI_LABEL = importlib.util.find_spec("monailabel") is not None
collect_ignore = [name for name, present in (("deploy", DEPLOY_SDK), ("label", MONAI_LABEL)) if not present]


def pytest_report_header() -> str | None:
    lines = []
    if not DEPLOY_SDK:
        lines.append("tests/deploy not collected: no MONAI Deploy SDK here (make test runs it in deploy/.venv)")
    if not MONAI_LABEL:
        lines.append("tests/label not collected: no MONAI Label here (make test runs it in label/.venv)")
    return "\n".join(lines) or None
