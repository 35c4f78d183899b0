"""Requests checked as AWS checks them: botocore's model in full, plus documented limits it lacks.

botocore validates client-side only required members, types and minimums (botocore/validate.py:
`VALIDATED_METADATA_ATTRS = {'required', 'min', 'document', 'union'}`); AWS also rejects values over
`max`, off `pattern` or outside `enum`. `check(service, operation, params)` raises the error AWS
answers, in its words (Coral's "N validation error(s) detected: Value '...' at 'a.b.1.member.c'
failed to satisfy constraint: ..."). Patterns are Java regexes (`mlops_local.java_regex`).
`mlops_local.limits` holds the documented limits the models do not carry, each with its source;
`mlops_local.rest_validation` brings REST requests (Lambda, S3) here.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, cast

from mlops_local.gateway import AwsError
from mlops_local.java_regex import compiled
from mlops_local.moto_access import service_model

# The error code each service answers a constraint violation with. Coral's default is
# ValidationException (query protocol: ValidationError). Observed otherwise: CloudWatch Logs
# (InvalidParameterException: "1 validation error detected: Value '' at 'logGroupNamePrefix' ...",
# fluent-plugin-cloudwatch-logs#223), Glue (InvalidInputException with the same text,
# awslabs/aws-ddk#274), ECR (InvalidParameterException, its own wording, jenkins-x/jx#1344).
ERROR_CODES = {"logs": "InvalidParameterException", "glue": "InvalidInputException",
               "ecr": "InvalidParameterException"}
QUERY_PROTOCOLS = {"query", "ec2"}
# Values AWS leaves out of the message ("Value at '...'"): botocore's `sensitive`, and CodePipeline's
# action configuration (terraform-provider-aws#41023: "Value at 'pipeline.stages.2.member.actions.1.member
# .configuration' failed to satisfy constraint: Map value must satisfy constraint: [...]").
REDACTED_SHAPES = {("codepipeline", "ActionConfigurationMap")}


# -- messages ---------------------------------------------------------------------------------
def java_string(value: Any) -> str:
    """A value as Java's toString shows it in Coral's messages ({k=v, ...}, [a, b], null, true)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={java_string(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(java_string(v) for v in value) + "]"
    return str(value)


def number(value: Any) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def constraints(shape: Any) -> list[str]:
    """Every constraint of a scalar shape, in Coral's words and order (max, min, pattern, enum)."""
    meta, noun = shape.metadata, "value" if shape.type_name in NUMBERS else "length"
    said = []
    if "max" in meta:
        said.append(f"Member must have {noun} less than or equal to {number(meta['max'])}")
    if "min" in meta:
        said.append(f"Member must have {noun} greater than or equal to {number(meta['min'])}")
    if "pattern" in meta:
        said.append(f"Member must satisfy regular expression pattern: {meta['pattern']}")
    if "enum" in meta:
        said.append(f"Member must satisfy enum value set: [{', '.join(meta['enum'])}]")
    return said


@dataclass
class Finding:
    path: str
    value: Any
    constraint: str
    redacted: bool

    def coral(self) -> str:
        shown = "Value" if self.redacted else f"Value '{java_string(self.value)}'"
        if self.value is None and not self.redacted:
            shown = "Value null"
        return f"{shown} at '{self.path}' failed to satisfy constraint: {self.constraint}"


# -- the walk ---------------------------------------------------------------------------------
NUMBERS = {"integer", "long", "float", "double"}
TYPES: dict[str, tuple[type, ...]] = {"string": (str,), "integer": (int,), "long": (int,), "boolean": (bool,),
                                      "float": (int, float), "double": (int, float), "structure": (dict,),
                                      "map": (dict,), "list": (list,), "blob": (str, bytes)}


def lower_camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def java_length(text: str) -> int:
    """String.length(): UTF-16 code units (a character outside the BMP counts twice)."""
    return len(text) if text.isascii() else len(text.encode("utf-16-le")) // 2


def blob_size(value: str | bytes) -> int:
    """A JSON/query blob is base64 text; its size is the decoded length."""
    if isinstance(value, bytes):
        return len(value)
    return len(value) * 3 // 4 - value[-2:].count("=") if value else 0


class TypeMismatch(Exception):
    def __init__(self, path: str, expected: str) -> None:
        super().__init__(path)
        self.path, self.expected = path, expected


class Walker:
    """Collects the findings of one request against one service's shapes."""

    def __init__(self, service: str, unread: frozenset[str] = frozenset()) -> None:
        self.service = service
        self.unread = unread  # top-level members the caller could not read (a REST body): not missing
        self.findings: list[Finding] = []

    def add(self, path: str, value: Any, constraint: str, redacted: bool) -> None:
        self.findings.append(Finding(path, value, constraint, redacted))

    def redacted(self, shape: Any, inherited: bool) -> bool:
        return inherited or bool(shape.metadata.get("sensitive")) or (self.service, shape.name) in REDACTED_SHAPES

    def walk(self, value: Any, shape: Any, path: str, hidden: bool = False) -> None:
        kind = shape.type_name
        hidden = self.redacted(shape, hidden)
        if kind in TYPES and not isinstance(value, TYPES[kind]) or (kind in NUMBERS and isinstance(value, bool)):
            raise TypeMismatch(path, kind)
        if kind == "structure":
            self.structure(value, shape, path, hidden)
        elif kind == "list":
            self.container(value, shape, path, hidden, len(value))
            member = shape.member
            if member.type_name in TYPES and member.type_name not in ("structure", "list", "map"):
                if any(self.scalar_faults(item, member) for item in value):
                    said = constraints(member) + ["Member must not be null"]
                    self.add(path, value, f"Member must satisfy constraint: [{', '.join(said)}]", hidden)
            else:
                for index, item in enumerate(value, 1):
                    self.walk(item, member, f"{path}.{index}.member", hidden)
        elif kind == "map":
            self.container(value, shape, path, hidden, len(value))
            if any(self.scalar_faults(key, shape.key) for key in value):
                self.add(path, value, f"Map keys must satisfy constraint: [{', '.join(constraints(shape.key))}]",
                         hidden)
            if shape.value.type_name in ("structure", "list", "map"):
                for key, item in value.items():
                    self.walk(item, shape.value, f"{path}.{key}", hidden)
            elif any(self.scalar_faults(item, shape.value) for item in value.values()):
                self.add(path, value,
                         f"Map value must satisfy constraint: [{', '.join(constraints(shape.value))}]", hidden)
        elif kind in TYPES or kind in NUMBERS:
            for fault in self.scalar_faults(value, shape):
                self.add(path, value, fault, hidden)

    def structure(self, value: dict, shape: Any, path: str, hidden: bool) -> None:
        members = shape.members
        for name in shape.metadata.get("required", ()):
            if value.get(name) is None and not (not path and name in self.unread):
                self.add(f"{path}.{lower_camel(name)}" if path else lower_camel(name), None,
                         "Member must not be null", False)
        for name, item in value.items():
            member = members.get(name)
            if member is None or item is None:
                continue  # AWS ignores members it does not model
            self.walk(item, member, f"{path}.{lower_camel(name)}" if path else lower_camel(name), hidden)

    def container(self, value: Any, shape: Any, path: str, hidden: bool, size: int) -> None:
        meta = shape.metadata
        if "max" in meta and size > meta["max"]:
            self.add(path, value, f"Member must have length less than or equal to {meta['max']}", hidden)
        if "min" in meta and size < meta["min"]:
            self.add(path, value, f"Member must have length greater than or equal to {meta['min']}", hidden)

    @staticmethod
    def scalar_faults(value: Any, shape: Any) -> list[str]:
        meta, kind = shape.metadata, shape.type_name
        if value is None:
            return ["Member must not be null"]
        if kind not in TYPES or not isinstance(value, TYPES[kind]):
            return [f"Member must be of type {kind}"]
        value = cast(Any, value)  # isinstance over a tuple narrowed it to object
        faults: list[str] = []
        size: Any
        if kind in NUMBERS:
            size, noun = value, "value"
        elif kind == "blob":
            size, noun = blob_size(value), "length"
        elif kind == "string":
            size, noun = java_length(value), "length"
        else:
            return []
        if "max" in meta and size > meta["max"]:
            faults.append(f"Member must have {noun} less than or equal to {number(meta['max'])}")
        if "min" in meta and size < meta["min"]:
            faults.append(f"Member must have {noun} greater than or equal to {number(meta['min'])}")
        if kind == "string":
            pattern = meta.get("pattern")
            regex = compiled(pattern) if pattern is not None else None
            if regex is not None and not regex.fullmatch(value):
                faults.append(f"Member must satisfy regular expression pattern: {pattern}")
            if "enum" in meta and value not in meta["enum"]:
                faults.append(f"Member must satisfy enum value set: [{', '.join(meta['enum'])}]")
        return faults


# -- query protocol: the flat form as the nested request ---------------------------------------
def from_query(form: dict[str, str], shape: Any) -> dict[str, Any]:
    """`Parameters.member.1.ParameterKey=K` and the like as {"Parameters": [{"ParameterKey": "K"}]}."""
    if shape is None:  # an operation without input (iam GenerateCredentialReport)
        return {}
    prefixes = {key[:i] for key in form for i, c in enumerate(key + ".") if c == "."}
    return _query_value(form, prefixes, shape, "") or {}


def _query_value(form: dict[str, str], prefixes: set[str], shape: Any, key: str) -> Any:
    kind = shape.type_name
    if kind == "structure":
        result = {}
        for name, member in shape.members.items():
            wire = member.serialization.get("name", name)
            value = _query_value(form, prefixes, member, f"{key}.{wire}" if key else wire)
            if value is not None:
                result[name] = value
        return result if result or not key else None
    if kind == "list":
        if key not in prefixes and key not in form:
            return None
        stem = key if shape.serialization.get("flattened") else f"{key}.member"
        items, index = [], 1
        while f"{stem}.{index}" in prefixes or f"{stem}.{index}" in form:
            items.append(_query_value(form, prefixes, shape.member, f"{stem}.{index}"))
            index += 1
        return items
    if kind == "map":
        if key not in prefixes:
            return None
        stem = key if shape.serialization.get("flattened") else f"{key}.entry"
        k_name, v_name = shape.key.serialization.get("name", "key"), shape.value.serialization.get("name", "value")
        entries, index = {}, 1
        while f"{stem}.{index}" in prefixes:
            entries[form.get(f"{stem}.{index}.{k_name}", "")] = _query_value(form, prefixes, shape.value,
                                                                             f"{stem}.{index}.{v_name}")
            index += 1
        return entries
    if key not in form:
        return None
    text = form[key]
    try:
        if kind in ("integer", "long"):
            return int(text)
        if kind in ("float", "double"):
            return float(text)
    except ValueError:
        return text  # the walk reports the type
    if kind == "boolean":
        return {"true": True, "false": False}.get(text, text)
    return text


# -- the entry point --------------------------------------------------------------------------
def findings(service: str, operation: str, params: dict[str, Any],
             unread: frozenset[str] = frozenset()) -> tuple[list[Finding], list[AwsError]]:
    """What AWS would reject in the request: constraint findings, and limit errors with their own codes.
    `unread`: top-level members that travel where the caller did not read (not reported missing)."""
    shape = service_model(service).operation_model(operation).input_shape
    walker = Walker(service, unread)
    if shape is not None:
        walker.walk(params, shape, "")
    from mlops_local.limits import LIMITS  # it imports Finding from here

    errors: list[AwsError] = []
    for limit in LIMITS:
        if limit.service == service and operation in limit.operations:
            for found in limit.check(params):
                if isinstance(found, Finding):
                    walker.findings.append(found)
                else:
                    errors.append(found)
    return walker.findings, errors


def error_code(service: str) -> str:
    if service in ERROR_CODES:
        return ERROR_CODES[service]
    return "ValidationError" if service_model(service).protocol in QUERY_PROTOCOLS else "ValidationException"


def message(service: str, found: list[Finding]) -> str:
    if service == "ecr":  # "Invalid parameter at 'repositoryName' failed to satisfy constraint: 'must ...'"
        first = found[0]
        said = first.constraint.replace("Member must satisfy regular expression pattern: ",
                                        "must satisfy regular expression '") .replace("Member must", "must")
        said = said + "'" if "regular expression '" in said else said
        return f"Invalid parameter at '{first.path}' failed to satisfy constraint: '{said}'"
    count = len(found)
    return f"{count} validation error{'s' if count > 1 else ''} detected: " + "; ".join(f.coral() for f in found)


def check(service: str, operation: str, params: dict[str, Any], unread: frozenset[str] = frozenset()) -> None:
    """Raise the AwsError AWS answers when it rejects the request (HTTP 400); return when it accepts it."""
    try:
        found, errors = findings(service, operation, params, unread)
    except TypeMismatch as mismatch:
        raise AwsError("SerializationException" if service_model(service).protocol not in QUERY_PROTOCOLS
                       else error_code(service),
                       f"Unexpected value at '{mismatch.path}': expected {mismatch.expected}") from None
    if found:
        raise AwsError(error_code(service), message(service, found))
    if errors:
        raise errors[0]


# -- what the gateway asks -----------------------------------------------------------------------
JSON_SERVICES = ("codepipeline", "sagemaker", "glue", "kms", "logs", "events", "ecr")
QUERY_SERVICES = ("cloudformation", "iam", "sts")


@functools.lru_cache(maxsize=None)
def _targets() -> dict[str, str]:
    return {service_model(name).metadata["targetPrefix"]: name for name in JSON_SERVICES}


def service_of_target(prefix: str) -> str | None:
    """The service an X-Amz-Target prefix names (e.g. AWSGlue -> glue), None for one we do not check."""
    return _targets().get(prefix)


@functools.lru_cache(maxsize=None)
def operations(service: str) -> frozenset[str]:
    return frozenset(service_model(service).operation_names)


def query_request(service: str, operation: str, form: dict[str, str]) -> dict[str, Any]:
    return from_query(form, service_model(service).operation_model(operation).input_shape)
