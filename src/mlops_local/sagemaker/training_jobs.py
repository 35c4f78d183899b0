"""SageMaker training jobs that run: the image's `train` program as a local process.

A job's folder `<workdir>/sagemaker/training/<name>/` is laid out as /opt/ml:
input/data/<channel>/ (each channel's S3Prefix, keys relative to the prefix),
input/config/{hyperparameters,inputdataconfig,resourceconfig}.json, model/, output/failure and
train.log. The program runs with SM_BASE_DIR and the SM_* variables; on success model/ is packed
into `<S3OutputPath>/<name>/output/model.tar.gz`.
"""
from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path
from typing import Any

from mlops_local import processes, s3_staging
from mlops_local.gateway import AwsError, now
from mlops_local.runtime import python_command
from mlops_local.sagemaker.jobs import Job, JobFailure, SageMakerJobs, read_text, require, require_s3


def pack_model(model_dir: Path, tarball: Path) -> Path:
    """model.tar.gz as SageMaker uploads it: the model dir's files at the archive root."""
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, "w:gz") as tar:
        for path in sorted(model_dir.iterdir()):
            tar.add(path, arcname=path.name)
    return tarball


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

    def image_uri(self, request: dict[str, Any]) -> str:
        return str(request["AlgorithmSpecification"]["TrainingImage"])

    def isolated(self, request: dict[str, Any]) -> bool:
        return bool(request.get("EnableNetworkIsolation"))

    def volume_key(self, request: dict[str, Any]) -> str | None:
        return (request.get("ResourceConfig") or {}).get("VolumeKmsKeyId")

    def prepare(self, job: Job) -> tuple[list[str], dict[str, str]]:
        request = job.request
        image = self._image(self.image_uri(request))
        try:
            argv = image.command("train")
        except KeyError as exc:
            raise JobFailure(f"ClientError: {exc.args[0]}") from None
        self._progress(job, "Downloading", "Downloading input data")
        s3 = self.s3(job)
        data = job.base / "input" / "data"
        channels: dict[str, str] = {}
        for channel in request.get("InputDataConfig") or []:
            name, uri = channel["ChannelName"], channel["DataSource"]["S3DataSource"]["S3Uri"]
            folder = data / name
            with self.staging(job, "download", uri):
                found = s3_staging.download_prefix(s3, uri, folder)
            if not found:
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
               **image.environment(),
               **{str(k): str(v) for k, v in (request.get("Environment") or {}).items()}}
        return python_command(argv), env

    def succeed(self, job: Job) -> None:
        s3 = self.s3(job)
        output = f"{job.request['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{job.name}/output"
        tarball = pack_model(job.base / "model", job.base / "upload" / "model.tar.gz")
        with self.staging(job, "upload", output):
            s3_staging.upload_file(s3, tarball, f"{output}/model.tar.gz")
            output_data = job.base / "output" / "data"
            if any(output_data.iterdir()):
                pack_model(output_data, job.base / "upload" / "output.tar.gz")
                s3_staging.upload_file(s3, job.base / "upload" / "output.tar.gz", f"{output}/output.tar.gz")
        with self.lock:
            job.model_artifacts = f"{output}/model.tar.gz"
            job.metrics = self._metrics(job)

    def failure_reason(self, job: Job, code: int) -> str:
        """The failure file as written (SageMaker's FailureReason), unless a signal ended the trainer: then it
        says so, whatever the file holds; else the log's root cause."""
        written = read_text(job.base / "output" / "failure")
        killed = processes.signal_name(code) if code < 0 else None
        if written and not killed:
            return written[:1024]
        return self.failure(job, self.cause(job, code, "training process"), code)

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
        for key in ("Environment", "VpcConfig"):  # as requested; AWS omits what was not given
            if request.get(key):
                answer[key] = request[key]
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
