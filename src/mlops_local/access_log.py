"""The access log: every request the stand-in served, who made it and what IAM would check.

Kept in memory per gateway (a run makes a few thousand); `len(log)` marks a point, and
`write_jsonl(path, since)` writes one execution's requests, e.g. runs/<execution-id>/access.jsonl.
A record carries the decision the gateway enforced (iam.enforcement); with enforcement off, a
`decide` function (iam.decisions.Judge.decide) judges the written records when the log is written.
"""
from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from mlops_local.iam.actions import Mapped, Unmapped
    from mlops_local.iam.decisions import AccessDecision
    from mlops_local.iam.principals import Principal


@dataclass(frozen=True)
class Access:
    """One request as the access log keeps it: who, what, and what IAM would check."""
    time: float  # epoch seconds
    principal: Principal
    service: str  # botocore's service name (signing name when the gateway cannot tell)
    operation: str
    authorization: Mapped | Unmapped
    decided: AccessDecision | None = None  # the decision enforced on the request path, if any

    def as_dict(self, decided: AccessDecision | None = None) -> dict[str, Any]:
        """The record as access.jsonl keeps it, with the decision enforced on it (or, when enforcement
        was off, `decided`: the dry run's) and one per check; neither: "not-enforced"."""
        from mlops_local.iam.actions import Mapped

        decided = self.decided or decided

        stamp = dt.datetime.fromtimestamp(self.time, dt.timezone.utc).isoformat(timespec="milliseconds")
        found: dict[str, Any] = {"time": stamp.replace("+00:00", "Z"), "principal": self.principal.as_dict(),
                                 "service": self.service, "operation": self.operation}
        if isinstance(self.authorization, Mapped):
            found["checks"] = [{"action": check.action, "resource": check.resource,
                                **({"conditions": {k: list(v) for k, v in check.conditions.items()}}
                                   if check.conditions else {})} for check in self.authorization.checks]
            if decided is not None and decided.checks:
                for check, decision in zip(found["checks"], decided.checks):
                    check.update(decision.as_dict())
        else:
            found["unmapped"] = self.authorization.reason
        found["decision"] = decided.decision if decided is not None else "not-enforced"
        found["enforced"] = self.decided is not None  # judged on the request path, not afterwards
        return found


class AccessLog:
    """The requests the gateway served, in order, in memory (a run makes a few thousand).

    `len(log)` marks a point; `records(since)` and `write_jsonl(path, since)` read from it on, e.g.
    one pipeline execution's requests into runs/<execution-id>/access.jsonl."""

    def __init__(self) -> None:
        self._records: list[Access] = []
        self._lock = threading.Lock()

    def add(self, access: Access) -> None:
        with self._lock:
            self._records.append(access)

    def __len__(self) -> int:
        return len(self._records)

    def records(self, since: int = 0) -> list[Access]:
        with self._lock:
            return self._records[since:]

    def write_jsonl(self, path: Path, since: int = 0,
                    decide: Callable[[Access], AccessDecision] | None = None) -> list[dict[str, Any]]:
        """Write the records from `since` on as JSON lines and return them as written. With `decide`,
        a record that was not decided on the request path carries its dry-run decision, judged now."""
        written = [access.as_dict(decide(access) if decide and access.decided is None else None)
                   for access in self.records(since)]
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as out:
            out.writelines(json.dumps(record) + "\n" for record in written)
        return written

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
