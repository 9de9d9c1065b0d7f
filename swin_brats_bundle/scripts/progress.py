"""A config-friendly progress bar for MONAI engines."""

from __future__ import annotations

from ignite.engine import Engine
from ignite.handlers import ProgressBar as IgniteProgressBar


class ProgressBar:
    """Attach ignite's tqdm progress bar, optionally showing the running loss.

    ignite's `ProgressBar` takes its `output_transform` in `attach`, which a MONAI handler list cannot pass.
    `persist` False clears the bar at the end of each epoch.
    """

    def __init__(
        self, enabled: bool = True, description: str = "", show_loss: bool = False, persist: bool = True
    ) -> None:
        self.enabled = enabled
        self.description = description
        self.show_loss = show_loss
        self.persist = persist

    def attach(self, engine: Engine) -> None:
        """Attach the bar to `engine` unless disabled."""
        if not self.enabled:
            return
        bar = IgniteProgressBar(persist=self.persist, desc=self.description, ncols=100)
        bar.attach(engine, output_transform=self._loss if self.show_loss else None)

    @staticmethod
    def _loss(output: list[dict] | dict) -> dict[str, float]:
        first = output[0] if isinstance(output, list) else output
        return {"loss": float(first["loss"])}
