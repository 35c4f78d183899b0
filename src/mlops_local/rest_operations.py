"""Which operation a request is, and its parameters as botocore would have built them: REST
requests (S3, Lambda, SageMaker runtime) from botocore's model of their HTTP bindings, JSON
requests from their X-Amz-Target prefix. The access log and the IAM checks need both.
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any, Mapping

from werkzeug.wrappers import Request


# Signing names that are not botocore's service name, for requests without an X-Amz-Target.
REST_SERVICES = {"sagemaker": "sagemaker-runtime"}


@dataclass(frozen=True)
class RestOperation:
    """One REST operation's HTTP binding: method, URI template, the query keys and headers it requires."""
    name: str
    method: str
    path: re.Pattern[str]
    query: tuple[tuple[str, str | None], ...]  # (key, value or None: any value)
    headers: tuple[str, ...]  # lower case
    members: tuple[tuple[str, str, str], ...]  # (location, locationName, member) of query and header members
    json_body: bool  # members without a location travel in a JSON body (rest-json without a payload member)

    def matches(self, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str]) -> bool:
        return (method == self.method and self.path.fullmatch(path) is not None
                and all(key in query and value in (None, query[key]) for key, value in self.query)
                and all(header in headers for header in self.headers))

    def params(self, path: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        match = self.path.fullmatch(path)
        found: dict[str, Any] = dict(match.groupdict()) if match else {}
        for location, name, member in self.members:
            value = query.get(name) if location == "querystring" else headers.get(name)
            if value is not None:
                found[member] = value
        if self.json_body and body[:1] == b"{":
            try:
                found.update(json.loads(body))
            except ValueError:
                pass
        elif self.name == "DeleteObjects":  # the one XML body the IAM checks read: the keys deleted
            found["Delete"] = {"Objects": _deleted_objects(body)}
        return found


def _deleted_objects(body: bytes) -> list[dict[str, str]]:
    from xml.etree import ElementTree

    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return []
    objects = [element for element in root if element.tag.rsplit("}", 1)[-1] == "Object"]
    return [{child.tag.rsplit("}", 1)[-1]: child.text or "" for child in element} for element in objects]


@functools.lru_cache(maxsize=None)
def rest_operations(service: str) -> tuple[RestOperation, ...]:
    """A REST service's operations, most specific first: more required query keys and headers, then
    longer literal paths (GetObjectTagging before GetObject, CopyObject before PutObject)."""
    from mlops_local.moto_access import service_model

    model = service_model(service)
    found = []
    for name in model.operation_names:
        operation = model.operation_model(name)
        uri, _, literal_query = operation.http["requestUri"].partition("?")
        pattern = re.sub(r"\\\{(\w+)(\\\+)?\\\}", lambda m: f"(?P<{m.group(1)}>{'.+' if m.group(2) else '[^/]+'})",
                         re.escape(uri))
        query: list[tuple[str, str | None]] = []
        for part in filter(None, literal_query.split("&")):
            key, equals, value = part.partition("=")
            query.append((key, value if equals else None))
        shape = operation.input_shape
        members, headers = [], []
        for member, member_shape in (shape.members.items() if shape else ()):
            location = member_shape.serialization.get("location")
            location_name = member_shape.serialization.get("name", member)
            if location == "uri" and location_name != member:
                pattern = pattern.replace(f"(?P<{location_name}>", f"(?P<{member}>")
            elif location in ("querystring", "header"):
                members.append((location, location_name.lower() if location == "header" else location_name, member))
                if member in shape.required_members:
                    if location == "querystring":
                        query.append((location_name, None))
                    else:
                        headers.append(location_name.lower())
        json_body = model.protocol == "rest-json" and not (shape is not None and shape.serialization.get("payload"))
        found.append(RestOperation(name, operation.http["method"], re.compile(pattern), tuple(query), tuple(headers),
                                   tuple(members), json_body))

    def specificity(operation: RestOperation) -> tuple[int, int]:
        literal = re.sub(r"\(\?P<\w+>[^)]*\)", "", operation.path.pattern)
        return -len(operation.query) - len(operation.headers), -len(literal)

    return tuple(sorted(found, key=specificity))


@functools.lru_cache(maxsize=None)
def _rest_operations_of(service: str, method: str) -> tuple[RestOperation, ...]:
    return tuple(operation for operation in rest_operations(service) if operation.method == method)


def rest_operation(service: str, request: Request) -> RestOperation | None:
    """The operation a REST request is, None if none of the service's operations fits."""
    headers = {key.lower(): value for key, value in request.headers.items()}
    query = dict(request.args.items())
    for operation in _rest_operations_of(service, request.method):
        if operation.matches(request.method, request.path, query, headers):
            return operation
    return None


def rest_request(service: str, request: Request, body: bytes) -> tuple[str, dict[str, Any]]:
    """(operation, parameters) of a REST request, as botocore would have built it; ("", {}) if none fits."""
    operation = rest_operation(service, request)
    if operation is None:
        return "", {}
    headers = {key.lower(): value for key, value in request.headers.items()}
    return operation.name, operation.params(request.path, dict(request.args.items()), headers, body)


@functools.lru_cache(maxsize=None)
def json_targets() -> dict[str, str]:
    """X-Amz-Target prefix -> botocore service, for every JSON service the IAM tables map."""
    from mlops_local.iam.actions import TABLES
    from mlops_local.moto_access import service_model

    prefixes = {service_model(name).metadata.get("targetPrefix"): name for name in TABLES}
    return {prefix: name for prefix, name in prefixes.items() if prefix}
