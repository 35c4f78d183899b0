"""Endpoint test: send the ETL's endpoint-test records to a live endpoint and judge the answers.

The core is transport-free: it takes an `invoke(body, content_type) -> bytes` callable, so the
same checks run against a SageMaker endpoint (sagemaker-runtime InvokeEndpoint) and against a
local model server. It passes when every record gets a finite prediction, a malformed record is
refused (the endpoint validates its input), and, when a bound is given, the sample RMSE is
within it.
"""
from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

Invoke = Callable[[bytes, str], bytes]


class EndpointRejected(Exception):
    """The endpoint refused a request (a 4xx); raised by an `invoke` callable."""


@dataclass
class EndpointTestResult:
    passed: bool
    rows: int
    rmse: float | None
    p50_ms: float | None
    p99_ms: float | None
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"passed": self.passed, "rows": self.rows, "rmse": self.rmse,
                "p50_ms": self.p50_ms, "p99_ms": self.p99_ms, "problems": self.problems}


def read_records(text: str, target: str) -> tuple[list[str], list[list[str]], list[float]]:
    """endpoint-test CSV (header, raw columns + target) -> (input columns, rows, true targets)."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header or target not in header:
        raise ValueError(f"endpoint-test data has no '{target}' column (header: {header})")
    t = header.index(target)
    columns = [c for i, c in enumerate(header) if i != t]
    rows, truth = [], []
    for line in reader:
        if line:
            truth.append(float(line[t]))
            rows.append([v for i, v in enumerate(line) if i != t])
    if not rows:
        raise ValueError("endpoint-test data has a header but no records")
    return columns, rows, truth


def to_csv(rows: Sequence[Sequence[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")


def run_endpoint_test(rows: Sequence[Sequence[str]], truth: Sequence[float], invoke: Invoke,
                      max_rmse: float | None = None) -> EndpointTestResult:
    """One request per record (latency as a client sees it), then a malformed-input probe."""
    problems: list[str] = []
    latencies, errors = [], []
    for i, (row, actual) in enumerate(zip(rows, truth)):
        started = time.perf_counter()
        try:
            answer = invoke(to_csv([row]), "text/csv")
        except Exception as exc:  # any transport or endpoint error is a finding, not a crash
            problems.append(f"record {i}: {exc}")
            continue
        latencies.append((time.perf_counter() - started) * 1000.0)
        try:
            predicted = float(answer.decode("utf-8").strip().splitlines()[0])
        except (ValueError, IndexError, UnicodeDecodeError):
            problems.append(f"record {i}: answer is not a number: {answer[:80]!r}")
            continue
        if not math.isfinite(predicted):
            problems.append(f"record {i}: prediction is not finite ({predicted})")
            continue
        errors.append(predicted - actual)

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
        problems=problems[:20],
    )


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(k), math.ceil(k)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


# -- AWS side ---------------------------------------------------------------------------------
# Direct invocation: {"endpoint_name", "test_data_s3_uri", "target", "max_rmse"?}.
# The CodePipeline job-worker boundary (issue 3) wraps `check_endpoint` the same way.
REQUIRED_KEYS = ("endpoint_name", "test_data_s3_uri", "target")


def sagemaker_invoker(endpoint_name: str, runtime_client) -> Invoke:
    def invoke(body: bytes, content_type: str) -> bytes:
        try:
            response = runtime_client.invoke_endpoint(
                EndpointName=endpoint_name, Body=body, ContentType=content_type, Accept="text/csv")
        except runtime_client.exceptions.ModelError as exc:
            status = exc.response.get("OriginalStatusCode", 500)
            if 400 <= int(status) < 500:
                raise EndpointRejected(f"HTTP {status}: {exc.response.get('OriginalMessage', exc)}") from exc
            raise
        return response["Body"].read()
    return invoke


def read_s3_csv(uri: str, s3_client) -> str:
    """The CSV at an s3:// key, or the first *.csv under an s3:// prefix (Spark part files)."""
    if not uri.startswith("s3://"):
        raise ValueError(f"test_data_s3_uri must start with s3://, got {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not key.endswith(".csv"):
        listing = s3_client.list_objects_v2(Bucket=bucket, Prefix=key.rstrip("/") + "/")
        keys = sorted(o["Key"] for o in listing.get("Contents", []) if o["Key"].endswith(".csv"))
        if not keys:
            raise ValueError(f"no .csv object under {uri}")
        key = keys[0]
    return s3_client.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")


def check_endpoint(event: dict, s3_client=None, runtime_client=None) -> EndpointTestResult:
    missing = [k for k in REQUIRED_KEYS if not event.get(k)]
    if missing:
        raise ValueError(f"endpoint test event is missing {missing}; required: {list(REQUIRED_KEYS)}")
    if s3_client is None or runtime_client is None:
        import boto3
        from botocore.config import Config

        config = Config(retries={"mode": "standard"})
        s3_client = s3_client or boto3.client("s3", config=config)
        runtime_client = runtime_client or boto3.client("sagemaker-runtime", config=config)
    _, rows, truth = read_records(read_s3_csv(event["test_data_s3_uri"], s3_client), event["target"])
    invoke = sagemaker_invoker(event["endpoint_name"], runtime_client)
    return run_endpoint_test(rows, truth, invoke, max_rmse=event.get("max_rmse"))


def handler(event: dict, context) -> dict:
    return check_endpoint(event).as_dict()
