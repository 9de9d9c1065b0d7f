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
    """Trainer handler: add parameters, tags and result files to the MLflow run that `--tracking mlflow` opens.

    MONAI's default `MLFlowHandler` logs metrics and the executed config only, and takes no parameters from the
    bundle; this finds that handler on the engine and writes into its run. Without tracking it does nothing.
    """

    def __init__(
        self, params: dict[str, Any], tags: dict[str, str] | None = None, artifacts: Sequence[str] = ()
    ) -> None:
        self.params = params
        self.tags = tags or {}
        self.artifacts = list(artifacts)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.COMPLETED, self.completed)

    @staticmethod
    def _mlflow_handler(engine: Engine) -> MLFlowHandler | None:
        for handler, *_ in engine._event_handlers[Events.STARTED]:  # ignite keeps no public list of handlers
            owner = getattr(handler, "__self__", None)
            if isinstance(owner, MLFlowHandler):
                return owner
        return None

    def started(self, engine: Engine) -> None:
        mlflow = self._mlflow_handler(engine)
        if mlflow is None:
            return
        mlflow.start(engine)  # idempotent: opens (or finds) the run this handler would open a moment later
        run_id = mlflow.cur_run.info.run_id
        logged = mlflow.client.get_run(run_id).data.params
        for key, value in self.params.items():
            if key not in logged:
                mlflow.client.log_param(run_id, key, value)
        for key, value in self.tags.items():
            mlflow.client.set_tag(run_id, key, value)

    def completed(self, engine: Engine) -> None:
        """Runs before the MLflow handler closes the run (it is attached after the bundle's own handlers)."""
        mlflow = self._mlflow_handler(engine)
        if mlflow is None or mlflow.cur_run is None:
            return
        for path in map(Path, self.artifacts):
            if path.is_file():
                mlflow.client.log_artifact(mlflow.cur_run.info.run_id, str(path))
            else:
                logger.warning(f"MLflow: {path} does not exist, not logged as an artifact.")
