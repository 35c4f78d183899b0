"""Lambda (rest-json) and S3 (rest-xml) requests checked as AWS checks them, answered in each one's terms."""
from __future__ import annotations

import urllib.request
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.parsers import create_parser
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from mlops_local import rest_validation
from mlops_local.gateway import FAKE_CREDENTIALS, AwsError, Gateway, LocalAws, error_response, s3_error_response

ENDPOINT = "http://127.0.0.1:4566"
ROLE = "arn:aws:iam::123456789012:role/fn"


class Sent(Exception):
    def __init__(self, request: object) -> None:
        super().__init__("sent")
        self.request = request


def client(service: str, endpoint: str = ENDPOINT, signature_version: str | None = None):
    config = Config(retries={"total_max_attempts": 1}, signature_version=signature_version)
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", config=config, **FAKE_CREDENTIALS)


def as_received(method: str, url: str, headers: dict, body: bytes) -> tuple[Request, bytes]:
    """The request as the gateway receives it (werkzeug decodes the path, as for a real request)."""
    parts = urlsplit(url)
    environ = EnvironBuilder(method=method, base_url=f"{parts.scheme}://{parts.netloc}", path=parts.path,
                             query_string=parts.query, headers=headers, data=body).get_environ()
    request = Request(environ)
    return request, request.get_data(cache=True)


def sent(service: str, method: str, endpoint: str = ENDPOINT, **params) -> tuple[Request, bytes]:
    """What botocore sends for a call (signed, serialized), stopped before it leaves."""
    aws = client(service, endpoint)

    def stop(request, **_):
        raise Sent(request)

    aws.meta.events.register("before-send", stop)
    with pytest.raises(Sent) as caught:
        getattr(aws, method)(**params)
    prepared = caught.value.request
    body = prepared.body or b""
    body = body.read() if hasattr(body, "read") else body
    headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in prepared.headers.items()}
    return as_received(prepared.method, prepared.url, headers, body.encode() if isinstance(body, str) else body)


def rejected(request: Request, body: bytes) -> AwsError:
    with pytest.raises(AwsError) as caught:
        rest_validation.check(request, body)
    return caught.value


LONG_KEY = "é" * 512 + "a"  # 1,025 bytes in UTF-8, 513 characters
FUNCTION_PATTERN = "Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:lambda:)?"

# (service, call, params, code, status, text in the message); code None: accepted.
CASES = {
    "s3-key-1024-bytes": ("s3", "put_object", {"Bucket": "b", "Key": "é" * 512, "Body": b"x"}, None, 0, ""),
    "s3-key-1025-bytes": ("s3", "put_object", {"Bucket": "b", "Key": LONG_KEY, "Body": b"x"},
                          "KeyTooLongError", 400, "Your key is too long"),
    "s3-read-long-key": ("s3", "get_object", {"Bucket": "b", "Key": LONG_KEY}, "KeyTooLongError", 400, ""),
    "s3-delete-long-key": ("s3", "delete_objects",
                           {"Bucket": "b", "Delete": {"Objects": [{"Key": "k"}, {"Key": LONG_KEY}]}},
                           "KeyTooLongError", 400, ""),
    "s3-bucket-name-ok": ("s3", "create_bucket", {"Bucket": "mlops-artifacts.v2"}, None, 0, ""),
    "s3-bucket-upper": ("s3", "create_bucket", {"Bucket": "My_Bucket"}, "InvalidBucketName", 400,
                        "The specified bucket is not valid."),
    "s3-bucket-short": ("s3", "create_bucket", {"Bucket": "ab"}, "InvalidBucketName", 400, ""),
    "s3-bucket-ip": ("s3", "create_bucket", {"Bucket": "192.168.5.4"}, "InvalidBucketName", 400, ""),
    "s3-bucket-periods": ("s3", "create_bucket", {"Bucket": "a..b"}, "InvalidBucketName", 400, ""),
    "s3-bucket-prefix": ("s3", "create_bucket", {"Bucket": "xn--bucket"}, "InvalidBucketName", 400, ""),
    "s3-bucket-suffix": ("s3", "create_bucket", {"Bucket": "bucket-s3alias"}, "InvalidBucketName", 400, ""),
    "s3-existing-bucket-any-name": ("s3", "list_objects_v2", {"Bucket": "Legacy_Bucket"}, None, 0, ""),
    "s3-storage-class-enum": ("s3", "put_object", {"Bucket": "b", "Key": "k", "StorageClass": "SHINY"},
                              "InvalidArgument", 400, "Member must satisfy enum value set: [STANDARD"),
    "s3-query-integer-max": ("s3", "list_buckets", {"MaxBuckets": 10001}, "InvalidArgument", 400,
                             "Value '10001' at 'maxBuckets' failed to satisfy constraint: Member must have value "
                             "less than or equal to 10000"),
    "s3-valid-headers": ("s3", "put_object", {"Bucket": "b", "Key": "runs/1/model.tar.gz", "Body": b"x",
                                              "ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/k",
                                              "StorageClass": "STANDARD", "ContentType": "application/gzip"},
                         None, 0, ""),
    "lambda-name-pattern": ("lambda", "get_function", {"FunctionName": "bad name"}, "ValidationException", 400,
                            "1 validation error detected: Value 'bad name' at 'functionName' failed to satisfy "
                            "constraint: " + FUNCTION_PATTERN),
    "lambda-arn-and-qualifier": ("lambda", "get_function_configuration",
                                 {"FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:fn",
                                  "Qualifier": "$LATEST"}, None, 0, ""),
    "lambda-query-integer-max": ("lambda", "list_functions", {"MaxItems": 10001}, "ValidationException", 400,
                                 "Value '10001' at 'maxItems' failed to satisfy constraint: Member must have value "
                                 "less than or equal to 10000"),
    "lambda-body-max": ("lambda", "create_function",
                        {"FunctionName": "fn", "Role": ROLE, "Code": {"ZipFile": b"x"}, "MemorySize": 32769},
                        "ValidationException", 400, "Value '32769' at 'memorySize' failed to satisfy constraint: "
                                                    "Member must have value less than or equal to 32768"),
    "lambda-environment-4kb": ("lambda", "create_function",
                               {"FunctionName": "fn", "Role": ROLE, "Code": {"ZipFile": b"x"},
                                "Environment": {"Variables": {"AB": "v" * 4100}}},
                               "InvalidParameterValueException", 400, "exceeded the 4KB limit"),
    "lambda-invoke-payload": ("lambda", "invoke", {"FunctionName": "fn", "Payload": b"{}"}, None, 0, ""),
    "lambda-invoke-over-6mb": ("lambda", "invoke", {"FunctionName": "fn", "Payload": b" " * (6 * 1024 * 1024 + 1)},
                               "RequestEntityTooLargeException", 413,
                               "Request must be smaller than 6291456 bytes for the InvokeFunction operation"),
}


@pytest.mark.parametrize("service, call, params, code, status, text", CASES.values(), ids=CASES.keys())
def test_rest_requests_are_checked_as_aws_checks_them(service, call, params, code, status, text):
    request, body = sent(service, call, **params)
    if code is None:
        rest_validation.check(request, body)
        return
    error = rejected(request, body)
    assert (error.code, error.status) == (code, status)
    assert text in error.message
    assert isinstance(error, rest_validation.S3Error) == (service == "s3")


@pytest.mark.parametrize("error, protocol, code", [
    (rest_validation.S3Error("KeyTooLongError", "Your key is too long"), "rest-xml", "KeyTooLongError"),
    (AwsError("ValidationException", "1 validation error detected: ..."), "rest-json", "ValidationException"),
], ids=["s3-xml", "lambda-json"])
def test_each_service_answers_in_its_own_format(error, protocol, code):
    response = s3_error_response(error) if protocol == "rest-xml" else error_response(error)
    parsed = create_parser(protocol).parse({"status_code": response.status_code, "headers": dict(response.headers),
                                            "body": response.get_data()}, None)
    assert (parsed["Error"]["Code"], parsed["Error"]["Message"]) == (code, error.message)


@pytest.mark.parametrize("signature_version", ["s3", "s3v4"], ids=["sigv2-query", "sigv4-query"])
def test_a_presigned_url_is_checked_and_a_valid_one_passes(signature_version):
    aws = client("s3", signature_version=signature_version)
    valid = aws.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "runs/model.tar.gz"})
    rest_validation.check(*as_received("GET", valid, {}, b""))
    too_long = aws.generate_presigned_url("put_object", Params={"Bucket": "b", "Key": LONG_KEY})
    assert rejected(*as_received("PUT", too_long, {}, b"x")).code == "KeyTooLongError"


def test_virtual_hosted_and_moto_control_requests_are_not_misread():
    # PUT /UPPER on bucket.localhost is PutObject of key UPPER, not CreateBucket of a bucket named UPPER
    request, body = sent("s3", "put_object", Bucket="b", Key="UPPER", Body=b"x")
    headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
    rest_validation.check(*as_received("PUT", "http://bucket.localhost:4566/UPPER", headers, body))
    signed = {"Authorization": request.headers["Authorization"]}
    rest_validation.check(*as_received("POST", f"{ENDPOINT}/moto-api/reset", signed, b""))


def test_the_gateway_validate_sends_rest_requests_here():
    request, _ = sent("s3", "put_object", Bucket="b", Key=LONG_KEY, Body=b"x")
    with pytest.raises(rest_validation.S3Error):
        Gateway()._validate("s3", "", dict(request.args.items()), "", request)
    Gateway()._validate("s3", "", {}, "")  # without the request (as before): nothing to check


# -- through the gateway ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def aws():
    with LocalAws(Gateway()) as local:
        try:
            local.client("lambda", config=Config(retries={"total_max_attempts": 1})).get_function(
                FunctionName="bad name")
        except ClientError as error:
            if error.response["Error"]["Code"] != "ValidationException":
                pytest.skip("Gateway.__call__ does not pass the request to _validate yet")
        yield local


def test_the_gateway_answers_rest_errors_in_each_services_terms(aws):
    s3 = aws.client("s3", config=Config(retries={"total_max_attempts": 1}))
    s3.create_bucket(Bucket="rest-checked")
    with pytest.raises(ClientError) as caught:
        s3.put_object(Bucket="rest-checked", Key=LONG_KEY, Body=b"x")
    assert caught.value.response["Error"] == {"Code": "KeyTooLongError", "Message": "Your key is too long"}
    with pytest.raises(ClientError) as caught:
        s3.create_bucket(Bucket="Bad_Bucket")
    assert caught.value.response["Error"]["Code"] == "InvalidBucketName"
    with pytest.raises(ClientError) as caught:
        aws.client("lambda", config=Config(retries={"total_max_attempts": 1})).get_function(FunctionName="a b")
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_presigned_urls_still_work_through_the_gateway(aws):
    s3 = aws.client("s3", config=Config(signature_version="s3v4"))
    s3.create_bucket(Bucket="presigned")
    s3.put_object(Bucket="presigned", Key="runs/a b.txt", Body=b"hello")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "presigned", "Key": "runs/a b.txt"})
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.read() == b"hello"
