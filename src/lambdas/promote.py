"""PromoteModel: record the person's approval in the SageMaker Model Registry.

The Production stage's first action, after the Manual approval (Approval/ApproveForProd) succeeded.
RegisterModel left this execution's package PendingManualApproval with the evaluation gate's verdict in
its CustomerMetadataProperties (Decision=APPROVED); this action sets ModelApprovalStatus Approved, with
an ApprovalDescription naming the execution and the approval action, so the registry holds both
decisions: the gate's (metadata) and the person's (status). From then on the package is the group's
newest Approved one, the champion SubmitEvaluation compares the next candidate with.

It refuses (JobFailed), naming the package, its status and the gate's decision, unless
- the gate's record says Decision APPROVED (a candidate the gate rejected is never promoted),
- the package is PendingManualApproval, or already Approved (a retry: nothing to change), never Rejected
  (SageMaker itself lets UpdateModelPackage set any status from any other; this action does not),
- the package was registered by this pipeline execution (metadata ExecutionId) and is Completed.
Exports `ModelPackageArn` and `ApprovalStatus`.

UserParameters (JSON):
    model_package_arn    "#{Registry.ModelPackageArn}"
    execution_id         "#{codepipeline.PipelineExecutionId}"
    approved_by_action   optional, the approval action, e.g. "Approval/ApproveForProd"

UpdateModelPackage is sent with ModelApprovalStatus and ApprovalDescription only: SageMaker keeps the
metadata an update leaves out (CustomerMetadataPropertiesToRemove is how keys go).
"""
from __future__ import annotations

import logging
import re
from typing import Any, Mapping

from lambdas.errors import ConfigurationError, JobFailed
from lambdas.job import AwsClient, Done, JobEvent, Param, client, parse_user_parameters, run_job
from lambdas.sagemaker_jobs import DECISION_KEY, EXECUTION_KEY

logger = logging.getLogger(__name__)

SCHEMA = {
    "model_package_arn": Param(str),
    "execution_id": Param(str),
    "approved_by_action": Param(str, required=False, default=None),
}

# UpdateModelPackage's ModelPackageArn (botocore's SageMaker model: 1-2048 characters, this pattern).
PACKAGE_ARN = re.compile(r"arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]{9,16}:[0-9]{12}:model-package/\S{1,2048}")
MAX_ARN = 2048
# ApprovalDescription: 0-1024 characters of pattern ".*", which (a Java regex) matches no line break.
MAX_APPROVAL_DESCRIPTION = 1024
MAX_ACTION = 200  # "<stage>/<action>": stage and action names are at most 100 characters each
LINE_BREAKS = re.compile(r"[\n\r\u0085\u2028\u2029]")

APPROVED, PENDING = "Approved", "PendingManualApproval"
GATE_APPROVED = "APPROVED"


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    return run_job(event, lambda job: promote(job))


def promote(job: JobEvent, *, sagemaker: AwsClient = None) -> Done:
    params = parse_user_parameters(job.user_parameters, SCHEMA)
    arn = package_arn(params["model_package_arn"])
    execution_id = params["execution_id"].strip()
    description = approval_description(execution_id, params["approved_by_action"])
    sagemaker = sagemaker or client("sagemaker")

    package = describe(sagemaker, arn)
    status = package.get("ModelApprovalStatus") or "without an approval status"
    check_promotable(arn, package, execution_id)
    variables = {"ModelPackageArn": arn, "ApprovalStatus": APPROVED}
    if status == APPROVED:
        logger.info("job %s: model package %s is already Approved", job.job_id, arn)
        return Done(f"Model package {arn} was already Approved for execution {execution_id}", variables)

    logger.info("job %s: approving model package %s (%s): %s", job.job_id, arn, status, description)
    sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus=APPROVED,
                                   ApprovalDescription=description)
    logger.info("job %s: model package %s is Approved", job.job_id, arn)
    return Done(f"Approved model package {arn} (was {status}) for execution {execution_id}", variables)


def package_arn(value: str) -> str:
    if len(value) > MAX_ARN or not PACKAGE_ARN.fullmatch(value):
        raise ConfigurationError(f"UserParameters 'model_package_arn' {value[:100]!r} is not a model package ARN "
                                 "(arn:<partition>:sagemaker:<region>:<account>:model-package/<group>/<version>); "
                                 "pass #{Registry.ModelPackageArn}")
    return value


def approval_description(execution_id: str, action: str | None) -> str:
    """The ApprovalDescription: who decided (the manual approval action) in which pipeline execution."""
    if not execution_id:
        raise ConfigurationError("UserParameters 'execution_id' is empty; pass #{codepipeline.PipelineExecutionId}")
    where = "the manual approval"
    if action is not None:
        action = action.strip()
        if not action or len(action) > MAX_ACTION or LINE_BREAKS.search(action):
            raise ConfigurationError(f"UserParameters 'approved_by_action' {action[:100]!r} must be one line of "
                                     f"1-{MAX_ACTION} characters, e.g. \"Approval/ApproveForProd\"")
        where = f"the manual approval action {action}"
    text = f"Approved for production by a person at {where} of pipeline execution {execution_id}"
    if len(text) > MAX_APPROVAL_DESCRIPTION or LINE_BREAKS.search(text):
        raise ConfigurationError(f"UserParameters 'execution_id' {execution_id[:100]!r} makes an ApprovalDescription "
                                 f"SageMaker refuses (one line, at most {MAX_APPROVAL_DESCRIPTION} characters)")
    return text


def describe(sagemaker: AwsClient, arn: str) -> dict[str, Any]:
    from botocore.exceptions import ClientError

    try:
        package: dict[str, Any] = sagemaker.describe_model_package(ModelPackageName=arn)
        return package
    except ClientError as exc:
        error = exc.response.get("Error", {})
        message = error.get("Message", "")
        if error.get("Code") == "ResourceNotFound" or (
                error.get("Code") == "ValidationException" and ("not found" in message or "does not exist" in message)):
            raise JobFailed(f"model package {arn} does not exist ({message}); RegisterModel of this execution "
                            "registers it, so check its output variable ModelPackageArn and whether someone "
                            "deleted the package") from None
        raise


def check_promotable(arn: str, package: Mapping[str, Any], execution_id: str) -> None:
    """JobFailed unless the gate approved this execution's package and no one rejected it."""
    status = package.get("ModelApprovalStatus") or "without an approval status"
    metadata = package.get("CustomerMetadataProperties") or {}
    decision = metadata.get(DECISION_KEY)
    state = f"model package {arn} is {status}, the evaluation gate's Decision is {decision or 'not recorded'}"
    if decision != GATE_APPROVED:
        raise JobFailed(f"{state}: only a candidate the gate APPROVED is promoted; the package's "
                        "CustomerMetadataProperties hold the gate's record")
    if status == "Rejected":
        raise JobFailed(f"{state}: a Rejected package is never promoted (someone rejected it in the model "
                        "registry after it was registered); register a new candidate with a new pipeline run")
    if status not in (PENDING, APPROVED):
        raise JobFailed(f"{state}: only a PendingManualApproval package is promoted")
    registered_by = metadata.get(EXECUTION_KEY)
    if registered_by != execution_id:
        raise JobFailed(f"{state}, but it was registered by pipeline execution {registered_by or 'unknown'}, not "
                        f"{execution_id}: the person approved this execution's candidate, so pass this execution's "
                        "#{Registry.ModelPackageArn}")
    if package.get("ModelPackageStatus", "Completed") != "Completed":
        raise JobFailed(f"{state}, but its ModelPackageStatus is {package.get('ModelPackageStatus')}, not Completed; "
                        "a package SageMaker did not complete is not promoted")
