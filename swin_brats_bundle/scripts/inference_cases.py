"""Inference over a folder that survives a broken case: each failure is named, the other cases are written.

A case can fail after a clean preflight (`scripts/preflight.py`): a read error, a transform that refuses it, the
network running out of memory. `CaseDataset` turns a loading failure into an item that names it, `CaseSafeEvaluator`
records it or a failure in the iteration, and `InferenceCases.finish` ends the run with exit status 1 naming them.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.data import Dataset
from monai.engines import SupervisedEvaluator

from scripts.atomic import atomic_write
from scripts.errors import first_line, root_cause, stop
from scripts.preflight import check_cases, describe

logger = logging.getLogger(__name__)


class CaseDataset(Dataset):
    """A `Dataset` whose items that fail to load become `{"case_id", "error"}`: one case cannot stop inference."""

    def __init__(self, data: Sequence, transform: Callable | None = None, debug: bool = False) -> None:
        super().__init__(data, transform)
        self.debug = debug

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice | Sequence):  # a Subset, whose items come back here one by one
            return super().__getitem__(index)
        try:
            return super().__getitem__(index)
        except Exception as error:
            case_id = self.data[index].get("case_id", f"item {index}")
            failed = {"case_id": case_id, "error": first_line(root_cause(error))}
            return {**failed, "traceback": traceback.format_exc()} if self.debug else failed


class InferenceCases:
    """Inference over a folder: predict the good cases, report each broken one, and exit non-zero if any failed.

    Broken cases found by the preflight check are left out of `good` and, like a case that fails during the run
    (`run_case`, which `CaseSafeEvaluator` calls), listed with a one-line reason in the log and in `errors_file`.
    `finish` (in `finalize`) then stops with exit status 1. Under `debug` the tracebacks are shown too.
    """

    def __init__(
        self, cases: Sequence[Mapping[str, Any]], errors_file: str, debug: bool = False, workers: int = 1
    ) -> None:
        self.errors_file = Path(errors_file)
        self.debug = debug
        self.total = len(cases)
        self.failed: dict[str, dict[str, str]] = {}
        broken = check_cases(cases, None, workers)
        for case_id, problems in broken.items():
            self.record(case_id, "preflight", describe(problems))
        self.good = [case for case in cases if case["case_id"] not in broken]
        self.write()
        if not self.good:
            stop(f"none of the {self.total} case(s) can be predicted; reasons above and in {errors_file}", debug)
        logger.info(f"preflight: {len(self.good)} of {self.total} case(s) to predict")

    def record(self, case_id: str, stage: str, reason: str) -> None:
        logger.error(f"{case_id}: {reason}")
        self.failed[case_id] = {"case_id": case_id, "stage": stage, "reason": reason}

    def write(self) -> None:
        """`errors_file` (atomically) when a case failed; when none did, no such file (an old one is removed)."""
        if not self.failed:
            self.errors_file.unlink(missing_ok=True)
            return
        content = {"cases": self.total, "failed": list(self.failed.values())}
        with atomic_write(self.errors_file) as f:
            f.write(json.dumps(content, indent=4) + "\n")

    def run_case(self, batch: dict[Hashable, Any], step: Callable[[], dict]) -> dict:
        """`step()` (the evaluator's iteration) on one case; a case that fails in it, or failed to load, is recorded
        and skipped (an empty output)."""
        case_id = str(batch.get("case_id", ["<unknown case>"])[0])
        if "error" in batch:
            if self.debug:
                logger.error(batch["traceback"][0])
            self.record(case_id, "inference", f"failed to load: {batch['error'][0]}")
        else:
            try:
                return step()
            except Exception as error:
                if self.debug:
                    logger.exception(f"{case_id} failed")
                self.record(case_id, "inference", f"failed during inference: {first_line(root_cause(error))}")
        self.write()
        return {}

    def finish(self) -> None:
        """Exit status 1, with the failed cases named, when any case could not be predicted."""
        if self.failed:
            stop(
                f"{len(self.failed)} of {self.total} case(s) could not be predicted ({', '.join(self.failed)}); "
                f"every other case was written. Reasons: {self.errors_file}",
                self.debug,
            )


class CaseSafeEvaluator(SupervisedEvaluator):
    """`SupervisedEvaluator` that records a case failing to load or in its iteration in `cases` and goes on.

    MONAI's evaluators stop at the first exception of any case; over a folder of real scans one broken case should
    cost only itself. Subclassing the iteration, as MONAI's own engines do, keeps every event and the amp handling.
    """

    def __init__(self, *args: Any, cases: InferenceCases, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cases = cases

    def _iteration(self, engine: SupervisedEvaluator, batchdata: dict[str, Any]) -> dict:
        return self.cases.run_case(batchdata, lambda: super(CaseSafeEvaluator, self)._iteration(engine, batchdata))
