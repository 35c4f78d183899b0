"""Endpoint test: send the ETL's endpoint-test records to a live endpoint and judge the answers.

The core is transport-free: it takes an `invoke(body, content_type) -> bytes` callable, so the
same checks run against a SageMaker endpoint (sagemaker-runtime InvokeEndpoint) and against a
local model server. It passes when every record gets a finite prediction (one answer line per
record), a malformed record is refused (the endpoint validates its input), and, when a bound is
given, the sample RMSE is within it.

`handler` is the TestEndpoint CodePipeline job worker (`verify_endpoint`): it waits, with
continuation tokens, until the endpoint is InService, then sends the sample in batches and bounds
the sample RMSE by (1 + tolerance) x the evaluation RMSE, to catch training/serving skew.
Exports `Rows`, `SampleRmse`, `P50Ms`, `P99Ms` (latency per request, milliseconds).

UserParameters (JSON):
    endpoint_name    SageMaker endpoint name
    test_data_uri    s3:// prefix (or key) of the ETL's endpoint-test CSV (header, inputs + target)
    features_uri     s3:// key of the ETL's features.json; its "target" names the column to
                     compare with, so no column name is configured outside the dataset config
    evaluation_rmse  number, e.g. "#{Evaluation.Rmse}" (a string is accepted)
    tolerance        number >= 0 (default 0.5: sample RMSE <= 1.5 x evaluation RMSE)
    batch_size       records a request, 1-1000 (default 50)
    max_seconds      how long to wait for InService (default 1800)
    endpoint_config_name  optional; the endpoint config the deploy stack declares (its output): the test
                     fails unless the endpoint is InService on it, so an update SageMaker rolled back
                     (InService again on the previous config) is never tested as the new model
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from lambdas.deploy_config import check_endpoint_name
from lambdas.errors import ConfigurationError, JobFailed
from lambdas.job import (
    AwsClient, Done, InProgress, JobEvent, Param, client, parse_s3_uri, parse_user_parameters, run_job)

logger = logging.getLogger(__name__)

Invoke = Callable[[bytes, str], bytes]
Clock = Callable[[], float]


class EndpointRejected(Exception):
    """The endpoint refused a request (a 4xx); raised by an `invoke` callable."""


class BadTestData(ConfigurationError, ValueError):
    """The endpoint-test sample is missing or unreadable (a ValueError for callers outside a job)."""


@dataclass
class EndpointTestResult:
    passed: bool
    rows: int
    rmse: float | None
    p50_ms: float | None
    p99_ms: float | None
    problems: list[str] = field(default_factory=list)
    requests: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "rows": self.rows, "rmse": self.rmse,
                "p50_ms": self.p50_ms, "p99_ms": self.p99_ms, "problems": self.problems}


def read_records(text: str, target: str) -> tuple[list[str], list[list[str]], list[float]]:
    """endpoint-test CSV (header, raw columns + target) -> (input columns, rows, true targets)."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header or target not in header:
        raise BadTestData(f"endpoint-test data has no '{target}' column (header: {header})")
    t = header.index(target)
    columns = [c for i, c in enumerate(header) if i != t]
    rows, truth = [], []
    for number, line in enumerate(reader, start=2):
        if not line:
            continue
        if len(line) != len(header):
            raise BadTestData(f"endpoint-test data line {number} has {len(line)} fields, "
                              f"the header has {len(header)}")
        try:
            truth.append(float(line[t]))
        except ValueError:
            raise BadTestData(f"endpoint-test data line {number}: '{target}' is not a number: "
                              f"{line[t]!r}") from None
        rows.append([v for i, v in enumerate(line) if i != t])
    if not rows:
        raise BadTestData("endpoint-test data has a header but no records")
    return columns, rows, truth


def to_csv(rows: Sequence[Sequence[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")


def run_endpoint_test(rows: Sequence[Sequence[str]], truth: Sequence[float], invoke: Invoke,
                      max_rmse: float | None = None, batch_size: int = 1,
                      clock: Clock = time.perf_counter) -> EndpointTestResult:
    """Records in batches (one CSV request each, latency per request as a client sees it), then a
    malformed-input probe. Each batch must come back with one finite number per record."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    problems: list[str] = []
    latencies, errors = [], []
    requests = 0
    for start in range(0, len(rows), batch_size):
        batch, actual = rows[start:start + batch_size], truth[start:start + batch_size]
        where = f"record {start}" if len(batch) == 1 else f"records {start}-{start + len(batch) - 1}"
        requests += 1
        began = clock()
        try:
            answer = invoke(to_csv(batch), "text/csv")
        except Exception as exc:  # any transport or endpoint error is a finding, not a crash
            problems.append(f"{where}: {exc}")
            continue
        latencies.append((clock() - began) * 1000.0)
        predictions, problem = _predictions(answer, len(batch))
        if problem:
            problems.append(f"{where}: {problem}")
            continue
        for i, (predicted, expected) in enumerate(zip(predictions, actual)):
            if not math.isfinite(predicted):
                problems.append(f"record {start + i}: prediction is not finite ({predicted})")
                continue
            errors.append(predicted - expected)

    try:
        invoke(to_csv([["not-a-record"]]), "text/csv")
        problems.append("a malformed record was accepted; the endpoint must answer 4xx")
    except EndpointRejected:
        pass
    except Exception as exc:
        problems.append(f"a malformed record did not get a 4xx: {exc}")

    rmse = math.sqrt(sum(e * e for e in errors) / len(errors)) if errors else None
    if max_rmse is not None and rmse is not None and rmse > max_rmse:
        problems.append(f"sample RMSE {rmse:.2f} is above the bound {max_rmse:g}")
    return EndpointTestResult(
        passed=not problems and len(errors) == len(rows),
        rows=len(rows), rmse=rmse,
        p50_ms=_percentile(latencies, 50), p99_ms=_percentile(latencies, 99),
        problems=problems[:20], requests=requests,
    )


def _predictions(answer: bytes, expected: int) -> tuple[list[float], str | None]:
    """One number a line (text/csv), exactly `expected` of them."""
    try:
        lines = [line.strip() for line in answer.decode("utf-8").splitlines() if line.strip()]
        values = [float(line) for line in lines]
    except (ValueError, UnicodeDecodeError):
        return [], f"answer is not a number a line: {answer[:80]!r}"
    if not values:
        return [], f"answer is not a number: {answer[:80]!r}"
    if len(values) != expected:
        return [], f"got {len(values)} predictions for {expected} records"
    return values, None


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(k), math.ceil(k)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


# -- AWS side ---------------------------------------------------------------------------------
def sagemaker_invoker(endpoint_name: str, runtime_client: AwsClient) -> Invoke:
    def invoke(body: bytes, content_type: str) -> bytes:
        try:
            response = runtime_client.invoke_endpoint(
                EndpointName=endpoint_name, Body=body, ContentType=content_type, Accept="text/csv")
        except runtime_client.exceptions.ModelError as exc:
            status = exc.response.get("OriginalStatusCode", 500)
            if 400 <= int(status) < 500:
                raise EndpointRejected(f"HTTP {status}: {exc.response.get('OriginalMessage', exc)}") from exc
            raise
        answer: bytes = response["Body"].read()
        return answer
    return invoke


def read_s3_csv(uri: str, s3_client: AwsClient) -> str:
    """The CSV at an s3:// key, or the first *.csv under an s3:// prefix (Spark part files)."""
    if not uri.startswith("s3://"):
        raise BadTestData(f"test_data_s3_uri must start with s3://, got {uri!r}")
    bucket, key = parse_s3_uri(uri, "test_data_s3_uri")
    if not key.endswith(".csv"):
        listing = s3_client.list_objects_v2(Bucket=bucket, Prefix=key.rstrip("/") + "/")
        keys = sorted(o["Key"] for o in listing.get("Contents", []) if o["Key"].endswith(".csv"))
        if not keys:
            raise BadTestData(f"no .csv object under {uri}")
        key = keys[0]
    body: bytes = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body.decode("utf-8")


def read_target(features_uri: str, s3_client: AwsClient) -> str:
    """The target column named by the ETL's fitted transform (features.json)."""
    bucket, key = parse_s3_uri(features_uri, "features_uri")
    try:
        body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
        target = json.loads(body)["target"]
    except s3_client.exceptions.NoSuchKey:
        raise BadTestData(f"no features.json at {features_uri}; did the ETL of this execution run?") from None
    except (ValueError, KeyError, TypeError):
        raise BadTestData(f"{features_uri} is not the ETL's features.json (no 'target')") from None
    if not isinstance(target, str) or not target:
        raise BadTestData(f"{features_uri}: 'target' must be a column name, got {target!r}")
    return target


# Direct use, outside a pipeline: {"endpoint_name", "test_data_s3_uri", "target", "max_rmse"?,
# "batch_size"?} -> EndpointTestResult.
REQUIRED_KEYS = ("endpoint_name", "test_data_s3_uri", "target")


def check_endpoint(event: Mapping[str, Any], s3_client: AwsClient = None, runtime_client: AwsClient = None,
                   clock: Clock = time.perf_counter) -> EndpointTestResult:
    missing = [k for k in REQUIRED_KEYS if not event.get(k)]
    if missing:
        raise ValueError(f"endpoint test event is missing {missing}; required: {list(REQUIRED_KEYS)}")
    s3_client = s3_client or client("s3")
    runtime_client = runtime_client or client("sagemaker-runtime")
    _, rows, truth = read_records(read_s3_csv(event["test_data_s3_uri"], s3_client), event["target"])
    invoke = sagemaker_invoker(event["endpoint_name"], runtime_client)
    return run_endpoint_test(rows, truth, invoke, max_rmse=event.get("max_rmse"),
                             batch_size=event.get("batch_size", 1), clock=clock)


# -- the TestEndpoint job worker --------------------------------------------------------------
SCHEMA = {
    "endpoint_name": Param(str),
    "test_data_uri": Param(str),
    "features_uri": Param(str),
    "evaluation_rmse": Param((int, float)),
    "tolerance": Param((int, float), required=False, default=0.5),
    "batch_size": Param((int, float), required=False, default=50),
    "max_seconds": Param((int, float), required=False, default=1800),
    "endpoint_config_name": Param(str, required=False, default=""),
}
MAX_BATCH = 1000  # rows a request; InvokeEndpoint takes at most 6 MB
WAITING = ("Creating", "Updating", "SystemUpdating")


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    return run_job(event, lambda job: verify_endpoint(job))


def verify_endpoint(job: JobEvent, *, sagemaker: AwsClient = None, s3: AwsClient = None,
                    runtime: AwsClient = None, now: Clock = time.time,
                    clock: Clock = time.perf_counter) -> Done | InProgress:
    """Wait for InService (continuation token = start time), then test the endpoint in batches."""
    params = parse_user_parameters(job.user_parameters, SCHEMA)
    name = check_endpoint_name(params["endpoint_name"])
    uri = params["test_data_uri"]
    parse_s3_uri(uri, "UserParameters 'test_data_uri'")
    parse_s3_uri(params["features_uri"], "UserParameters 'features_uri'")
    evaluation_rmse = _at_least("evaluation_rmse", params["evaluation_rmse"], 0)
    tolerance = _at_least("tolerance", params["tolerance"], 0)
    max_seconds = _at_least("max_seconds", params["max_seconds"], 1)
    batch_size = params["batch_size"]
    if not (math.isfinite(batch_size) and float(batch_size).is_integer() and 1 <= batch_size <= MAX_BATCH):
        raise ConfigurationError(f"UserParameters 'batch_size' must be a whole number 1-{MAX_BATCH}, "
                                 f"got {batch_size!r}")
    batch_size = int(batch_size)
    state = job.state() or {}
    started = float(state.get("started", now()))

    status, reason, serving = _endpoint_status(sagemaker or client("sagemaker"), name)
    waited = now() - started
    logger.info("job %s: endpoint %s is %s (%.0f s since the first check)", job.job_id, name, status, waited)
    if status in WAITING:
        if waited > max_seconds:
            raise JobFailed(f"endpoint '{name}' is still {status} after {waited:.0f} s (max_seconds "
                            f"{max_seconds:g}); see its events in the SageMaker console and the logs in "
                            f"CloudWatch /aws/sagemaker/Endpoints/{name}")
        return InProgress(f"Endpoint {name} is {status} ({waited:.0f} s); waiting for InService",
                          {"started": started})
    if status != "InService":
        raise JobFailed(f"endpoint '{name}' is {status}: {reason or 'SageMaker gave no FailureReason'}; "
                        f"see CloudWatch /aws/sagemaker/Endpoints/{name} and the DeployEndpoint stack events")
    expected = params["endpoint_config_name"]
    if expected and serving != expected:
        # After a rolled-back update SageMaker shows the endpoint InService on its previous config (the
        # FailureReason may be empty: hashicorp/terraform-provider-aws#48997), so InService alone does not say
        # the new model serves.
        raise JobFailed(f"endpoint '{name}' is InService on endpoint config '{serving}', not on '{expected}' "
                        f"that the deploy stack declares: the update did not take effect (rolled back?): "
                        f"{reason or 'SageMaker gave no FailureReason'}; see the DeployEndpoint stack events")

    s3 = s3 or client("s3")
    target = read_target(params["features_uri"], s3)
    _, rows, truth = read_records(read_s3_csv(uri, s3), target)
    max_rmse = (1 + tolerance) * evaluation_rmse
    logger.info("job %s: endpoint %s: sending %d rows from %s in batches of %d", job.job_id, name, len(rows),
                uri, batch_size)
    result = run_endpoint_test(rows, truth, sagemaker_invoker(name, runtime or client("sagemaker-runtime")),
                               max_rmse=max_rmse, batch_size=batch_size, clock=clock)
    bound = (f"sample RMSE bound {max_rmse:.2f} = (1 + tolerance {tolerance:g}) x evaluation RMSE "
             f"{evaluation_rmse:g}")
    if not result.passed:
        shown = "; ".join(result.problems[:5]) or "not every record got a prediction"
        more = f" (and {len(result.problems) - 5} more)" if len(result.problems) > 5 else ""
        rmse = f"{result.rmse:.2f}" if result.rmse is not None else "n/a"
        skew = result.rmse is not None and result.rmse > max_rmse
        hint = ("; a higher RMSE on the endpoint than in evaluation points to training/serving skew"
                if skew else "")
        raise JobFailed(f"endpoint test of '{name}' failed: {shown}{more}. {result.rows} rows from {uri}, "
                        f"sample RMSE {rmse}, {bound}{hint}")
    assert result.rmse is not None and result.p50_ms is not None and result.p99_ms is not None
    logger.info("job %s: endpoint %s passed: %d rows, RMSE %.4f, p50 %.2f ms, p99 %.2f ms", job.job_id, name,
                result.rows, result.rmse, result.p50_ms, result.p99_ms)
    return Done(f"Endpoint {name} passed: {result.rows} rows in {result.requests} requests of up to "
                f"{batch_size}; sample RMSE {result.rmse:.2f} within the {bound}; latency per request "
                f"p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms",
                {"Rows": str(result.rows), "SampleRmse": f"{result.rmse:.4f}",
                 "P50Ms": f"{result.p50_ms:.2f}", "P99Ms": f"{result.p99_ms:.2f}"})


def _endpoint_status(sagemaker: AwsClient, name: str) -> tuple[str, str, str]:
    """(EndpointStatus, FailureReason or "", EndpointConfigName)."""
    from botocore.exceptions import ClientError

    try:
        described = sagemaker.describe_endpoint(EndpointName=name)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") == "ValidationException" and "Could not find" in error.get("Message", ""):
            raise ConfigurationError(f"endpoint '{name}' does not exist; check that DeployEndpoint "
                                     "created it and that 'endpoint_name' matches the stack's "
                                     "EndpointName") from None
        raise
    return described["EndpointStatus"], described.get("FailureReason", ""), described.get("EndpointConfigName", "")


def _at_least(key: str, value: float, low: float) -> float:
    if not math.isfinite(value) or value < low:
        raise ConfigurationError(f"UserParameters '{key}' must be a number >= {low:g}, got {value!r}")
    return value
