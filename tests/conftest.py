"""Bare `python -m pytest` from the repository root: both bundle suites here; tests/deploy in deploy/.venv only."""

from __future__ import annotations

import importlib.util

# tests/deploy needs the MONAI Deploy SDK, which lives in deploy/.venv (its pins clash with ours); `make test` runs it
# there with deploy/.venv/bin/python -m pytest tests/deploy
DEPLOY_SDK = importlib.util.find_spec("monai.deploy") is not None
collect_ignore = [] if DEPLOY_SDK else ["deploy"]


def pytest_report_header() -> str | None:
    if not DEPLOY_SDK:
        return "tests/deploy not collected: no MONAI Deploy SDK in this environment (make test runs it in deploy/.venv)"
    return None
