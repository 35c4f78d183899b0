"""EventBridge on the stand-in: the events S3 sends, matched against the deployed rules, whose
CodePipeline targets start an execution as the target's role.

- S3 sends an event only for a bucket with EventBridge notifications enabled (Amazon S3 User Guide,
  "Using EventBridge"; "EventBridge event message structure" for the event's fields). moto calls its
  `_send_event_bridge_message` exactly then, from PutObject, CopyObject, CompleteMultipartUpload, ...;
  that one function is replaced so the event has AWS's shape and reaches the pipeline (moto's own
  sends to rule targets and raises NotImplementedError for a CodePipeline ARN, which it swallows).
- moto's CloudFormation drops a bucket's NotificationConfiguration; cloudformation.bucket_properties puts
  it (and the other dropped bucket properties) on moto's bucket, and again after each stack operation here.
- Rules and their EventPatterns are moto's records (AWS::Events::Rule is a moto model); moto's
  `EventPattern.matches_event` matches, not a matcher of our own.
- A CodePipeline target is invoked as its RoleArn, assumed by events.amazonaws.com (trust policy
  checked), with codepipeline:StartPipelineExecution judged as that session; the execution's trigger
  is `CloudWatchEvent` with the rule's ARN as triggerDetail (CodePipeline API Reference,
  ExecutionTrigger). Delivery is asynchronous, as EventBridge's is; a failed invocation is logged (on
  AWS it is a FailedInvocations metric), never an error of the S3 request.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from typing import Any, Callable, Mapping, cast

from mlops_local.cloudformation.bucket_properties import apply_stack_buckets
from mlops_local.gateway import account_id, now
from mlops_local.runtime import RoleNotAssumable, Runtime

logger = logging.getLogger(__name__)

# moto's event name -> the `reason` S3 gives an Object Created event (S3 User Guide, "EventBridge event
# message structure", Event message detail field).
REASONS = {"Put": "PutObject", "Post": "POST Object", "Copy": "CopyObject",
           "CompleteMultipartUpload": "CompleteMultipartUpload"}
Start = Callable[[str, Mapping[str, str]], str]   # (pipeline name, trigger) -> execution id

_bus: "EventBridge | None" = None  # moto's backends are per process, so is the hook into them


def s3_event(bucket: str, region: str, key: str, size: int, etag: str, version_id: str | None, reason: str,
             requester: str, when: dt.datetime) -> dict[str, Any]:
    """An Object Created event as S3 sends it to EventBridge."""
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Object Created", "source": "aws.s3",
        "account": account_id(), "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "region": region,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0", "bucket": {"name": bucket},
            "object": {"key": key, "size": size, "etag": etag.strip('"'),
                       **({"version-id": version_id} if version_id and version_id != "null" else {}),
                       "sequencer": f"{int(when.timestamp() * 1e6):018X}"},
            "request-id": uuid.uuid4().hex[:16].upper(), "requester": requester,
            "source-ip-address": "127.0.0.1", "reason": reason}}


class EventBridge:
    """Delivers events to the rules of the default event bus; `start` starts a pipeline execution."""

    def __init__(self, runtime: Runtime, start: Start) -> None:
        self.runtime = runtime
        self.start = start
        self.delivered: list[dict[str, Any]] = []   # (rule, target, outcome) per invocation, for tests and logs
        self._lock = threading.Lock()

    def register(self) -> "EventBridge":
        global _bus
        from moto.s3 import notifications

        _bus = self
        notifications._send_event_bridge_message = _from_moto_s3  # type: ignore[assignment]
        for operation in ("CreateStack", "UpdateStack", "ExecuteChangeSet"):
            self.runtime.aws.gateway.after("cloudformation", operation, self._after_stack)
        return self

    # -- events in ------------------------------------------------------------------------------
    def put(self, event: Mapping[str, Any]) -> list[str]:
        """Match the event against every enabled rule of the default bus; invoke the matching rules'
        targets in the background. Returns the matching rules' ARNs."""
        from moto.events.models import events_backends

        bus = events_backends[account_id()][self.runtime.aws.gateway.region].event_buses.get("default")
        matched = []
        for rule in list(bus.rules.values()) if bus else []:
            if rule.state == "ENABLED" and rule.event_pattern.matches_event(cast(Any, dict(event))):
                matched.append(rule.arn)
                for target in list(rule.targets):
                    threading.Thread(target=self._invoke, args=(rule.arn, dict(target)), daemon=True,
                                     name=f"events-{rule.name}").start()
        logger.info("event %s from %s matched %d rule(s)", event.get("detail-type"), event.get("source"),
                    len(matched))
        return matched

    def _invoke(self, rule_arn: str, target: Mapping[str, Any]) -> None:
        outcome = "started"
        try:
            outcome = self._invoke_pipeline(rule_arn, target)
        except Exception as exc:  # an engine bug: the log says so, the S3 request has long been answered
            logger.exception("rule %s: target %s failed", rule_arn, target.get("Arn"))
            outcome = f"failed: {exc}"
        with self._lock:
            self.delivered.append({"rule": rule_arn, "target": target.get("Arn"), "outcome": outcome})
        self.runtime.changes.notify()

    def _invoke_pipeline(self, rule_arn: str, target: Mapping[str, Any]) -> str:
        from mlops_local.iam.enforcement import AccessDenied

        arn = str(target.get("Arn", ""))
        if arn.split(":")[2:3] != ["codepipeline"]:
            logger.warning("rule %s: target %s is not a pipeline; the stand-in delivers only to CodePipeline",
                           rule_arn, arn)
            return "unsupported target"
        if not target.get("RoleArn"):  # EventBridge needs a role to start a pipeline
            logger.warning("rule %s: target %s has no RoleArn", rule_arn, arn)
            return "failed: no RoleArn"
        pipeline = arn.split(":", 5)[5]
        try:
            session = self.runtime.session(str(target["RoleArn"]), f"events-{uuid.uuid4().hex[:8]}",
                                           "events.amazonaws.com")
            self.runtime.authorize(session, "codepipeline", "StartPipelineExecution", {"name": pipeline})
        except (RoleNotAssumable, AccessDenied) as exc:
            logger.warning("rule %s could not start pipeline %s: %s", rule_arn, pipeline, exc)
            return f"failed: {exc}"
        execution_id = self.start(pipeline, {"triggerType": "CloudWatchEvent", "triggerDetail": rule_arn})
        logger.info("rule %s started execution %s of %s", rule_arn, execution_id, pipeline)
        return f"started {execution_id}"

    # -- buckets of stacks: the EventBridgeConfiguration moto's CloudFormation drops ------------------
    def _after_stack(self, params: dict[str, Any], status: int, body: bytes) -> None:
        if status == 200:
            apply_stack_buckets(account_id(), self.runtime.aws.gateway.region)


def _from_moto_s3(account: str, bucket: Any, event_name: str, key: Any) -> None:
    """moto's S3 calls this for a bucket with EventBridge notifications enabled."""
    kind, _, action = event_name.partition(":ObjectCreated:")
    if _bus is None or not action or action not in REASONS or not _bus.runtime.aws.thread.is_alive():
        return  # only Object Created events start anything here, and only while the stand-in is up
    if action == "Put" and getattr(key, "multipart", None) is not None:
        return  # moto's CompleteMultipartUpload stores the object with PutObject's event first; S3 sends one
    try:
        _bus.put(s3_event(bucket.name, bucket.region_name, key.name, int(key.size), key.etag,
                          getattr(key, "version_id", None), REASONS[action], account, now()))
    except Exception:  # never fail the S3 request for it, as S3 does not
        logger.exception("could not deliver the S3 event of s3://%s/%s", bucket.name, key.name)


def triggered_execution(codepipeline: Any, pipeline: str, changes: Any, timeout: float = 60.0) -> dict[str, Any]:
    """The newest execution of `pipeline` an EventBridge rule started (trigger CloudWatchEvent), waiting for
    the asynchronous delivery up to `timeout` seconds; `changes` is the runtime's change signal."""
    import time

    deadline = time.monotonic() + timeout
    version = changes.version
    while True:
        summaries = codepipeline.list_pipeline_executions(pipelineName=pipeline)["pipelineExecutionSummaries"]
        triggered = [s for s in summaries if (s.get("trigger") or {}).get("triggerType") == "CloudWatchEvent"]
        if triggered:
            return dict(max(triggered, key=lambda s: s["startTime"]))
        if time.monotonic() > deadline:
            raise RuntimeError(f"no EventBridge rule started an execution of {pipeline} within {timeout:.0f} s "
                               "of the data upload (is the bucket's EventBridge notification enabled?)")
        version = changes.wait(version, timeout=0.5)
