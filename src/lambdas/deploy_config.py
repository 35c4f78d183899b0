"""CreateDeployConfig: write the CloudFormation template configuration for templates/endpoint.yaml.

The action's single output artifact receives `endpoint-config.json`, in the format the CodePipeline
CloudFormation action reads as its TemplateConfiguration (`<OutputArtifact>::endpoint-config.json`):

    {"Parameters": {"EndpointName": "...", "Stage": "dev", "InstanceType": "ml.m5.large",
                    "InstanceCount": "1", "DataCaptureUri": "s3://...", "DataCapturePercent": "100",
                    "ExecutionId": "...", "ModelPackageArn": "..." (only when given)},
     "Tags": {"key": "value", ...} (only when given)}

Every parameter value is a string, as CloudFormation requires. Every key must be a parameter of the
endpoint template. When `model_package_arn` is not given here (RegisterModel runs in parallel with
this action), the CloudFormation action supplies it with
`ParameterOverrides: {"ModelPackageArn": "#{Registry.ModelPackageArn}"}`; ParameterOverrides win
over the configuration file. Exports `EndpointName`, `ConfigFile` and `TemplateConfiguration`.

UserParameters (JSON):
    endpoint_name         SageMaker endpoint name
    execution_id          "#{codepipeline.PipelineExecutionId}"
    data_capture_uri      s3:// prefix for captured requests and responses
    stage                 "dev" | "prod" (default "dev")
    instance_type         default "ml.m5.large"
    instance_count        whole number >= 1 (default 1)
    data_capture_percent  whole number 0-100 (default 100 in dev, 20 in prod)
    model_package_arn     optional
    tags                  optional {"key": "value"} stack tags
"""
from __future__ import annotations

import json
import logging
import re
from typing import Any, Mapping

from lambdas.errors import ConfigurationError
from lambdas.job import (
    AwsClient, Done, JobEvent, Param, parse_s3_uri, parse_user_parameters, run_job, write_artifact_files)

logger = logging.getLogger(__name__)

CONFIG_FILE = "endpoint-config.json"
STAGES = ("dev", "prod")
DEFAULT_CAPTURE_PERCENT = {"dev": 100, "prod": 20}
SCHEMA = {
    "endpoint_name": Param(str),
    "execution_id": Param(str),
    "data_capture_uri": Param(str),
    "stage": Param(str, required=False, default="dev"),
    "instance_type": Param(str, required=False, default="ml.m5.large"),
    "instance_count": Param((int, float), required=False, default=1),
    "data_capture_percent": Param((int, float), required=False, default=None),
    "model_package_arn": Param(str, required=False, default=None),
    "tags": Param(dict, required=False, default=None),
}
ENDPOINT_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
INSTANCE_TYPE = re.compile(r"ml\.[a-z0-9-]+\.[a-z0-9]+")
MODEL_PACKAGE_ARN = re.compile(r"arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]+:[0-9]{12}:model-package/[\S]{1,2048}")
MAX_TAGS = 50


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    return run_job(event, lambda job: write_deploy_config(job))


def write_deploy_config(job: JobEvent, *, s3: AwsClient = None) -> Done:
    params = parse_user_parameters(job.user_parameters, SCHEMA)
    config = template_configuration(params)
    artifact = job.output_artifact()
    body = json.dumps(config, indent=2, sort_keys=True) + "\n"
    write_artifact_files(job, artifact, {CONFIG_FILE: body}, s3_client=s3)
    p = config["Parameters"]
    logger.info("job %s: wrote %s for endpoint %s (%s, %s x %s) to artifact %s", job.job_id, CONFIG_FILE,
                p["EndpointName"], p["Stage"], p["InstanceCount"], p["InstanceType"], artifact.name)
    if p["Stage"] == "prod" and p["InstanceCount"] == "1":
        logger.warning("job %s: endpoint %s is prod with one instance; SageMaker spreads two or more "
                       "across Availability Zones", job.job_id, p["EndpointName"])
    return Done(f"Wrote {artifact.name}::{CONFIG_FILE} for endpoint {p['EndpointName']} "
                f"({p['Stage']}, {p['InstanceCount']} x {p['InstanceType']}, "
                f"capturing {p['DataCapturePercent']}% to {p['DataCaptureUri']})",
                {"EndpointName": p["EndpointName"], "ConfigFile": CONFIG_FILE,
                 "TemplateConfiguration": f"{artifact.name}::{CONFIG_FILE}"})


def template_configuration(params: Mapping[str, Any]) -> dict[str, Any]:
    """Validated UserParameters -> the template configuration document (all values strings)."""
    name = check_endpoint_name(params["endpoint_name"])
    stage = params["stage"]
    if stage not in STAGES:
        raise ConfigurationError(f"UserParameters 'stage' must be one of {list(STAGES)}, got {stage!r}")
    instance_type = params["instance_type"]
    if not INSTANCE_TYPE.fullmatch(instance_type):
        raise ConfigurationError(f"UserParameters 'instance_type' {instance_type!r} is not a SageMaker "
                                 "instance type such as 'ml.m5.large'")
    count = _whole("instance_count", params["instance_count"], 1, None)
    percent = params["data_capture_percent"]
    if percent is None:
        percent = DEFAULT_CAPTURE_PERCENT[stage]
    percent = _whole("data_capture_percent", percent, 0, 100)
    capture_uri = params["data_capture_uri"]
    parse_s3_uri(capture_uri, "UserParameters 'data_capture_uri'")
    execution_id = params["execution_id"]
    if not execution_id.strip():
        raise ConfigurationError("UserParameters 'execution_id' is empty; pass the pipeline execution id")

    parameters = {"EndpointName": name, "Stage": stage, "InstanceType": instance_type,
                  "InstanceCount": str(count), "DataCaptureUri": capture_uri,
                  "DataCapturePercent": str(percent), "ExecutionId": execution_id}
    arn = params["model_package_arn"]
    if arn is not None:
        if not MODEL_PACKAGE_ARN.fullmatch(arn):
            raise ConfigurationError(f"UserParameters 'model_package_arn' {arn!r} is not a SageMaker model "
                                     "package ARN (arn:<partition>:sagemaker:<region>:<account>:"
                                     "model-package/...)")
        parameters["ModelPackageArn"] = arn
    config: dict[str, Any] = {"Parameters": parameters}
    if params["tags"]:
        config["Tags"] = _tags(params["tags"])
    return config


def check_endpoint_name(name: str) -> str:
    if not ENDPOINT_NAME.fullmatch(name):
        raise ConfigurationError(f"UserParameters 'endpoint_name' {name!r} is not a SageMaker endpoint name: "
                                 "1-63 letters, digits and hyphens, starting and ending with a letter "
                                 "or digit")
    return name


def _whole(key: str, value: int | float, low: int, high: int | None) -> int:
    whole = not isinstance(value, float) or value.is_integer()
    if not whole or value < low or high is not None and value > high:
        bound = f"{low}-{high}" if high is not None else f">= {low}"
        raise ConfigurationError(f"UserParameters '{key}' must be a whole number {bound}, got {value!r}")
    return int(value)


def _tags(tags: Mapping[str, Any]) -> dict[str, str]:
    if len(tags) > MAX_TAGS:
        raise ConfigurationError(f"UserParameters 'tags' has {len(tags)} tags; "
                                 f"a stack takes at most {MAX_TAGS}")
    for key, value in tags.items():
        if not isinstance(value, str):
            raise ConfigurationError(f"UserParameters 'tags' value for {key!r} must be str, "
                                     f"got {type(value).__name__}")
        if not 1 <= len(key) <= 128 or len(value) > 256 or key.lower().startswith("aws:"):
            raise ConfigurationError(f"UserParameters 'tags' {key!r}: keys are 1-128 characters and may not "
                                     "start with 'aws:'; values at most 256 characters")
    return dict(tags)
