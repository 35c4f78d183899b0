"""Endpoint test core: judged on what an endpoint answers, over a fake and a stubbed transport."""
from __future__ import annotations

import io
import math

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto import mock_aws

from lambdas.endpoint_test import (
    EndpointRejected, check_endpoint, read_records, read_s3_csv, run_endpoint_test, to_csv)

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
