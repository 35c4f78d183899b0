"""SageMaker training and processing jobs that run: the image's program as a local process.

moto reports these jobs Completed at once and runs nothing, so their Create/Describe/Stop/List
operations are served here, from records kept here.

Training job, in `<workdir>/sagemaker/training/<name>/` laid out as /opt/ml:
    input/data/<channel>/            each channel's S3Prefix, keys relative to the prefix
    input/config/hyperparameters.json, inputdataconfig.json, resourceconfig.json
    model/  output/  output/failure  train.log
The image's `train` program (see runtime.ImageMap) runs with SM_BASE_DIR and the SM_* variables;
on success model/ is packed into `<S3OutputPath>/<name>/output/model.tar.gz`.

Processing job, in `<workdir>/sagemaker/processing/<name>/`: container paths under
/opt/ml/processing/ map to `processing/...` (SM_PROCESSING_BASE), /opt/ml to `ml/` (SM_BASE_DIR,
where a job writes output/message). Inputs are staged before, outputs uploaded after success.

Statuses move as SageMaker reports them: InProgress -> Completed / Failed, or Stopping -> Stopped.
Every change bumps `runtime.changes`.
"""
from __future__ import annotations

import atexit
import datetime as dt
import json
import logging
import os
import re
import subprocess
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from mlops_local import s3_staging
from mlops_local.gateway import AwsError
from mlops_local.jobs import pack_model
from mlops_local.runtime import Runtime, python_command

logger = logging.getLogger(__name__)

ACCOUNT = "123456789012"  # moto's default account
NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
PROCESSING_ROOT = PurePosixPath("/opt/ml/processing")
ML_ROOT = PurePosixPath("/opt/ml")
FAILURE_LIMIT = 1024  # SageMaker shows the first 1024 characters of the failure file
DEFAULT_MAX_RUNTIME = 86400
NOT_FOUND = "Requested resource not found."


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


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

    @property
    def log(self) -> Path:
        return self.base / ("train.log" if self.kind == "training" else "processing.log")


class SageMakerJobs(ABC):
    """Records, operations and the background run common to training and processing jobs."""
    kind = ""
    noun = ""          # "TrainingJob" / "ProcessingJob": the API's names
    arn_kind = ""      # "training-job" / "processing-job"

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.jobs: dict[str, Job] = {}
        self.lock = threading.RLock()

    def register(self) -> "SageMakerJobs":
        gateway, noun = self.runtime.aws.gateway, self.noun
        gateway.operation(f"SageMaker.Create{noun}", self.create)
        gateway.operation(f"SageMaker.Describe{noun}", self.describe)
        gateway.operation(f"SageMaker.Stop{noun}", self.stop)
        gateway.operation(f"SageMaker.List{noun}s", self.list)
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
                s3_staging.terminate(job.process, grace=5.0)

    # -- operations -------------------------------------------------------------------------------
    def create(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get(f"{self.noun}Name")
        if not isinstance(name, str) or not NAME.match(name):
            raise AwsError("ValidationException", f"1 validation error detected: Value {name!r} at "
                           f"'{self.noun[0].lower() + self.noun[1:]}Name' failed to satisfy constraint: "
                           f"Member must satisfy regular expression pattern: {NAME.pattern}")
        self.validate(params)
        region = self.runtime.aws.gateway.region
        arn = f"arn:aws:sagemaker:{region}:{ACCOUNT}:{self.arn_kind}/{name.lower()}"
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
            threading.Thread(target=s3_staging.terminate, args=(process,), daemon=True).start()
        return {}

    def list(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            jobs = [j for j in self.jobs.values() if self._matches(j, params)]
            sort_by = params.get("SortBy", "CreationTime")
            key: Callable[[Job], Any] = {"Name": lambda j: j.name, "Status": lambda j: j.status}.get(
                sort_by, lambda j: j.creation_time)
            jobs.sort(key=key, reverse=params.get("SortOrder", "Ascending") == "Descending")
            summaries = [self.summary(j) for j in jobs]
        start = int(params.get("NextToken") or 0)
        size = int(params.get("MaxResults") or 10)
        page: dict[str, Any] = {f"{self.noun}Summaries": summaries[start:start + size]}
        if start + size < len(summaries):
            page["NextToken"] = str(start + size)
        return page

    @staticmethod
    def _matches(job: Job, params: dict[str, Any]) -> bool:
        def after(key: str) -> dt.datetime | None:
            value = params.get(key)
            return dt.datetime.fromtimestamp(float(value), dt.timezone.utc) if value is not None else None

        checks = [
            not params.get("NameContains") or params["NameContains"].lower() in job.name.lower(),
            not params.get("StatusEquals") or params["StatusEquals"] == job.status,
            after("CreationTimeAfter") is None or job.creation_time > after("CreationTimeAfter"),
            after("CreationTimeBefore") is None or job.creation_time < after("CreationTimeBefore"),
            after("LastModifiedTimeAfter") is None or job.last_modified > after("LastModifiedTimeAfter"),
            after("LastModifiedTimeBefore") is None or job.last_modified < after("LastModifiedTimeBefore"),
        ]
        return all(checks)

    # -- what each kind defines -------------------------------------------------------------------
    @abstractmethod
    def validate(self, params: dict[str, Any]) -> None:
        ...

    @abstractmethod
    def prepare(self, job: Job) -> tuple[list[str], dict[str, str]]:
        """Stage the inputs; return the command and its extra environment."""
        ...

    @abstractmethod
    def succeed(self, job: Job) -> None:
        """Upload the results of a successful run."""
        ...

    @abstractmethod
    def failure_reason(self, job: Job, code: int) -> str:
        ...

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
            argv, extra = self.prepare(job)
            env = {**os.environ, **self.runtime.aws.environment(), **extra}
            with self.lock:
                if job.stop_requested:
                    self._end(job, "Stopped", "Stopped", "Stopped before the job started")
                    return
                with job.log.open("a", encoding="utf-8") as log:
                    log.write(f"[local sagemaker] {' '.join(argv)}\n")
                job.process = s3_staging.start_child(argv, env, job.log, cwd=job.base)
                job.start_time = now()
                self._running(job)
            code = self._wait(job)
            if job.stop_requested:
                reason = ("The job was stopped because it exceeded MaxRuntimeInSeconds"
                          if job.max_runtime_exceeded else None)
                self._end(job, "Stopped", "MaxRuntimeExceeded" if job.max_runtime_exceeded else "Stopped",
                          "The job was stopped", reason)
            elif code != 0:
                self._end(job, "Failed", "Failed", "The job failed", self.failure_reason(job, code))
            else:
                self._progress(job, "Uploading", "Uploading generated output")
                self.succeed(job)
                self._end(job, "Completed", "Completed", "The job completed")
        except JobFailure as exc:
            self._end(job, "Failed", "Failed", "The job failed", str(exc))
        except s3_staging.StagingError as exc:
            self._end(job, "Failed", "Failed", "The job failed", f"ClientError: {exc}")
        except Exception as exc:  # a bug here must end the job, not leave it InProgress forever
            logger.exception("SageMaker %s job %s: the local runtime failed", self.kind, job.name)
            self._end(job, "Failed", "Failed", "The job failed",
                      f"InternalServerError: local runtime error: {type(exc).__name__}: {exc}")

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
            s3_staging.terminate(job.process)
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

    def _image(self, uri: str):
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
    if not isinstance(uri, str) or not re.match(r"^s3://[^/]+", uri):
        raise AwsError("ValidationException", f"{where} must be an s3:// URI, got {uri!r}")
    return uri


def read_text(path: Path, limit: int = FAILURE_LIMIT) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[:limit].strip()
    except OSError:
        return ""


# -- training ------------------------------------------------------------------------------------
class TrainingJobs(SageMakerJobs):
    kind, noun, arn_kind = "training", "TrainingJob", "training-job"

    def validate(self, params: dict[str, Any]) -> None:
        spec = require(params, "AlgorithmSpecification")
        if not spec.get("TrainingImage"):
            raise AwsError("ValidationException", "AlgorithmSpecification.TrainingImage is required "
                           "(algorithm resources are not available locally)")
        if spec.get("TrainingInputMode", "File") != "File":
            raise AwsError("ValidationException", f"TrainingInputMode {spec['TrainingInputMode']} is not "
                           "supported locally; use File")
        require(params, "RoleArn")
        require_s3(require(params, "OutputDataConfig", "S3OutputPath"), "OutputDataConfig.S3OutputPath")
        require(params, "ResourceConfig")
        require(params, "StoppingCondition")
        names = []
        for channel in params.get("InputDataConfig") or []:
            name = channel.get("ChannelName")
            if not name:
                raise AwsError("ValidationException", "every channel needs a ChannelName")
            source = (channel.get("DataSource") or {}).get("S3DataSource")
            if not source:
                raise AwsError("ValidationException", f"channel '{name}': only S3DataSource is supported locally")
            if source.get("S3DataType", "S3Prefix") != "S3Prefix":
                raise AwsError("ValidationException", f"channel '{name}': S3DataType {source['S3DataType']} "
                               "is not supported locally; use S3Prefix")
            require_s3(source.get("S3Uri"), f"channel '{name}' S3Uri")
            names.append(name)
        if len(set(names)) != len(names):
            raise AwsError("ValidationException", f"channel names must be unique, got {names}")
        for key, value in (params.get("HyperParameters") or {}).items():
            if not isinstance(value, str):
                raise AwsError("ValidationException", f"hyperparameter {key} must be a string")

    def prepare(self, job: Job) -> tuple[list[str], dict[str, str]]:
        request = job.request
        image = self._image(request["AlgorithmSpecification"]["TrainingImage"])
        try:
            argv = image.command("train")
        except KeyError as exc:
            raise JobFailure(f"ClientError: {exc.args[0]}") from None
        self._progress(job, "Downloading", "Downloading input data")
        s3 = self.runtime.aws.client("s3")
        data = job.base / "input" / "data"
        channels: dict[str, str] = {}
        for channel in request.get("InputDataConfig") or []:
            name, uri = channel["ChannelName"], channel["DataSource"]["S3DataSource"]["S3Uri"]
            folder = data / name
            if not s3_staging.download_prefix(s3, uri, folder):
                bucket, _ = s3_staging.split_s3_uri(uri)
                raise JobFailure(f'ClientError: No S3 objects found under S3 URL "{uri}" given in input data '
                                 f"source. Please ensure that the bucket exists in the selected region "
                                 f"({self.runtime.aws.gateway.region}), that objects exist under that S3 "
                                 f'prefix, and that the role has "s3:ListBucket" permissions on bucket '
                                 f'"{bucket}".')
            channels[name] = str(folder)
        config = job.base / "input" / "config"
        config.mkdir(parents=True, exist_ok=True)
        hyperparameters = dict(request.get("HyperParameters") or {})
        (config / "hyperparameters.json").write_text(json.dumps(hyperparameters), encoding="utf-8")
        (config / "inputdataconfig.json").write_text(json.dumps(
            {c["ChannelName"]: {k: v for k, v in c.items() if k in ("ContentType", "TrainingInputMode")}
             for c in request.get("InputDataConfig") or []}), encoding="utf-8")
        (config / "resourceconfig.json").write_text(json.dumps(
            {"current_host": "algo-1", "hosts": ["algo-1"]}), encoding="utf-8")
        for folder in ("model", "output/data"):
            (job.base / folder).mkdir(parents=True, exist_ok=True)
        env = {"SM_BASE_DIR": str(job.base), "SM_MODEL_DIR": str(job.base / "model"),
               "SM_OUTPUT_DATA_DIR": str(job.base / "output" / "data"),
               "SM_HPS": json.dumps(hyperparameters), "SM_CHANNELS": json.dumps(sorted(channels)),
               "SM_CURRENT_HOST": "algo-1", "SM_HOSTS": json.dumps(["algo-1"]),
               "TRAINING_JOB_NAME": job.name, "TRAINING_JOB_ARN": job.arn,
               **{f"SM_CHANNEL_{name.upper()}": folder for name, folder in channels.items()},
               **{str(k): str(v) for k, v in (request.get("Environment") or {}).items()}}
        return python_command(argv), env

    def succeed(self, job: Job) -> None:
        s3 = self.runtime.aws.client("s3")
        output = f"{job.request['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{job.name}/output"
        tarball = pack_model(job.base / "model", job.base / "upload" / "model.tar.gz")
        s3_staging.upload_file(s3, tarball, f"{output}/model.tar.gz")
        output_data = job.base / "output" / "data"
        if any(output_data.iterdir()):
            pack_model(output_data, job.base / "upload" / "output.tar.gz")
            s3_staging.upload_file(s3, job.base / "upload" / "output.tar.gz", f"{output}/output.tar.gz")
        with self.lock:
            job.model_artifacts = f"{output}/model.tar.gz"
            job.metrics = self._metrics(job)

    def failure_reason(self, job: Job, code: int) -> str:
        written = read_text(job.base / "output" / "failure")
        return written or f"AlgorithmError: {s3_staging.last_error(job.log)}, exit code: {code}"

    def _metrics(self, job: Job) -> list[dict[str, Any]]:
        """FinalMetricDataList: the last value each MetricDefinitions regex found in the log."""
        definitions = job.request["AlgorithmSpecification"].get("MetricDefinitions") or []
        text = job.log.read_text(encoding="utf-8", errors="replace")
        metrics = []
        for definition in definitions:
            try:
                found = re.findall(definition["Regex"], text)
            except re.error:
                continue
            values = [f[0] if isinstance(f, tuple) else f for f in found]
            numbers = []
            for value in values:
                try:
                    numbers.append(float(value))
                except ValueError:
                    continue
            if numbers:
                metrics.append({"MetricName": definition["Name"], "Value": numbers[-1], "Timestamp": now()})
        return metrics

    def describe_job(self, job: Job) -> dict[str, Any]:
        request = job.request
        answer: dict[str, Any] = {
            "TrainingJobName": job.name, "TrainingJobArn": job.arn,
            "TrainingJobStatus": job.status, "SecondaryStatus": job.secondary,
            "HyperParameters": request.get("HyperParameters") or {},
            "AlgorithmSpecification": request["AlgorithmSpecification"],
            "RoleArn": request["RoleArn"],
            "InputDataConfig": request.get("InputDataConfig") or [],
            "OutputDataConfig": request["OutputDataConfig"],
            "ResourceConfig": request["ResourceConfig"],
            "StoppingCondition": request["StoppingCondition"],
            "CreationTime": job.creation_time, "LastModifiedTime": job.last_modified,
            "SecondaryStatusTransitions": [dict(t) for t in job.transitions],
            "FinalMetricDataList": list(job.metrics),
            "EnableNetworkIsolation": bool(request.get("EnableNetworkIsolation", False)),
            "EnableInterContainerTrafficEncryption": bool(request.get("EnableInterContainerTrafficEncryption",
                                                                      False)),
            "EnableManagedSpotTraining": bool(request.get("EnableManagedSpotTraining", False)),
        }
        if request.get("Environment"):
            answer["Environment"] = request["Environment"]
        if job.model_artifacts:
            answer["ModelArtifacts"] = {"S3ModelArtifacts": job.model_artifacts}
        if job.failure_reason:
            answer["FailureReason"] = job.failure_reason
        if job.start_time:
            answer["TrainingStartTime"] = job.start_time
        if job.end_time:
            answer["TrainingEndTime"] = job.end_time
            seconds = max(1, int((job.end_time - (job.start_time or job.end_time)).total_seconds()))
            answer["TrainingTimeInSeconds"] = answer["BillableTimeInSeconds"] = seconds
        return answer

    def summary(self, job: Job) -> dict[str, Any]:
        item = {"TrainingJobName": job.name, "TrainingJobArn": job.arn, "CreationTime": job.creation_time,
                "LastModifiedTime": job.last_modified, "TrainingJobStatus": job.status,
                "SecondaryStatus": job.secondary}
        if job.end_time:
            item["TrainingEndTime"] = job.end_time
        return item


# -- processing ----------------------------------------------------------------------------------
class ProcessingJobs(SageMakerJobs):
    kind, noun, arn_kind = "processing", "ProcessingJob", "processing-job"

    def validate(self, params: dict[str, Any]) -> None:
        require(params, "AppSpecification", "ImageUri")
        require(params, "RoleArn")
        require(params, "ProcessingResources", "ClusterConfig")
        for item in params.get("ProcessingInputs") or []:
            name = require(item, "InputName")
            source = item.get("S3Input")
            if not source:
                raise AwsError("ValidationException", f"input '{name}': only S3Input is supported locally")
            require_s3(source.get("S3Uri"), f"input '{name}' S3Uri")
            if source.get("S3DataType", "S3Prefix") != "S3Prefix":
                raise AwsError("ValidationException", f"input '{name}': S3DataType {source['S3DataType']} "
                               "is not supported locally; use S3Prefix")
            container_path(source.get("LocalPath"), f"input '{name}' LocalPath")
        for item in (params.get("ProcessingOutputConfig") or {}).get("Outputs") or []:
            name = require(item, "OutputName")
            target = item.get("S3Output") or {}
            require_s3(target.get("S3Uri"), f"output '{name}' S3Uri")
            container_path(target.get("LocalPath"), f"output '{name}' LocalPath")

    def local(self, job: Job, path: str) -> Path:
        """A container path under /opt/ml/processing (or /opt/ml) in the job's folder."""
        relative = PurePosixPath(path).relative_to(PROCESSING_ROOT)
        return job.base.joinpath("processing", *relative.parts)

    def _map_argument(self, job: Job, value: str) -> str:
        for root, folder in ((PROCESSING_ROOT, job.base / "processing"), (ML_ROOT, job.base / "ml")):
            if value == str(root) or value.startswith(f"{root}/"):
                return str(folder.joinpath(*PurePosixPath(value).relative_to(root).parts))
        return value

    def prepare(self, job: Job) -> tuple[list[str], dict[str, str]]:
        request = job.request
        app = request["AppSpecification"]
        self._image(app["ImageUri"])
        entrypoint = app.get("ContainerEntrypoint")
        if not entrypoint:
            raise JobFailure(f"ClientError: the image {app['ImageUri']} runs from source here and has no "
                             "entry point of its own; give AppSpecification.ContainerEntrypoint")
        s3 = self.runtime.aws.client("s3")
        for item in request.get("ProcessingInputs") or []:
            source = item["S3Input"]
            if not s3_staging.download_prefix(s3, source["S3Uri"], self.local(job, source["LocalPath"])):
                raise JobFailure(f"ClientError: No objects found under S3 URL \"{source['S3Uri']}\" given in "
                                 f"input '{item['InputName']}'")
        for item in (request.get("ProcessingOutputConfig") or {}).get("Outputs") or []:
            self.local(job, item["S3Output"]["LocalPath"]).mkdir(parents=True, exist_ok=True)
        (job.base / "ml" / "output").mkdir(parents=True, exist_ok=True)
        argv = [*entrypoint, *(app.get("ContainerArguments") or [])]
        env = {"SM_PROCESSING_BASE": str(job.base / "processing"), "SM_BASE_DIR": str(job.base / "ml"),
               "PROCESSING_JOB_NAME": job.name,
               **{str(k): str(v) for k, v in (request.get("Environment") or {}).items()}}
        return python_command([self._map_argument(job, a) for a in argv]), env

    def _running(self, job: Job) -> None:
        with self.lock:
            job.last_modified = now()
        self.runtime.changes.notify()

    def succeed(self, job: Job) -> None:
        s3 = self.runtime.aws.client("s3")
        for item in (job.request.get("ProcessingOutputConfig") or {}).get("Outputs") or []:
            target = item["S3Output"]
            s3_staging.upload_dir(s3, self.local(job, target["LocalPath"]), target["S3Uri"])
        message = read_text(job.base / "ml" / "output" / "message")
        with self.lock:
            job.exit_message = message or None

    def failure_reason(self, job: Job, code: int) -> str:
        message = read_text(job.base / "ml" / "output" / "message")
        with self.lock:
            job.exit_message = message or None
        return f"AlgorithmError: {message or s3_staging.last_error(job.log)}, exit code: {code}"

    def describe_job(self, job: Job) -> dict[str, Any]:
        request = job.request
        answer: dict[str, Any] = {
            "ProcessingJobName": job.name, "ProcessingJobArn": job.arn,
            "ProcessingJobStatus": job.status,
            "ProcessingInputs": request.get("ProcessingInputs") or [],
            "ProcessingResources": request["ProcessingResources"],
            "AppSpecification": request["AppSpecification"],
            "RoleArn": request["RoleArn"],
            "CreationTime": job.creation_time, "LastModifiedTime": job.last_modified,
        }
        for key in ("ProcessingOutputConfig", "StoppingCondition", "Environment", "NetworkConfig"):
            if request.get(key):
                answer[key] = request[key]
        if job.exit_message:
            answer["ExitMessage"] = job.exit_message
        if job.failure_reason:
            answer["FailureReason"] = job.failure_reason
        if job.start_time:
            answer["ProcessingStartTime"] = job.start_time
        if job.end_time:
            answer["ProcessingEndTime"] = job.end_time
        return answer

    def summary(self, job: Job) -> dict[str, Any]:
        item = {"ProcessingJobName": job.name, "ProcessingJobArn": job.arn, "CreationTime": job.creation_time,
                "LastModifiedTime": job.last_modified, "ProcessingJobStatus": job.status}
        if job.end_time:
            item["ProcessingEndTime"] = job.end_time
        for key, value in (("FailureReason", job.failure_reason), ("ExitMessage", job.exit_message)):
            if value:
                item[key] = value
        return item


def container_path(path: Any, where: str) -> PurePosixPath:
    if not isinstance(path, str) or not (PurePosixPath(path) == PROCESSING_ROOT
                                         or PROCESSING_ROOT in PurePosixPath(path).parents):
        raise AwsError("ValidationException", f"{where} must be under {PROCESSING_ROOT}, got {path!r}")
    if ".." in PurePosixPath(path).parts:
        raise AwsError("ValidationException", f"{where} must not contain '..', got {path!r}")
    return PurePosixPath(path)
