"""MLflow run contents beyond MONAI's defaults: hyper-parameters, tags and result files, plus a reachability check."""

from __future__ import annotations

import json
import logging
import subprocess
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events
from monai.handlers import MLFlowHandler

logger = logging.getLogger(__name__)


def check_tracking_uri(tracking_uri: str | None, timeout: float = 5.0) -> None:
    """Stop at start, with a one-line error, when an http(s) tracking server does not answer its health check."""
    if not tracking_uri or not tracking_uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=timeout) as response:
            if response.status == 200:
                return
            reason = f"HTTP {response.status}"
    except (urllib.error.URLError, OSError) as error:
        reason = str(getattr(error, "reason", error))
    raise SystemExit(
        f"error: MLflow tracking server {tracking_uri} is not reachable ({reason}); start it or fix --tracking_uri."
    )


def bundle_tags(bundle_root: str) -> dict[str, str]:
    """Bundle name and version from metadata.json, and the git commit of the checkout when there is one."""
    meta = json.loads((Path(bundle_root) / "configs" / "metadata.json").read_text())
    tags = {"bundle_name": Path(bundle_root).resolve().name, "bundle_version": meta["version"]}
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=bundle_root, capture_output=True, text=True, timeout=10, check=True
        )
        tags["git_commit"] = commit.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return tags


class RunRecorder:
    """Add parameters, tags and result files to the MLflow run that `--tracking mlflow` opens.

    MONAI's `--tracking mlflow` settings give their `MLFlowHandler` no parameters or tags from the bundle and only the
    executed config as artifact. `handlers` is the engine's handler list, where MONAI appends that handler; attach
    this after the engine is built (the configs' `run` does), so it runs after the MLflow handler opened the run and
    after every other handler wrote its files. Without tracking, or on a rank that does not track, it does nothing.
    """

    def __init__(
        self,
        handlers: Sequence[Any] | None,
        params: dict[str, Any],
        tags: dict[str, str] | None = None,
        artifacts: Sequence[str] = (),
    ) -> None:
        self.mlflow = next((h for h in handlers or [] if isinstance(h, MLFlowHandler)), None)
        self.params = params
        self.tags = tags or {}
        self.artifacts = list(artifacts)
        self.run_id: str | None = None

    def attach(self, engine: Engine) -> None:
        if self.mlflow is not None:
            engine.add_event_handler(Events.STARTED, self.started)
            engine.add_event_handler(Events.COMPLETED, self.completed)

    def started(self, engine: Engine) -> None:
        self.mlflow.start(engine)  # idempotent: the run the MLflow handler opened (or opens now)
        self.run_id = self.mlflow.cur_run.info.run_id
        logged = self.mlflow.client.get_run(self.run_id).data.params
        for key, value in self.params.items():
            if key not in logged:
                self.mlflow.client.log_param(self.run_id, key, value)
        for key, value in self.tags.items():
            self.mlflow.client.set_tag(self.run_id, key, value)

    def completed(self, engine: Engine) -> None:
        """After the MLflow handler ended the run: MLflow takes artifacts for a finished run too."""
        if self.run_id is None:
            return
        for path in map(Path, self.artifacts):
            if path.is_file():
                self.mlflow.client.log_artifact(self.run_id, str(path))
            else:
                logger.warning(f"MLflow: {path} does not exist, not logged as an artifact.")
