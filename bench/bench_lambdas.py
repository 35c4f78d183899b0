"""Job-worker Lambdas: deployment zip size, cold import time per handler module, AWS calls per monitor poll.

- Zip: built as scripts/deploy.sh builds it (every src/lambdas/**/*.py under `lambdas/`, no
  __pycache__ or bin/, fixed timestamps, deflate): the object `aws cloudformation deploy` points
  the functions at.
- Cold import: each handler module named in templates/pipeline.yaml (Handler:) and the endpoint-test
  image's CMD, imported in a fresh interpreter from the extracted zip (boto3 comes from this venv,
  as the Lambda runtime provides it). Wall time of `python -c "import <module>"` minus that of
  `python -c pass`, median of the pairs; the in-process time of the import statement alone is
  kept beside it as a check. Whether the import pulled in boto3/botocore is recorded too: the
  handlers build clients lazily, so it should not.
- Calls per poll: one InProgress poll of each monitor through `run_job` (the handler's boundary),
  with botocore-Stubber'd clients (requests and responses are validated against the service
  models) and an event hook that counts every API call. The count includes the CodePipeline
  PutJobSuccessResult (with its continuation token) that ends the invocation.
"""
from __future__ import annotations

import io
import json
import re
import statistics
import sys
import tempfile
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from bench.common import ROOT, main, python, spread_of

NAME = "lambdas"
SRC = ROOT / "src"
PACKAGE = "lambdas"
TARGET_ZIP_KB = 50
TARGET_IMPORT_MS = 150
TARGET_CALLS = 2
SKIP_DIRS = {"__pycache__", "bin"}  # deploy.sh's zip_package skips these

IMPORT_PROBE = """
import json, sys, time
started = time.perf_counter()
import {module}
seconds = time.perf_counter() - started
print(json.dumps({{"seconds": seconds, "boto3": "boto3" in sys.modules, "botocore": "botocore" in sys.modules}}))
"""


# -- the zip ------------------------------------------------------------------------------------
def lambda_zip(src: Path = SRC, package: str = PACKAGE) -> tuple[bytes, list[str]]:
    """The deployment zip, byte for byte as deploy.sh's zip_package writes it."""
    files = sorted(p for p in (src / package).rglob("*.py")
                   if p.is_file() and not SKIP_DIRS.intersection(p.relative_to(src).parts[1:-1]))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(src).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue(), [p.relative_to(src).as_posix() for p in files]


def handler_modules() -> list[str]:
    """Modules the deployed functions import: the template's Handler values and the image's CMD."""
    template = (ROOT / "templates" / "pipeline.yaml").read_text(encoding="utf-8")
    dockerfile = (SRC / PACKAGE / "Dockerfile").read_text(encoding="utf-8")
    handlers = re.findall(r"^\s*Handler:\s*(lambdas\.[\w.]+)", template, flags=re.M)
    handlers += re.findall(r'^CMD\s+\["(lambdas\.[\w.]+)"\]', dockerfile, flags=re.M)
    return sorted({h.rpartition(".")[0] for h in handlers})


# -- cold imports -------------------------------------------------------------------------------
def _wall(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    import time

    started = time.perf_counter()
    done = python(*args, env=env, timeout=120)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"python {' '.join(args)} failed: {done.stderr[-2000:]}")
    return seconds, done.stdout


def cold_imports(modules: list[str], package_root: Path, repeats: int) -> dict[str, dict[str, Any]]:
    """Per module: median (import wall - bare interpreter wall) and the in-process import time, in ms."""
    # Only the extracted zip and the venv's site-packages (boto3) are importable, not src/.
    env = {"PYTHONPATH": str(package_root), "PYTHONDONTWRITEBYTECODE": "1"}
    results: dict[str, dict[str, Any]] = {}
    for module in [*modules, "boto3"]:
        differences, inside, flags = [], [], {}
        for _ in range(repeats):
            bare, _ = _wall(["-c", "pass"], env)  # paired: the interpreter's own start, measured each time
            total, out = _wall(["-c", IMPORT_PROBE.format(module=module)], env)
            probe = json.loads(out.strip().splitlines()[-1])
            differences.append(total - bare)
            inside.append(probe["seconds"])
            flags = {"boto3": probe["boto3"], "botocore": probe["botocore"]}
        results[module] = {"ms": statistics.median(differences) * 1000,
                           "in_process_ms": statistics.median(inside) * 1000,
                           "samples_ms": [round(d * 1000, 1) for d in differences], **flags}
    return results


# -- API calls per monitor poll -----------------------------------------------------------------
def _client(service: str):
    import boto3

    return boto3.client(service, region_name="us-east-1", aws_access_key_id="bench",
                        aws_secret_access_key="bench", aws_session_token="bench")


class CallCounter:
    """Counts every API call made through the clients it is attached to, by operation name."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def attach(self, client) -> Any:
        client.meta.events.register("before-parameter-build.*.*", self._count)
        return client

    def _count(self, model, **_: Any) -> None:
        self.calls.append(f"{model.service_model.service_name}:{model.name}")


def _event(job_id: str, user_parameters: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """A CodePipeline job event on its second invocation (it carries the continuation token)."""
    return {"CodePipeline.job": {"id": job_id, "accountId": "123456789012", "data": {
        "actionConfiguration": {"configuration": {"FunctionName": "bench",
                                                  "UserParameters": json.dumps(user_parameters)}},
        "inputArtifacts": [], "outputArtifacts": [],
        "continuationToken": json.dumps(state, separators=(",", ":"))}}}


def _poll(service: str, operation: str, request: dict[str, Any], response: dict[str, Any],
          event: dict[str, Any], work: Callable[[Any, Any], Any]) -> dict[str, Any]:
    """Drive one InProgress poll through run_job; return the calls made and what was reported."""
    from botocore.stub import ANY, Stubber

    from lambdas.job import run_job

    counter = CallCounter()
    job_client = counter.attach(_client(service))
    codepipeline = counter.attach(_client("codepipeline"))
    job_id = event["CodePipeline.job"]["id"]
    with Stubber(job_client) as jobs, Stubber(codepipeline) as pipeline:
        jobs.add_response(operation, response, request)
        pipeline.add_response("put_job_success_result", {},
                              {"jobId": job_id, "continuationToken": ANY, "executionDetails": ANY})
        reported = run_job(event, lambda job: work(job, job_client), codepipeline=codepipeline)
        jobs.assert_no_pending_responses()
        pipeline.assert_no_pending_responses()
    if reported.get("result") != "continue":
        raise RuntimeError(f"{operation}: the poll did not end InProgress: {reported}")
    return {"calls": counter.calls, "summary": reported["summary"]}


def monitor_polls() -> dict[str, dict[str, Any]]:
    from lambdas import endpoint_test, evaluation, glue, training

    now = datetime.now(timezone.utc)
    started = now - timedelta(seconds=30)
    job = "mlops-train-00000000-0000-0000-0000-000000000000"
    processing = "mlops-evaluate-00000000-0000-0000-0000-000000000000"
    role = "arn:aws:iam::123456789012:role/bench"
    polls = {}
    polls["lambdas.glue.monitor"] = _poll(
        "glue", "get_job_run", {"JobName": "mlops-etl", "RunId": "jr_1"},
        {"JobRun": {"Id": "jr_1", "JobName": "mlops-etl", "JobRunState": "RUNNING", "StartedOn": started}},
        _event("00000000-0000-0000-0000-000000000001",
               {"glue_job_name": "mlops-etl", "job_run_id": "jr_1", "output_uri": "s3://bench/etl/",
                "max_seconds": 3600}, {"glue_job_name": "mlops-etl", "job_run_id": "jr_1"}),
        lambda j, c: glue.monitor(j, glue=c))
    polls["lambdas.training.monitor"] = _poll(
        "sagemaker", "describe_training_job", {"TrainingJobName": job},
        {"TrainingJobName": job, "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{job}",
         "ModelArtifacts": {"S3ModelArtifacts": ""}, "TrainingJobStatus": "InProgress",
         "SecondaryStatus": "Training", "AlgorithmSpecification": {"TrainingInputMode": "File"},
         "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 10},
         "StoppingCondition": {"MaxRuntimeInSeconds": 3600}, "CreationTime": started,
         "TrainingStartTime": started, "RoleArn": role},
        _event("00000000-0000-0000-0000-000000000002", {"training_job_name": job, "max_seconds": 3600},
               {"training_job_name": job}),
        lambda j, c: training.monitor(j, sagemaker=c))
    polls["lambdas.evaluation.monitor"] = _poll(
        "sagemaker", "describe_processing_job", {"ProcessingJobName": processing},
        {"ProcessingJobName": processing, "ProcessingJobStatus": "InProgress", "CreationTime": started,
         "ProcessingStartTime": started, "RoleArn": role,
         "ProcessingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:processing-job/{processing}",
         "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large",
                                                   "VolumeSizeInGB": 10}},
         "AppSpecification": {"ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/model:1"}},
        _event("00000000-0000-0000-0000-000000000003",
               {"processing_job_name": processing, "evaluation_uri": "s3://bench/evaluation/evaluation.json",
                "threshold": 540, "model_package_group": "mlops-models",
                "image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/model:1",
                "model_data_uri": "s3://bench/model.tar.gz", "execution_id": "bench", "max_seconds": 3600},
               {"processing_job_name": processing}),
        lambda j, c: evaluation.monitor(j, sagemaker=c))
    polls["lambdas.endpoint_test.verify_endpoint"] = _poll(
        "sagemaker", "describe_endpoint", {"EndpointName": "mlops-endpoint"},
        {"EndpointName": "mlops-endpoint", "EndpointStatus": "Creating", "CreationTime": started,
         "LastModifiedTime": started,
         "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/mlops-endpoint"},
        _event("00000000-0000-0000-0000-000000000004",
               {"endpoint_name": "mlops-endpoint", "test_data_uri": "s3://bench/endpoint-test/",
                "features_uri": "s3://bench/features.json", "evaluation_rmse": 535.0},
               {"started": started.timestamp()}),
        lambda j, c: endpoint_test.verify_endpoint(j, sagemaker=c))
    return polls


# -- the benchmark ------------------------------------------------------------------------------
def run(size: str) -> dict[str, Any]:
    repeats = 5 if size == "full" else 1
    body, files = lambda_zip()
    modules = handler_modules()
    with tempfile.TemporaryDirectory(prefix="bench-lambdas-") as tmp:
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            archive.extractall(tmp)
        imports = cold_imports(modules, Path(tmp), repeats)
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))
    polls = monitor_polls()

    kb = len(body) / 1024
    rows: list[dict[str, Any]] = [
        {"metric": "deployment zip (lambdas/*.py, as deploy.sh builds it)", "value": round(kb, 1), "unit": "KB",
         "target": f"<= {TARGET_ZIP_KB} KB", "met": kb <= TARGET_ZIP_KB,
         "note": f"{len(files)} files, {sum((SRC / f).stat().st_size for f in files) / 1024:.0f} KB uncompressed"},
    ]
    for module in modules:
        result = imports[module]
        rows.append({"metric": f"cold import {module}", "value": round(result["ms"], 1), "unit": "ms",
                     "target": f"<= {TARGET_IMPORT_MS} ms", "met": result["ms"] <= TARGET_IMPORT_MS,
                     "note": f"fresh interpreter minus `python -c pass`, median of {repeats}; "
                             f"{result['in_process_ms']:.1f} ms in-process",
                     "spread": spread_of(result["samples_ms"])})  # the paired differences behind the median
    eager = [m for m in modules if imports[m]["boto3"] or imports[m]["botocore"]]
    rows.append({"metric": "handler modules importing boto3/botocore at import", "value": len(eager),
                 "unit": f"of {len(modules)}", "target": "0", "met": not eager,
                 "note": ", ".join(eager) if eager else
                 f"clients are built on first use; boto3's own import is {imports['boto3']['ms']:.0f} ms"})
    for function, poll in polls.items():
        count = len(poll["calls"])
        rows.append({"metric": f"AWS calls per InProgress poll: {function}", "value": count, "unit": "calls",
                     "target": f"<= {TARGET_CALLS}", "met": count <= TARGET_CALLS,
                     "note": " + ".join(c.split(":", 1)[1] for c in poll["calls"]) + " (result call included)"})
    return {
        "title": "Job-worker Lambdas: package size, cold import, AWS calls per poll",
        "rows": rows,
        "details": {
            "zip": {"bytes": len(body), "files": files},
            "imports": {m: {k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()}
                        for m, r in imports.items()},
            "import_method": "wall(python -c 'import m') - wall(python -c pass), paired per repeat, median; "
                             "PYTHONPATH = the extracted zip only; in_process_ms = perf_counter around the "
                             "import statement",
            "polls": polls,
            "poll_method": "run_job(event with continuation token, monitor with Stubber'd clients); every API "
                           "call counted by a before-parameter-build hook; the PutJobSuccessResult that "
                           "carries the continuation token is included",
            "repeats": repeats,
        },
    }


if __name__ == "__main__":
    sys.exit(main(NAME, run))
