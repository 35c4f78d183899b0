"""summary.json's `access` and report.md's "Access" section, from access.jsonl's records.

Per principal (a role's sessions count as the role): its requests and its denials, enforced
("denied") or, with enforcement off, would-be ("would-deny"); whether enforcement was on is read
from the decisions seen. Given the roles deployed in the account (iam.unused.deployed_roles), also
what each role was granted but did not use in the run (iam.unused, after IAM Access Analyzer's
unused access findings).
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Mapping

from mlops_local.iam.unused import RolePolicies, unused_access

DENIED, WOULD_DENY = "denied", "would-deny"  # iam.decisions' verdicts, enforced and dry run
NOT_ENFORCED = "not-enforced"  # access_log: a record neither enforced nor judged
ON, OFF, UNKNOWN = "on", "off", "unknown"


def _denial(decision: str) -> bool:
    return decision.startswith((DENIED, WOULD_DENY))


def enforcement(records: Iterable[Mapping[str, Any]]) -> str:
    """"on" when the records say they were enforced (or a request was denied), "off" when one would have
    been denied (or none was judged), else "unknown" (records written before the `enforced` flag)."""
    records = list(records)
    if any(record.get("enforced") for record in records):
        return ON
    decisions = {str(record.get("decision", "")) for record in records}
    if any(decision.startswith(DENIED) for decision in decisions):
        return ON
    if any(decision.startswith((WOULD_DENY, NOT_ENFORCED)) for decision in decisions):
        return OFF
    return UNKNOWN


def _who(principal: Mapping[str, Any]) -> str:
    return (principal.get("role") or principal.get("arn")
            or " ".join(filter(None, (principal["kind"], principal.get("access_key_id")))))


def access_summary(records: Iterable[Mapping[str, Any]], roles: RolePolicies | None = None) -> dict[str, Any]:
    """summary.json's `access`: requests per principal, each denial (action on resource, why) with how
    often it came up, whether enforcement was on; with `roles` (role ARN -> identity policies, as
    deployed), `unused`: the unused roles and, per role, the grants no allowed check used."""
    records = list(records)
    requests: Counter[str] = Counter()
    denials: Counter[tuple[str, str, str, str]] = Counter()
    for record in records:
        who = _who(record["principal"])
        requests[who] += 1
        if not _denial(str(record.get("decision", ""))):
            continue
        denied = [check for check in record.get("checks", []) if _denial(str(check.get("decision", "")))]
        for check in denied:
            denials[(who, check["action"], check["resource"], check.get("reason", ""))] += 1
        if not denied:  # unmapped, unrecognized credentials, a role gone: the record's own reason
            reason = str(record["decision"]).removeprefix(WOULD_DENY).removeprefix(DENIED).strip(" ()")
            for check in record.get("checks") or [{"action": f"{record['service']}:{record['operation']}",
                                                   "resource": ""}]:
                denials[(who, check["action"], check["resource"], reason)] += 1
    found: dict[str, Any] = {
        "requests": sum(requests.values()),
        "enforcement": enforcement(records),
        "principals": [{"principal": who, "requests": count,
                        "denied": sum(n for key, n in denials.items() if key[0] == who)}
                       for who, count in sorted(requests.items(), key=lambda item: (-item[1], item[0]))],
        "denied": [{"principal": who, "action": action, "resource": resource, "reason": reason, "count": n}
                   for (who, action, resource, reason), n in sorted(denials.items())]}
    if roles is not None:
        found["unused"] = unused_access(roles, records)
    return found


_HEADS = {
    ON: ("enforced: each was judged against the caller's policies as deployed before it was served",
         "denied", "Denied:", "No denials."),
    OFF: ("not enforced (a dry run): each was judged after the run against the caller's policies as deployed",
          "would-be denials", "Would-be denials:", "No would-be denials."),
    UNKNOWN: ("none denied (the decisions do not say whether enforcement was on)",
              "denied", "Denied:", "No denials."),
}


def render_access(access: Mapping[str, Any]) -> list[str]:
    """The report's "Access" section: the denials per principal, then what was granted but not used."""
    said, column, listed, none = _HEADS[access.get("enforcement", OFF)]
    lines = ["## Access", "", f"{access['requests']} requests, {said} (access.jsonl has every decision).", "",
             f"| principal | requests | {column} |", "|---|---|---|"]
    lines += [f"| {p['principal']} | {p['requests']} | {p['denied']} |" for p in access["principals"]]
    lines += ["", listed if access["denied"] else none]
    lines += [f"- {d['principal']}: {d['action']} on {d['resource'] or '-'} ({d['reason']}) x{d['count']}"
              for d in access["denied"]]
    if "unused" in access:
        lines += ["", *render_unused(access["unused"])]
    return lines


def _name(role_arn: str) -> str:
    return role_arn.rsplit("/", 1)[-1]


def _statement_line(entries: list[Mapping[str, Any]]) -> str:
    """One statement's unused grants: `policy/sid: actions on resources`."""
    first = entries[0]
    where = f"{first['policy']}/{first['sid']}" if first.get("sid") else first["policy"]
    if "not_action" in first:
        actions = "every action but " + ", ".join(first["not_action"])
    else:
        actions = ", ".join(entry.get("action") or ", ".join(entry["actions"]) for entry in entries)
    if "not_resources" in first:
        resources = "every resource but " + ", ".join(first["not_resources"])
    else:
        resources = ", ".join(first["resources"]) or "-"
    return f"  - {where}: {actions} on {resources}"


def render_unused(unused: Mapping[str, Any]) -> list[str]:
    """"Granted but not used": unused roles on one line, then per role one line per statement."""
    lines = ["### Granted but not used", "",
             "Each role deployed in the account against this run's requests, as IAM Access Analyzer's unused "
             "access findings (tracking period: this run; summary.json lists each action).", ""]
    if unused["roles"]:
        lines.append("- unused roles (no session made a request): "
                     + ", ".join(_name(role) for role in unused["roles"]))
    for role in unused["permissions"]:
        lines.append(f"- {_name(role['role'])}: {len(role['actions'])} granted actions not used")
        statements: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
        for entry in role["actions"]:
            key = (entry["policy"], str(entry.get("sid")), repr(entry.get("resources", entry.get("not_resources"))))
            statements.setdefault(key, []).append(entry)
        lines += [_statement_line(entries) for entries in statements.values()]
    for role in unused.get("unevaluated", []):
        lines.append(f"- {_name(role['role'])}: not evaluated ({role['reason']})")
    if not (unused["roles"] or unused["permissions"] or unused.get("unevaluated")):
        lines.append("Every role made requests and used every grant.")
    return lines
