"""Endpoint test core: judged on what an endpoint answers, over a fake and a stubbed transport."""
from __future__ import annotations

import io
import json
import logging
import math

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from moto import mock_aws

from lambdas.endpoint_test import (
    EndpointRejected, check_endpoint, read_records, read_s3_csv, run_endpoint_test, to_csv)
from lambdas.job import run_job

from tests.lambdas.pipeline_stubs import JOB_ID, expect_success, expect_failure
from tests.conftest import SECRETS, load_event

SAMPLE = "carat,cut,price\n0.5,Ideal,1000\n1.0,Good,4000\n"


def good_endpoint(offset=0.0):
    def invoke(body: bytes, content_type: str) -> bytes:
        assert content_type == "text/csv"
        carat = body.decode().strip().split(",")[0]
        try:
            return f"{float(carat) * 6000 - 2000 + offset}\n".encode()
        except ValueError:
            raise EndpointRejected("HTTP 400: row 0, column 'carat': expected a number") from None
    return invoke


def test_read_records_splits_target_from_inputs():
    columns, rows, truth = read_records(SAMPLE, "price")
    assert columns == ["carat", "cut"]
    assert rows == [["0.5", "Ideal"], ["1.0", "Good"]]
    assert truth == [1000.0, 4000.0]


@pytest.mark.parametrize("text, message", [
    ("carat,cut\n1,Good\n", "no 'price' column"),
    ("carat,cut,price\n", "no records"),
    ("", "no 'price' column"),
])
def test_read_records_errors(text, message):
    with pytest.raises(ValueError, match=message):
        read_records(text, "price")


def test_to_csv_quotes_values_with_commas():
    assert to_csv([["1", "a,b"]]) == b'1,"a,b"\n'


def test_passes_with_exact_predictions():
    _, rows, truth = read_records(SAMPLE, "price")
    result = run_endpoint_test(rows, truth, good_endpoint())
    assert result.passed and result.rows == 2 and result.rmse == 0.0
    assert result.p50_ms is not None and result.p99_ms >= result.p50_ms
    assert result.problems == []


def test_rmse_bound():
    _, rows, truth = read_records(SAMPLE, "price")
    result = run_endpoint_test(rows, truth, good_endpoint(offset=100.0), max_rmse=50)
    assert not result.passed
    assert math.isclose(result.rmse, 100.0)
    assert result.problems == ["sample RMSE 100.00 is above the bound 50"]


@pytest.mark.parametrize("answer, problem", [
    (b"nan\n", "prediction is not finite"),
    (b"<html>oops</html>", "answer is not a number"),
    (b"", "answer is not a number"),
])
def test_bad_answers_fail_the_test(answer, problem):
    def invoke(body, content_type):
        if b"not-a-record" in body:
            raise EndpointRejected("HTTP 400")
        return answer
    result = run_endpoint_test([["1", "Good"]], [1.0], invoke)
    assert not result.passed
    assert problem in result.problems[0]


def test_endpoint_that_accepts_garbage_fails():
    result = run_endpoint_test([["1", "Good"]], [3000.0], lambda body, ct: b"3000\n")
    assert not result.passed
    assert "a malformed record was accepted" in result.problems[0]


def test_transport_errors_are_findings_not_crashes():
    def invoke(body, content_type):
        raise ConnectionError("connection refused")
    result = run_endpoint_test([["1", "Good"]], [1.0], invoke)
    assert not result.passed and result.rmse is None and result.p50_ms is None
    assert result.problems[0] == "record 0: connection refused"


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="data")
        client.put_object(Bucket="data", Key="runs/e1/etl/endpoint-test/part-00000.csv", Body=SAMPLE)
        client.put_object(Bucket="data", Key="runs/e1/etl/features.json", Body=json.dumps({"target": "price"}))
        yield client


@pytest.mark.parametrize("uri", ["s3://data/runs/e1/etl/endpoint-test/",
                                 "s3://data/runs/e1/etl/endpoint-test",
                                 "s3://data/runs/e1/etl/endpoint-test/part-00000.csv"],
                         ids=["prefix-slash", "prefix", "key"])
def test_read_s3_csv(s3, uri):
    assert read_s3_csv(uri, s3) == SAMPLE


@pytest.mark.parametrize("uri, message", [("data/x.csv", "must start with s3://"),
                                          ("s3://data/nothing/", "no .csv object under")])
def test_read_s3_csv_errors(s3, uri, message):
    with pytest.raises(ValueError, match=message):
        read_s3_csv(uri, s3)


def _body(text: str) -> StreamingBody:
    raw = text.encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


def test_check_endpoint_against_sagemaker_runtime(s3):
    runtime = boto3.client("sagemaker-runtime", region_name="us-east-1")
    with Stubber(runtime) as stub:
        for body, answer in ((b"0.5,Ideal\n", "1000\n"), (b"1.0,Good\n", "3000\n")):
            stub.add_response("invoke_endpoint", {"Body": _body(answer), "ContentType": "text/csv"},
                              {"EndpointName": "ep", "Body": body, "ContentType": "text/csv",
                               "Accept": "text/csv"})
        stub.add_client_error("invoke_endpoint", service_error_code="ModelError", http_status_code=424,
                              response_meta={}, modeled_fields={"OriginalStatusCode": 400,
                                                                "OriginalMessage": "bad row"})
        result = check_endpoint({"endpoint_name": "ep", "target": "price",
                                 "test_data_s3_uri": "s3://data/runs/e1/etl/endpoint-test/"},
                                s3_client=s3, runtime_client=runtime)
        stub.assert_no_pending_responses()
    assert result.passed, result.problems
    assert result.rows == 2
    assert math.isclose(result.rmse, math.sqrt((0 + 1000 ** 2) / 2))


def test_check_endpoint_names_missing_keys():
    with pytest.raises(ValueError, match=r"missing \['endpoint_name', 'target'\]"):
        check_endpoint({"test_data_s3_uri": "s3://a/b"}, s3_client=object(), runtime_client=object())


# -- batching -----------------------------------------------------------------------------------
def batch_endpoint(answer=None, calls=None):
    """Predicts 6000 x carat - 2000 for every record of a CSV batch (or returns `answer`)."""
    def invoke(body: bytes, content_type: str) -> bytes:
        if calls is not None:
            calls.append(body)
        lines = body.decode().splitlines()
        if any("not-a-record" in line for line in lines):
            raise EndpointRejected("HTTP 400: row 0 has 1 field")
        if answer is not None:
            return answer
        return "".join(f"{float(line.split(',')[0]) * 6000 - 2000}\n" for line in lines).encode()
    return invoke


def fake_clock(*readings: float):
    values = iter(readings)
    return lambda: next(values)


FIVE = [["0.5", "Ideal"], ["1.0", "Good"], ["0.6", "Fair"], ["0.7", "Ideal"], ["0.8", "Good"]]
FIVE_TRUTH = [1000.0, 4000.0, 1600.0, 2200.0, 2800.0]


def test_records_go_in_batches_one_request_each():
    calls: list[bytes] = []
    result = run_endpoint_test(FIVE, FIVE_TRUTH, batch_endpoint(calls=calls), batch_size=2,
                               clock=fake_clock(0, 0.01, 1, 1.02, 2, 2.03))
    assert calls == [b"0.5,Ideal\n1.0,Good\n", b"0.6,Fair\n0.7,Ideal\n", b"0.8,Good\n", b"not-a-record\n"]
    assert result.passed and result.rows == 5 and result.requests == 3 and result.rmse == 0.0
    assert (round(result.p50_ms, 6), round(result.p99_ms, 6)) == (20.0, 29.8)


@pytest.mark.parametrize("answer, problem", [
    (b"1000\n", "records 0-1: got 1 predictions for 2 records"),
    (b"1000\n4000\n5000\n", "records 0-1: got 3 predictions for 2 records"),
    (b"1000\ninf\n", "record 1: prediction is not finite (inf)"),
    (b"1000,1\n4000,2\n", "records 0-1: answer is not a number a line: b'1000,1\\n4000,2\\n'"),
    (b'{"predictions": [1000, 4000]}', "records 0-1: answer is not a number a line"),
], ids=["too-few", "too-many", "not-finite", "two-columns", "json"])
def test_every_record_needs_exactly_one_finite_prediction(answer, problem):
    result = run_endpoint_test(FIVE[:2], FIVE_TRUTH[:2], batch_endpoint(answer), batch_size=2)
    assert not result.passed
    assert result.problems[0].startswith(problem)


def test_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        run_endpoint_test(FIVE, FIVE_TRUTH, batch_endpoint(), batch_size=0)


@pytest.mark.parametrize("text, message", [
    ("carat,cut,price\n1,Good\n", "line 2 has 2 fields, the header has 3"),
    ("carat,cut,price\n1,Good,cheap\n", "line 2: 'price' is not a number: 'cheap'"),
])
def test_malformed_test_data_is_named_by_line(text, message):
    with pytest.raises(ValueError, match=message):
        read_records(text, "price")


# -- the TestEndpoint job worker ------------------------------------------------------------------
ENDPOINT = "mlops-diamonds-dev"
DATA_URI = "s3://data/runs/e1/etl/endpoint-test/"
FEATURES_URI = "s3://data/runs/e1/etl/features.json"
PARAMS = {"endpoint_name": ENDPOINT, "test_data_uri": DATA_URI, "features_uri": FEATURES_URI,
          "evaluation_rmse": "1000.0"}  # as #{Evaluation.Rmse} arrives: a string
NOW = 10_000.0


@pytest.fixture
def aws(s3):
    """(sagemaker stub, runtime stub) on real clients; S3 is moto's."""
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    runtime = boto3.client("sagemaker-runtime", region_name="us-east-1")
    with Stubber(sagemaker) as sm_stub, Stubber(runtime) as rt_stub:
        yield {"sagemaker": sagemaker, "runtime": runtime, "s3": s3, "sm_stub": sm_stub, "rt_stub": rt_stub}
        sm_stub.assert_no_pending_responses()
        rt_stub.assert_no_pending_responses()


def expect_describe(aws, status, reason=None, config=f"{ENDPOINT}-config"):
    response = {"EndpointName": ENDPOINT,
                "EndpointArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{ENDPOINT}",
                "EndpointConfigName": config, "EndpointStatus": status,
                "CreationTime": 0, "LastModifiedTime": 0}
    if reason:
        response["FailureReason"] = reason
    aws["sm_stub"].add_response("describe_endpoint", response, {"EndpointName": ENDPOINT})


def expect_invoke(aws, body: bytes, answer: str):
    aws["rt_stub"].add_response("invoke_endpoint", {"Body": _body(answer), "ContentType": "text/csv"},
                                {"EndpointName": ENDPOINT, "Body": body, "ContentType": "text/csv",
                                 "Accept": "text/csv"})


def expect_probe(aws, status=400):
    aws["rt_stub"].add_client_error("invoke_endpoint", service_error_code="ModelError", http_status_code=424,
                                    response_meta={}, modeled_fields={"OriginalStatusCode": status,
                                                                      "OriginalMessage": "bad row"},
                                    expected_params={"EndpointName": ENDPOINT, "Body": b"not-a-record\n",
                                                     "ContentType": "text/csv", "Accept": "text/csv"})


def run(codepipeline_client, aws, params=PARAMS, token=None, clock=None):
    from lambdas.endpoint_test import verify_endpoint

    def work(job):
        return verify_endpoint(job, sagemaker=aws["sagemaker"], s3=aws["s3"], runtime=aws["runtime"],
                               now=lambda: NOW, clock=clock or fake_clock(0, 0.012, 1, 1.030))
    return run_job(load_event(user_parameters=params, continuation_token=token), work, codepipeline_client)


@pytest.mark.parametrize("status, token, summary", [
    ("Creating", None, f"Endpoint {ENDPOINT} is Creating (0 s); waiting for InService"),
    ("Updating", {"started": NOW - 600}, f"Endpoint {ENDPOINT} is Updating (600 s); waiting for InService"),
    ("SystemUpdating", {"started": NOW - 1800}, f"Endpoint {ENDPOINT} is SystemUpdating (1800 s); "
                                                "waiting for InService"),
], ids=["creating-first-check", "updating-continued", "system-updating-at-the-limit"])
def test_waits_while_the_endpoint_is_changing(codepipeline, aws, status, token, summary):
    cp, stub = codepipeline
    expect_describe(aws, status)
    started = token["started"] if token else NOW
    expect_success(stub, continuationToken=json.dumps({"started": started}, separators=(",", ":")),
                   executionDetails={"summary": summary})
    assert run(cp, aws, token=token)["result"] == "continue"


def test_gives_up_after_max_seconds(codepipeline, aws):
    cp, stub = codepipeline
    expect_describe(aws, "Creating")
    expect_failure(stub, "JobFailed",
                   f"endpoint '{ENDPOINT}' is still Creating after 601 s (max_seconds 600); see its events "
                   f"in the SageMaker console and the logs in CloudWatch /aws/sagemaker/Endpoints/{ENDPOINT}")
    run(cp, aws, {**PARAMS, "max_seconds": 600}, token={"started": NOW - 601})


@pytest.mark.parametrize("status, reason, shown", [
    ("Failed", "The primary container for production variant AllTraffic did not pass the ping health check.",
     "The primary container for production variant AllTraffic did not pass the ping health check."),
    ("OutOfService", None, "SageMaker gave no FailureReason"),
    ("RollingBack", "Update failed: ping timeout", "Update failed: ping timeout"),
    ("Deleting", None, "SageMaker gave no FailureReason"),
    ("UpdateRollbackFailed", "rollback failed", "rollback failed"),
], ids=["failed", "out-of-service", "rolling-back", "deleting", "update-rollback-failed"])
def test_an_endpoint_that_will_not_serve_fails_the_action(codepipeline, aws, status, reason, shown):
    cp, stub = codepipeline
    expect_describe(aws, status, reason)
    expect_failure(stub, "JobFailed",
                   f"endpoint '{ENDPOINT}' is {status}: {shown}; see CloudWatch /aws/sagemaker/Endpoints/"
                   f"{ENDPOINT} and the DeployEndpoint stack events")
    run(cp, aws, token={"started": NOW - 60})


@pytest.mark.parametrize("serving, reason, shown", [
    (f"{ENDPOINT}-old", "Update to endpoint configuration x was rolled back: CloudWatch alarm a went into ALARM.",
     "Update to endpoint configuration x was rolled back: CloudWatch alarm a went into ALARM."),
    (f"{ENDPOINT}-old", None, "SageMaker gave no FailureReason"),
], ids=["rolled-back-with-reason", "rolled-back-silently"])
def test_an_endpoint_in_service_on_another_config_fails_the_action(codepipeline, aws, serving, reason, shown):
    cp, stub = codepipeline
    expect_describe(aws, "InService", reason, config=serving)
    expect_failure(stub, "JobFailed",
                   f"endpoint '{ENDPOINT}' is InService on endpoint config '{serving}', not on '{ENDPOINT}-config' "
                   f"that the deploy stack declares: the update did not take effect (rolled back?): {shown}; "
                   "see the DeployEndpoint stack events")
    run(cp, aws, {**PARAMS, "endpoint_config_name": f"{ENDPOINT}-config"}, token={"started": NOW - 60})


def test_an_endpoint_in_service_on_the_declared_config_is_tested(codepipeline, aws):
    cp, stub = codepipeline
    expect_describe(aws, "InService", "an earlier update was rolled back")  # a stale reason does not matter
    expect_invoke(aws, b"0.5,Ideal\n1.0,Good\n", "1000\n3000\n")
    expect_probe(aws)
    stub.add_response("put_job_success_result", {})
    result = run(cp, aws, {**PARAMS, "endpoint_config_name": f"{ENDPOINT}-config"}, token={"started": NOW - 60})
    assert result["variables"]["Rows"] == "2"


def test_a_missing_endpoint_is_a_configuration_error(codepipeline, aws):
    cp, stub = codepipeline
    aws["sm_stub"].add_client_error(
        "describe_endpoint", "ValidationException",
        f'Could not find endpoint "arn:aws:sagemaker:us-east-1:123456789012:endpoint/{ENDPOINT}".',
        expected_params={"EndpointName": ENDPOINT})
    expect_failure(stub, "ConfigurationError",
                   f"endpoint '{ENDPOINT}' does not exist; check that DeployEndpoint created it and that "
                   "'endpoint_name' matches the stack's EndpointName")
    run(cp, aws)


def test_in_service_endpoint_passes_and_reports_its_numbers(codepipeline, aws):
    cp, stub = codepipeline
    expect_describe(aws, "InService")
    expect_invoke(aws, b"0.5,Ideal\n1.0,Good\n", "1000\n3000\n")  # errors 0 and -1000: RMSE 707.11
    expect_probe(aws)
    expect_success(stub, executionDetails={"summary": (
        f"Endpoint {ENDPOINT} passed: 2 rows in 1 requests of up to 50; sample RMSE 707.11 within the sample "
        "RMSE bound 1500.00 = (1 + tolerance 0.5) x evaluation RMSE 1000; latency per request p50 12.0 ms, "
        "p99 12.0 ms")},
        outputVariables={"Rows": "2", "SampleRmse": "707.1068", "P50Ms": "12.00", "P99Ms": "12.00"})
    result = run(cp, aws, token={"started": NOW - 300})
    assert result["variables"]["Rows"] == "2"


def test_batches_follow_batch_size(codepipeline, aws):
    cp, stub = codepipeline
    expect_describe(aws, "InService")
    expect_invoke(aws, b"0.5,Ideal\n", "1000\n")
    expect_invoke(aws, b"1.0,Good\n", "4000\n")
    expect_probe(aws)
    expect_success(stub, executionDetails={"summary": (
        f"Endpoint {ENDPOINT} passed: 2 rows in 2 requests of up to 1; sample RMSE 0.00 within the sample "
        "RMSE bound 1000.00 = (1 + tolerance 0) x evaluation RMSE 1000; latency per request p50 15.0 ms, "
        "p99 17.9 ms")},
        outputVariables={"Rows": "2", "SampleRmse": "0.0000", "P50Ms": "15.00", "P99Ms": "17.94"})
    run(cp, aws, {**PARAMS, "batch_size": 1, "tolerance": 0}, clock=fake_clock(0, 0.012, 1, 1.018))


BOUND = "sample RMSE bound 1500.00 = (1 + tolerance 0.5) x evaluation RMSE 1000"
SKEW = "a higher RMSE on the endpoint than in evaluation points to training/serving skew"
FAILING = [
    ("rmse-above-bound-skew", {**PARAMS, "evaluation_rmse": 900}, "1000\n6000\n", 400,  # errors 0, 2000
     f"endpoint test of '{ENDPOINT}' failed: sample RMSE 1414.21 is above the bound 1350. 2 rows from "
     f"{DATA_URI}, sample RMSE 1414.21, sample RMSE bound 1350.00 = (1 + tolerance 0.5) x evaluation "
     f"RMSE 900; {SKEW}"),
    ("prediction-count", PARAMS, "1000\n", 400,
     f"endpoint test of '{ENDPOINT}' failed: records 0-1: got 1 predictions for 2 records. 2 rows from "
     f"{DATA_URI}, sample RMSE n/a, {BOUND}"),
    ("not-finite", PARAMS, "1000\nnan\n", 400,
     f"endpoint test of '{ENDPOINT}' failed: record 1: prediction is not finite (nan). 2 rows from "
     f"{DATA_URI}, sample RMSE 0.00, {BOUND}"),
    ("probe-got-5xx", PARAMS, "1000\n4000\n", 500,
     f"endpoint test of '{ENDPOINT}' failed: a malformed record did not get a 4xx: An error occurred "
     f"(ModelError) when calling the InvokeEndpoint operation: . 2 rows from {DATA_URI}, sample RMSE 0.00, "
     f"{BOUND}"),
]


@pytest.mark.parametrize("params, answer, probe_status, message", [c[1:] for c in FAILING],
                         ids=[c[0] for c in FAILING])
def test_a_bad_endpoint_fails_the_action_with_the_findings(codepipeline, aws, params, answer,
                                                           probe_status, message):
    cp, stub = codepipeline
    expect_describe(aws, "InService")
    expect_invoke(aws, b"0.5,Ideal\n1.0,Good\n", answer)
    expect_probe(aws, probe_status)
    expect_failure(stub, "JobFailed", message)
    run(cp, aws, params)


def test_an_endpoint_error_on_a_batch_is_a_finding(codepipeline, aws):
    cp, stub = codepipeline
    expect_describe(aws, "InService")
    aws["rt_stub"].add_client_error("invoke_endpoint", service_error_code="ModelError", http_status_code=424,
                                    service_message="Received server error (500) from primary",
                                    response_meta={}, modeled_fields={"OriginalStatusCode": 500})
    expect_probe(aws)
    expect_failure(stub, "JobFailed",
                   f"endpoint test of '{ENDPOINT}' failed: records 0-1: An error occurred (ModelError) when "
                   "calling the InvokeEndpoint operation: Received server error (500) from primary. "
                   f"2 rows from {DATA_URI}, sample RMSE n/a, {BOUND}")
    run(cp, aws, clock=fake_clock(0, 1))


@pytest.mark.parametrize("uri, message", [
    ("s3://data/runs/e2/etl/endpoint-test/", "no .csv object under s3://data/runs/e2/etl/endpoint-test/"),
], ids=["no-sample"])
def test_missing_test_data_is_a_configuration_error(codepipeline, aws, uri, message):
    cp, stub = codepipeline
    expect_describe(aws, "InService")
    expect_failure(stub, "ConfigurationError", message)
    run(cp, aws, {**PARAMS, "test_data_uri": uri})


def test_a_sample_without_the_target_is_a_configuration_error(codepipeline, aws):
    cp, stub = codepipeline
    aws["s3"].put_object(Bucket="data", Key="runs/e1/etl/features.json", Body='{"target": "carat_price"}')
    expect_describe(aws, "InService")
    expect_failure(stub, "ConfigurationError",
                   "endpoint-test data has no 'carat_price' column (header: ['carat', 'cut', 'price'])")
    run(cp, aws)


@pytest.mark.parametrize("body, message", [
    (None, f"no features.json at {FEATURES_URI}; did the ETL of this execution run?"),
    ("[1, 2]", f"{FEATURES_URI} is not the ETL's features.json (no 'target')"),
    ('{"target": 5}', f"{FEATURES_URI}: 'target' must be a column name, got 5"),
], ids=["missing", "not-features-json", "target-not-a-name"])
def test_the_target_comes_from_features_json(codepipeline, aws, body, message):
    cp, stub = codepipeline
    if body is None:
        aws["s3"].delete_object(Bucket="data", Key="runs/e1/etl/features.json")
    else:
        aws["s3"].put_object(Bucket="data", Key="runs/e1/etl/features.json", Body=body)
    expect_describe(aws, "InService")
    expect_failure(stub, "ConfigurationError", message)
    run(cp, aws)


ALLOWED = ("['batch_size', 'endpoint_config_name', 'endpoint_name', 'evaluation_rmse', 'features_uri', "
           "'max_seconds', 'test_data_uri', 'tolerance']")
BAD_PARAMETERS = [
    ("missing-key", {k: v for k, v in PARAMS.items() if k != "features_uri"},
     "UserParameters is missing required key 'features_uri'"),
    ("unknown-key", {**PARAMS, "max_rmse": 5},
     f"UserParameters has unknown key(s) ['max_rmse']; allowed: {ALLOWED}"),
    ("wrong-type", {**PARAMS, "features_uri": ["x"]}, "UserParameters 'features_uri' must be str, got list"),
    ("unresolved-variable", {**PARAMS, "evaluation_rmse": "#{Evaluation.Rmse}"},
     "UserParameters 'evaluation_rmse' holds an unresolved variable #{Evaluation.Rmse}; "
     "check the namespace and variable name"),
    ("rmse-not-a-number", {**PARAMS, "evaluation_rmse": "high"},
     "UserParameters 'evaluation_rmse' must be a number, got 'high'"),
    ("rmse-not-finite", {**PARAMS, "evaluation_rmse": "nan"},
     "UserParameters 'evaluation_rmse' must be a number >= 0, got nan"),
    ("tolerance-negative", {**PARAMS, "tolerance": -0.1},
     "UserParameters 'tolerance' must be a number >= 0, got -0.1"),
    ("batch-size-0", {**PARAMS, "batch_size": 0},
     "UserParameters 'batch_size' must be a whole number 1-1000, got 0"),
    ("batch-size-too-big", {**PARAMS, "batch_size": 5000},
     "UserParameters 'batch_size' must be a whole number 1-1000, got 5000"),
    ("batch-size-fraction", {**PARAMS, "batch_size": 2.5},
     "UserParameters 'batch_size' must be a whole number 1-1000, got 2.5"),
    ("max-seconds-0", {**PARAMS, "max_seconds": 0},
     "UserParameters 'max_seconds' must be a number >= 1, got 0"),
    ("bad-endpoint-name", {**PARAMS, "endpoint_name": "mlops_diamonds"},
     "UserParameters 'endpoint_name' 'mlops_diamonds' is not a SageMaker endpoint name: 1-63 letters, "
     "digits and hyphens, starting and ending with a letter or digit"),
    ("data-not-s3", {**PARAMS, "test_data_uri": "runs/e1/etl/endpoint-test"},
     "UserParameters 'test_data_uri' must be an s3:// URI, got 'runs/e1/etl/endpoint-test'"),
    ("token-not-ours", "use-token", "continuation token is not the JSON this worker writes"),
]


@pytest.mark.parametrize("params, message", [c[1:] for c in BAD_PARAMETERS],
                         ids=[c[0] for c in BAD_PARAMETERS])
def test_bad_user_parameters_fail_before_any_aws_call(codepipeline, aws, params, message):
    cp, stub = codepipeline
    expect_failure(stub, "ConfigurationError", message)
    if params == "use-token":
        run(cp, aws, token="not json")
    else:
        run(cp, aws, params)


def test_logs_name_the_job_and_endpoint_and_never_the_credentials(codepipeline, aws, caplog):
    cp, stub = codepipeline
    caplog.set_level(logging.DEBUG)
    expect_describe(aws, "Creating")
    expect_success(stub, continuationToken=ANY, executionDetails=ANY)
    expect_describe(aws, "InService")
    expect_invoke(aws, b"0.5,Ideal\n1.0,Good\n", "1000\n4000\n")
    expect_probe(aws)
    expect_success(stub, executionDetails=ANY, outputVariables=ANY)
    expect_describe(aws, "Failed", "ping failed")
    expect_failure(stub, "JobFailed", ANY)
    run(cp, aws)
    run(cp, aws, token={"started": NOW})
    run(cp, aws, token={"started": NOW})
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("lambdas")]
    assert ours and all(JOB_ID in message for message in ours)
    assert any(ENDPOINT in message and "InService" in message for message in ours)
    assert not any(secret in logged for secret in SECRETS)
