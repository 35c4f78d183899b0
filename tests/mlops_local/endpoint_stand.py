"""A stand-in with local endpoints for the data-capture and endpoint-health tests: one model (known
weights, tests/training/model_files.py) in S3, the model's execution role, and helpers to deploy and wait."""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Iterator

from mlops_local.gateway import LocalAws
from mlops_local.runtime import Runtime
from mlops_local.sagemaker.endpoints import Endpoints
from mlops_local.sagemaker.training_jobs import pack_model

from tests.conftest import ROOT
from tests.mlops_local.sagemaker_requests import create_role, execution_statements
from tests.training.model_files import write_model_dir

ACCOUNT = "123456789012"
IMAGE = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/mlops-training:c0ffee0"
ROLE_NAME = "mlops-endpoint"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/{ROLE_NAME}"
BUCKET = "endpoint-stand"
MODEL_DATA = f"s3://{BUCKET}/model/model.tar.gz"
# What templates/pipeline.yaml grants the model's role for its endpoint logs.
LOGS_STATEMENT = {"Sid": "EndpointLogs", "Effect": "Allow",
                  "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                  "Resource": f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/*"}


@contextlib.contextmanager
def endpoint_stand(tmp: Path, **options: Any) -> Iterator[tuple[LocalAws, Runtime, Endpoints]]:
    """(LocalAws, Runtime, Endpoints(runtime, **options)); the role may read and write BUCKET."""
    with LocalAws() as aws:
        runtime = Runtime(aws, tmp / "runtime", source_root=ROOT)
        runtime.images.add(IMAGE, ROOT / "src" / "training" / "Dockerfile")
        endpoints = Endpoints(runtime, **options)
        endpoints.log_poll = 0.1
        endpoints.register()
        create_role(aws.client("iam"), ROLE_NAME, execution_statements(BUCKET) + [LOGS_STATEMENT])
        try:
            s3 = aws.client("s3")
            s3.create_bucket(Bucket=BUCKET)
            tarball = pack_model(write_model_dir(tmp / "model"), tmp / "model.tar.gz")
            s3.upload_file(str(tarball), BUCKET, "model/model.tar.gz")
            yield aws, runtime, endpoints
        finally:
            endpoints.close()


def deploy(sm: Any, name: str, role: str = ROLE, capture: dict[str, Any] | None = None) -> None:
    """Model, endpoint config (with `capture` as its DataCaptureConfig) and endpoint, all named `name`."""
    sm.create_model(ModelName=name, ExecutionRoleArn=role,
                    PrimaryContainer={"Image": IMAGE, "ModelDataUrl": MODEL_DATA})
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": name, "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1, "InitialVariantWeight": 1.0}], **({"DataCaptureConfig": capture} if capture else {}))
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)


def wait_for(runtime: Runtime, probe: Any, what: str, timeout: float = 60.0) -> Any:
    """probe()'s first truthy answer, re-asked whenever runtime.changes moves (or every 0.2 s)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = runtime.changes.version
        answer = probe()
        if answer:
            return answer
        left = deadline - time.monotonic()
        assert left > 0, f"timed out after {timeout:.0f} s waiting for {what}"
        runtime.changes.wait(seen, min(left, 0.2))


def in_service(runtime: Runtime, sm: Any, name: str) -> dict[str, Any]:
    return wait_for(runtime, lambda: (lambda d: d if d["EndpointStatus"] == "InService" else None)(
        sm.describe_endpoint(EndpointName=name)), f"{name} InService")
