"""What SageMaker training and processing jobs share: the record, the API operations, the run.

moto reports these jobs Completed at once and runs nothing, so their Create/Describe/Stop/List
operations are served here, from records kept here. Each kind (`training_jobs`, `processing_jobs`)
stages its inputs, names the image's program to run as a local process (`mlops_local.processes`)
and uploads its outputs. Statuses move as SageMaker reports them: InProgress -> Completed / Failed,
or Stopping -> Stopped; every change bumps `runtime.changes`.

A job acts as its RoleArn (sagemaker.execution_role): CreateXJob refuses a role SageMaker cannot
assume, the staging is signed as the role's session, the image pull is judged as it, and the job's
process gets the session's credentials. A denial fails the job with SageMaker's FailureReason and
AWS's denial text.

The job's output goes to CloudWatch Logs as SageMaker writes it, as the job's role: group
/aws/sagemaker/TrainingJobs or /aws/sagemaker/ProcessingJobs, stream `<job name>/algo-1-<epoch seconds>`
(SageMaker Developer Guide, "Log groups and streams that Amazon SageMaker AI sends to Amazon CloudWatch
Logs"). A FailureReason names that stream, never a local folder.
"""
from __future__ import annotations

import atexit
import datetime as dt
import logging
import os
import re
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from mlops_local import moto_access, processes
from mlops_local.cloudwatch_logs import FileFollower, LogWriter, follow_file
from mlops_local.gateway import AwsError, now, paginate
from mlops_local.iam.actions import Check, kms_via_service, partition
from mlops_local.iam.enforcement import AccessDenied
from mlops_local.runtime import LocalImage, RoleCredentials, Runtime
from mlops_local.s3_staging import S3Client, StagingError, split_s3_uri
from mlops_local.sagemaker import execution_role

logger = logging.getLogger(__name__)

NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
FAILURE_LIMIT = 1024  # SageMaker shows the first 1024 characters of the failure file
DEFAULT_MAX_RUNTIME = 86400
NOT_FOUND = "Requested resource not found."
# What a network-isolated job's process is not given: on AWS its container has no network and no AWS
# credentials ("If True, no inbound or outbound network calls can be made to or from the container"; SageMaker
# stages the data outside it: API Reference, DescribeTrainingJob EnableNetworkIsolation, NetworkConfig).
AWS_ACCESS = re.compile(r"^AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY|SESSION_TOKEN|SECURITY_TOKEN|PROFILE|"
                        r"ENDPOINT_URL(_.*)?|CONTAINER_CREDENTIALS_.*|CONTAINER_AUTHORIZATION_TOKEN(_FILE)?|"
                        r"SHARED_CREDENTIALS_FILE|CONFIG_FILE|WEB_IDENTITY_TOKEN_FILE|ROLE_ARN)$")


class JobFailure(Exception):
    """Ends a job as Failed with this FailureReason."""


@dataclass
class Job:
    """What both kinds of job share: the request, the status, the process, the timeline."""
    kind: str                       # "training" / "processing"
    name: str
    arn: str
    request: dict[str, Any]
    base: Path
    status: str = "InProgress"
    secondary: str = "Starting"
    creation_time: dt.datetime = field(default_factory=now)
    last_modified: dt.datetime = field(default_factory=now)
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None
    failure_reason: str | None = None
    exit_message: str | None = None
    model_artifacts: str | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    transitions: list[dict[str, Any]] = field(default_factory=list)
    process: subprocess.Popen | None = None
    stop_requested: bool = False
    max_runtime_exceeded: bool = False
    session: RoleCredentials | None = field(default=None, repr=False)  # the RoleArn's, once the job runs
    log_stream: str = ""            # its CloudWatch Logs stream, once the process starts

    @property
    def log(self) -> Path:
        return self.base / ("train.log" if self.kind == "training" else "processing.log")

    @property
    def log_group(self) -> str:
        return "/aws/sagemaker/TrainingJobs" if self.kind == "training" else "/aws/sagemaker/ProcessingJobs"


class SageMakerJobs(ABC):
    """Records, operations and the background run common to training and processing jobs."""
    kind = ""
    noun = ""          # "TrainingJob" / "ProcessingJob": the API's names
    arn_kind = ""      # "training-job" / "processing-job"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.jobs: dict[str, Job] = {}
        self.lock = threading.RLock()

    def register(self) -> "SageMakerJobs":
        gateway, noun = self.runtime.aws.gateway, self.noun
        gateway.operation(f"SageMaker.Create{noun}", self.create)
        gateway.operation(f"SageMaker.Describe{noun}", self.describe)
        gateway.operation(f"SageMaker.Stop{noun}", self.stop)
        gateway.operation(f"SageMaker.List{noun}s", self.list_jobs)
        atexit.register(self.close)  # a job's process leads its own session: it would outlive us
        return self

    def close(self) -> None:
        """Stop every running job's process (the stand-in is going away)."""
        with self.lock:
            active = [j for j in self.jobs.values() if j.status in ("InProgress", "Stopping")]
            for job in active:
                job.stop_requested = True
        for job in active:
            if job.process is not None:
                processes.stop(job.process, grace=5.0)

    # -- operations -------------------------------------------------------------------------------
    def create(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get(f"{self.noun}Name")
        if not isinstance(name, str) or not NAME.match(name):
            raise AwsError("ValidationException", f"1 validation error detected: Value {name!r} at "
                           f"'{self.noun[0].lower() + self.noun[1:]}Name' failed to satisfy constraint: "
                           f"Member must satisfy regular expression pattern: {NAME.pattern}")
        self.validate(params)
        region = self.runtime.aws.gateway.region
        arn = f"arn:aws:sagemaker:{region}:{self.runtime.aws.account_id}:{self.arn_kind}/{name.lower()}"
        try:  # SageMaker assumes the role when the job is created, and refuses one it cannot assume
            execution_role.session(self.runtime, params["RoleArn"], arn)
        except execution_role.RoleUnusable:
            raise AwsError("ValidationException", execution_role.could_not_assume(params["RoleArn"])) from None
        with self.lock:
            if name in self.jobs:
                raise AwsError("ResourceInUse", f"{self.noun} names must be unique within an AWS account "
                               f"and region, and a {self.arn_kind.replace('-', ' ')} with this name already "
                               f"exists ({self.jobs[name].arn})")
            job = Job(kind=self.kind, name=name, arn=arn, request=params,
                      base=self.runtime.workdir / "sagemaker" / self.kind / name)
            self.jobs[name] = job
            self._transition(job, "Starting", "Preparing the instances for the job")
        logger.info("SageMaker %s job %s: InProgress (%s)", self.kind, name, job.base)
        self.runtime.changes.notify()
        threading.Thread(target=self._execute, args=(job,), name=f"{self.kind}-{name}", daemon=True).start()
        return {f"{self.noun}Arn": arn}

    def describe(self, params: dict[str, Any]) -> dict[str, Any]:
        job = self._get(params.get(f"{self.noun}Name"))
        with self.lock:
            return self.describe_job(job)

    def stop(self, params: dict[str, Any]) -> dict[str, Any]:
        job = self._get(params.get(f"{self.noun}Name"))
        with self.lock:
            if job.status != "InProgress":
                raise AwsError("ValidationException", f"The request was rejected because the {self.kind} job "
                               f"is in status {job.status}.")
            job.stop_requested = True
            job.status = "Stopping"
            self._transition(job, "Stopping", "Stopping the job")
            process = job.process
        self.runtime.changes.notify()
        if process is not None:
            threading.Thread(target=processes.stop, args=(process,), daemon=True).start()
        return {}

    def list_jobs(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            jobs = [j for j in self.jobs.values() if self._matches(j, params)]
            sort_by = params.get("SortBy", "CreationTime")
            key: Callable[[Job], Any] = {"Name": lambda j: j.name, "Status": lambda j: j.status}.get(
                sort_by, lambda j: j.creation_time)
            jobs.sort(key=key, reverse=params.get("SortOrder", "Ascending") == "Descending")
            summaries = [self.summary(j) for j in jobs]
        page, token = paginate(summaries, params, default_size=10)
        return {f"{self.noun}Summaries": page, **({"NextToken": token} if token else {})}

    @staticmethod
    def _matches(job: Job, params: dict[str, Any]) -> bool:
        def after(key: str) -> dt.datetime | None:
            value = params.get(key)
            return dt.datetime.fromtimestamp(float(value), dt.timezone.utc) if value is not None else None

        created_after, created_before = after("CreationTimeAfter"), after("CreationTimeBefore")
        modified_after, modified_before = after("LastModifiedTimeAfter"), after("LastModifiedTimeBefore")
        checks = [
            not params.get("NameContains") or params["NameContains"].lower() in job.name.lower(),
            not params.get("StatusEquals") or params["StatusEquals"] == job.status,
            created_after is None or job.creation_time > created_after,
            created_before is None or job.creation_time < created_before,
            modified_after is None or job.last_modified > modified_after,
            modified_before is None or job.last_modified < modified_before,
        ]
        return all(checks)

    # -- what each kind defines -------------------------------------------------------------------
    @abstractmethod
    def validate(self, params: dict[str, Any]) -> None:
        ...

    @abstractmethod
    def image_uri(self, request: dict[str, Any]) -> str:
        ...

    @abstractmethod
    def isolated(self, request: dict[str, Any]) -> bool:
        """Whether the request asks for network isolation."""
        ...

    @abstractmethod
    def volume_key(self, request: dict[str, Any]) -> str | None:
        """The KMS key the request gives the ML storage volume (VolumeKmsKeyId), if any."""
        ...

    @abstractmethod
    def prepare(self, job: Job) -> tuple[list[str], dict[str, str]]:
        """Stage the inputs (as the job's role: self.s3(job), self.staging); return the command and its
        extra environment."""
        ...

    @abstractmethod
    def succeed(self, job: Job) -> None:
        """Upload the results of a successful run."""
        ...

    @abstractmethod
    def failure_reason(self, job: Job, code: int) -> str:
        ...

    def container_paths(self, job: Job) -> list[tuple[str, str]]:
        """(local folder, the container's path for it): a FailureReason quotes paths as the job saw them."""
        return [(str(job.base), "/opt/ml")]

    @abstractmethod
    def describe_job(self, job: Job) -> dict[str, Any]:
        ...

    @abstractmethod
    def summary(self, job: Job) -> dict[str, Any]:
        ...

    # -- the run ----------------------------------------------------------------------------------
    def _execute(self, job: Job) -> None:
        try:
            job.base.mkdir(parents=True, exist_ok=True)
            job.log.write_text("", encoding="utf-8")
            job.session = self._session(job)
            self._grant_volume_key(job)
            argv, extra = self.prepare(job)
            self._pull(job)
            # The container's AWS credentials are the role's (SageMaker serves them to it), unless it is isolated;
            # the request's Environment comes last, as a container's own variables would.
            env = {**os.environ, **self.runtime.aws.environment(), **job.session.environment()}
            if self.isolated(job.request):
                env = {key: value for key, value in env.items() if not AWS_ACCESS.match(key)}
            env.update(extra)
            with self.lock:
                if job.stop_requested:
                    self._end(job, "Stopped", "Stopped", "Stopped before the job started")
                    return
                with job.log.open("a", encoding="utf-8") as log:
                    log.write(f"[local sagemaker] {' '.join(argv)}\n")
                follower = self._follow(job)
                try:
                    job.process = processes.start(argv, env, job.log, cwd=job.base)
                except BaseException:
                    follower.close()
                    raise
                job.start_time = now()
                self._running(job)
            try:
                code = self._wait(job)
            finally:
                if job.process.poll() is not None:  # what the program started and left behind ends with it
                    processes.reap(job.process)
                follower.close()
            if job.stop_requested:
                reason = ("The job was stopped because it exceeded MaxRuntimeInSeconds"
                          if job.max_runtime_exceeded else None)
                self._end(job, "Stopped", "MaxRuntimeExceeded" if job.max_runtime_exceeded else "Stopped",
                          "The job was stopped", reason)
            elif code != 0:
                reason = processes.in_their_words(self.failure_reason(job, code), self.container_paths(job))
                self._end(job, "Failed", "Failed", "The job failed", reason)
            else:
                self._progress(job, "Uploading", "Uploading generated output")
                self.succeed(job)
                self._end(job, "Completed", "Completed", "The job completed")
        except JobFailure as exc:
            self._end(job, "Failed", "Failed", "The job failed", str(exc))
        except StagingError as exc:
            self._end(job, "Failed", "Failed", "The job failed", f"ClientError: {exc}")
        except Exception as exc:  # a bug here must end the job, not leave it InProgress forever
            logger.exception("SageMaker %s job %s: the local runtime failed", self.kind, job.name)
            self._end(job, "Failed", "Failed", "The job failed",
                      f"InternalServerError: local runtime error: {type(exc).__name__}: {exc}")

    def _follow(self, job: Job) -> FileFollower:
        """The process's output copied to the job's CloudWatch Logs stream as the job's role; a role without
        logs:CreateLogStream/PutLogEvents loses it, as on AWS (the access log records the denial)."""
        assert job.session is not None
        job.log_stream = f"{job.name}/algo-1-{int(time.time())}"
        writer = LogWriter(self.runtime.client_as("logs", job.session), job.log_group, job.log_stream)
        return follow_file(job.log, writer)

    def failure(self, job: Job, cause: str, code: int) -> str:
        """SageMaker's FailureReason for a failed algorithm: `AlgorithmError: <cause>, exit code: <code>`
        within FAILURE_LIMIT. No log location: SageMaker's has none; the Monitor workers add the log group."""
        head = f"AlgorithmError: {cause}"
        tail = f", exit code: {processes.exit_status(code)}"  # a container's: 137 for SIGKILL
        return head[:FAILURE_LIMIT - len(tail)] + tail

    def cause(self, job: Job, code: int, program: str) -> str:
        """The root cause of a non-zero exit (processes.root_cause): killed by a signal, a corrupt input, the
        log's last error line."""
        return processes.root_cause(code, job.log, program=program)

    # -- acting as the job's role --------------------------------------------------------------
    def _session(self, job: Job) -> RoleCredentials:
        try:
            return execution_role.session(self.runtime, job.request["RoleArn"], job.arn)
        except execution_role.RoleUnusable:  # e.g. the role was deleted or its trust changed since CreateXJob
            # SageMaker's FailureReason for it (aws/sagemaker-python-sdk#35)
            raise JobFailure(f"ClientError: SageMaker was unable to assume the role '{job.request['RoleArn']}'") \
                from None

    def _grant_volume_key(self, job: Job) -> None:
        """SageMaker grants the instance's volume the VolumeKmsKeyId as the job's role: kms:CreateGrant on the
        key, for an AWS resource, via SageMaker ("Encrypt Output Data and Storage Volume with AWS KMS",
        SageMaker Developer Guide: the execution role needs kms:CreateGrant for a volume key). No AWS text was
        found for the FailureReason of a denied grant; this one carries AWS's denial."""
        key = self.volume_key(job.request)
        if not key:
            return
        assert job.session is not None
        region, account = self.runtime.aws.gateway.region, self.runtime.aws.account_id
        key_id = key
        if not (key.startswith("arn:") and ":key/" in key):
            try:  # a key id, an alias or an alias ARN: the grant is made on the key it names
                key_id = moto_access.backend("kms", account, region).any_id_to_key_id(key)
            except Exception:  # an unknown alias: the grant is judged on what was given (and denied)
                key_id = key
        arn = key_id if key_id.startswith("arn:") else f"arn:{partition(region)}:kms:{region}:{account}:key/{key_id}"
        via = kms_via_service("kms:CreateGrant", arn, "sagemaker", region, account)
        check = Check(via.action, via.resource, {**via.conditions, "kms:GrantIsForAWSResource": ("true",)})
        try:
            self.runtime.authorize_checks(job.session, "kms", "CreateGrant", [check])
        except AccessDenied as denied:
            raise JobFailure(f"ClientError: SageMaker could not use the volume KMS key {key} "
                             f"({denied.code}: {denied.message})") from None

    def _pull(self, job: Job) -> None:
        """The image pull, judged as the job's role. SageMaker's FailureReason for an image it cannot pull
        (aws/sagemaker-python-sdk#57, #1968), with AWS's denial text."""
        assert job.session is not None
        denied = execution_role.pull(self.runtime, job.session, self.image_uri(job.request))
        if denied is not None:
            raise JobFailure("ClientError: Cannot pull algorithm container. Either the image does not exist or "
                             f"its permissions are incorrect. ({denied.code}: {denied.message})")

    def s3(self, job: Job) -> S3Client:
        """An S3 client signed as the job's role session."""
        assert job.session is not None
        return self.runtime.client_as("s3", job.session)

    @contextmanager
    def staging(self, job: Job, direction: str, uri: str) -> Iterator[None]:
        """Data moved as the job's role (`direction`: "download" / "upload"); a failure ends the job with
        SageMaker's FailureReason, e.g. `ClientError: Data download failed:Unable to download object
        s3://... (AccessDenied: Access Denied)` (aws/amazon-sagemaker-examples#4384), carrying AWS's
        denial text from the access log. The upload text follows the download's (no AWS source found)."""
        assert job.session is not None
        since = len(self.runtime.access_log)
        try:
            yield
        except StagingError as exc:
            bucket, _ = split_s3_uri(uri)
            message = self.runtime.denial(job.session, since, bucket)
            detail = f"(AccessDenied: {message})" if message else f"({exc})"
            where = "from" if direction == "download" else "to"
            raise JobFailure(f"ClientError: Data {direction} failed:Unable to {direction} data {where} {uri} "
                             f"{detail}") from None

    def _running(self, job: Job) -> None:
        """Called once the process started; the secondary status of a running job."""
        self._progress(job, "Training" if self.kind == "training" else "Processing", "Running")

    def _wait(self, job: Job) -> int:
        limit = (job.request.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds") or DEFAULT_MAX_RUNTIME
        assert job.process is not None
        try:
            return job.process.wait(timeout=float(limit))
        except subprocess.TimeoutExpired:
            with self.lock:
                job.stop_requested = job.max_runtime_exceeded = True
                job.status = "Stopping"
                self._transition(job, "Stopping", "Stopping the job: MaxRuntimeInSeconds exceeded")
            self.runtime.changes.notify()
            processes.stop(job.process)
            return job.process.wait()

    # -- bookkeeping ------------------------------------------------------------------------------
    def _transition(self, job: Job, secondary: str, message: str) -> None:
        moment = now()
        if job.transitions and "EndTime" not in job.transitions[-1]:
            job.transitions[-1]["EndTime"] = moment
        job.transitions.append({"Status": secondary, "StartTime": moment, "StatusMessage": message})
        job.secondary, job.last_modified = secondary, moment

    def _progress(self, job: Job, secondary: str, message: str) -> None:
        with self.lock:
            if job.status != "InProgress":  # a stop overtook this step
                return
            self._transition(job, secondary, message)
        logger.info("SageMaker %s job %s: %s", self.kind, job.name, secondary)
        self.runtime.changes.notify()

    def _end(self, job: Job, status: str, secondary: str, message: str, reason: str | None = None) -> None:
        with self.lock:
            if job.stop_requested and status == "Failed":  # the stop cut the job's staging short
                status, secondary, message, reason = "Stopped", "Stopped", "The job was stopped", None
            job.status = status
            job.failure_reason = reason
            self._transition(job, secondary, message)
            job.transitions[-1]["EndTime"] = job.last_modified
            job.end_time = job.last_modified
            if job.start_time is None:
                job.start_time = job.end_time
        log = logger.warning if reason else logger.info
        log("SageMaker %s job %s: %s%s", self.kind, job.name, status, f": {reason}" if reason else "")
        self.runtime.changes.notify()

    def _get(self, name: Any) -> Job:
        job = self.jobs.get(name) if isinstance(name, str) else None
        if job is None:
            raise AwsError("ValidationException", NOT_FOUND)
        return job

    def _image(self, uri: str) -> LocalImage:
        try:
            return self.runtime.images.resolve(uri)
        except KeyError as exc:
            raise JobFailure(f"ClientError: the image {uri} is not known locally: {exc.args[0]}") from None


def require(params: dict[str, Any], *path: str) -> Any:
    """A required request member, as SageMaker's validation names it."""
    value: Any = params
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    if value in (None, "", [], {}):
        raise AwsError("ValidationException", f"1 validation error detected: Value null at "
                       f"'{'.'.join(p[0].lower() + p[1:] for p in path)}' failed to satisfy constraint: "
                       "Member must not be null")
    return value


def require_s3(uri: Any, where: str) -> str:
    """An s3:// URI with a bucket, or the ValidationException that names `where`."""
    try:
        split_s3_uri(uri)
    except StagingError:
        raise AwsError("ValidationException", f"{where} must be an s3:// URI, got {uri!r}") from None
    return str(uri)


def read_text(path: Path, limit: int = FAILURE_LIMIT) -> str:
    """The start of a file a job wrote for SageMaker to report (failure, message); "" when absent."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")[:limit].strip()
    except OSError:
        return ""
