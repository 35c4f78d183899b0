"""Blue/green endpoint updates with canary traffic shifting and alarm-driven automatic rollback.

UpdateEndpoint's DeploymentConfig (API_DeploymentConfig, API_BlueGreenUpdatePolicy, API_TrafficRoutingConfig,
API_AutoRollbackConfig) and what SageMaker does with it (Developer Guide, "Blue/Green Deployments", "Use canary
traffic shifting", "Use all at once traffic shifting"):
- the new (green) fleet is provisioned beside the old (blue) one;
- CANARY: a portion of the traffic goes to the canary (its CanarySize, "less than or equal to 50% of the new
  fleet's capacity"), and the baking period (WaitIntervalInSeconds) begins, the alarms watching; an alarm in
  ALARM rolls all traffic back to the blue fleet; else all traffic shifts to green and the final baking period
  runs; ALL_AT_ONCE: all traffic shifts at once, then one baking period;
- after the deployment completes, the blue fleet stops after TerminationWaitInSeconds (default 0).
The stand-in's readings, where AWS says no more: the canary's share of the traffic is its share of the new
fleet's capacity (CAPACITY_PERCENT Value %, or INSTANCE_COUNT Value of the config's InitialInstanceCount), and
every n-th request goes to it (deterministic); the final baking period lasts WaitIntervalInSeconds too; alarms
are evaluated every `interval` seconds from the recorded metrics (endpoint_metrics). LINEAR shifting and
MaximumExecutionTimeoutInSeconds are not enforced here.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any, Callable

from mlops_local.sagemaker.endpoint_metrics import ALARM

ALARM_SECONDS = 5.0   # how often the rollback alarms are evaluated during a baking period


class InvalidDeployment(ValueError):
    """A DeploymentConfig the stand-in refuses (the message is the ValidationException's)."""


@dataclass(frozen=True)
class Deployment:
    """What one UpdateEndpoint's DeploymentConfig asks for."""
    routing: str                  # CANARY | ALL_AT_ONCE
    canary_share: float           # the share of requests the canary serves (0 for ALL_AT_ONCE)
    wait_seconds: float           # each baking period
    termination_wait: float       # after completion, before the blue fleet stops
    alarms: tuple[str, ...]
    config: dict[str, Any]        # as given: DescribeEndpoint's LastDeploymentConfig


def parse(config: dict[str, Any] | None, green_instances: int) -> Deployment | None:
    """None when the update asks for no blue/green policy (SageMaker's default then: all at once, no baking)."""
    policy = (config or {}).get("BlueGreenUpdatePolicy")
    if not policy:
        if (config or {}).get("RollingUpdatePolicy"):
            raise InvalidDeployment("The local stand-in does not implement RollingUpdatePolicy deployments.")
        return None
    routing = policy["TrafficRoutingConfiguration"]
    kind = routing["Type"]
    alarms = tuple(a["AlarmName"] for a in ((config or {}).get("AutoRollbackConfiguration") or {}).get("Alarms", []))
    share = 0.0
    if kind == "CANARY":
        size = routing.get("CanarySize")
        if not size:
            raise InvalidDeployment("CanarySize is required when TrafficRoutingConfiguration Type is CANARY.")
        share = (float(size["Value"]) / 100.0 if size["Type"] == "CAPACITY_PERCENT"
                 else float(size["Value"]) / max(green_instances, 1))
        if share > 0.5:
            raise InvalidDeployment(f"CanarySize {size['Type']} {size['Value']} is more than 50% of the new fleet's "
                                    f"capacity ({green_instances} instance(s)); the canary must be at most 50%.")
    elif kind != "ALL_AT_ONCE":
        raise InvalidDeployment(f"The local stand-in does not implement {kind} traffic shifting.")
    return Deployment(kind, share, float(routing["WaitIntervalInSeconds"]),
                      float(policy.get("TerminationWaitInSeconds", 0)), alarms, config or {})


def to_canary(count: int, share: float) -> bool:
    """Whether the count-th request (from 1) goes to the canary: exactly floor(count * share) of the first
    `count` requests do, evenly spread (share 0.25: the 4th, 8th, ...)."""
    return math.floor(count * share) > math.floor((count - 1) * share)


def bake(alarms: tuple[str, ...], evaluate: Callable[[str], str], seconds: float, interval: float,
         stop: threading.Event) -> str | None:
    """Watch the alarms for one baking period: the first alarm found in ALARM (evaluated every `interval`
    seconds and at the end), or None when the period passed with none; "" when `stop` was set."""
    waited = 0.0
    while True:
        for name in alarms:
            if evaluate(name) == ALARM:
                return name
        if waited >= seconds:
            return None
        step = min(interval, seconds - waited)
        if stop.wait(step):
            return ""
        waited += step
