"""SageMaker endpoints served by local model-server processes (`mlops_local.sagemaker.model_servers`).

moto keeps the records of models, endpoint configs and endpoints but serves nothing; this
component overrides Create/Update/Delete/Describe/ListEndpoints and InvokeEndpoint, runs one
server per endpoint (Creating -> InService / Failed, Updating while a new server starts beside the
old one; with a blue/green DeploymentConfig both serve through the canary and baking periods,
sagemaker.blue_green) and reports the real status over moto's records. Every invocation is recorded
in CloudWatch's AWS/SageMaker metrics (sagemaker.endpoint_metrics). UpdateEndpointWeightsAndCapacities sets a
variant's desired count and weight, and an update with RetainAllVariantProperties keeps them (sagemaker.variants).
`reconcile()` notices endpoints that moto's CloudFormation created, replaced or deleted. Each server start gets a folder
`<workdir>/endpoints/<name>/<generation>/` with `model/` and `server.log`.

A server starts as SageMaker's does, as the model's ExecutionRoleArn (sagemaker.execution_role): the
image pull judged as the role, the model data fetched with its session, its credentials in the server's
environment; a denial fails the endpoint with SageMaker's FailureReason and AWS's denial text.
CreateModel is served here too, to refuse a role SageMaker cannot assume as AWS does.

Over ~400 lines on purpose: one state machine (create, update, delete, reconcile, serve) whose
transitions share one lock and read best side by side; the server process is in model_servers.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import logging
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote

from werkzeug.wrappers import Request, Response

from mlops_local import moto_access, processes
from mlops_local.cloudwatch_logs import FileFollower, LogWriter
from mlops_local.gateway import AwsError, paginate
from mlops_local.runtime import RoleCredentials, Runtime
from mlops_local.sagemaker import blue_green, data_capture, endpoint_metrics, execution_role, variants as variant_props
from mlops_local.sagemaker.model_servers import (
    PING_TIMEOUT, Container, LocalServer, ModelDataFailed, StartFailed, fetch_model, find_container,
    model_data_failure)

logger = logging.getLogger(__name__)

CREATING, IN_SERVICE, UPDATING, FAILED = "Creating", "InService", "Updating", "Failed"
INVOKE_PATH = r"^/endpoints/(?P<name>[^/]+)/invocations$"
STACK_OPERATIONS = ("CreateStack", "UpdateStack", "ExecuteChangeSet", "DeleteStack")
PROXIED_HEADERS = ("Content-Type", "Accept", "X-Amzn-SageMaker-Custom-Attributes")
INFERENCE_ID_HEADER = "X-Amzn-SageMaker-Inference-Id"  # InvokeEndpoint's InferenceId: eventMetadata.inferenceId
HEALTH_SECONDS = 5.0     # how often each server in service is pinged
SCALE_SECONDS = 1.0      # how long an UpdateEndpointWeightsAndCapacities keeps the endpoint Updating
UNHEALTHY_PINGS = 3      # failed pings in a row that make a live process unhealthy (an exited one is at once)


# -- what we serve, beside moto's records -----------------------------------------------------
@dataclass
class Endpoint:
    """One endpoint's local state, overlaid on moto's record."""
    name: str
    config_name: str                       # the config in service (or being created)
    declared_config: str                   # what moto (or its stack) declared when last seen
    status: str = CREATING
    failure_reason: str | None = None
    server: LocalServer | None = None
    pending_config: str | None = None      # Updating to this config
    generation: int = 0                    # the start that counts; older ones are stale
    variants: list[dict[str, Any]] = field(default_factory=list)
    last_modified: float = field(default_factory=time.time)
    update_started: float | None = None
    capture: tuple[data_capture.CaptureSettings, str] | None = None  # of the config in service, and its role
    replacing: Replacing | None = None     # the server in service was unhealthy; a new one is starting
    failed_pings: int = 0                  # consecutive health checks whose ping failed
    in_flight: int = 0                     # starts running in the background
    deployment: blue_green.Deployment | None = None  # the update in progress is blue/green
    green: LocalServer | None = None       # the new fleet while it serves as the canary
    green_variant: str = ""
    routed: int = 0                        # requests routed while the canary serves
    blue: LocalServer | None = None        # the old fleet after the shift, until it is terminated
    last_deployment: dict[str, Any] | None = None  # DescribeEndpoint's LastDeploymentConfig
    retain: frozenset[str] = frozenset()   # variant properties the update in progress keeps (sagemaker.variants)
    scaling: int = 0                       # the UpdateEndpointWeightsAndCapacities that counts


@dataclass
class Replacing:
    """An unhealthy server being replaced: what the variant's VariantStatus says meanwhile."""
    since: float
    message: str


@dataclass(frozen=True)
class Served:
    """A snapshot of an endpoint's local server, for callers and tests."""
    name: str
    status: str
    config_name: str
    failure_reason: str | None
    process: subprocess.Popen | None
    port: int | None
    model_dir: Path | None


class Endpoints:
    """The endpoint operations of the stand-in; `register()` wires them into the gateway."""

    def __init__(self, runtime: Runtime, start_timeout: float = 60.0, health_interval: float | None = HEALTH_SECONDS,
                 capture_interval: float | None = data_capture.FLUSH_SECONDS, capture_seed: int | None = None,
                 metrics_interval: float | None = endpoint_metrics.FLUSH_SECONDS) -> None:
        self.runtime = runtime
        self.start_timeout = start_timeout
        self.log_poll = 1.0  # how often a server's new output is copied to CloudWatch Logs
        self.ping_timeout = PING_TIMEOUT
        self.capture = data_capture.DataCapture(capture_interval, capture_seed)
        self.alarm_interval = blue_green.ALARM_SECONDS
        self.scale_seconds = SCALE_SECONDS
        self.metrics = endpoint_metrics.EndpointMetrics(self._put_metrics, metrics_interval)
        self._stop = threading.Event()
        self.region = runtime.aws.gateway.region
        self._endpoints: dict[str, Endpoint] = {}
        self._starting: set[subprocess.Popen] = set()
        self._lock = threading.RLock()
        self._reconciling = threading.Lock()
        self._closed = False
        self._captures: dict[str, dict[str, Any] | None] = {}  # config name -> DataCaptureConfigSummary
        self.account = runtime.aws.account_id
        self._monitor: threading.Thread | None = None
        if health_interval:
            self._monitor = threading.Thread(target=self._watch, args=(health_interval,), name="endpoint-health",
                                             daemon=True)
            self._monitor.start()

    # -- wiring ---------------------------------------------------------------------------
    def register(self) -> None:
        from moto.sagemaker.models import FakeEndpoint

        # moto's CloudFormation names every endpoint itself (<stack>-Endpoint-<random>); CloudFormation uses the
        # EndpointName property when given (Template Reference, AWS::SageMaker::Endpoint), and the stack's alarms
        # and the endpoint tests name the endpoint by it.
        FakeEndpoint.cloudformation_name_type = staticmethod(lambda: "EndpointName")  # type: ignore[method-assign]
        gateway = self.runtime.aws.gateway
        gateway.operation("SageMaker.CreateModel", self.create_model)
        gateway.operation("SageMaker.CreateEndpoint", self.create_endpoint)
        gateway.operation("SageMaker.UpdateEndpoint", self.update_endpoint)
        gateway.operation("SageMaker.UpdateEndpointWeightsAndCapacities", self.update_weights_and_capacities)
        gateway.operation("SageMaker.DeleteEndpoint", self.delete_endpoint)
        gateway.operation("SageMaker.DescribeEndpoint", self.describe_endpoint)
        gateway.operation("SageMaker.ListEndpoints", self.list_endpoints)
        gateway.route("POST", INVOKE_PATH, self.invoke_endpoint)
        for operation in STACK_OPERATIONS:
            gateway.after("cloudformation", operation, self._after_stack)

    def _after_stack(self, params: dict[str, Any], status: int, body: bytes) -> None:
        self.reconcile()

    # -- SageMaker API --------------------------------------------------------------------
    def create_model(self, params: dict[str, Any]) -> dict[str, Any]:
        """moto's CreateModel, after the check SageMaker makes: it assumes the ExecutionRoleArn."""
        role = params.get("ExecutionRoleArn")
        if role:
            try:
                execution_role.session(self.runtime, role)
            except execution_role.RoleUnusable:
                raise AwsError("ValidationException", execution_role.could_not_assume(role)) from None
        with moto_access.aws_errors():
            model = self._moto().create_model(
                model_name=params.get("ModelName", ""), execution_role_arn=role or "",
                primary_container=params.get("PrimaryContainer"), vpc_config=params.get("VpcConfig"),
                containers=params.get("Containers"), tags=params.get("Tags"))
        return {"ModelArn": model.arn}

    def create_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("EndpointName", "")
        if name in self._moto().endpoints:  # moto would silently replace it
            raise AwsError("ValidationException",
                           f'Cannot create already existing endpoint "{self._arn("endpoint", name)}".')
        with moto_access.aws_errors():
            created = self._moto().create_endpoint(endpoint_name=name,
                                                   endpoint_config_name=params.get("EndpointConfigName", ""),
                                                   tags=params.get("Tags"))
        self._begin(name, created.endpoint_config_name)
        return {"EndpointArn": created.arn}

    def update_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        name, config = params.get("EndpointName", ""), params.get("EndpointConfigName", "")
        described = self._moto_describe(name)
        with moto_access.aws_errors():
            green = self._moto().describe_endpoint_config(config)
        deployment = self._deployment(params.get("DeploymentConfig"), green)
        self._known(name)
        with self._lock:
            endpoint = self._endpoints.get(name)
            if endpoint is None:  # deleted meanwhile
                raise AwsError("ValidationException", f"Could not find endpoint '{self._arn('endpoint', name)}'.")
            if endpoint.status != IN_SERVICE:
                state = "failed" if endpoint.status == FAILED else "in-progress"
                raise AwsError("ValidationException",
                               f'Cannot update {state} endpoint "{self._arn("endpoint", name)}".')
            endpoint.retain = variant_props.retained_properties(params.get("RetainAllVariantProperties"),
                                                                params.get("ExcludeRetainedVariantProperties"))
            self._update(endpoint, config, deployment)
            if params.get("DeploymentConfig"):
                endpoint.last_deployment = params["DeploymentConfig"]
        return {"EndpointArn": described["EndpointArn"]}

    def update_weights_and_capacities(self, params: dict[str, Any]) -> dict[str, Any]:
        """Desired weights and instance counts of an endpoint InService: Updating for `scale_seconds`, then
        InService with the Current* values reached (one local server serves whatever the count)."""
        name = params.get("EndpointName", "")
        described = self._moto_describe(name)
        self._known(name)
        with self._lock:
            endpoint = self._endpoints.get(name)
            if endpoint is None:
                raise AwsError("ValidationException", f"Could not find endpoint '{self._arn('endpoint', name)}'.")
            if endpoint.status != IN_SERVICE:  # as UpdateEndpoint refuses it
                state = "failed" if endpoint.status == FAILED else "in-progress"
                raise AwsError("ValidationException",
                               f'Cannot update {state} endpoint "{self._arn("endpoint", name)}".')
            try:
                endpoint.variants = variant_props.desired(endpoint.variants, params.get(
                    "DesiredWeightsAndCapacities") or [], endpoint.config_name)
            except variant_props.InvalidVariants as exc:
                raise AwsError("ValidationException", str(exc)) from None
            endpoint.status, endpoint.last_modified = UPDATING, time.time()
            endpoint.scaling += 1
            token = endpoint.scaling
        timer = threading.Timer(self.scale_seconds, self._scaled, args=(endpoint, token))
        timer.daemon = True
        timer.start()
        self.runtime.changes.notify()
        return {"EndpointArn": described["EndpointArn"]}

    def _scaled(self, endpoint: Endpoint, token: int) -> None:
        with self._lock:
            if (self._closed or self._endpoints.get(endpoint.name) is not endpoint or endpoint.scaling != token
                    or endpoint.status != UPDATING or endpoint.pending_config is not None):
                return
            endpoint.variants = variant_props.reached(endpoint.variants)
            endpoint.status, endpoint.last_modified = IN_SERVICE, time.time()
        self.runtime.changes.notify()

    def _deployment(self, config: dict[str, Any] | None, green: dict[str, Any]) -> blue_green.Deployment | None:
        """An update's DeploymentConfig, refused as a ValidationException when the stand-in cannot honour it or
        an alarm it names does not exist."""
        variants = green.get("ProductionVariants") or [{}]
        try:
            deployment = blue_green.parse(config, int(variants[0].get("InitialInstanceCount") or 1))
        except blue_green.InvalidDeployment as exc:
            raise AwsError("ValidationException", str(exc)) from None
        alarms = self._cloudwatch().alarms
        # An alarm that does not exist: no AWS page says how UpdateEndpoint answers; refusing it is the safe
        # reading (a rollback alarm that can never trip would make the deployment unguarded).
        for alarm in deployment.alarms if deployment else ():
            if alarm not in alarms:
                raise AwsError("ValidationException", f"The CloudWatch alarm {alarm} in AutoRollbackConfiguration "
                                                      "does not exist.")
            problem = endpoint_metrics.unsupported(alarms[alarm])
            if problem:
                raise AwsError("ValidationException", f"The local stand-in cannot evaluate alarm {alarm}: {problem}.")
        return deployment

    def delete_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("EndpointName", "")
        with moto_access.aws_errors():
            self._moto().delete_endpoint(name)
        self._forget(name)
        return {}

    def describe_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("EndpointName", "")
        described = self._moto_describe(name)
        self._known(name)
        with self._lock:
            endpoint = self._endpoints.get(name)
            if endpoint is not None:
                self._overlay(described, endpoint, detail=True)
        return described

    def list_endpoints(self, params: dict[str, Any]) -> dict[str, Any]:
        summaries = self._moto_endpoints(params)
        with self._lock:
            unknown = any(s["EndpointName"] not in self._endpoints for s in summaries)
        if unknown:
            self.reconcile()
        with self._lock:
            for summary in summaries:
                endpoint = self._endpoints.get(summary["EndpointName"])
                if endpoint is not None:
                    self._overlay(summary, endpoint, detail=False)
        if params.get("StatusEquals"):
            summaries = [s for s in summaries if s["EndpointStatus"] == params["StatusEquals"]]
        if params.get("SortBy") == "Status":
            summaries.sort(key=lambda s: s["EndpointStatus"], reverse=params.get("SortOrder") == "Descending")
        page, token = paginate(summaries, params, default_size=100)
        return {"Endpoints": page, **({"NextToken": token} if token else {})}

    # -- sagemaker-runtime InvokeEndpoint ------------------------------------------------
    def invoke_endpoint(self, request: Request, name: str) -> Response:
        began = time.perf_counter()
        name = unquote(name)
        endpoint = self._lookup(name)
        if endpoint is None:
            raise AwsError("ValidationError", f"Endpoint {name} of account {self.account} not found.")
        with self._lock:
            server, canary = endpoint.server, endpoint.green
            if canary is not None and endpoint.deployment is not None:
                endpoint.routed += 1
                if blue_green.to_canary(endpoint.routed, endpoint.deployment.canary_share):
                    server = canary
        if server is None and endpoint.replacing is not None:
            # No healthy instance behind an endpoint InService: SageMaker Runtime's ServiceUnavailable (503,
            # "The service is unavailable. Try your call again."; the SDKs retry it).
            raise AwsError("ServiceUnavailable", f"Endpoint {name} of account {self.account} has no healthy "
                                                 f"instance: {endpoint.replacing.message}", 503)
        if server is None:
            raise AwsError("ValidationError", f"Endpoint {name} of account {self.account} is {endpoint.status}, "
                                              "not InService; it cannot serve requests"
                                              + (f": {endpoint.failure_reason}" if endpoint.failure_reason else "."))
        variant = endpoint.variants[0]["VariantName"] if endpoint.variants else "AllTraffic"
        if server is canary:
            variant = endpoint.green_variant or variant
        instances = int(endpoint.variants[0].get("CurrentInstanceCount") or 1) if endpoint.variants else 1
        headers = {h: request.headers[h] for h in PROXIED_HEADERS if h in request.headers}
        started = data_capture_time()
        try:
            with self._measured(name, variant, instances, began) as answered:
                status, body, answer_headers = server.request("POST", "/invocations", request.get_data(), headers)
                answered.append(status)
        except (OSError, http.client.HTTPException) as exc:
            code = server.process.poll()
            why = f"exited with status {processes.exit_status(code)}" if code is not None \
                else f"did not answer: {exc}"
            if code is not None:  # replaced at once, as the next health check would
                self._unhealthy(endpoint, server, f"the model container {why}")
            return self._model_error(name, f"The model container for production variant {variant} {why}. "
                                           f"{self._see_logs(name)}", None, None)
        if status == 200:
            content_type = answer_headers.get("content-type", "application/octet-stream")
            response = Response(body, status=200, content_type=content_type)
            response.headers["x-Amzn-Invoked-Production-Variant"] = variant
            self._captured(endpoint, variant, request, (body, content_type), started)
            return response
        text = body.decode("utf-8", errors="replace")
        kind = "client" if 400 <= status < 500 else "server"
        return self._model_error(name, f'Received {kind} error ({status}) from primary with message "{text}". '
                                       f"{self._see_logs(name)}", status, text)

    @contextlib.contextmanager
    def _measured(self, name: str, variant: str, instances: int, began: float) -> Iterator[list[int]]:
        """Time the model's answer (ModelLatency) within the request's since `began` (OverheadLatency: the
        rest) and record the invocation's metrics; the block appends the model's status (none: it did not
        answer)."""
        answered: list[int] = []
        model_began = time.perf_counter()
        try:
            yield answered
        finally:
            model = time.perf_counter() - model_began
            total = time.perf_counter() - began
            self.metrics.record(endpoint_metrics.Invocation(
                name, variant, answered[0] if answered else None, int(model * 1e6),
                max(int((total - model) * 1e6), 0), instances))

    def _put_metrics(self, namespace: str, data: list[dict[str, Any]]) -> None:
        """SageMaker's own metrics into CloudWatch: moto's backend, as the service (no role; AWS/ is reserved)."""
        moto_access.backend("cloudwatch", self.account, self.region).put_metric_data(namespace, data)

    def _see_logs(self, name: str) -> str:
        """How SageMaker's messages point at an endpoint's logs (its ModelError text, as in
        aws/amazon-sagemaker-examples#1881 and #407): the CloudWatch console for the endpoint's group."""
        region, account = self.runtime.aws.gateway.region, self.runtime.aws.account_id
        return (f"See https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#logEventViewer:"
                f"group=/aws/sagemaker/Endpoints/{name} in account {account} for more information.")

    def _captured(self, endpoint: Endpoint, variant: str, request: Request, response: tuple[bytes, str],
                  when: dt.datetime) -> None:
        """Buffer the invocation for data capture when the config in service captures and it is sampled.
        Only invocations the model answered are captured: what SageMaker captures of failed ones is not
        documented."""
        capture = endpoint.capture
        if capture is None or not self.capture.sampled(capture[0]):
            return
        settings, role = capture
        captured = data_capture.record(
            settings, (request.get_data(), request.headers.get("Content-Type", "")), response, when,
            request.headers.get(INFERENCE_ID_HEADER))
        self.capture.add(endpoint.name, variant, settings, self._capture_writer(role), captured, when)

    def _capture_writer(self, role: str) -> data_capture.Writer:
        """Writes capture files as the model's execution role (SSE-KMS with the config's KmsKeyId)."""
        def write(bucket: str, key: str, body: bytes, kms_key_id: str | None) -> None:
            acting = execution_role.session(self.runtime, role)
            extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id} if kms_key_id else {}
            self.runtime.client_as("s3", acting).put_object(Bucket=bucket, Key=key, Body=body, **extra)
        return write

    def _model_error(self, name: str, message: str, status: int | None, original: str | None) -> Response:
        payload: dict[str, Any] = {"__type": "ModelError", "message": message, "Message": message,
                                   "LogStreamArn": f"arn:aws:logs:{self.region}:{self.account}:log-group:"
                                                   f"/aws/sagemaker/Endpoints/{name}"}
        if status is not None:
            payload["OriginalStatusCode"] = status
            payload["OriginalMessage"] = original
        response = Response(json.dumps(payload), status=424, content_type="application/json")
        response.headers["x-amzn-ErrorType"] = "ModelError"
        return response

    # -- reconciling with moto's records --------------------------------------------------
    def reconcile(self) -> None:
        """Serve every endpoint moto has, stop those it no longer has, follow config changes.

        The stack deployer calls this after moto's CloudFormation changed endpoints; it also runs
        after every CloudFormation stack operation that passes through the gateway."""
        with self._reconciling:
            declared = {}
            for summary in self._moto_endpoints({}):
                try:
                    described = self._moto_describe(summary["EndpointName"])
                except AwsError:  # deleted meanwhile
                    continue
                declared[summary["EndpointName"]] = described["EndpointConfigName"]
            declared.update({name: config for name, config in self._stack_configs().items()
                             if name in declared})
            deployments = self._stack_endpoint_properties("DeploymentConfig")
            retains = self._stack_endpoint_properties("RetainAllVariantProperties")
            excluded = self._stack_endpoint_properties("ExcludeRetainedVariantProperties")
            with self._lock:
                gone = [name for name in self._endpoints if name not in declared]
            for name in gone:
                logger.info("endpoint %s no longer exists; stopping its server", name)
                self._forget(name)
            for name, config in declared.items():
                with self._lock:
                    endpoint = self._endpoints.get(name)
                    if endpoint is None:
                        logger.info("endpoint %s (config %s) is new; serving it", name, config)
                        self._begin(name, config)
                    elif config != endpoint.declared_config:
                        logger.info("endpoint %s moved to config %s", name, config)
                        endpoint.declared_config = config
                        if endpoint.status == FAILED:
                            self._restart(endpoint, config)
                        else:
                            endpoint.retain = variant_props.retained_properties(retains.get(name),
                                                                                excluded.get(name))
                            self._stack_update(endpoint, config, deployments.get(name))

    def _stack_update(self, endpoint: Endpoint, config: str, deployment_config: dict[str, Any] | None) -> None:
        """(lock held) A stack moved the endpoint to `config`: the update CloudFormation makes, with the
        Endpoint's DeploymentConfig. One the stand-in refuses fails as an update does: the old config serves on,
        with the reason."""
        deployment = None
        if deployment_config and endpoint.status == IN_SERVICE:
            try:
                deployment = self._deployment(deployment_config, self._moto().describe_endpoint_config(config))
            except Exception as exc:  # an AwsError, or moto's for a config gone meanwhile
                reason = exc.message if isinstance(exc, AwsError) else str(exc)
                endpoint.failure_reason = f"Update to endpoint configuration {config} failed: {reason}"
                endpoint.last_modified = time.time()
                logger.warning("endpoint %s: %s", endpoint.name, endpoint.failure_reason)
                return
            endpoint.last_deployment = deployment_config
        self._update(endpoint, config, deployment)

    def _stack_endpoint_properties(self, prop: str) -> dict[str, Any]:
        """Endpoint name -> the `prop` its stack declares on the AWS::SageMaker::Endpoint (DeploymentConfig,
        RetainAllVariantProperties, ...), resolved (Ref, Fn::If, Fn::Sub) by moto's CloudFormation parser over
        the stack's resources and parameters. moto's Endpoint model ignores these properties; CloudFormation
        passes them to UpdateEndpoint."""
        from moto.cloudformation.parsing import clean_json

        found: dict[str, Any] = {}
        for stack in list(moto_access.backend("cloudformation", self.account, self.region).stacks.values()):
            if stack.status.startswith("DELETE_"):
                continue
            for logical, resource in (stack.template_dict.get("Resources") or {}).items():
                if resource.get("Type") != "AWS::SageMaker::Endpoint" or prop not in (resource.get("Properties") or {}):
                    continue
                try:
                    name = getattr(stack.resource_map[logical], "endpoint_name", None)
                    resolved = clean_json(resource["Properties"][prop], stack.resource_map)
                except Exception:  # a resource moto could not create: the stack has failed anyway
                    logger.debug("stack %s: %s of %s unresolved", stack.name, prop, logical, exc_info=True)
                    continue
                if name and resolved:
                    found[name] = resolved
        return found

    def _stack_configs(self) -> dict[str, str]:
        """Endpoint name -> the endpoint config of its stack, for stacks with one of each.

        moto's CloudFormation replaces a stack's model and endpoint config on an update but leaves
        the endpoint on the old (now deleted) config, so the stack says what the endpoint serves."""
        cloudformation = self.runtime.aws.client("cloudformation")
        configs: dict[str, str] = {}
        for page in cloudformation.get_paginator("describe_stacks").paginate():
            for stack in page["Stacks"]:
                if stack["StackStatus"].startswith("DELETE_"):
                    continue
                resources = cloudformation.describe_stack_resources(StackName=stack["StackId"])["StackResources"]
                by_type: dict[str, list[str]] = {}
                for resource in resources:
                    if resource.get("PhysicalResourceId"):
                        by_type.setdefault(resource["ResourceType"], []).append(
                            resource["PhysicalResourceId"].rsplit("/", 1)[-1])
                endpoints = by_type.get("AWS::SageMaker::Endpoint", [])
                stack_configs = by_type.get("AWS::SageMaker::EndpointConfig", [])
                if len(endpoints) == 1 and len(stack_configs) == 1:
                    configs[endpoints[0]] = stack_configs[0]
        return configs

    # -- transitions (callers hold self._lock where noted) --------------------------------
    def _begin(self, name: str, config: str) -> None:
        with self._lock:
            if name in self._endpoints:
                return
            endpoint = Endpoint(name=name, config_name=config, declared_config=config)
            self._endpoints[name] = endpoint
            self._restart(endpoint, config)

    def _restart(self, endpoint: Endpoint, config: str) -> None:
        """(lock held) Serve `config` from scratch: Creating."""
        old, endpoint.server = endpoint.server, None
        endpoint.status, endpoint.failure_reason = CREATING, None
        endpoint.config_name, endpoint.pending_config, endpoint.retain = config, None, frozenset()
        endpoint.variants = []  # a new fleet: the config's variants when it is InService
        self._launch(endpoint, config)
        if old is not None:
            threading.Thread(target=old.stop, daemon=True).start()

    def _update(self, endpoint: Endpoint, config: str, deployment: blue_green.Deployment | None = None) -> None:
        """(lock held) Start `config` beside the server in service: Updating (blue/green when `deployment`)."""
        endpoint.deployment = deployment
        leftover = [endpoint.green] if endpoint.green is not None else []
        if endpoint.blue is not None and endpoint.server is not None:  # a blue/green deployment in progress
            leftover.append(endpoint.server)                            # ends: the old fleet serves again
            endpoint.server = endpoint.blue
        endpoint.green = endpoint.blue = None
        for server in leftover:
            threading.Thread(target=server.stop, daemon=True).start()
        if endpoint.status == CREATING:
            self._restart(endpoint, config)
            return
        endpoint.status, endpoint.pending_config = UPDATING, config
        endpoint.update_started = time.time()
        self._launch(endpoint, config)

    def _launch(self, endpoint: Endpoint, config: str) -> None:
        """(lock held) A new generation; its start runs in a background thread."""
        endpoint.generation += 1
        endpoint.in_flight += 1
        endpoint.last_modified = time.time()
        folder = self._folder(endpoint.name)
        threading.Thread(target=self._start, args=(endpoint, config, endpoint.generation, folder),
                         name=f"endpoint-{endpoint.name}", daemon=True).start()
        self.runtime.changes.notify()

    def _start(self, endpoint: Endpoint, config: str, generation: int, folder: Path) -> None:
        try:
            self._start_server(endpoint, config, generation, folder)
        finally:
            with self._lock:
                endpoint.in_flight -= 1

    def _start_server(self, endpoint: Endpoint, config: str, generation: int, folder: Path) -> None:
        server: LocalServer | None = None
        role = ""
        reason: str | None = None
        variants: list[dict[str, Any]] = []
        try:
            container, variants = find_container(self.runtime.aws.client("sagemaker"), config)
            role = container.execution_role
            server = self._serve(container, folder, endpoint.name)
        except StartFailed as exc:
            reason = str(exc)
        except Exception as exc:  # a bug here must end as Failed, not as an endpoint Creating forever
            logger.exception("starting endpoint %s failed", endpoint.name)
            reason = f"the local runtime could not start the endpoint: {type(exc).__name__}: {exc}"
        old: LocalServer | None = None
        rollout = False
        with self._lock:
            current = self._is_current(endpoint, generation)
            if not current or server is None:
                outcome = self._failed(endpoint, config, reason) if current else None
            elif endpoint.deployment is not None and endpoint.server is not None and endpoint.status == UPDATING:
                rollout = True  # blue/green: both fleets serve until the deployment completes or rolls back
                if endpoint.deployment.routing == "CANARY":
                    endpoint.green, endpoint.routed = server, 0
                    endpoint.green_variant = variants[0]["VariantName"] if variants else ""
            else:  # new requests go to the new server at once; the old one drains, then stops
                old, endpoint.server = endpoint.server, server
        if not current:
            if server is not None:
                server.stop()
            return
        if rollout and server is not None:
            threading.Thread(target=self._deploy, args=(endpoint, generation, server, config, variants, role),
                             name=f"blue-green-{endpoint.name}", daemon=True).start()
            self.runtime.changes.notify()
            return
        if server is not None:
            if old is not None:
                old.stop()
            with self._lock:
                if not self._is_current(endpoint, generation):
                    return
                self._in_service(endpoint, config, variants, role)
            logger.info("endpoint %s is InService on config %s (port %d)", endpoint.name, config, server.port)
        elif outcome:
            logger.warning("endpoint %s: %s", endpoint.name, outcome)
        self.runtime.changes.notify()

    def _in_service(self, endpoint: Endpoint, config: str, variants: list[dict[str, Any]], role: str) -> None:
        """(lock held) An update or create completed: InService on `config`. An instance replaced on the same
        config keeps the variants' counts and weights (autoscaling's); an update keeps those it retains."""
        keep = frozenset(variant_props.RETAINABLE) if config == endpoint.config_name else endpoint.retain
        endpoint.status, endpoint.failure_reason = IN_SERVICE, None
        endpoint.config_name, endpoint.pending_config, endpoint.deployment = config, None, None
        endpoint.variants = variant_props.retain(endpoint.variants, variants, keep)
        endpoint.retain, endpoint.last_modified = frozenset(), time.time()
        endpoint.replacing, endpoint.failed_pings = None, 0
        settings = data_capture.settings_from(self._capture_config(config))
        endpoint.capture = (settings, role) if settings else None

    # -- blue/green (sagemaker.blue_green) ----------------------------------------------------
    def _deploy(self, endpoint: Endpoint, generation: int, green: LocalServer, config: str,
                variants: list[dict[str, Any]], role: str) -> None:
        """_roll_out, ended by a rollback if it fails: an endpoint never stays Updating for a bug here."""
        try:
            self._roll_out(endpoint, generation, green, config, variants, role)
        except Exception as exc:
            logger.exception("blue/green deployment of endpoint %s failed", endpoint.name)
            self._roll_back(endpoint, generation, green, config,
                            f"the local runtime failed during the deployment: {type(exc).__name__}: {exc}")

    def _roll_out(self, endpoint: Endpoint, generation: int, green: LocalServer, config: str,
                  variants: list[dict[str, Any]], role: str) -> None:
        """Canary baking, the shift, the final baking; an alarm in ALARM rolls back to the blue fleet."""
        deployment = endpoint.deployment
        assert deployment is not None
        tripped: str | None = None
        if deployment.routing == "CANARY":
            tripped = blue_green.bake(deployment.alarms, self._alarm_state, deployment.wait_seconds,
                                      self.alarm_interval, self._stop)
        if tripped is None:
            with self._lock:
                current = self._is_current(endpoint, generation)
                if current:  # all traffic to green; blue stays up for a rollback
                    endpoint.blue, endpoint.server, endpoint.green = endpoint.server, green, None
            if not current:
                green.stop()
                return
            logger.info("endpoint %s: all traffic shifted to config %s; final baking period", endpoint.name, config)
            self.runtime.changes.notify()
            tripped = blue_green.bake(deployment.alarms, self._alarm_state, deployment.wait_seconds,
                                      self.alarm_interval, self._stop)
        if tripped == "":  # closing: close() stops every fleet
            return
        if tripped:
            self._roll_back(endpoint, generation, green, config,
                            f"CloudWatch alarm {tripped} went into ALARM during the baking period")
            return
        with self._lock:
            if not self._is_current(endpoint, generation):
                return
            blue = endpoint.blue
            self._in_service(endpoint, config, variants, role)
        logger.info("endpoint %s is InService on config %s (blue/green deployment completed)", endpoint.name, config)
        self.runtime.changes.notify()
        if self._stop.wait(deployment.termination_wait):
            return
        with self._lock:
            if endpoint.blue is not blue:
                return
            endpoint.blue = None
        if blue is not None:
            blue.stop()

    def _roll_back(self, endpoint: Endpoint, generation: int, green: LocalServer, config: str, why: str) -> None:
        """All traffic back to the blue fleet; the endpoint is InService on its old config again, with the reason
        (SageMaker's exact FailureReason text for a rollback is not documented)."""
        with self._lock:
            if not self._is_current(endpoint, generation):
                return
            if endpoint.blue is not None:
                endpoint.server = endpoint.blue
            endpoint.green = endpoint.blue = None
            endpoint.status, endpoint.pending_config, endpoint.deployment = IN_SERVICE, None, None
            endpoint.failure_reason = f"Update to endpoint configuration {config} was rolled back: {why}."
            endpoint.last_modified = time.time()
        logger.warning("endpoint %s: %s", endpoint.name, endpoint.failure_reason)
        green.stop()
        self.runtime.changes.notify()

    def _alarm_state(self, name: str) -> str:
        """An alarm's state now, evaluated from the metrics recorded so far."""
        self.metrics.flush()
        try:
            return endpoint_metrics.evaluate_alarm(self._cloudwatch(), name)
        except KeyError:  # deleted during the deployment: it can no longer trip
            return endpoint_metrics.INSUFFICIENT_DATA
        except endpoint_metrics.UnsupportedAlarm as exc:  # changed into one after UpdateEndpoint checked it
            logger.warning("endpoint rollback alarm not evaluated: %s", exc)
            return endpoint_metrics.INSUFFICIENT_DATA

    def _cloudwatch(self) -> Any:
        return moto_access.backend("cloudwatch", self.account, self.region)

    def _is_current(self, endpoint: Endpoint, generation: int) -> bool:
        """(lock held) Whether this start is still the one the endpoint waits for."""
        return (not self._closed and self._endpoints.get(endpoint.name) is endpoint
                and endpoint.generation == generation)

    def _failed(self, endpoint: Endpoint, config: str, reason: str | None) -> str:
        """(lock held) A start failed: a failed update rolls back (the old server keeps serving, as
        SageMaker's old fleet does); a failed create is Failed. Returns the FailureReason."""
        if endpoint.status == UPDATING:
            endpoint.status, endpoint.pending_config, endpoint.deployment = IN_SERVICE, None, None
            endpoint.failure_reason = f"Update to endpoint configuration {config} failed: {reason}"
        elif endpoint.replacing is not None:  # still InService; the next health check starts another
            message = f"Replacing an unhealthy instance failed; retrying: {reason}"
            repeated, endpoint.replacing.message = message == endpoint.replacing.message, message
            return "" if repeated else message  # one log line per reason, not one per retry
        else:
            endpoint.status, endpoint.failure_reason = FAILED, reason
        endpoint.last_modified = time.time()
        return endpoint.failure_reason or ""

    def _forget(self, name: str) -> None:
        with self._lock:
            endpoint = self._endpoints.pop(name, None)
        if endpoint is not None:
            for server in fleets(endpoint):
                server.stop()
            self.capture.flush(name)  # what it captured is not lost with it
            self.runtime.changes.notify()

    def close(self) -> None:
        """Stop every server, including those still starting (the CLI calls this at exit); write what data
        capture still holds."""
        self._stop.set()
        if self._monitor is not None:
            self._monitor.join()
        with self._lock:
            self._closed = True
            endpoints, self._endpoints = list(self._endpoints.values()), {}
            starting = list(self._starting)
        for endpoint in endpoints:
            for server in fleets(endpoint):
                server.stop()
        for process in starting:
            processes.stop(process)
        self.capture.close()
        self.metrics.close()

    # -- health: SageMaker pings each instance and replaces one that fails -------------------
    def _watch(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.check_health()
            except Exception:  # the watch must outlive a bug in one pass
                logger.exception("endpoint health check failed")

    def check_health(self) -> None:
        """One health pass: ping every server in service; replace one whose process exited or that failed
        UNHEALTHY_PINGS pings in a row; start a replacement again where the last one failed."""
        with self._lock:
            serving = [(e, e.server) for e in self._endpoints.values() if e.status in (IN_SERVICE, UPDATING)]
        for endpoint, server in serving:
            if server is None:
                with self._lock:
                    if (endpoint.replacing is not None and endpoint.in_flight == 0 and endpoint.server is None
                            and self._endpoints.get(endpoint.name) is endpoint and endpoint.status == IN_SERVICE):
                        self._launch(endpoint, endpoint.config_name)
                continue
            problem = server.health(self.ping_timeout)
            with self._lock:
                if endpoint.server is not server:
                    continue
                endpoint.failed_pings = endpoint.failed_pings + 1 if problem else 0
                final = problem is not None and (problem[1] or endpoint.failed_pings >= UNHEALTHY_PINGS)
            if problem and final:
                self._unhealthy(endpoint, server, f"the model container {problem[0]}")

    def _unhealthy(self, endpoint: Endpoint, server: LocalServer, why: str) -> None:
        """Take an unhealthy server out of service and start its replacement from the same config. The
        endpoint stays InService (no EndpointStatus means "an instance is being replaced"; an endpoint
        whose instance fails keeps its status on AWS); the variant says it: CurrentInstanceCount counts
        healthy instances, VariantStatus Creating ("Creating inference resources for the production
        variant", API_ProductionVariantStatus) with the reason. An update in progress replaces it anyway."""
        with self._lock:
            if endpoint.server is not server or self._endpoints.get(endpoint.name) is not endpoint:
                return
            endpoint.server, endpoint.failed_pings = None, 0
            endpoint.replacing = Replacing(time.time(), f"Replacing an unhealthy instance: {why}. "
                                                        f"{self._see_logs(endpoint.name)}")
            logger.warning("endpoint %s: %s; replacing it", endpoint.name, endpoint.replacing.message)
            if endpoint.status == IN_SERVICE:
                self._launch(endpoint, endpoint.config_name)
        threading.Thread(target=server.stop, daemon=True).start()
        self.runtime.changes.notify()

    # -- serving --------------------------------------------------------------------------
    def _serve(self, container: Container, folder: Path, name: str) -> LocalServer:
        try:
            image = self.runtime.images.resolve(container.image)
            argv = image.command("serve")
        except KeyError as exc:
            raise StartFailed(f"model {container.model_name}: {exc.args[0]}") from None
        acting = self._acting(container)
        since = len(self.runtime.access_log)
        try:
            model_dir = fetch_model(self.runtime.client_as("s3", acting), container, folder)
        except ModelDataFailed as exc:
            bucket = exc.url[5:].split("/", 1)[0]
            message = self.runtime.denial(acting, since, bucket)
            if message is None:
                raise
            raise StartFailed(f"{model_data_failure(exc.url)} (AccessDenied: {message})") from None
        spawned: list[subprocess.Popen] = []

        def track(process: subprocess.Popen) -> None:
            with self._lock:
                spawned.append(process)
                self._starting.add(process)
                closed = self._closed
            if closed:  # close() ran while we downloaded
                processes.stop(process)

        # The container's stdout/stderr in CloudWatch Logs, written as the model's role: group
        # /aws/sagemaker/Endpoints/[EndpointName], stream [production-variant-name]/[instance-id] (SageMaker
        # Developer Guide, "Log groups and streams that Amazon SageMaker AI sends to Amazon CloudWatch Logs").
        # Started before the server, so a server that fails to start has its output there too.
        writer = LogWriter(self.runtime.client_as("logs", acting), f"/aws/sagemaker/Endpoints/{name}",
                           f"{container.variant}/{instance_id()}")
        follower = FileFollower(folder / "server.log", writer, poll=self.log_poll).start()
        try:
            server = LocalServer.start(argv, model_dir, folder / "server.log",
                                       {**image.environment(), **acting.environment(), **container.environment},
                                       container.variant, self.start_timeout, spawned=track)
        except BaseException:
            follower.close()
            raise
        finally:
            with self._lock:
                self._starting.difference_update(spawned)
        server.follower = follower
        return server

    def _acting(self, container: Container) -> RoleCredentials:
        """The model's execution role session, once the image pull is judged as it."""
        role = container.execution_role
        try:
            acting = execution_role.session(self.runtime, role)
        except execution_role.RoleUnusable:
            raise StartFailed(execution_role.could_not_assume(role)) from None
        denied = execution_role.pull(self.runtime, acting, container.image)
        if denied is None:
            return acting
        # SageMaker's FailureReasons (aws/sagemaker-python-sdk#2002; aws/amazon-sagemaker-examples#275), with
        # AWS's denial text
        if "ecr:BatchGetImage" in denied.message:
            reason = f"The role '{role}' does not have BatchGetImage permission for the image: '{container.image}'."
        else:
            reason = (f"Please make sure all images included in the model for the production variant "
                      f"{container.variant} exist, and that the execution role used to create the model has "
                      "permissions to access them.")
        raise StartFailed(f"{reason} ({denied.code}: {denied.message})")

    def _folder(self, name: str) -> Path:
        """(lock held) The next unused generation folder of an endpoint."""
        root = self.runtime.workdir / "endpoints" / name
        used = [int(p.name) for p in root.glob("*") if p.name.isdigit()] if root.is_dir() else []
        folder = root / str(max(used, default=0) + 1)
        folder.mkdir(parents=True)
        return folder

    # -- views ----------------------------------------------------------------------------
    def served(self, name: str) -> Served | None:
        """What serves an endpoint now (None when the runtime does not know it)."""
        with self._lock:
            endpoint = self._endpoints.get(name)
            if endpoint is None:
                return None
            server = endpoint.server
            return Served(name, endpoint.status, endpoint.config_name, endpoint.failure_reason,
                          server.process if server else None, server.port if server else None,
                          server.model_dir if server else None)

    def _overlay(self, record: dict[str, Any], endpoint: Endpoint, detail: bool) -> None:
        """(lock held) Our status over moto's record."""
        record["EndpointStatus"] = endpoint.status
        record["LastModifiedTime"] = endpoint.last_modified
        if not detail:
            return
        record["EndpointConfigName"] = endpoint.config_name
        record.pop("FailureReason", None)
        if endpoint.failure_reason:
            record["FailureReason"] = endpoint.failure_reason
        if endpoint.variants:
            record["ProductionVariants"] = [replacing_variant(v, endpoint.replacing) for v in endpoint.variants]
        record.pop("DataCaptureConfig", None)  # moto's copy lacks CaptureStatus and CurrentSamplingPercentage
        capture = self._capture(endpoint.config_name)
        if capture:
            record["DataCaptureConfig"] = capture
        record.pop("LastDeploymentConfig", None)
        if endpoint.last_deployment:
            record["LastDeploymentConfig"] = endpoint.last_deployment
        record.pop("PendingDeploymentSummary", None)
        if endpoint.status == UPDATING and endpoint.pending_config:
            record["PendingDeploymentSummary"] = {"EndpointConfigName": endpoint.pending_config,
                                                  "StartTime": endpoint.update_started or endpoint.last_modified}

    def _capture_config(self, config_name: str) -> dict[str, Any] | None:
        """(lock held) The DataCaptureConfig of a config as moto keeps it."""
        config = self._moto().endpoint_configs.get(config_name)
        return config.data_capture_config if config is not None else None

    def _capture(self, config_name: str) -> dict[str, Any] | None:
        """(lock held) The DataCaptureConfigSummary of the config in service, remembered: moto's
        CloudFormation deletes a config it replaced while the endpoint still serves it."""
        config = self._moto().endpoint_configs.get(config_name)
        if config is not None:
            self._captures[config_name] = capture_summary(config.data_capture_config)
        return self._captures.get(config_name)

    def _known(self, name: str) -> None:
        """An endpoint moto has but we have not seen (CloudFormation made it): notice it now."""
        with self._lock:
            known = name in self._endpoints
        if not known:
            self.reconcile()

    def _lookup(self, name: str) -> Endpoint | None:
        with self._lock:
            endpoint = self._endpoints.get(name)
        if endpoint is None:
            if name not in self._moto().endpoints:
                return None
            self.reconcile()
            with self._lock:
                endpoint = self._endpoints.get(name)
        return endpoint

    # -- moto's records (through its backend: our overrides would answer a call through the gateway)
    def _moto(self) -> Any:
        return moto_access.backend("sagemaker", self.account, self.region)

    def _moto_describe(self, name: str) -> dict[str, Any]:
        """moto's DescribeEndpoint answer."""
        with moto_access.aws_errors():
            described = self._moto().describe_endpoint(name)
        return moto_access.answer("sagemaker", "DescribeEndpoint", described)

    def _moto_endpoints(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """moto's ListEndpoints summaries, every page, filtered as `params` asks (but StatusEquals:
        that is our status, not moto's)."""
        filters = {"sort_by": params.get("SortBy"), "sort_order": params.get("SortOrder"),
                   "name_contains": params.get("NameContains"), "status_equals": None,
                   **{name: moto_time(params.get(key)) for key, name in TIME_FILTERS.items()}}
        summaries: list[dict[str, Any]] = []
        token = None
        while True:
            with moto_access.aws_errors():
                page, token = self._moto().list_endpoints(**filters, next_token=token, max_results=100)
            summaries.extend(endpoint.summary() for endpoint in page)
            if not token:
                return summaries

    def _arn(self, kind: str, name: str) -> str:
        return f"arn:aws:sagemaker:{self.region}:{self.account}:{kind}/{name}"


TIME_FILTERS = {"CreationTimeBefore": "creation_time_before", "CreationTimeAfter": "creation_time_after",
                "LastModifiedTimeBefore": "last_modified_time_before",
                "LastModifiedTimeAfter": "last_modified_time_after"}


def fleets(endpoint: Endpoint) -> list[LocalServer]:
    """Every server an endpoint runs: in service, the canary, the old fleet kept after a shift."""
    return [s for s in (endpoint.server, endpoint.green, endpoint.blue) if s is not None]


def replacing_variant(variant: dict[str, Any], replacing: Replacing | None) -> dict[str, Any]:
    """A variant's summary while its (only) instance is replaced: none healthy, VariantStatus Creating."""
    if replacing is None:
        return variant
    summary = {**variant, "VariantStatus": [{"Status": "Creating", "StatusMessage": replacing.message[:1024],
                                             "StartTime": replacing.since}]}
    if "CurrentInstanceCount" in summary:
        summary["CurrentInstanceCount"] = 0
    return summary


def instance_id() -> str:
    """An EC2-style instance id (i- and 17 hex digits) naming a server's log stream, as an instance's does."""
    return f"i-{uuid.uuid4().hex[:17]}"


def data_capture_time() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def capture_summary(config: dict[str, Any] | None) -> dict[str, Any] | None:
    """DescribeEndpoint's DataCaptureConfigSummary for an endpoint config's DataCaptureConfig.

    The API reference (API_DataCaptureConfigSummary) requires EnableCapture, CaptureStatus
    (Started | Stopped), CurrentSamplingPercentage and DestinationS3Uri; with nothing changed since
    the endpoint was deployed the sampling is the config's InitialSamplingPercentage, and capture
    runs when enabled (EnableCapture "defaults to enabled", API_DataCaptureConfig). KmsKeyId is
    answered when the config names one; what AWS answers without one is not documented, so nothing
    is made up for it."""
    if not config:
        return None
    enabled = str(config.get("EnableCapture", True)).lower() != "false"  # CloudFormation may give "false"
    summary = {"EnableCapture": enabled, "CaptureStatus": "Started" if enabled else "Stopped",
               "CurrentSamplingPercentage": int(config.get("InitialSamplingPercentage", 0)),
               "DestinationS3Uri": config.get("DestinationS3Uri", "")}
    if config.get("KmsKeyId"):
        summary["KmsKeyId"] = config["KmsKeyId"]
    return summary


def moto_time(value: Any) -> dt.datetime | None:
    """A JSON-protocol timestamp (epoch seconds) as moto's records keep times: naive UTC."""
    if value is None:
        return None
    return dt.datetime.fromtimestamp(float(value), dt.timezone.utc).replace(tzinfo=None)
