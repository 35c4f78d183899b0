"""What can go wrong in a job worker, in the terms CodePipeline reports (FailureDetails.type)."""
from __future__ import annotations


class JobWorkerError(Exception):
    """Base: an action that must fail with this message."""

    failure_type = "JobFailed"


class ConfigurationError(JobWorkerError):
    """The action is set up wrong (UserParameters, artifacts, variables): the user fixes it."""

    failure_type = "ConfigurationError"


class JobFailed(JobWorkerError):
    """The Glue/SageMaker job, or the check it ran, failed; the message says why and where to look."""

    failure_type = "JobFailed"


class TimeBudgetExceeded(JobFailed):
    """The job ran past the action's time budget and was stopped."""
