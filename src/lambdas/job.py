"""CodePipeline job plumbing shared by every job worker.

A worker is a function `work(job) -> Done | InProgress` that raises `JobWorkerError` when the
action must fail. `run_job` is the one boundary: it parses the event, calls the worker, and ends
every invocation with exactly one PutJobSuccessResult (with or without a continuation token) or
PutJobFailureResult. It never logs the raw event or the artifact credentials.

Logging is the standard library's, through `logging.getLogger(__name__)`: the functions' LoggingConfig is
JSON at the template's LogLevel, so the Lambda Python runtime writes each record as a JSON object at that
level, with the `extra=` fields (jobId, outcome, ...) as keys (templates/pipeline.yaml, LogLevel).
"""
from __future__ import annotations

import copy
import io
import json
import logging
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from lambdas.errors import ConfigurationError, JobWorkerError

logger = logging.getLogger(__name__)

MAX_TOKEN = 2048          # continuationToken
MAX_FAILURE_MESSAGE = 5000  # FailureDetails.message
MAX_SUMMARY = 2048        # ExecutionDetails.summary
UNRESOLVED = re.compile(r"#\{[^}]*\}")
RETRY_CONFIG: dict[str, Any] = {"retries": {"mode": "standard", "max_attempts": 5}}
# A boto3 client: botocore builds its methods from the service model at run time, so it is typed Any.
AwsClient = Any


def client(service: str, **kwargs: Any) -> AwsClient:
    """A boto3 client with botocore's standard retries; built lazily, only when none is passed in."""
    import boto3
    from botocore.config import Config

    return boto3.client(service, config=Config(**RETRY_CONFIG), **kwargs)


@dataclass(frozen=True)
class Artifact:
    name: str
    bucket: str
    key: str


@dataclass(frozen=True)
class Credentials:
    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)


@dataclass(frozen=True)
class JobEvent:
    job_id: str
    account_id: str
    user_parameters: str
    input_artifacts: tuple[Artifact, ...]
    output_artifacts: tuple[Artifact, ...]
    credentials: Credentials | None = field(repr=False)
    continuation_token: str | None
    kms_key_id: str | None

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> "JobEvent":
        try:
            job = event["CodePipeline.job"]
            data = job["data"]
        except (KeyError, TypeError):
            raise ConfigurationError("the event is not a CodePipeline job event "
                                     "(no 'CodePipeline.job.data')") from None
        creds = data.get("artifactCredentials")
        key = data.get("encryptionKey") or {}
        return cls(
            job_id=job["id"],
            account_id=job.get("accountId", ""),
            user_parameters=data.get("actionConfiguration", {}).get("configuration", {})
            .get("UserParameters", ""),
            input_artifacts=tuple(_artifact(a) for a in data.get("inputArtifacts", [])),
            output_artifacts=tuple(_artifact(a) for a in data.get("outputArtifacts", [])),
            credentials=Credentials(creds["accessKeyId"], creds["secretAccessKey"], creds["sessionToken"])
            if creds else None,
            continuation_token=data.get("continuationToken"),
            kms_key_id=key.get("id") if key.get("type", "KMS") == "KMS" else None,
        )

    def state(self) -> dict[str, Any] | None:
        """The continuation token's state, or None on the first invocation."""
        if not self.continuation_token:
            return None
        try:
            state: dict[str, Any] = json.loads(self.continuation_token)
            return state
        except ValueError:
            raise ConfigurationError("continuation token is not the JSON this worker writes") from None

    def input_artifact(self, name: str | None = None) -> Artifact:
        return _pick(self.input_artifacts, name, "input")

    def output_artifact(self, name: str | None = None) -> Artifact:
        return _pick(self.output_artifacts, name, "output")


def _artifact(raw: Mapping[str, Any]) -> Artifact:
    location = raw["location"]["s3Location"]
    return Artifact(raw["name"], location["bucketName"], location["objectKey"])


def _pick(artifacts: tuple[Artifact, ...], name: str | None, kind: str) -> Artifact:
    if name is None:
        if len(artifacts) != 1:
            raise ConfigurationError(f"the action needs exactly one {kind} artifact, has {len(artifacts)}")
        return artifacts[0]
    for artifact in artifacts:
        if artifact.name == name:
            return artifact
    raise ConfigurationError(f"the action has no {kind} artifact named '{name}' "
                             f"(has: {[a.name for a in artifacts]})")


# -- outcomes -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Done:
    summary: str
    variables: Mapping[str, str | int] = field(default_factory=dict)  # reported as str(value)


@dataclass(frozen=True)
class InProgress:
    summary: str
    state: Mapping[str, Any]
    percent: int | None = None


# -- artifacts ------------------------------------------------------------------------------
def artifact_s3(job: JobEvent, s3_client: AwsClient = None) -> AwsClient:
    """S3 client for the artifact store, with the credentials CodePipeline granted in the event."""
    if s3_client is not None:
        return s3_client
    import boto3
    from botocore.config import Config

    kwargs: dict[str, str] = {}
    if job.credentials is not None:
        kwargs = {"aws_access_key_id": job.credentials.access_key_id,
                  "aws_secret_access_key": job.credentials.secret_access_key,
                  "aws_session_token": job.credentials.session_token}
    return boto3.client("s3", config=Config(signature_version="s3v4", **RETRY_CONFIG), **kwargs)


def read_artifact_file(job: JobEvent, artifact: Artifact, filename: str, s3_client: AwsClient = None) -> bytes:
    body = artifact_s3(job, s3_client).get_object(Bucket=artifact.bucket, Key=artifact.key)["Body"].read()
    try:
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            return archive.read(filename)
    except zipfile.BadZipFile:
        raise ConfigurationError(f"input artifact '{artifact.name}' is not a zip archive") from None
    except KeyError:
        raise ConfigurationError(f"input artifact '{artifact.name}' has no file '{filename}'") from None


def write_artifact_files(job: JobEvent, artifact: Artifact, files: Mapping[str, bytes | str],
                         s3_client: AwsClient = None) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": job.kms_key_id} if job.kms_key_id else {}
    artifact_s3(job, s3_client).put_object(Bucket=artifact.bucket, Key=artifact.key,
                                           Body=buffer.getvalue(), **extra)


# -- UserParameters -------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    kind: type | tuple[type, ...]
    required: bool = True
    default: Any = None


def parse_user_parameters(raw: str, schema: Mapping[str, Param]) -> dict[str, Any]:
    """JSON UserParameters checked against a schema; every mistake names the key."""
    if not raw or not raw.strip():
        data: Any = {}
    else:
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ConfigurationError(f"UserParameters is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigurationError(f"UserParameters must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(schema))
    if unknown:
        raise ConfigurationError(f"UserParameters has unknown key(s) {unknown}; allowed: {sorted(schema)}")
    result = {}
    for key, param in schema.items():
        if key not in data:
            if param.required:
                raise ConfigurationError(f"UserParameters is missing required key '{key}'")
            result[key] = copy.deepcopy(param.default)  # a mutable default is never shared
            continue
        value = data[key]
        _check_resolved(key, value)
        kinds = param.kind if isinstance(param.kind, tuple) else (param.kind,)
        if isinstance(value, str) and (float in kinds or int in kinds):
            value = _number_from_variable(key, value, whole=float not in kinds)  # variables are strings
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise ConfigurationError(f"UserParameters '{key}' must be {names}, got {type(value).__name__}")
        result[key] = value
    return result


def _check_resolved(key: str, value: Any) -> None:
    text = json.dumps(value) if not isinstance(value, str) else value
    match = UNRESOLVED.search(text)
    if match:
        raise ConfigurationError(f"UserParameters '{key}' holds an unresolved variable {match.group(0)}; "
                                 "check the namespace and variable name")


def _number_from_variable(key: str, value: str, whole: bool = False) -> float | int:
    try:
        number = float(value)
    except ValueError:
        raise ConfigurationError(f"UserParameters '{key}' must be a number, got {value!r}") from None
    if whole:
        if not number.is_integer():
            raise ConfigurationError(f"UserParameters '{key}' must be a whole number, got {value!r}")
        return int(number)
    return number


# -- the boundary ---------------------------------------------------------------------------
def run_job(event: Mapping[str, Any], work: Callable[[JobEvent], Done | InProgress],
            codepipeline: AwsClient = None) -> dict[str, Any]:
    """Parse, work, report. Returns what was reported (for logs and tests)."""
    job_id = _job_id(event)
    codepipeline = codepipeline or client("codepipeline")
    try:
        job = JobEvent.from_event(event)
        logger.info("job %s: %s", job_id, "continuing" if job.continuation_token else "starting",
                    extra=_fields(job_id, "invoked", continuation=bool(job.continuation_token)))
        outcome = work(job)
    except JobWorkerError as exc:
        return _fail(codepipeline, job_id, exc.failure_type, str(exc))
    except Exception as exc:  # the boundary: nothing may leave the action hanging
        failure_type, message = _describe_unexpected(exc)
        logger.exception("job %s: unexpected error", job_id, extra=_fields(job_id, "error"))
        return _fail(codepipeline, job_id, failure_type, message)

    if isinstance(outcome, InProgress):
        token = json.dumps(outcome.state, separators=(",", ":"))
        if len(token) > MAX_TOKEN:
            return _fail(codepipeline, job_id, "JobFailed",
                         f"internal error: continuation state is {len(token)} characters (max {MAX_TOKEN})")
        details: dict[str, str | int] = {"summary": outcome.summary[:MAX_SUMMARY]}
        if outcome.percent is not None:
            details["percentComplete"] = max(0, min(100, int(outcome.percent)))
        codepipeline.put_job_success_result(jobId=job_id, continuationToken=token, executionDetails=details)
        logger.info("job %s: in progress: %s", job_id, outcome.summary,
                    extra=_fields(job_id, "in progress", percent=outcome.percent))
        return {"result": "continue", "summary": outcome.summary, "state": dict(outcome.state)}

    variables = {k: str(v) for k, v in outcome.variables.items()}
    kwargs: dict[str, Any] = {"executionDetails": {"summary": outcome.summary[:MAX_SUMMARY]}}
    if variables:
        kwargs["outputVariables"] = variables
    codepipeline.put_job_success_result(jobId=job_id, **kwargs)
    logger.info("job %s: succeeded: %s", job_id, outcome.summary,
                extra=_fields(job_id, "succeeded", variables=sorted(variables)))
    return {"result": "success", "summary": outcome.summary, "variables": variables}


def _fields(job_id: str, outcome: str, **more: Any) -> dict[str, Any]:
    """A boundary line's structured fields (keys of the JSON log record): the job, what came of it, more."""
    return {"jobId": job_id, "outcome": outcome, **more}


def _job_id(event: Mapping[str, Any]) -> str:
    try:
        job_id: str = event["CodePipeline.job"]["id"]
        return job_id
    except (KeyError, TypeError):
        # Without a job id there is nobody to report to; fail loudly in the Lambda's own log.
        raise ConfigurationError("the event is not a CodePipeline job event (no 'CodePipeline.job.id')") \
            from None


def _describe_unexpected(exc: Exception) -> tuple[str, str]:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "Unknown"), error.get("Message", "")
        operation = getattr(exc, "operation_name", "an AWS call")
        if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
            return "PermissionError", f"{operation} was denied: {message} ({code}); check the function's role"
        if code in ("Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded",
                    "ServiceUnavailable", "InternalFailure", "InternalServerException"):
            return "SystemUnavailable", f"{operation} kept failing after retries: {message} ({code})"
        return "JobFailed", f"{operation} failed: {message} ({code})"
    return "JobFailed", f"unexpected error ({type(exc).__name__}): {exc}"


def _fail(codepipeline: AwsClient, job_id: str, failure_type: str, message: str) -> dict[str, Any]:
    message = message[:MAX_FAILURE_MESSAGE]
    codepipeline.put_job_failure_result(
        jobId=job_id, failureDetails={"type": failure_type, "message": message})
    logger.error("job %s: failed (%s): %s", job_id, failure_type, message,
                 extra=_fields(job_id, "failed", failureType=failure_type))
    return {"result": "failure", "type": failure_type, "message": message}


# -- names and locations --------------------------------------------------------------------
NAME_LIMIT = 63  # SageMaker job names: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}


def job_name(prefix: str, kind: str, execution_id: str) -> str:
    """A stable SageMaker-safe name per (pipeline execution, action): a retry finds the same job."""
    def clean(text: str) -> str:
        return re.sub(r"-+", "-", re.sub(r"[^A-Za-z0-9-]", "-", text)).strip("-")

    execution, kind = clean(execution_id), clean(kind)
    if not execution:
        raise ConfigurationError(f"pipeline execution id {execution_id!r} has no usable characters")
    budget = NAME_LIMIT - len(execution) - len(kind) - 2
    head = clean(prefix)[: max(budget, 0)].rstrip("-")
    return "-".join(part for part in (head, kind, execution) if part)[:NAME_LIMIT].rstrip("-")


def iso(moment: datetime) -> str:
    """A timestamp for messages, in UTC to the second: 2024-05-01T10:00:00Z."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_s3_uri(uri: str, what: str = "S3 URI") -> tuple[str, str]:
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise ConfigurationError(f"{what} must be an s3:// URI, got {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise ConfigurationError(f"{what} has no bucket: {uri!r}")
    return bucket, key
