"""REST requests (Lambda's rest-json, S3's rest-xml) checked as AWS checks them, in each one's terms.

`rest_operations` tells the operation and rebuilds its members from the URI, query, headers and JSON
body. Here the text of URI, query and header members becomes the type its shape says, members that
travel where the gateway does not read (an XML or a streaming body) are not reported missing, and
`validation` walks the rest. Lambda answers as Coral does (ValidationException, JSON); S3 answers its
XML errors (`S3Error`): KeyTooLongError, InvalidBucketName, InvalidArgument.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any

from werkzeug.wrappers import Request

from mlops_local import validation
from mlops_local.gateway import AwsError
from mlops_local.moto_access import service_model
from mlops_local.rest_operations import RestOperation, rest_operation

CHECKED = ("lambda", "s3")
SIGNING_NAME = re.compile(r"Credential=?[^/]*/[^/]+/[^/]+/([^/]+)/aws4_request")  # header or presigned query
URI_QUERY_HEADER = ("uri", "querystring", "header")
# Naming Amazon S3 objects (S3 User Guide, object-keys.html): "The object key name ... can be up to 1,024
# bytes long" (UTF-8); S3 answers KeyTooLongError "Your key is too long" (400), also on reads (basho/riak_cs#1233).
MAX_KEY_BYTES = 1024
# Lambda quotas: invocation payload 6 MB (synchronous); Lambda answers RequestEntityTooLargeException, 413.
MAX_INVOKE_BYTES = 6 * 1024 * 1024


class S3Error(AwsError):
    """An error S3 answers, as XML (gateway.s3_error_response)."""


def signing_service(request: Request) -> str:
    """The service a request is signed for: its Authorization header's scope, or a presigned URL's.
    Signature version 2 (`AWS key:signature`, or ?AWSAccessKeyId=&Signature=) is S3's alone."""
    authorization = request.headers.get("Authorization", "")
    scope = SIGNING_NAME.search(authorization) or \
        SIGNING_NAME.search("Credential=" + request.args.get("X-Amz-Credential", ""))
    if scope:
        return scope.group(1)
    signed_v2 = authorization.startswith("AWS ") or ("AWSAccessKeyId" in request.args and "Signature" in request.args)
    return "s3" if signed_v2 else ""


def path_style(request: Request) -> bool:
    """Whether the bucket is in the path (an IP, localhost, or s3.* host); a virtual-hosted request names
    it in the host, where rest_operations does not look."""
    host = (request.host or "").rsplit(":", 1)[0].strip("[]")
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return host == "localhost" or host.startswith(("s3.", "s3-"))


# -- REST members as the walk takes them --------------------------------------------------------
def typed(params: dict[str, Any], operation: Any) -> dict[str, Any]:
    """URI, query and header members (text on the wire) as their shapes' types. Timestamps, lists and
    maps there are left out (no constraint of theirs is checked); text that is no number stays text,
    which the walk reports as the type mismatch it is."""
    shape = operation.input_shape
    result = {}
    for name, value in params.items():
        member = shape.members.get(name) if shape is not None else None
        if member is None or member.serialization.get("location") not in URI_QUERY_HEADER or \
                not isinstance(value, str):
            result[name] = value
            continue
        kind = member.type_name
        if kind in ("integer", "long"):
            result[name] = int(value) if re.fullmatch(r"-?\d+", value) else value
        elif kind == "boolean":
            result[name] = {"true": True, "false": False}.get(value, value)
        elif kind in ("string", "blob"):
            result[name] = value
    return result


def unread(operation: Any, rest: RestOperation, body: bytes, params: dict[str, Any]) -> frozenset[str]:
    """Members in a body the gateway did not read: an XML or streaming payload, or a body that is no JSON."""
    shape = operation.input_shape
    if shape is None:
        return frozenset()
    read_json = rest.json_body and body[:1] == b"{"
    return frozenset(name for name, member in shape.members.items()
                     if member.serialization.get("location") not in URI_QUERY_HEADER
                     and name not in params and not read_json)


# -- S3's own checks ------------------------------------------------------------------------------
# General purpose bucket naming rules (S3 User Guide, bucketnamingrules.html): 3-63 characters; lowercase
# letters, numbers, periods and hyphens; begin and end with a letter or number; no two adjacent periods; not
# an IP address; no prefix xn--, sthree-, amzn-s3-demo-; no suffix -s3alias, --ol-s3, .mrap, --x-s3, --table-s3.
# S3 answers InvalidBucketName "The specified bucket is not valid." (400; S3 API Reference, Error responses).
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def valid_bucket_name(name: str) -> bool:
    if not BUCKET_NAME.fullmatch(name) or ".." in name or name.startswith(BUCKET_PREFIXES) \
            or name.endswith(BUCKET_SUFFIXES):
        return False
    try:
        ipaddress.IPv4Address(name)
        return False
    except ValueError:
        return True


def s3_checks(operation: str, params: dict[str, Any]) -> None:
    if operation == "CreateBucket" and not valid_bucket_name(str(params.get("Bucket", ""))):
        raise S3Error("InvalidBucketName", "The specified bucket is not valid.")
    keys = [params.get("Key")] + [item.get("Key") for item in ((params.get("Delete") or {}).get("Objects") or [])
                                  if isinstance(item, dict)]
    if any(isinstance(key, str) and len(key.encode("utf-8")) > MAX_KEY_BYTES for key in keys):
        raise S3Error("KeyTooLongError", "Your key is too long")


def s3_constraints(operation: str, params: dict[str, Any], skipped: frozenset[str]) -> None:
    """botocore's constraints on an S3 request. S3 has no Coral validation; a value outside its enum or
    range is an InvalidArgument (each header's own wording is not modelled here)."""
    try:
        found, errors = validation.findings("s3", operation, params, skipped)
    except validation.TypeMismatch as mismatch:
        raise S3Error("InvalidArgument", f"Invalid argument '{mismatch.path}': expected {mismatch.expected}") \
            from None
    if found:
        raise S3Error("InvalidArgument", found[0].coral())
    if errors:
        raise S3Error(errors[0].code, errors[0].message, errors[0].status)


# -- the entry point ------------------------------------------------------------------------------
def check(request: Request, body: bytes) -> None:
    """Raise the error AWS answers a Lambda or S3 request it rejects; return if it accepts it (or it is
    none of theirs, a moto control request, or a virtual-hosted S3 request)."""
    service = signing_service(request)
    if service not in CHECKED or request.path.startswith("/moto-api/"):
        return
    if service == "s3" and not path_style(request):
        return
    rest = rest_operation(service, request)
    if rest is None:
        return
    headers = {key.lower(): value for key, value in request.headers.items()}
    raw = rest.params(request.path, dict(request.args.items()), headers, body)
    operation = service_model(service).operation_model(rest.name)
    params, skipped = typed(raw, operation), unread(operation, rest, body, raw)
    if service == "s3":
        s3_checks(rest.name, params)
        s3_constraints(rest.name, params, skipped)
        return
    if rest.name == "Invoke" and headers.get("x-amz-invocation-type", "RequestResponse") == "RequestResponse" \
            and len(body) > MAX_INVOKE_BYTES:
        raise AwsError("RequestEntityTooLargeException",
                       f"Request must be smaller than {MAX_INVOKE_BYTES} bytes for the InvokeFunction operation", 413)
    validation.check(service, rest.name, params, skipped)
