"""What the SageMaker job workers (lambdas.training, lambdas.evaluation, lambdas.registry) share.

Finding a job by name, continuing with a job this execution already started, stopping a job over
its time budget, the content types of the model server, the metric definitions the training
job is created with (the one source: training/contract.py prints the lines they scrape, and
tests/lambdas/test_training.py holds the two together), and how a job is sealed (JobSecurity).
"""
from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping

from lambdas.errors import ConfigurationError, JobFailed, TimeBudgetExceeded
from lambdas.job import Done, JobEvent, iso

logger = logging.getLogger(__name__)

# What the model server (training.serve) reads and writes, as the Model Registry records it.
CONTENT_TYPES = ("text/csv", "application/json")

# Model package CustomerMetadataProperties keys: the evaluation monitor (Rejected) and RegisterModel
# (Approved) write the same ones, so either finds the package of an execution.
EXECUTION_KEY = "ExecutionId"
DECISION_KEY = "Decision"
# The champion/challenger gate's record, on every package (lambdas.evaluation judges; MonitorEvaluation
# records Rejected packages, RegisterModel Approved ones from the gate's exported variables).
RMSE_KEY = "Rmse"                         # the challenger's test RMSE
THRESHOLD_KEY = "Threshold"
TOLERANCE_KEY = "TolerancePercent"
CHAMPION_KEY = "ChampionModelPackageArn"  # "none" when the group had no Approved package
CHAMPION_RMSE_KEY = "ChampionRmse"        # "none" without a champion or when it could not be scored
REASON_KEY = "DecisionReason"
GATE_KEYS = (RMSE_KEY, THRESHOLD_KEY, TOLERANCE_KEY, CHAMPION_KEY, CHAMPION_RMSE_KEY, REASON_KEY)
NONE = "none"
# CustomerMetadataProperties values: 1-256 of letters, spaces, digits and _.:/=+-@ (botocore's sagemaker
# model, shape CustomerMetadataValue).
MAX_METADATA_VALUE = 256
_NOT_METADATA = re.compile(r"[^\w .:/=+\-@]+")


def metadata_value(text: str) -> str:
    """`text` as a CustomerMetadataProperties value: other characters become spaces, cut at 256."""
    cleaned = " ".join(_NOT_METADATA.sub(" ", text).split())
    return (cleaned or NONE)[:MAX_METADATA_VALUE]


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


# The submit functions' environment (templates/pipeline.yaml, SubmitTrainingFunction and
# SubmitEvaluationFunction): the project key, and the VPC a user may place the jobs in. Environment, not
# UserParameters: an action configuration value is at most 1,000 characters (Quotas in AWS CodePipeline).
KMS_KEY_VARIABLE = "JOB_KMS_KEY_ARN"
SUBNETS_VARIABLE = "JOB_SUBNET_IDS"
SECURITY_GROUPS_VARIABLE = "JOB_SECURITY_GROUP_IDS"
# VpcConfig of CreateTrainingJob / NetworkConfig.VpcConfig of CreateProcessingJob: 1-16 subnets, 1-5
# security groups (botocore's sagemaker model, shapes Subnets and VpcSecurityGroupIds).
_SUBNET = re.compile(r"^subnet-[0-9a-f]+$")
_GROUP = re.compile(r"^sg-[0-9a-f]+$")
MAX_SUBNETS, MAX_SECURITY_GROUPS = 16, 5


@dataclass(frozen=True)
class JobSecurity:
    """How a job is sealed: its volume and outputs encrypted with the project key, no network of its own
    (EnableNetworkIsolation: SageMaker still stages the channels, inputs and outputs), and, when the user
    gave one, the VPC its instances sit in."""
    kms_key: str | None = None
    subnets: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> "JobSecurity":
        env = os.environ if environ is None else environ
        subnets, groups = _ids(env, SUBNETS_VARIABLE, _SUBNET), _ids(env, SECURITY_GROUPS_VARIABLE, _GROUP)
        if bool(subnets) != bool(groups):  # SageMaker's VpcConfig requires both
            raise ConfigurationError(f"{SUBNETS_VARIABLE} and {SECURITY_GROUPS_VARIABLE} go together (the "
                                     "stack's JobSubnetIds and JobSecurityGroupIds): give both or neither")
        if len(subnets) > MAX_SUBNETS or len(groups) > MAX_SECURITY_GROUPS:
            raise ConfigurationError(f"a job takes at most {MAX_SUBNETS} subnets and {MAX_SECURITY_GROUPS} "
                                     f"security groups, got {len(subnets)} and {len(groups)}")
        return cls(kms_key=env.get(KMS_KEY_VARIABLE) or None, subnets=subnets, security_groups=groups)

    def vpc_config(self) -> dict[str, list[str]] | None:
        if not self.subnets:
            return None
        return {"SecurityGroupIds": list(self.security_groups), "Subnets": list(self.subnets)}


def _ids(env: Mapping[str, str], variable: str, pattern: re.Pattern[str]) -> tuple[str, ...]:
    ids = tuple(item.strip() for item in env.get(variable, "").split(",") if item.strip())
    bad = [item for item in ids if not pattern.match(item)]
    if bad:
        raise ConfigurationError(f"{variable} must be comma-separated IDs matching {pattern.pattern}, got {bad}")
    return ids


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
