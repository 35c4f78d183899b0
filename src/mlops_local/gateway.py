"""The local stand-in for AWS: moto's server app behind a WSGI gateway on 127.0.0.1.

moto is the control plane. For the operations moto lacks or fakes (see docs/ARCHITECTURE.md
section 3), a runtime component registers a handler here; every other request passes through to
moto unchanged. boto3, the `aws` CLI and the SageMaker SDK reach it with AWS_ENDPOINT_URL.

Handlers:
- JSON-protocol operations (CodePipeline, Glue, SageMaker, ...) by their X-Amz-Target, e.g.
  `gateway.operation("AWSGlue.StartJobRun", fn)`; `fn(params: dict) -> dict`. Raise `AwsError`
  for the error AWS would return.
- REST routes by method and path pattern (sagemaker-runtime InvokeEndpoint):
  `gateway.route("POST", r"^/endpoints/(?P<name>[^/]+)/invocations$", fn)`;
  `fn(request, **groups) -> werkzeug Response`.
- After-hooks on passed-through operations, by service and operation name (query protocol
  `Action=` or JSON `X-Amz-Target`), e.g. `gateway.after("cloudformation", "CreateStack", fn)`;
  `fn(params: dict, status: int, body: bytes)` runs after moto answered.

Every request it serves is recorded in `gateway.access_log`: who called (the principal behind its
access key, mlops_local.iam.principals), which operation, the IAM checks AWS makes
(mlops_local.iam.actions) and the decision on them (mlops_local.iam.enforcement): a denied request
gets the service's access-denied answer and never reaches a handler or moto. `Gateway(enforce=False)`
is a debugging switch only: requests are then judged when a run writes its access log (a dry run).
While a request is served, `current_principal()` names its caller (moto's CloudFormation creates a
stack's resources inside the CreateStack request, as whom matters when the stack has no role).
"""
from __future__ import annotations

import contextvars
import dataclasses
import datetime as dt
import io
import json
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qs

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from mlops_local.access_log import Access, AccessLog
from mlops_local.rest_operations import REST_SERVICES, json_targets, rest_request

if TYPE_CHECKING:
    from mlops_local.iam.principals import Principal

logger = logging.getLogger(__name__)

JsonHandler = Callable[[dict[str, Any]], dict[str, Any]]
RouteHandler = Callable[..., Response]
AfterHook = Callable[[dict[str, Any], int, bytes], None]
CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/[^/]+/([^/]+)/([^/]+)/aws4_request")  # region, signing name
FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing",
                    "aws_session_token": "testing"}
SHUTDOWN_POLL = 0.05  # seconds
_CALLER: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("caller", default=None)


def current_principal() -> Principal | None:
    """The caller of the request being served on this thread (None outside a request)."""
    return _CALLER.get()


class AwsError(Exception):
    """An error in AWS's own terms: code (e.g. ResourceNotFound), message, HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def account_id() -> str:
    """The account every resource of the stand-in lives in: moto's default, as its ARNs say."""
    from moto.core import DEFAULT_ACCOUNT_ID

    return str(DEFAULT_ACCOUNT_ID)


def now() -> dt.datetime:
    """The time every service of the stand-in stamps records with (UTC, aware)."""
    return dt.datetime.now(dt.timezone.utc)


def paginate(records: list[Any], params: dict[str, Any], *, token: str = "NextToken", size: str = "MaxResults",
             default_size: int = 100) -> tuple[list[Any], str | None]:
    """One page of a list operation and the token of the next (None at the end).

    Tokens are offsets, opaque to callers; a token that is not one is rejected as AWS rejects a
    forged one. `token`/`size` name the request's fields (CodePipeline spells them nextToken/maxResults)."""
    try:
        start = int(params.get(token) or 0)
        limit = int(params.get(size) or default_size)
    except (TypeError, ValueError):
        raise AwsError("InvalidNextTokenException" if token == "nextToken" else "ValidationException",
                       f"the {token} is not valid") from None
    if start < 0 or limit < 1:
        raise AwsError("ValidationException", f"the {token} or {size} is not valid")
    end = start + limit
    return records[start:end], (str(end) if end < len(records) else None)


def to_json(value: Any) -> Any:
    """JSON protocol encoding: timestamps as epoch seconds, as botocore parses them."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.timestamp()
    raise TypeError(f"cannot encode {type(value).__name__}")


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload, default=to_json), status=status,
                    content_type="application/x-amz-json-1.1")


def error_response(error: AwsError) -> Response:
    response = json_response({"__type": error.code, "message": error.message, "Message": error.message},
                             error.status)
    response.headers["x-amzn-ErrorType"] = error.code
    return response


# The query protocol services the gateway checks, and the XML namespace of their error answers.
QUERY_NAMESPACES = {"cloudformation": "http://cloudformation.amazonaws.com/doc/2010-05-15/",
                    "sns": "http://sns.amazonaws.com/doc/2010-03-31/",
                    "iam": "https://iam.amazonaws.com/doc/2010-05-08/",
                    "sts": "https://sts.amazonaws.com/doc/2011-06-15/"}


def s3_error_response(error: AwsError) -> Response:
    """Amazon S3's REST-XML error: <Error><Code>..</Code><Message>..</Message><RequestId>..</RequestId></Error>."""
    from xml.sax.saxutils import escape

    xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{escape(error.code)}</Code>'
           f"<Message>{escape(error.message)}</Message><RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>")
    return Response(xml, status=error.status, content_type="application/xml")


def query_error_response(error: AwsError, namespace: str) -> Response:
    """A query protocol service's error: <ErrorResponse><Error><Type>Sender</Type><Code>..."""
    from xml.sax.saxutils import escape

    kind = "Sender" if error.status < 500 else "Receiver"
    xml = (f'<ErrorResponse xmlns="{namespace}"><Error><Type>{kind}</Type><Code>{escape(error.code)}</Code>'
           f"<Message>{escape(error.message)}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>")
    return Response(xml, status=error.status, content_type="text/xml")


LOOPBACK_TEMPLATE_URL = re.compile(rb"(TemplateURL=)http%3A%2F%2F(?:127\.0\.0\.1|localhost)%3A\d+%2F")


def loopback_template_urls(body: bytes) -> bytes:
    """`aws cloudformation deploy --s3-bucket` passes TemplateURL=http://127.0.0.1:PORT/bucket/key.
    moto reads a bucket from the path only for S3's own host names, so name that host instead."""
    if b"TemplateURL=" not in body:
        return body
    return LOOPBACK_TEMPLATE_URL.sub(rb"\1https%3A%2F%2Fs3.amazonaws.com%2F", body)


@dataclass
class Gateway:
    """WSGI app: registered handlers first, moto for the rest."""
    region: str = "us-east-1"
    operations: dict[str, JsonHandler] = field(default_factory=dict)
    routes: list[tuple[str, re.Pattern, RouteHandler]] = field(default_factory=list)
    hooks: dict[tuple[str, str], list[AfterHook]] = field(default_factory=dict)
    validate: bool = True  # a debugging switch: False lets requests AWS would reject through
    enforce: bool = True  # a debugging switch: False serves requests IAM would deny (judged afterwards)
    access_log: AccessLog = field(default_factory=AccessLog)

    def __post_init__(self) -> None:
        from moto.core.config import default_user_config
        from moto.server import DomainDispatcherApplication, create_backend_app

        # Lambda functions run in our runtime, not in Docker (there is no engine here).
        default_user_config["lambda"]["use_docker"] = False
        default_user_config["batch"]["use_docker"] = False
        self.moto = DomainDispatcherApplication(create_backend_app)

    # -- registration ---------------------------------------------------------------------
    def operation(self, target: str, handler: JsonHandler) -> None:
        self.operations[target] = handler

    def route(self, method: str, pattern: str, handler: RouteHandler) -> None:
        self.routes.append((method.upper(), re.compile(pattern), handler))

    def after(self, service: str, operation: str, hook: AfterHook) -> None:
        self.hooks.setdefault((service, operation), []).append(hook)

    # -- WSGI -----------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Any:
        request = Request(environ)
        body = loopback_template_urls(request.get_data(cache=True))
        environ["wsgi.input"] = io.BytesIO(body)  # moto reads the body again
        environ["CONTENT_LENGTH"] = str(len(body))
        target = request.headers.get("X-Amz-Target", "")
        service, operation, params = self._identify(request, target, body)
        aws_request = not request.path.startswith("/moto-api/")  # moto's own control API is no AWS request
        access = self._record(request, service, operation, params, target, body) if aws_request else None
        caller = _CALLER.set(access.principal if access else None)
        try:
            return self._serve(environ, start_response, request, access, aws_request,
                               service, operation, params, target)
        finally:
            _CALLER.reset(caller)

    def _serve(self, environ: dict[str, Any], start_response: Callable, request: Request, access: Access | None,
               aws_request: bool, service: str, operation: str, params: dict[str, Any], target: str) -> Any:
        try:
            if aws_request:  # IAM first, as AWS authorizes a request before it validates its values
                self._authorize(access)
            if self.validate:
                self._validate(service, operation, params, target, request)
            if target in self.operations:
                return json_response(self.operations[target](params))(environ, start_response)
            for method, pattern, handler in self.routes:
                match = pattern.match(request.path)
                if match and request.method == method:
                    return handler(request, **match.groupdict())(environ, start_response)
        except AwsError as error:
            from mlops_local.rest_validation import S3Error

            if (access is not None and access.service == "s3") or isinstance(error, S3Error):
                return s3_error_response(error)(environ, start_response)
            return self._error_response(service, target, error)(environ, start_response)
        except Exception:  # a bug in our runtime must not look like an AWS answer
            logger.exception("local runtime failed on %s %s %s", request.method, request.path, target)
            return self._error_response(service, target, AwsError(
                "InternalFailure", "the local runtime failed; see its log", 500))(environ, start_response)
        hooks = self.hooks.get((service, operation))
        try:
            if not hooks:
                return self.moto(environ, start_response)
            return self._with_hooks(environ, start_response, hooks, params)
        except NotImplementedError:  # moto's call_action: "The <name> action has not been implemented"
            return self._not_implemented(request, access, service, operation, target)(environ, start_response)
        except Exception as exc:  # moto's bug: one line here, not werkzeug's 48-line traceback on the console
            logger.error("moto failed on %s %s: %s: %s", service or request.path, operation or request.method,
                         type(exc).__name__, exc)
            logger.debug("moto's traceback", exc_info=True)
            return error_response(AwsError("InternalFailure", f"the local stand-in (moto) failed on {operation}: "
                                           f"{type(exc).__name__}", 500))(environ, start_response)

    def _not_implemented(self, request: Request, access: Access | None, service: str, operation: str,
                         target: str) -> Response:
        """AWS's answer to an operation it does not know, which no SDK retries (botocore retries 500, 502,
        503, 504 and throttling codes: botocore/retries/standard.py, botocore/data/_retry.json): JSON
        protocols `UnknownOperationException` 400, query protocols `InvalidAction` 400 (the APIs' Common
        Errors), S3 `NotImplemented` 501 (Amazon S3 API Reference, Error responses)."""
        name = operation or f"{request.method} {request.path}"
        message = f"{name}: the local stand-in for AWS does not implement this operation of {service or 'this service'}"
        s3 = (access is not None and access.service == "s3") or (not target and service == "s3")
        code = "NotImplemented" if s3 else "UnknownOperationException" if target or not operation else "InvalidAction"
        logger.warning("%s (answered %s)", message, code)
        if s3:
            return s3_error_response(AwsError(code, message, 501))
        if code == "UnknownOperationException":
            return error_response(AwsError(code, message))
        return query_error_response(AwsError(code, message),
                                    QUERY_NAMESPACES.get(service, f"https://{service}.amazonaws.com/doc/"))

    def _validate(self, service: str, operation: str, params: dict[str, Any], target: str,
                  request: Request | None = None) -> None:
        """Every request of a JSON or query protocol service, and every Lambda and S3 (REST) request
        when `request` is given, checked as AWS checks it, before an override or moto sees it
        (mlops_local.validation: max, pattern, enum, documented limits; mlops_local.rest_validation)."""
        from mlops_local import rest_validation, validation

        if not target and not operation and request is not None:
            rest_validation.check(request, request.get_data(cache=True))  # S3's errors: rest_validation.S3Error
            return
        if target:
            service = validation.service_of_target(target.rsplit(".", 1)[0]) or ""
        elif service not in validation.QUERY_SERVICES:
            return
        if not service or operation not in validation.operations(service):
            return
        if not target:
            params = validation.query_request(service, operation, params)
        validation.check(service, operation, params)

    def _authorize(self, access: Access | None) -> None:
        """Judge the request as IAM does (enforcing), log it, and raise the service's access-denied
        answer when IAM denies it. With enforcement off, log it undecided (a run judges it later)."""
        from mlops_local.iam import enforcement

        if access is None:  # _record failed (logged): never serve a request unjudged
            if self.enforce:
                raise AwsError("InternalFailure", "the local stand-in could not authorize the request; see its log",
                               500)
            return
        if not self.enforce:
            self.access_log.add(access)
            return
        try:
            decided = enforcement.decide(access, account_id(), self.region)
        except Exception:
            logger.exception("could not judge %s %s", access.service, access.operation)
            self.access_log.add(access)
            raise AwsError("InternalFailure", "the local stand-in could not authorize the request; see its log",
                           500) from None
        self.access_log.add(dataclasses.replace(access, decided=decided))
        if decided.denied:
            denied = enforcement.error(access, decided)
            raise AwsError(denied.code, denied.message, denied.status)

    def _record(self, request: Request, service: str, operation: str, params: dict[str, Any], target: str,
                body: bytes) -> Access | None:
        """Who made this request and what IAM checks (_authorize judges and logs it); None if that failed."""
        from mlops_local.iam import actions, principals, s3_kms

        try:
            authorization_header = request.headers.get("Authorization", "")
            scope = CREDENTIAL_SCOPE.search(authorization_header)
            region = scope.group(1) if scope else self.region
            account = account_id()
            credentials = principals.signed_credentials(
                authorization_header, request.headers.get("X-Amz-Security-Token"), request.args)
            principal = (principals.resolve(credentials[0], credentials[1], account, region) if credentials
                         else principals.Principal("anonymous", ""))
            if target:
                service = json_targets().get(target.rsplit(".", 1)[0], service)
            elif service and not operation:
                service = REST_SERVICES.get(service, service)
                operation, params = rest_request(service, request, body)
            authorization = actions.authorization(service, operation, params, account, region)
            authorization = s3_kms.with_kms_checks(authorization, params, request.headers, account, region)
            return Access(time.time(), principal, service, operation, authorization)
        except Exception:  # a bug here must not fail the request silently: logged; enforcing, it is refused
            logger.exception("could not record %s %s %s", request.method, request.path, target)
            return None

    def _error_response(self, service: str, target: str, error: AwsError) -> Response:
        if target or service not in QUERY_NAMESPACES:
            return error_response(error)
        return query_error_response(error, QUERY_NAMESPACES[service])

    def _identify(self, request: Request, target: str, body: bytes) -> tuple[str, str, dict]:
        from mlops_local.rest_validation import signing_service

        service = signing_service(request)  # SigV4 header or presigned URL; SigV2 is S3's
        if target:
            try:
                params = json.loads(body or b"{}")
            except ValueError:
                params = {}
            return service, target.rsplit(".", 1)[-1], params
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()} \
            if request.mimetype == "application/x-www-form-urlencoded" else {}
        form.update({k: v for k, v in request.args.items()})
        return service, form.get("Action", ""), form

    def _with_hooks(self, environ: dict[str, Any], start_response: Callable[..., Any], hooks: list[AfterHook],
                    params: dict[str, Any]) -> Any:
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        body = b"".join(self.moto(environ, capture))
        status = int(captured["status"].split()[0])
        for hook in hooks:
            try:
                hook(params, status, body)
            except Exception:
                logger.exception("after-hook %s failed", getattr(hook, "__name__", hook))
        start_response(captured["status"], captured["headers"])
        return [body]


class LocalAws:
    """The gateway served on a free loopback port, in a background thread."""

    def __init__(self, gateway: Gateway | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.gateway = gateway or Gateway()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        self.server = make_server(host, port, self.gateway, threaded=True)
        self.url = f"http://{host}:{self.server.server_port}"
        # stop() waits for serve_forever to notice the shutdown, at most one poll: socketserver's 0.5 s was
        # ~0.25 s of every run's end on average.
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": SHUTDOWN_POLL},
                                       name="local-aws", daemon=True)

    def start(self) -> "LocalAws":
        self.thread.start()
        self.reset()
        return self

    def reset(self) -> None:
        """Empty moto's state: its backends live per process, and every stand-in starts clean."""
        import urllib.request

        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "LocalAws":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def account_id(self) -> str:
        return account_id()

    def client(self, service: str, **kwargs: Any) -> Any:
        import boto3
        from botocore.config import Config

        options = {"config": Config(retries={"mode": "standard"}), **FAKE_CREDENTIALS, **kwargs}
        return boto3.client(service, endpoint_url=self.url, region_name=self.gateway.region, **options)

    def environment(self) -> dict[str, str]:
        """What a child process (aws CLI, handler, job) needs to reach this stand-in."""
        return {"AWS_ENDPOINT_URL": self.url, "AWS_DEFAULT_REGION": self.gateway.region,
                "AWS_REGION": self.gateway.region, "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}
