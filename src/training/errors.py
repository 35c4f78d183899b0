"""Errors of the training and evaluation jobs, and how a job reports them on exit.

Two kinds, after aws/sagemaker-training-toolkit (trainer.py, files.py):
- ``UserError``: the job's inputs are wrong (a missing channel, empty data, a header that does not
  match features.json, a bad hyperparameter). The message says what to fix. Exit code 2.
- anything else is an internal failure (a bug, TensorFlow, the disk). Exit code 1; the failure
  text carries the exception type and the tail of the traceback.

SageMaker shows the first 1024 characters of the failure file as the job's FailureReason
(training: ``/opt/ml/output/failure``; processing: ``/opt/ml/output/message`` -> ExitMessage), so the
reason comes first and the traceback after it.
"""
from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path

EXIT_SUCCESS = 0
EXIT_INTERNAL_ERROR = 1
EXIT_USER_ERROR = 2
FAILURE_REASON_LIMIT = 1024  # characters SageMaker keeps

logger = logging.getLogger(__name__)


class UserError(Exception):
    """The job's inputs are wrong; the message tells a person what to fix."""


def failure_text(exc: BaseException) -> str:
    """The failure file's content: reason first (it is what SageMaker shows), then the traceback."""
    if isinstance(exc, UserError):
        return f"UserError: {exc}\n"
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return f"InternalError: {type(exc).__name__}: {exc}\n\n{tb}"


def exit_code(exc: BaseException) -> int:
    return EXIT_USER_ERROR if isinstance(exc, UserError) else EXIT_INTERNAL_ERROR


def report_failure(exc: BaseException, failure_file: Path | None) -> int:
    """Log the failure once, write the failure file if one is given, return the exit code."""
    text = failure_text(exc)
    if isinstance(exc, UserError):
        logger.error("%s", text.rstrip())
    else:
        logger.error("internal error", exc_info=exc)
    if failure_file is not None:
        try:
            failure_file.parent.mkdir(parents=True, exist_ok=True)
            failure_file.write_text(text, encoding="utf-8")
        except OSError as write_error:  # the exit code still reports the failure
            print(f"could not write {failure_file}: {write_error}", file=sys.stderr)
    return exit_code(exc)
