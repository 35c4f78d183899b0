"""SageMaker endpoints served by local model-server processes.

moto keeps the records of models, endpoint configs and endpoints; it reports every endpoint
InService at once, serves nothing, lacks UpdateEndpoint and answers InvokeEndpoint with canned
data. This component keeps, beside moto's records, one local server per endpoint:

- CreateEndpoint: moto records it; a background thread resolves config -> model -> container
  (Image + ModelDataUrl, or a ModelPackageName -> the package's inference container), downloads and
  unpacks model.tar.gz, runs the image's `serve` program on a free loopback port and pings it:
  Creating -> InService, or Failed with a FailureReason.
- UpdateEndpoint: Updating while the new server starts (the old one keeps answering); swapped when
  the new one answers /ping, then the old one stops. A failed update leaves the old server in
  service with a FailureReason, as SageMaker does.
- DeleteEndpoint: moto forgets it; its server stops.
- DescribeEndpoint / ListEndpoints: moto's records with the real status overlaid.
- InvokeEndpoint (POST /endpoints/<name>/invocations): proxied to the server; a 4xx/5xx from the
  model is SageMaker's ModelError (424, OriginalStatusCode, OriginalMessage).
- reconcile(): endpoints moto's CloudFormation created, replaced or deleted (they never pass
  through the SageMaker API) are noticed after every stack operation and on a lookup miss.

Each server start gets a folder `<workdir>/endpoints/<name>/<generation>/` with `model/` and
`server.log`.
"""
from __future__ import annotations

import http.client
import json
import logging
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from mlops_local.gateway import AwsError
from mlops_local.jobs import LocalServer, StartFailed, stop_process, unpack_model
from mlops_local.runtime import Runtime

logger = logging.getLogger(__name__)

CREATING, IN_SERVICE, UPDATING, FAILED = "Creating", "InService", "Updating", "Failed"
INVOKE_PATH = r"^/endpoints/(?P<name>[^/]+)/invocations$"
STACK_OPERATIONS = ("CreateStack", "UpdateStack", "ExecuteChangeSet", "DeleteStack")
PROXIED_HEADERS = ("Content-Type", "Accept", "X-Amzn-SageMaker-Custom-Attributes")


# -- what moto records, and what we serve -----------------------------------------------------
@dataclass(frozen=True)
class Container:
    model_name: str
    variant: str
    image: str
    model_data_url: str
    environment: dict[str, str]


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

    def __init__(self, runtime: Runtime, start_timeout: float = 60.0):
        self.runtime = runtime
        self.start_timeout = start_timeout
        self.region = runtime.aws.gateway.region
        self._endpoints: dict[str, Endpoint] = {}
        self._starting: set[subprocess.Popen] = set()
        self._lock = threading.RLock()
        self._reconciling = threading.Lock()
        self._closed = False
        self._account: str | None = None

    # -- wiring ---------------------------------------------------------------------------
    def register(self) -> None:
        gateway = self.runtime.aws.gateway
        gateway.operation("SageMaker.CreateEndpoint", self.create_endpoint)
        gateway.operation("SageMaker.UpdateEndpoint", self.update_endpoint)
        gateway.operation("SageMaker.DeleteEndpoint", self.delete_endpoint)
        gateway.operation("SageMaker.DescribeEndpoint", self.describe_endpoint)
        gateway.operation("SageMaker.ListEndpoints", self.list_endpoints)
        gateway.route("POST", INVOKE_PATH, self.invoke_endpoint)
        for operation in STACK_OPERATIONS:
            gateway.after("cloudformation", operation, self._after_stack)

    def _after_stack(self, params: dict, status: int, body: bytes) -> None:
        self.reconcile()

    # -- SageMaker API --------------------------------------------------------------------
    def create_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("EndpointName", "")
        try:
            self._moto("DescribeEndpoint", {"EndpointName": name})
        except AwsError:
            pass
        else:  # moto would silently replace it
            raise AwsError("ValidationException",
                           f'Cannot create already existing endpoint "{self._arn("endpoint", name)}".')
        answer = self._moto("CreateEndpoint", params)
        described = self._moto("DescribeEndpoint", {"EndpointName": name})
        self._begin(name, described["EndpointConfigName"])
        return answer

    def update_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        name, config = params.get("EndpointName", ""), params.get("EndpointConfigName", "")
        described = self._moto("DescribeEndpoint", {"EndpointName": name})
        self._moto("DescribeEndpointConfig", {"EndpointConfigName": config})
        self._known(name)
        with self._lock:
            endpoint = self._endpoints.get(name)
            if endpoint is None:  # deleted meanwhile
                raise AwsError("ValidationException", f"Could not find endpoint '{self._arn('endpoint', name)}'.")
            if endpoint.status != IN_SERVICE:
                state = "failed" if endpoint.status == FAILED else "in-progress"
                raise AwsError("ValidationException",
                               f'Cannot update {state} endpoint "{self._arn("endpoint", name)}".')
            self._update(endpoint, config)
        return {"EndpointArn": described["EndpointArn"]}

    def delete_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("EndpointName", "")
        answer = self._moto("DeleteEndpoint", params)
        self._forget(name)
        return answer

    def describe_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("EndpointName", "")
        described = self._moto("DescribeEndpoint", {"EndpointName": name})
        self._known(name)
        with self._lock:
            endpoint = self._endpoints.get(name)
            if endpoint is not None:
                self._overlay(described, endpoint, detail=True)
        return described

    def list_endpoints(self, params: dict[str, Any]) -> dict[str, Any]:
        query = {k: v for k, v in params.items() if k not in ("StatusEquals", "NextToken", "MaxResults")}
        summaries = self._moto_endpoints(query)
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
        start = int(params.get("NextToken") or 0)
        size = int(params.get("MaxResults") or 100)
        answer: dict[str, Any] = {"Endpoints": summaries[start:start + size]}
        if start + size < len(summaries):
            answer["NextToken"] = str(start + size)
        return answer

    # -- sagemaker-runtime InvokeEndpoint ------------------------------------------------
    def invoke_endpoint(self, request: Request, name: str) -> Response:
        name = unquote(name)
        endpoint = self._lookup(name)
        if endpoint is None:
            raise AwsError("ValidationError", f"Endpoint {name} of account {self.account} not found.")
        server = endpoint.server
        if server is None:
            raise AwsError("ValidationError", f"Endpoint {name} of account {self.account} is {endpoint.status}, "
                                              "not InService; it cannot serve requests"
                                              + (f": {endpoint.failure_reason}" if endpoint.failure_reason else "."))
        variant = endpoint.variants[0]["VariantName"] if endpoint.variants else "AllTraffic"
        headers = {h: request.headers[h] for h in PROXIED_HEADERS if h in request.headers}
        try:
            status, body, answer_headers = server.request("POST", "/invocations", request.get_data(), headers)
        except (OSError, http.client.HTTPException) as exc:
            code = server.process.poll()
            why = f"exited with status {code}" if code is not None else f"did not answer: {exc}"
            return self._model_error(name, f"The model container for production variant {variant} {why}. "
                                           f"See {server.log} for more information.", None, None)
        if status == 200:
            response = Response(body, status=200,
                                content_type=answer_headers.get("content-type", "application/octet-stream"))
            response.headers["x-Amzn-Invoked-Production-Variant"] = variant
            return response
        text = body.decode("utf-8", errors="replace")
        kind = "client" if 400 <= status < 500 else "server"
        return self._model_error(name, f'Received {kind} error ({status}) from primary with message "{text}". '
                                       f"See {server.log} for more information.", status, text)

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
                    described = self._moto("DescribeEndpoint", {"EndpointName": summary["EndpointName"]})
                except AwsError:  # deleted meanwhile
                    continue
                declared[summary["EndpointName"]] = described["EndpointConfigName"]
            declared.update({name: config for name, config in self._stack_configs().items()
                             if name in declared})
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
                            self._update(endpoint, config)

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
        endpoint.config_name, endpoint.pending_config = config, None
        self._launch(endpoint, config)
        if old is not None:
            threading.Thread(target=old.stop, daemon=True).start()

    def _update(self, endpoint: Endpoint, config: str) -> None:
        """(lock held) Start `config` beside the server in service: Updating."""
        if endpoint.status == CREATING:
            self._restart(endpoint, config)
            return
        endpoint.status, endpoint.pending_config = UPDATING, config
        endpoint.update_started = time.time()
        self._launch(endpoint, config)

    def _launch(self, endpoint: Endpoint, config: str) -> None:
        """(lock held) A new generation; its start runs in a background thread."""
        endpoint.generation += 1
        endpoint.last_modified = time.time()
        folder = self._folder(endpoint.name)
        threading.Thread(target=self._start, args=(endpoint, config, endpoint.generation, folder),
                         name=f"endpoint-{endpoint.name}", daemon=True).start()
        self.runtime.changes.notify()

    def _start(self, endpoint: Endpoint, config: str, generation: int, folder: Path) -> None:
        server, reason, variants = None, None, []
        try:
            container, variants = self._container(config)
            server = self._serve(container, folder)
        except StartFailed as exc:
            reason = str(exc)
        except Exception as exc:  # a bug here must end as Failed, not as an endpoint Creating forever
            logger.exception("starting endpoint %s failed", endpoint.name)
            reason = f"the local runtime could not start the endpoint: {type(exc).__name__}: {exc}"
        with self._lock:
            current = self._is_current(endpoint, generation)
            if not current or server is None:
                outcome = self._failed(endpoint, config, reason) if current else None
            else:  # new requests go to the new server at once; the old one drains, then stops
                old, endpoint.server = endpoint.server, server
        if not current:
            if server is not None:
                server.stop()
            return
        if server is not None:
            if old is not None:
                old.stop()
            with self._lock:
                if not self._is_current(endpoint, generation):
                    return
                endpoint.status, endpoint.failure_reason = IN_SERVICE, None
                endpoint.config_name, endpoint.pending_config = config, None
                endpoint.variants, endpoint.last_modified = variants, time.time()
            logger.info("endpoint %s is InService on config %s (port %d)", endpoint.name, config, server.port)
        else:
            logger.warning("endpoint %s: %s", endpoint.name, outcome)
        self.runtime.changes.notify()

    def _is_current(self, endpoint: Endpoint, generation: int) -> bool:
        """(lock held) Whether this start is still the one the endpoint waits for."""
        return (not self._closed and self._endpoints.get(endpoint.name) is endpoint
                and endpoint.generation == generation)

    def _failed(self, endpoint: Endpoint, config: str, reason: str | None) -> str:
        """(lock held) A start failed: a failed update rolls back (the old server keeps serving, as
        SageMaker's old fleet does); a failed create is Failed. Returns the FailureReason."""
        if endpoint.status == UPDATING:
            endpoint.status, endpoint.pending_config = IN_SERVICE, None
            endpoint.failure_reason = f"Update to endpoint configuration {config} failed: {reason}"
        else:
            endpoint.status, endpoint.failure_reason = FAILED, reason
        endpoint.last_modified = time.time()
        return endpoint.failure_reason or ""

    def _forget(self, name: str) -> None:
        with self._lock:
            endpoint = self._endpoints.pop(name, None)
        if endpoint is not None:
            if endpoint.server is not None:
                endpoint.server.stop()
            self.runtime.changes.notify()

    def stop_all(self) -> None:
        """Stop every server, including those still starting (the CLI calls this at exit)."""
        with self._lock:
            self._closed = True
            endpoints, self._endpoints = list(self._endpoints.values()), {}
            starting = list(self._starting)
        for endpoint in endpoints:
            if endpoint.server is not None:
                endpoint.server.stop()
        for process in starting:
            stop_process(process)

    # -- serving --------------------------------------------------------------------------
    def _container(self, config_name: str) -> tuple[Container, list[dict[str, Any]]]:
        """Config -> first variant's model -> its container's image, model data and environment."""
        from botocore.exceptions import ClientError

        sagemaker = self.runtime.aws.client("sagemaker")
        try:
            config = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)
            variant = config["ProductionVariants"][0]
            model = sagemaker.describe_model(ModelName=variant["ModelName"])
            container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
            environment = dict(container.get("Environment") or {})
            if container.get("ModelPackageName"):
                package = sagemaker.describe_model_package(ModelPackageName=container["ModelPackageName"])
                containers = package.get("InferenceSpecification", {}).get("Containers") or [{}]
                environment = {**(containers[0].get("Environment") or {}), **environment}
                container = containers[0]
        except ClientError as exc:
            raise StartFailed(f"endpoint configuration {config_name}: {exc.response['Error']['Message']}") from None
        model_name = variant["ModelName"]
        if not container.get("Image"):
            raise StartFailed(f"model {model_name} has no container image")
        if not container.get("ModelDataUrl"):
            raise StartFailed(f"model {model_name} has no ModelDataUrl; the model server needs model data")
        variants = [{"VariantName": v["VariantName"],
                     **({"CurrentWeight": v["InitialVariantWeight"], "DesiredWeight": v["InitialVariantWeight"]}
                        if "InitialVariantWeight" in v else {}),
                     **({"CurrentInstanceCount": v["InitialInstanceCount"],
                         "DesiredInstanceCount": v["InitialInstanceCount"]} if "InitialInstanceCount" in v else {}),
                     **({"CurrentServerlessConfig": v["ServerlessConfig"]} if "ServerlessConfig" in v else {})}
                    for v in config["ProductionVariants"]]
        for summary in variants[:1]:
            summary["DeployedImages"] = [{"SpecifiedImage": container["Image"],
                                          "ResolvedImage": container["Image"]}]
        return Container(model_name, variant["VariantName"], container["Image"], container["ModelDataUrl"],
                         {str(k): str(v) for k, v in environment.items()}), variants

    def _serve(self, container: Container, folder: Path) -> LocalServer:
        try:
            argv = self.runtime.images.resolve(container.image).command("serve")
        except KeyError as exc:
            raise StartFailed(f"model {container.model_name}: {exc.args[0]}") from None
        folder.mkdir(parents=True, exist_ok=True)
        tarball = folder / "model.tar.gz"
        url = container.model_data_url
        if not url.startswith("s3://") or "/" not in url[5:]:
            raise StartFailed(f"model {container.model_name}: ModelDataUrl {url!r} is not an s3:// object URL")
        bucket, key = url[5:].split("/", 1)
        try:
            self.runtime.aws.client("s3").download_file(bucket, key, str(tarball))
        except Exception as exc:
            raise StartFailed(f"Could not find model data at {url} (model {container.model_name}): {exc}") from None
        try:
            model_dir = unpack_model(tarball, folder / "model")
        except Exception as exc:
            raise StartFailed(f"model data at {url} is not a readable model.tar.gz: {exc}") from None
        spawned: list[subprocess.Popen] = []

        def track(process: subprocess.Popen) -> None:
            with self._lock:
                spawned.append(process)
                self._starting.add(process)
                closed = self._closed
            if closed:  # stop_all ran while we downloaded
                stop_process(process)

        try:
            return LocalServer.start(argv, model_dir, folder / "server.log", container.environment,
                                     container.variant, self.start_timeout, spawned=track)
        finally:
            with self._lock:
                self._starting.difference_update(spawned)

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
            record["ProductionVariants"] = endpoint.variants
        record.pop("PendingDeploymentSummary", None)
        if endpoint.status == UPDATING and endpoint.pending_config:
            record["PendingDeploymentSummary"] = {"EndpointConfigName": endpoint.pending_config,
                                                  "StartTime": endpoint.update_started or endpoint.last_modified}

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
            try:
                self._moto("DescribeEndpoint", {"EndpointName": name})
            except AwsError:
                return None
            self.reconcile()
            with self._lock:
                endpoint = self._endpoints.get(name)
        return endpoint

    # -- moto, straight (our overrides would answer a call through the gateway) ------------
    def _moto(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        """One SageMaker call answered by moto's app in-process, bypassing the gateway's overrides."""
        region = self.region
        builder = EnvironBuilder(
            method="POST", path="/", data=json.dumps(params),
            headers={"X-Amz-Target": f"SageMaker.{operation}", "Content-Type": "application/x-amz-json-1.1",
                     "Host": f"api.sagemaker.{region}.amazonaws.com",
                     "Authorization": f"AWS4-HMAC-SHA256 Credential=testing/20240101/{region}/sagemaker/"
                                      "aws4_request, SignedHeaders=host, Signature=local"})
        response = Response.from_app(self.runtime.aws.gateway.moto, builder.get_environ())
        payload = json.loads(response.get_data() or b"{}")
        if response.status_code >= 400:
            code = str(payload.get("__type") or payload.get("code") or "ValidationException").split("#")[-1]
            raise AwsError(code, payload.get("message") or payload.get("Message") or "", response.status_code)
        return payload

    def _moto_endpoints(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        summaries, token = [], None
        while True:
            page = self._moto("ListEndpoints", {**query, **({"NextToken": token} if token else {}),
                                                "MaxResults": 100})
            summaries.extend(page.get("Endpoints", []))
            token = page.get("NextToken")
            if not token:
                return summaries

    @property
    def account(self) -> str:
        if self._account is None:
            self._account = self.runtime.aws.client("sts").get_caller_identity()["Account"]
        return self._account

    def _arn(self, kind: str, name: str) -> str:
        return f"arn:aws:sagemaker:{self.region}:{self.account}:{kind}/{name}"
