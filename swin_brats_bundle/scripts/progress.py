"""A config-friendly progress bar for MONAI engines."""

from __future__ import annotations

from ignite.engine import Engine
from ignite.handlers import ProgressBar as IgniteProgressBar


class ProgressBar:
    """Attach ignite's tqdm progress bar, optionally showing the running loss.

    ignite's `ProgressBar` takes its `output_transform` in `attach`, which a MONAI handler list cannot pass.
    """

    def __init__(self, enabled: bool = True, description: str = "", show_loss: bool = False) -> None:
        self.enabled = enabled
        self.description = description
        self.show_loss = show_loss

    def attach(self, engine: Engine) -> None:
        if not self.enabled:
            return
        bar = IgniteProgressBar(persist=True, desc=self.description, ncols=100)
        bar.attach(engine, output_transform=self._loss if self.show_loss else None)

    @staticmethod
    def _loss(output: list[dict] | dict) -> dict[str, float]:
        first = output[0] if isinstance(output, list) else output
        return {"loss": float(first["loss"])}
