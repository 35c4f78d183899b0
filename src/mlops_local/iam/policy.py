"""IAM policy documents: parsed once, then matched against requests as IAM matches them.

Semantics follow the IAM User Guide, "IAM JSON policy elements reference": Action/NotAction,
Resource/NotResource, Principal/NotPrincipal, Condition and its operators, and "IAM policy
elements: Variables and tags". Every pattern is compiled when the policy is parsed; a pattern
with policy variables is compiled per request (cached), since its text depends on the caller.

Over 400 lines on purpose: one policy grammar (patterns, conditions, principals, statements)
whose parts share the request context; split, each would import the others.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from typing import Any, Callable, Mapping, Sequence, Union

ContextValue = Union[str, bool, int, float, Sequence[str]]
_Parts = tuple[tuple[str, str], ...]


class PolicyError(ValueError):
    """A policy document IAM would reject (or one this evaluator cannot judge)."""


class _Unresolved(Exception):
    """A policy variable names a key the request does not carry."""


class Effect(Enum):
    ALLOW = "Allow"
    DENY = "Deny"


class PrincipalMatch(Enum):
    """How a resource policy's Principal names the caller."""
    NONE = "none"
    ACCOUNT = "account"  # names the caller's account: delegates to the account's IAM policies
    DIRECT = "direct"  # names the caller itself (user, role, role session, service) or everyone


@dataclass(frozen=True)
class RequestContext:
    """One request as IAM sees it.

    principal_arn is the caller as AWS reports it: an assumed-role session
    (arn:aws:sts::123456789012:assumed-role/Role/Session), a user, the account root, or a service
    principal name such as lambda.amazonaws.com. role_arn is the role behind a session, with its
    path. keys are the condition keys of the request; their names are case-insensitive.
    """
    principal_arn: str
    action: str
    resource: str
    account: str
    role_arn: str | None = None
    keys: Mapping[str, ContextValue] = field(default_factory=dict)
    _values: dict[str, ContextValue] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        values = _derived_keys(self)
        values.update((name.lower(), value) for name, value in self.keys.items())
        object.__setattr__(self, "_values", values)

    @property
    def is_service(self) -> bool:
        return not self.principal_arn.startswith("arn:")

    @property
    def is_session(self) -> bool:
        return ":assumed-role/" in self.principal_arn

    @property
    def is_root(self) -> bool:
        return self.principal_arn.endswith(":root")

    @property
    def account_root(self) -> str:
        return f"arn:{_partition(self.principal_arn)}:iam::{self.account}:root"

    def value(self, key: str) -> ContextValue | None:
        """The request's value for a condition key (name in lower case), None when absent."""
        value = self._values.get(key)
        if value is None and key in _CLOCK_KEYS:
            return _CLOCK_KEYS[key](dt.datetime.now(dt.timezone.utc))  # asked for rarely: not in every context
        return value


_CLOCK_KEYS: dict[str, Callable[[dt.datetime], str]] = {
    "aws:currenttime": lambda now: now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    "aws:epochtime": lambda now: str(int(now.timestamp())),
}


def _partition(arn: str) -> str:
    parts = arn.split(":", 2)
    return parts[1] if len(parts) > 2 and parts[1] else "aws"


def _derived_keys(ctx: RequestContext) -> dict[str, ContextValue]:
    """Global keys AWS puts in every request context, from what the context already says.

    Source: IAM User Guide, "AWS global condition context keys" (aws:PrincipalArn is the role ARN
    for a role session; aws:username exists only for IAM users). aws:CurrentTime and
    aws:EpochTime, always present, are read from the clock when a condition asks (_CLOCK_KEYS).
    """
    values: dict[str, ContextValue] = {}
    if ctx.is_service:
        values["aws:principalservicename"] = ctx.principal_arn
        return values
    values["aws:principalaccount"] = ctx.account
    if ctx.is_session:
        values["aws:principaltype"] = "AssumedRole"
        if ctx.role_arn:
            values["aws:principalarn"] = ctx.role_arn
    elif ctx.is_root:
        values["aws:principaltype"] = "Account"
        values["aws:principalarn"] = ctx.principal_arn
    elif ":user/" in ctx.principal_arn:
        values["aws:principaltype"] = "User"
        values["aws:principalarn"] = ctx.principal_arn
        values["aws:username"] = ctx.principal_arn.rsplit("/", 1)[-1]
    return values


# --- patterns: wildcards and policy variables ------------------------------------------------

_TOKEN = re.compile(r"\$\{[^}]*\}|\*|\?")
_ESCAPES = {"*": "*", "?": "?", "$": "$"}  # ${*} ${?} ${$}: the literal character


def _tokenize(text: str, variables: bool) -> _Parts:
    """Split a pattern into ("lit", text), ("star", ""), ("one", "") and ("var", key) parts."""
    parts: list[tuple[str, str]] = []
    pos = 0
    for found in _TOKEN.finditer(text):
        token = found.group()
        if found.start() > pos:
            parts.append(("lit", text[pos:found.start()]))
        if token == "*":
            parts.append(("star", ""))
        elif token == "?":
            parts.append(("one", ""))
        elif not variables:  # Version 2008-10-17: no policy variables, "${" is plain text
            parts.append(("lit", token[:2]))
            parts.extend(_tokenize(token[2:], variables))
        elif token[2:-1].strip() in _ESCAPES:
            parts.append(("lit", _ESCAPES[token[2:-1].strip()]))
        else:
            parts.append(("var", token[2:-1]))
        pos = found.end()
    if pos < len(text):
        parts.append(("lit", text[pos:]))
    return tuple(parts)


def _resolve(body: str, ctx: RequestContext) -> str:
    """The value of ${key} or ${key, 'default'} for this request."""
    key, _, default = body.partition(",")
    value = ctx.value(key.strip().lower())
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    default = default.strip()
    if len(default) >= 2 and default[0] == default[-1] == "'":
        return default[1:-1]
    raise _Unresolved(key)  # absent, or multivalued (not allowed as a variable)


def _regex(parts: Sequence[tuple[str, str]], arn: bool) -> str:
    """Regex text for resolved parts.

    ARNs: wildcards stay inside their colon-separated segment, except in the resource segment
    (the sixth) and when `*` ends a segment, where it may span colons (IAM User Guide, "IAM JSON
    policy elements: Resource").
    """
    out: list[str] = []
    segment = 0
    for index, (kind, text) in enumerate(parts):
        free = not arn or segment >= 5
        if kind == "lit":
            out.append(re.escape(text))
            segment += text.count(":")
        elif kind == "one":
            out.append("." if free else "[^:]")
        else:
            following = parts[index + 1] if index + 1 < len(parts) else ("lit", ":")
            ends_segment = following[0] == "lit" and following[1].startswith(":")
            out.append(".*" if free or ends_segment else "[^:]*")
    return "".join(out)


@lru_cache(maxsize=4096)
def _compiled(regex: str, flags: int) -> re.Pattern[str]:
    return re.compile(regex, flags | re.DOTALL)


class Pattern:
    """A pattern with `*`/`?` wildcards (or none) and policy variables."""
    __slots__ = ("text", "_parts", "_arn", "_flags", "_static")

    def __init__(self, text: str, *, arn: bool, wildcards: bool = True, ignore_case: bool = False,
                 variables: bool = True) -> None:
        self.text = text
        parts = _tokenize(text, variables)
        if not wildcards:  # StringEquals and friends: `*` and `?` are plain characters
            parts = tuple(("lit", "*" if kind == "star" else "?") if kind in ("star", "one") else (kind, value)
                          for kind, value in parts)
        self._parts = parts
        self._arn = arn
        self._flags = re.IGNORECASE if ignore_case else 0
        dynamic = any(kind == "var" for kind, _ in parts)
        self._static = None if dynamic else _compiled(_regex(parts, arn), self._flags)

    def matches(self, value: str, ctx: RequestContext) -> bool:
        """Whether value matches; raises _Unresolved when a variable has no value."""
        if self._static is not None:
            return self._static.fullmatch(value) is not None
        resolved = [("lit", _resolve(text, ctx)) if kind == "var" else (kind, text) for kind, text in self._parts]
        return _compiled(_regex(resolved, self._arn), self._flags).fullmatch(value) is not None


def _action_regex(actions: Sequence[str]) -> re.Pattern[str]:
    """One case-insensitive regex for a statement's actions (IAM matches actions ignoring case)."""
    alternatives = "|".join(_regex(_tokenize(action, variables=False), arn=False) for action in actions)
    return re.compile(f"(?:{alternatives})", re.IGNORECASE)


# --- conditions --------------------------------------------------------------------------------

def _number(text: str) -> float:
    return float(text)


def _date(text: str) -> float:
    """A DateX operand: ISO 8601 or epoch seconds (IAM User Guide, "Date condition operators")."""
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return float(text)
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.timestamp()


Matcher = Callable[[str, RequestContext], bool]


def _plain(policy_value: str, variables: bool, ignore_case: bool = False) -> Matcher:
    pattern = Pattern(policy_value, arn=False, wildcards=False, ignore_case=ignore_case, variables=variables)
    return pattern.matches


def _like(policy_value: str, variables: bool, arn: bool) -> Matcher:
    return Pattern(policy_value, arn=arn, variables=variables).matches


def _ordered(parse: Callable[[str], float], test: Callable[[float, float], bool], policy_value: str) -> Matcher:
    expected = parse(policy_value)

    def match(value: str, ctx: RequestContext) -> bool:
        try:
            return test(parse(value), expected)
        except ValueError:  # a request value of the wrong type matches nothing
            return False
    return match


def _ip(policy_value: str) -> Matcher:
    network = ipaddress.ip_network(policy_value, strict=False)

    def match(value: str, ctx: RequestContext) -> bool:
        try:
            return ipaddress.ip_address(value) in network
        except ValueError:
            return False
    return match


def _bool(policy_value: str) -> Matcher:
    expected = policy_value.lower()
    return lambda value, ctx: value.lower() == expected


_Builder = Callable[[str, bool], Matcher]
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "Equals": lambda a, b: a == b,
    "LessThan": lambda a, b: a < b,
    "LessThanEquals": lambda a, b: a <= b,
    "GreaterThan": lambda a, b: a > b,
    "GreaterThanEquals": lambda a, b: a >= b,
}

# Positive operators; each negated one maps to (its positive operator, negated=True).
_POSITIVE: dict[str, _Builder] = {
    "StringEquals": lambda v, var: _plain(v, var),
    "StringEqualsIgnoreCase": lambda v, var: _plain(v, var, ignore_case=True),
    "StringLike": lambda v, var: _like(v, var, arn=False),
    "ArnEquals": lambda v, var: _like(v, var, arn=True),  # ArnEquals takes wildcards as ArnLike does
    "ArnLike": lambda v, var: _like(v, var, arn=True),
    "Bool": lambda v, var: _bool(v),
    "BinaryEquals": lambda v, var: _plain(v, False),
    "IpAddress": lambda v, var: _ip(v),
    **{f"Numeric{name}": (lambda test: lambda v, var: _ordered(_number, test, v))(test)
       for name, test in _COMPARE.items()},
    **{f"Date{name}": (lambda test: lambda v, var: _ordered(_date, test, v))(test)
       for name, test in _COMPARE.items()},
}
_NEGATED = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
    "NumericNotEquals": "NumericEquals",
    "DateNotEquals": "DateEquals",
    "NotIpAddress": "IpAddress",
}
_OPERATORS = {name.lower(): name for name in [*_POSITIVE, *_NEGATED, "Null"]}


def _strings(value: ContextValue | None) -> list[str] | None:
    """The request's values for a key as strings (None when the key is absent)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, (str, int, float)):
        return [str(value)]
    return [str(item) for item in value]


@dataclass(frozen=True)
class Condition:
    """One operator/key test of a Condition block; its policy values are ORed."""
    operator: str  # as written, e.g. "ForAnyValue:StringNotLikeIfExists"
    key: str  # lower case: condition key names are case-insensitive
    values: tuple[str, ...]
    base: str
    negated: bool
    if_exists: bool
    set_operator: str | None
    _matchers: tuple[Matcher, ...] = field(repr=False, compare=False)

    def holds(self, ctx: RequestContext) -> bool:
        """Whether the request satisfies this test (IAM User Guide, "Condition operators").

        A missing key fails a positive operator and satisfies a negated one; ...IfExists is
        satisfied by a missing key; ForAllValues is satisfied by a missing or empty key,
        ForAnyValue is not. A variable the request cannot resolve makes the test fail.
        """
        request_values = _strings(ctx.value(self.key))
        if self.base == "Null":
            absent = not request_values
            return any((value.lower() == "true") == absent for value in self.values)
        try:
            if self.set_operator == "ForAllValues":
                return all(self._one(value, ctx) for value in request_values or [])
            if self.set_operator == "ForAnyValue":
                return any(self._one(value, ctx) for value in request_values or [])
            if request_values is None:
                return self.if_exists or self.negated
            if self.negated:
                return all(self._one(value, ctx) for value in request_values)
            return any(self._one(value, ctx) for value in request_values)
        except _Unresolved:
            return False

    def _one(self, value: str, ctx: RequestContext) -> bool:
        """One request value against the policy values (OR), negated for a negated operator."""
        matched = any(match(value, ctx) for match in self._matchers)
        return matched != self.negated


def _condition(operator: str, key: str, raw: Any, variables: bool) -> Condition:
    name = operator
    set_operator = None
    for prefix in ("ForAnyValue:", "ForAllValues:"):
        if name.lower().startswith(prefix.lower()):
            set_operator, name = prefix[:-1], name[len(prefix):]
    if_exists = name.lower().endswith("ifexists")
    if if_exists:
        name = name[:-len("IfExists")]
    canonical = _OPERATORS.get(name.lower())
    if canonical is None or (canonical == "Null" and (if_exists or set_operator)):
        raise PolicyError(f"unsupported condition operator {operator!r}")
    values = tuple(_scalar(value) for value in (raw if isinstance(raw, list) else [raw]))
    negated = canonical in _NEGATED
    base = _NEGATED.get(canonical, canonical)
    try:
        matchers = () if base == "Null" else tuple(_POSITIVE[base](value, variables) for value in values)
    except ValueError as error:
        raise PolicyError(f"{operator}: invalid value for {key}: {error}") from error
    return Condition(operator, key.lower(), values, base, negated, if_exists, set_operator, matchers)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise PolicyError(f"condition values are strings, numbers or booleans, not {value!r}")


# --- principals --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Principals:
    """A Principal/NotPrincipal element: "*" or {"AWS"|"Service"|"Federated"|"CanonicalUser": ...}."""
    everyone: bool
    aws: frozenset[str]  # ARNs; account ids are stored as their root ARN's account id
    services: frozenset[str]
    others: frozenset[str]  # Federated / CanonicalUser: never a caller of this stand-in

    def names(self, ctx: RequestContext) -> PrincipalMatch:
        if self.everyone:
            return PrincipalMatch.DIRECT
        if ctx.is_service:
            return PrincipalMatch.DIRECT if ctx.principal_arn.lower() in self.services else PrincipalMatch.NONE
        if not self.aws.isdisjoint(_identities(ctx)):
            return PrincipalMatch.DIRECT
        if ctx.account_root in self.aws or ctx.account in self.aws:
            return PrincipalMatch.DIRECT if ctx.is_root else PrincipalMatch.ACCOUNT
        return PrincipalMatch.NONE

    def lists_all_of(self, ctx: RequestContext) -> bool:
        """For NotPrincipal: whether every identity of the caller is listed.

        A role session is evaluated as its session, its role and its account; NotPrincipal spares
        it only when all of them are listed (IAM User Guide, "AWS JSON policy elements:
        NotPrincipal").
        """
        if self.everyone:
            return True
        if ctx.is_service:
            return ctx.principal_arn.lower() in self.services
        account_listed = ctx.account_root in self.aws or ctx.account in self.aws
        return _identities(ctx) <= self.aws and (account_listed or ctx.is_root)


def _identities(ctx: RequestContext) -> set[str]:
    """The caller and, for a role session, its role: what a Principal may name directly."""
    return {ctx.principal_arn, ctx.role_arn} if ctx.role_arn else {ctx.principal_arn}


def _principals(raw: Any) -> Principals:
    if raw == "*":
        return Principals(True, frozenset(), frozenset(), frozenset())
    if not isinstance(raw, Mapping):
        raise PolicyError(f"Principal must be \"*\" or a mapping, not {raw!r}")
    aws: set[str] = set()
    services: set[str] = set()
    others: set[str] = set()
    everyone = False
    for kind, names in raw.items():
        for name in names if isinstance(names, list) else [names]:
            if kind == "AWS":
                everyone = everyone or name == "*"
                aws.add(str(name))
            elif kind == "Service":
                services.add(str(name).lower())
            elif kind in ("Federated", "CanonicalUser"):
                others.add(str(name))
            else:
                raise PolicyError(f"unknown principal type {kind!r}")
    return Principals(everyone, frozenset(aws), frozenset(services), frozenset(others))


# --- statements and policies -------------------------------------------------------------------

@dataclass(frozen=True)
class Statement:
    """One statement, compiled."""
    sid: str | None
    effect: Effect
    actions: tuple[str, ...]
    not_action: bool
    resources: tuple[Pattern, ...] | None  # None: no Resource element (resource policies may omit it)
    not_resource: bool
    principals: Principals | None
    not_principal: bool
    conditions: tuple[Condition, ...]
    _action_regex: re.Pattern[str] = field(repr=False, compare=False)

    def applies(self, ctx: RequestContext) -> bool:
        """Whether action, resource and conditions match the request (the principal aside)."""
        if (self._action_regex.fullmatch(ctx.action) is not None) == self.not_action:
            return False
        if self.resources is not None and not self._resource_matches(ctx):
            return False
        return all(condition.holds(ctx) for condition in self.conditions)

    def principal_match(self, ctx: RequestContext) -> PrincipalMatch:
        """How this (resource policy) statement's Principal or NotPrincipal names the caller."""
        if self.principals is None:
            return PrincipalMatch.NONE
        if self.not_principal:
            return PrincipalMatch.NONE if self.principals.lists_all_of(ctx) else PrincipalMatch.DIRECT
        return self.principals.names(ctx)

    def _resource_matches(self, ctx: RequestContext) -> bool:
        assert self.resources is not None
        unresolved = False
        for pattern in self.resources:
            try:
                if pattern.matches(ctx.resource, ctx):
                    return not self.not_resource
            except _Unresolved:  # this ARN names no resource for this caller
                unresolved = True
        return self.not_resource and not unresolved


@dataclass(frozen=True)
class Policy:
    """A parsed policy document; name and arn say where it came from (for messages, reports)."""
    statements: tuple[Statement, ...]
    name: str = ""
    arn: str | None = None


def _strings_of(statement: Mapping[str, Any], element: str) -> tuple[str, ...]:
    raw = statement[element]
    values = raw if isinstance(raw, list) else [raw]
    if not values or not all(isinstance(value, str) for value in values):
        raise PolicyError(f"{element} must be a string or a non-empty list of strings, not {raw!r}")
    return tuple(values)


def _one_of(statement: Mapping[str, Any], positive: str, negative: str, required: bool) -> tuple[str | None, bool]:
    present = [name for name in (positive, negative) if name in statement]
    if len(present) > 1:
        raise PolicyError(f"a statement has {positive} or {negative}, not both")
    if not present:
        if required:
            raise PolicyError(f"a statement needs {positive} or {negative}")
        return None, False
    return present[0], present[0] == negative


def parse_statement(raw: Mapping[str, Any], variables: bool = True) -> Statement:
    """Compile one statement; raises PolicyError for what IAM would reject."""
    if not isinstance(raw, Mapping):
        raise PolicyError(f"a statement is a mapping, not {raw!r}")
    try:
        effect = Effect(raw.get("Effect"))
    except ValueError:
        raise PolicyError(f"Effect must be Allow or Deny, not {raw.get('Effect')!r}") from None
    action_element, not_action = _one_of(raw, "Action", "NotAction", required=True)
    assert action_element is not None
    actions = _strings_of(raw, action_element)
    resource_element, not_resource = _one_of(raw, "Resource", "NotResource", required=False)
    resources = None
    if resource_element is not None:
        resources = tuple(Pattern(text, arn=True, variables=variables) for text in _strings_of(raw, resource_element))
    principal_element, not_principal = _one_of(raw, "Principal", "NotPrincipal", required=False)
    principals = _principals(raw[principal_element]) if principal_element else None
    block = raw.get("Condition", {})
    if not isinstance(block, Mapping):
        raise PolicyError(f"Condition must be a mapping, not {block!r}")
    conditions: list[Condition] = []
    for operator, tests in block.items():
        if not isinstance(tests, Mapping):
            raise PolicyError(f"{operator} must map condition keys to values")
        conditions.extend(_condition(operator, key, value, variables) for key, value in tests.items())
    sid = raw.get("Sid")
    return Statement(sid=str(sid) if sid is not None else None, effect=effect, actions=actions,
                     not_action=not_action, resources=resources, not_resource=not_resource,
                     principals=principals, not_principal=not_principal, conditions=tuple(conditions),
                     _action_regex=_action_regex(actions))


def parse_policy(document: Mapping[str, Any] | str, *, name: str = "", arn: str | None = None) -> Policy:
    """Parse a policy document (a mapping or its JSON text).

    Policy variables are honoured only with Version 2012-10-17; in older documents "${...}" is
    plain text (IAM User Guide, "IAM JSON policy elements: Version").
    """
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except json.JSONDecodeError as error:
            raise PolicyError(f"policy is not JSON: {error}") from error
    if not isinstance(document, Mapping) or "Statement" not in document:
        raise PolicyError("a policy document is a mapping with a Statement")
    variables = document.get("Version") == "2012-10-17"
    raw = document["Statement"]
    statements = raw if isinstance(raw, list) else [raw]
    return Policy(tuple(parse_statement(statement, variables) for statement in statements), name=name, arn=arn)
