"""What the SageMaker job workers (lambdas.training, lambdas.evaluation, lambdas.registry) share.

Finding a job by name, continuing with a job this execution already started, stopping a job over
its time budget, the content types of the model server, and the metric definitions the training
job is created with (the one source: training/contract.py prints the lines they scrape, and
tests/lambdas/test_training.py holds the two together).
"""
from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any, Callable, Mapping

from lambdas.errors import JobFailed, TimeBudgetExceeded
from lambdas.job import Done, JobEvent, iso

logger = logging.getLogger(__name__)

# What the model server (training.serve) reads and writes, as the Model Registry records it.
CONTENT_TYPES = ("text/csv", "application/json")

# Model package CustomerMetadataProperties keys: the evaluation monitor (Rejected) and RegisterModel
# (Approved) write the same ones, so either finds the package of an execution.
EXECUTION_KEY = "ExecutionId"
DECISION_KEY = "Decision"

# AlgorithmSpecification.MetricDefinitions of CreateTrainingJob. Each regex's first group captures
# a number from the lines training.contract.format_epoch_line / format_final_line print:
#   "epoch=3 train_loss=0.0123 val_loss=0.0145 val_rmse=612.3 val_mae=301.2"   (one per epoch)
#   "final best_epoch=41 validation_rmse=... validation_mae=... validation_r2=..."   (once)
_NUMBER = r"([0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)"
_SIGNED = r"(-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)"
METRIC_DEFINITIONS: tuple[Mapping[str, str], ...] = (
    {"Name": "train:loss", "Regex": rf"epoch=[0-9]+ train_loss={_NUMBER}"},
    {"Name": "validation:loss", "Regex": rf"epoch=[0-9]+ .*val_loss={_NUMBER}"},
    {"Name": "validation:rmse", "Regex": rf"epoch=[0-9]+ .*val_rmse={_NUMBER}"},
    {"Name": "validation:mae", "Regex": rf"epoch=[0-9]+ .*val_mae={_NUMBER}"},
    {"Name": "final:validation:rmse", "Regex": rf"final best_epoch=[0-9]+ .*validation_rmse={_NUMBER}"},
    {"Name": "final:validation:mae", "Regex": rf"final best_epoch=[0-9]+ .*validation_mae={_NUMBER}"},
    {"Name": "final:validation:r2", "Regex": rf"final best_epoch=[0-9]+ .*validation_r2={_SIGNED}"},
)


def describe(operation: Callable[..., dict[str, Any]], **kwargs: Any) -> dict[str, Any] | None:
    """A SageMaker Describe* answer, or None when the job does not exist."""
    from botocore.exceptions import ClientError

    try:
        return operation(**kwargs)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        message = error.get("Message", "")
        if error.get("Code") in ("ResourceNotFound", "ResourceNotFoundException") or (
                error.get("Code") == "ValidationException"
                and ("not found" in message.lower() or "could not find" in message.lower())):
            return None
        raise


def reuse(job: JobEvent, kind: str, name: str, status: str, reason: str | None, logs: str,
          variables: Mapping[str, str]) -> Done:
    """A job of this execution already exists: continue with it, unless it can only end in failure."""
    if status in ("InProgress", "Completed"):
        logger.info("job %s: SageMaker %s job %s already exists (%s); not starting another",
                    job.job_id, kind, name, status)
        return Done(f"SageMaker {kind} job {name} already exists for this execution ({status})", variables)
    # SageMaker keeps job names forever: a failed job of this execution cannot be replaced.
    raise JobFailed(f"SageMaker {kind} job {name} of this pipeline execution is already {status}"
                    f"{f': {reason}' if reason else ''}; its name cannot be reused, so start a new pipeline "
                    f"execution (Release change); logs: {logs}")


def check_budget(job: JobEvent, kind: str, name: str, status: str, started: datetime, budget: float | None,
                 logs: str, stop: Callable[[], object]) -> None:
    """Stop a job that has run longer than the action's max_seconds, measured from its own start."""
    seconds = time.time() - started.timestamp()
    if budget is None or seconds <= budget or status != "InProgress":
        return
    stop()
    logger.warning("job %s: SageMaker %s job %s ran %.0fs, over max_seconds %g; stop requested",
                   job.job_id, kind, name, seconds, budget)
    raise TimeBudgetExceeded(f"SageMaker {kind} job {name} ran past the action's max_seconds {budget:g} "
                             f"(started {iso(started)}); stopped it; logs: {logs}")
