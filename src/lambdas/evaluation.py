"""Evaluation: run the evaluation processing job, then judge the challenger against the threshold and
the champion.

SubmitEvaluation finds the champion, the newest Approved package of the model package group, and starts
one SageMaker processing job per execution that scores the new model (the challenger) and the champion's
model data on the same test split. MonitorEvaluation watches it and reads evaluation.json (SageMaker
ModelMetrics regression format, plus a `champion` object): the challenger is APPROVED when its RMSE <=
threshold and, with a champion, RMSE <= champion RMSE x (1 + tolerance_percent / 100); without a champion
(or one that could not be scored on this split) the threshold alone decides, and the reason says so.
APPROVED exports the decision, both scores and the reason (RegisterModel records them on the Approved
package); otherwise the candidate is recorded in the Model Registry as Rejected with the same record and
the action fails, which stops the execution before any endpoint is touched.
The job is sealed as `JobSecurity` says: network isolation (training.evaluate makes no AWS or network
call), the project key on its volume and outputs, the user's VPC when one is configured.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

from lambdas.errors import ConfigurationError, JobFailed
from lambdas.job import (
    AwsClient, Done, InProgress, JobEvent, Param, client, job_name, parse_s3_uri, parse_user_parameters, run_job)
from lambdas.sagemaker_jobs import (
    CHAMPION_KEY, CHAMPION_RMSE_KEY, CONTENT_TYPES, DECISION_KEY, EXECUTION_KEY, NONE, REASON_KEY, RMSE_KEY,
    THRESHOLD_KEY, TOLERANCE_KEY, JobSecurity, check_budget, describe, metadata_value, reuse)

logger = logging.getLogger(__name__)

SUBMIT_SCHEMA = {
    "execution_id": Param(str),
    "name_prefix": Param(str),
    "image_uri": Param(str),
    "role_arn": Param(str),
    "model_data_uri": Param(str),
    "test_uri": Param(str),
    "output_uri": Param(str),
    "model_package_group": Param(str),
    "instance_type": Param(str, required=False, default="ml.m5.large"),
}
MONITOR_SCHEMA = {
    "processing_job_name": Param(str),
    "evaluation_uri": Param(str),
    "threshold": Param((int, float)),
    "tolerance_percent": Param((int, float), required=False, default=0),
    "model_package_group": Param(str),
    "image_uri": Param(str),
    "model_data_uri": Param(str),
    "execution_id": Param(str),
    "max_seconds": Param((int, float), required=False),
}

ENTRYPOINT = ["python3", "-m", "training.evaluate"]
BASE = "/opt/ml/processing"
VOLUME_GB = 10
EVALUATION_FILE = "evaluation.json"
APPROVED, REJECTED = "APPROVED", "REJECTED"
NULLABLE = {"r2"}  # training.evaluate writes r2 = null when the test target is constant
LOGS = "CloudWatch log group /aws/sagemaker/ProcessingJobs, streams {name}/*"


def submit_handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    return run_job(event, lambda job: submit(job))


def monitor_handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    return run_job(event, lambda job: monitor(job))


# -- submit ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChampionModel:
    """The group's newest Approved package: what the challenger is compared with."""
    arn: str
    model_data_uri: str


def submit(job: JobEvent, *, sagemaker: AwsClient = None, security: JobSecurity | None = None) -> Done:
    params = parse_user_parameters(job.user_parameters, SUBMIT_SCHEMA)
    security = security or JobSecurity.from_environment()
    request = processing_request(params, security)  # validates the parameters before any AWS call
    name = request["ProcessingJobName"]
    variables = {"ProcessingJobName": name, "EvaluationUri": evaluation_uri(params["output_uri"])}
    sagemaker = sagemaker or client("sagemaker")

    existing = describe(sagemaker.describe_processing_job, ProcessingJobName=name)
    if existing is None:
        champion = find_champion(sagemaker, params["model_package_group"])
        request = processing_request(params, security, champion)
        try:
            sagemaker.create_processing_job(**request)
            against = f"against champion {champion.arn}" if champion else "with no champion (no Approved package)"
            logger.info("job %s: created SageMaker processing job %s, %s", job.job_id, name, against)
            return Done(f"SageMaker processing job {name} started: scores the model {against}", variables)
        except sagemaker.exceptions.ResourceInUse:  # a concurrent invocation created it first
            existing = sagemaker.describe_processing_job(ProcessingJobName=name)
    return reuse(job, "processing", name, existing["ProcessingJobStatus"], existing.get("FailureReason"),
                 LOGS.format(name=name), variables)


def find_champion(sagemaker: AwsClient, group: str) -> ChampionModel | None:
    """The newest Approved package of the group and its model data, or None when there is none."""
    found = sagemaker.list_model_packages(ModelPackageGroupName=group, ModelApprovalStatus="Approved",
                                          SortBy="CreationTime", SortOrder="Descending", MaxResults=1)
    summaries = found.get("ModelPackageSummaryList") or []
    if not summaries:
        return None
    arn: str = summaries[0]["ModelPackageArn"]
    described = sagemaker.describe_model_package(ModelPackageName=arn)
    containers = (described.get("InferenceSpecification") or {}).get("Containers") or []
    model_data = containers[0].get("ModelDataUrl") if containers else None
    if not isinstance(model_data, str) or not model_data.startswith("s3://"):
        # An Approved package the gate cannot score would let any model through: say which one to fix.
        raise JobFailed(f"the champion, model package {arn} (the newest Approved one in group '{group}'), has no "
                        "s3:// ModelDataUrl to score on the test split; set its status to Rejected or "
                        "Approve a package that has one")
    return ChampionModel(arn, model_data)


def processing_request(params: Mapping[str, Any], security: JobSecurity,
                       champion: ChampionModel | None = None) -> dict[str, Any]:
    for key in ("model_data_uri", "test_uri", "output_uri"):
        parse_s3_uri(params[key], f"UserParameters '{key}'")
    request: dict[str, Any] = {
        "ProcessingJobName": job_name(params["name_prefix"], "evaluate", params["execution_id"]),
        "AppSpecification": {"ImageUri": params["image_uri"], "ContainerEntrypoint": ENTRYPOINT},
        "RoleArn": params["role_arn"],
        "ProcessingInputs": [
            # a single object key as S3Prefix lands as /opt/ml/processing/model/model.tar.gz
            processing_input("model", params["model_data_uri"]),
            processing_input("test", params["test_uri"]),
        ],
        "ProcessingOutputConfig": {"Outputs": [{
            "OutputName": "evaluation",
            "S3Output": {"S3Uri": params["output_uri"], "LocalPath": f"{BASE}/evaluation",
                         "S3UploadMode": "EndOfJob"},
        }]},
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": params["instance_type"],
                                                  "VolumeSizeInGB": VOLUME_GB}},
        # The container reads its inputs and writes its outputs; SageMaker stages both outside it.
        "NetworkConfig": {"EnableNetworkIsolation": True},
        "Tags": [{"Key": "PipelineExecutionId", "Value": params["execution_id"]}],
    }
    if champion is not None:
        # Its model.tar.gz lands as /opt/ml/processing/champion/model.tar.gz; its ARN goes into evaluation.json.
        request["ProcessingInputs"].append(processing_input("champion", champion.model_data_uri))
        request["AppSpecification"]["ContainerArguments"] = ["--champion-package", champion.arn]
    if security.kms_key:
        request["ProcessingOutputConfig"]["KmsKeyId"] = security.kms_key
        request["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] = security.kms_key
    vpc = security.vpc_config()
    if vpc:
        request["NetworkConfig"]["VpcConfig"] = vpc
    return request


def processing_input(name: str, uri: str) -> dict[str, Any]:
    return {"InputName": name,
            "S3Input": {"S3Uri": uri, "LocalPath": f"{BASE}/{name}", "S3DataType": "S3Prefix",
                        "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated"}}


def evaluation_uri(output_uri: str) -> str:
    return f"{output_uri.rstrip('/')}/{EVALUATION_FILE}"


# -- monitor --------------------------------------------------------------------------------
def monitor(job: JobEvent, *, sagemaker: AwsClient = None, s3: AwsClient = None) -> Done | InProgress:
    params = parse_user_parameters(job.user_parameters, MONITOR_SCHEMA)
    parse_s3_uri(params["evaluation_uri"], "UserParameters 'evaluation_uri'")
    threshold, tolerance = params["threshold"], params["tolerance_percent"]
    if not math.isfinite(threshold):
        raise ConfigurationError(f"UserParameters 'threshold' must be a finite number, got {threshold!r}")
    if not math.isfinite(tolerance) or tolerance < 0:
        raise ConfigurationError(f"UserParameters 'tolerance_percent' (the ChallengerTolerancePercent variable) must "
                                 f"be a finite number >= 0, got {tolerance!r}")
    name = (job.state() or {}).get("processing_job_name", params["processing_job_name"])
    logs = LOGS.format(name=name)
    sagemaker = sagemaker or client("sagemaker")

    described = sagemaker.describe_processing_job(ProcessingJobName=name)
    status = described["ProcessingJobStatus"]
    logger.info("job %s: SageMaker processing job %s is %s", job.job_id, name, status,
                extra={"jobId": job.job_id, "processingJob": name, "status": status})

    if status in ("Failed", "Stopped"):
        raise JobFailed(f"SageMaker processing job {name} {status}: "
                        f"{described.get('FailureReason') or 'SageMaker gave no reason'}; logs: {logs}")
    if status != "Completed":
        started = described.get("ProcessingStartTime") or described["CreationTime"]
        check_budget(job, "processing", name, status, started, params["max_seconds"], logs,
                     lambda: sagemaker.stop_processing_job(ProcessingJobName=name))
        return InProgress(f"SageMaker processing job {name} is {status}", {"processing_job_name": name})

    report = read_report(s3 or client("s3"), name, params["evaluation_uri"], logs)
    metrics = read_metrics(report, name, params["evaluation_uri"], logs)
    champion = read_champion(report, name, params["evaluation_uri"])
    rmse = metrics["rmse"]
    assert rmse is not None  # read_metrics checked it is a finite number
    verdict = judge(rmse, threshold, tolerance, champion)
    record = gate_record(verdict, rmse, threshold, tolerance, champion)
    variables = {variable: "null" if value is None else repr(value)
                 for variable, value in (("Rmse", rmse), ("Mae", metrics["mae"]), ("R2", metrics["r2"]))}
    variables.update({"Threshold": record[THRESHOLD_KEY], "TolerancePercent": record[TOLERANCE_KEY],
                      "ChampionModelPackageArn": record[CHAMPION_KEY], "ChampionRmse": record[CHAMPION_RMSE_KEY],
                      "Reason": record[REASON_KEY]})
    if verdict.decision == APPROVED:
        summary = f"Model {APPROVED}: {verdict.reason}"
        logger.info("job %s: processing job %s: %s", job.job_id, name, summary)
        return Done(summary, {"Decision": APPROVED, **variables})

    message = f"Model {REJECTED}: {verdict.reason}"
    logger.info("job %s: processing job %s: %s", job.job_id, name, message)
    from botocore.exceptions import ClientError

    try:
        arn = record_rejected(sagemaker, params, described["CreationTime"], record)
    except ClientError as exc:  # the verdict stands; say that the registry record is missing
        error = exc.response.get("Error", {})
        logger.exception("job %s: processing job %s: could not record the rejected model in %s",
                         job.job_id, name, params["model_package_group"])
        raise JobFailed(f"{message}; it could not be recorded in model package group "
                        f"{params['model_package_group']}: {exc.operation_name} failed: "
                        f"{error.get('Message', '')} ({error.get('Code', 'Unknown')})") from None
    logger.info("job %s: processing job %s: rejected model recorded as %s", job.job_id, name, arn)
    raise JobFailed(message)


@dataclass(frozen=True)
class ChampionScore:
    """The champion as evaluation.json reports it: its RMSE on the same rows, or why it has none."""
    arn: str
    rmse: float | None
    error: str | None = None


@dataclass(frozen=True)
class Verdict:
    decision: str
    reason: str  # words only (no < or %), so the same text fits CustomerMetadataProperties


def judge(rmse: float, threshold: float, tolerance_percent: float, champion: ChampionScore | None) -> Verdict:
    """APPROVED when RMSE <= threshold and, with a scored champion, RMSE <= its RMSE x (1 + tolerance)."""
    if champion is None:
        against = "there is no Approved champion so the threshold alone decides"
    elif champion.rmse is None:
        against = (f"champion {champion.arn} could not be scored on this test split so the threshold alone "
                   f"decides: {champion.error}")
    else:
        limit = champion.rmse * (1 + tolerance_percent / 100)
        against = (f"champion {champion.arn} RMSE {champion.rmse:.2f} plus tolerance {tolerance_percent:g} "
                   f"percent allows at most {limit:.2f}")
        if rmse > limit:
            return Verdict(REJECTED, f"RMSE {rmse:.2f} is worse than the champion: {against}")
    if rmse > threshold:
        return Verdict(REJECTED, f"RMSE {rmse:.2f} is above threshold {threshold:g}; {against}")
    return Verdict(APPROVED, f"RMSE {rmse:.2f} is within threshold {threshold:g}; {against}")


def gate_record(verdict: Verdict, rmse: float, threshold: float, tolerance_percent: float,
                champion: ChampionScore | None) -> dict[str, str]:
    """The gate's CustomerMetadataProperties (and output variables): both scores, the decision, its reason.
    The reason is cleaned to metadata characters, which also keeps it free of quotes and backslashes: RegisterModel's
    UserParameters splice #{Evaluation.Reason} into a JSON string."""
    champion_rmse = None if champion is None else champion.rmse
    return {DECISION_KEY: verdict.decision, RMSE_KEY: repr(rmse), THRESHOLD_KEY: f"{threshold:g}",
            TOLERANCE_KEY: f"{tolerance_percent:g}", CHAMPION_KEY: champion.arn if champion else NONE,
            CHAMPION_RMSE_KEY: NONE if champion_rmse is None else repr(champion_rmse),
            REASON_KEY: metadata_value(verdict.reason)}


def read_report(s3: AwsClient, name: str, uri: str, logs: str) -> Any:
    bucket, key = parse_s3_uri(uri, "UserParameters 'evaluation_uri'")
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except (s3.exceptions.NoSuchKey, s3.exceptions.NoSuchBucket):
        raise JobFailed(f"SageMaker processing job {name} Completed but wrote no {EVALUATION_FILE} at {uri}; "
                        f"logs: {logs}") from None
    try:
        return json.loads(body)
    except ValueError:
        raise JobFailed(f"{uri} (from processing job {name}) is not SageMaker ModelMetrics JSON with "
                        "'regression_metrics'") from None


def read_metrics(report: Any, name: str, uri: str, logs: str) -> dict[str, float | None]:
    try:
        regression = report["regression_metrics"]
    except (TypeError, KeyError):
        raise JobFailed(f"{uri} (from processing job {name}) is not SageMaker ModelMetrics JSON with "
                        "'regression_metrics'") from None
    metrics: dict[str, float | None] = {}
    for metric in ("rmse", "mae", "r2"):
        entry = regression.get(metric) if isinstance(regression, dict) else None
        if not isinstance(entry, dict) or "value" not in entry:
            raise JobFailed(f"{uri} (from processing job {name}) has no regression_metrics.{metric}.value")
        value = entry["value"]
        if value is None and metric in NULLABLE:
            metrics[metric] = None
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise JobFailed(f"{uri} (from processing job {name}): regression_metrics.{metric}.value is not a "
                            f"number ({value!r})")
        metrics[metric] = float(value)
    rmse = metrics["rmse"]  # not NULLABLE: a float here
    if rmse is None or not math.isfinite(rmse):
        raise JobFailed(f"{uri} (from processing job {name}) reports a non-finite RMSE ({metrics['rmse']}); "
                        f"the model cannot be judged; logs: {logs}")
    return metrics


def read_champion(report: Mapping[str, Any], name: str, uri: str) -> ChampionScore | None:
    """evaluation.json's `champion` (training.evaluate): its RMSE, or the reason it could not be scored."""
    champion = report.get("champion")
    if champion is None:
        return None
    arn = champion.get("model_package_arn") if isinstance(champion, dict) else None
    if not isinstance(arn, str) or not arn:
        raise JobFailed(f"{uri} (from processing job {name}): 'champion' names no model_package_arn")
    value = ((champion.get("regression_metrics") or {}).get("rmse") or {}).get("value")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return ChampionScore(arn, float(value))
    return ChampionScore(arn, None, str(champion.get("error") or f"its RMSE is {value!r}"))


def record_rejected(sagemaker: AwsClient, params: Mapping[str, Any], since: datetime,
                    record: Mapping[str, str]) -> str:
    """Record the candidate as a Rejected model package, once per pipeline execution."""
    group, execution_id = params["model_package_group"], params["execution_id"]
    pages = sagemaker.get_paginator("list_model_packages").paginate(
        ModelPackageGroupName=group, ModelApprovalStatus="Rejected", CreationTimeAfter=since)
    for page in pages:  # only packages created since this execution's evaluation job began
        for summary in page["ModelPackageSummaryList"]:
            arn: str = summary["ModelPackageArn"]
            found = sagemaker.describe_model_package(ModelPackageName=arn)
            if found.get("CustomerMetadataProperties", {}).get(EXECUTION_KEY) == execution_id:
                return arn
    created = sagemaker.create_model_package(
        ModelPackageGroupName=group,
        ModelPackageDescription=f"Rejected by pipeline execution {execution_id}: {record[REASON_KEY]}",
        ModelApprovalStatus="Rejected",
        InferenceSpecification={
            "Containers": [{"Image": params["image_uri"], "ModelDataUrl": params["model_data_uri"]}],
            "SupportedContentTypes": list(CONTENT_TYPES),
            "SupportedResponseMIMETypes": list(CONTENT_TYPES),
        },
        ModelMetrics={"ModelQuality": {"Statistics": {"ContentType": "application/json",
                                                      "S3Uri": params["evaluation_uri"]}}},
        CustomerMetadataProperties={EXECUTION_KEY: execution_id, **record},
    )
    created_arn: str = created["ModelPackageArn"]
    return created_arn
