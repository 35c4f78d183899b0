"""SageMaker processing jobs that run: the job's ContainerEntrypoint as a local process.

In `<workdir>/sagemaker/processing/<name>/`, container paths under /opt/ml/processing/ map to
`processing/...` (SM_PROCESSING_BASE) and /opt/ml to `ml/` (SM_BASE_DIR, where a job writes
output/message). Inputs are staged before the run, outputs uploaded after success.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from mlops_local import processes, s3_staging
from mlops_local.gateway import AwsError, now
from mlops_local.runtime import python_command
from mlops_local.sagemaker.jobs import Job, JobFailure, SageMakerJobs, read_text, require, require_s3

PROCESSING_ROOT = PurePosixPath("/opt/ml/processing")
ML_ROOT = PurePosixPath("/opt/ml")


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

    def image_uri(self, request: dict[str, Any]) -> str:
        return str(request["AppSpecification"]["ImageUri"])

    def isolated(self, request: dict[str, Any]) -> bool:
        return bool((request.get("NetworkConfig") or {}).get("EnableNetworkIsolation"))

    def volume_key(self, request: dict[str, Any]) -> str | None:
        return (((request.get("ProcessingResources") or {}).get("ClusterConfig") or {})
                .get("VolumeKmsKeyId"))

    def prepare(self, job: Job) -> tuple[list[str], dict[str, str]]:
        request = job.request
        app = request["AppSpecification"]
        image = self._image(app["ImageUri"])
        entrypoint = app.get("ContainerEntrypoint")
        if not entrypoint:
            raise JobFailure(f"ClientError: the image {app['ImageUri']} runs from source here and has no "
                             "entry point of its own; give AppSpecification.ContainerEntrypoint")
        s3 = self.s3(job)
        for item in request.get("ProcessingInputs") or []:
            source = item["S3Input"]
            with self.staging(job, "download", source["S3Uri"]):
                found = s3_staging.download_prefix(s3, source["S3Uri"], self.local(job, source["LocalPath"]))
            if not found:
                raise JobFailure(f"ClientError: No objects found under S3 URL \"{source['S3Uri']}\" given in "
                                 f"input '{item['InputName']}'")
        for item in (request.get("ProcessingOutputConfig") or {}).get("Outputs") or []:
            self.local(job, item["S3Output"]["LocalPath"]).mkdir(parents=True, exist_ok=True)
        (job.base / "ml" / "output").mkdir(parents=True, exist_ok=True)
        argv = [*entrypoint, *(app.get("ContainerArguments") or [])]
        env = {"SM_PROCESSING_BASE": str(job.base / "processing"), "SM_BASE_DIR": str(job.base / "ml"),
               "PROCESSING_JOB_NAME": job.name, **image.environment(),
               **{str(k): str(v) for k, v in (request.get("Environment") or {}).items()}}
        return python_command([self._map_argument(job, a) for a in argv]), env

    def _running(self, job: Job) -> None:
        with self.lock:
            job.last_modified = now()
        self.runtime.changes.notify()

    def succeed(self, job: Job) -> None:
        s3 = self.s3(job)
        for item in (job.request.get("ProcessingOutputConfig") or {}).get("Outputs") or []:
            target = item["S3Output"]
            with self.staging(job, "upload", target["S3Uri"]):
                s3_staging.upload_dir(s3, self.local(job, target["LocalPath"]), target["S3Uri"])
        message = read_text(job.base / "ml" / "output" / "message")
        with self.lock:
            job.exit_message = message or None

    def failure_reason(self, job: Job, code: int) -> str:
        message = read_text(job.base / "ml" / "output" / "message")
        with self.lock:
            job.exit_message = message or None
        killed = processes.signal_name(code) if code < 0 else None
        cause = message if message and not killed else self.cause(job, code, "processing job's process")
        return self.failure(job, cause, code)

    def container_paths(self, job: Job) -> list[tuple[str, str]]:
        return [(str(job.base / "processing"), str(PROCESSING_ROOT)), (str(job.base / "ml"), str(ML_ROOT))]

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
    """A LocalPath under /opt/ml/processing, or the ValidationException that names `where`."""
    if not isinstance(path, str) or not (PurePosixPath(path) == PROCESSING_ROOT
                                         or PROCESSING_ROOT in PurePosixPath(path).parents):
        raise AwsError("ValidationException", f"{where} must be under {PROCESSING_ROOT}, got {path!r}")
    if ".." in PurePosixPath(path).parts:
        raise AwsError("ValidationException", f"{where} must not contain '..', got {path!r}")
    return PurePosixPath(path)
