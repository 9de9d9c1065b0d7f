"""The training loss of every iteration of a bundle workflow: seeded-determinism tests of both bundles compare them."""

from __future__ import annotations

from ignite.engine import Events
from monai.bundle import ConfigWorkflow


def iteration_losses(workflow: ConfigWorkflow) -> list[float]:
    """Run an initialised training workflow to its end and return `train#trainer`'s loss after each iteration."""
    losses: list[float] = []
    trainer = workflow.parser.get_parsed_content("train#trainer")
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(float(e.state.output[0]["loss"])))
    workflow.run()
    workflow.finalize()
    return losses
