"""What the local runtime's components share: the stand-in, a work folder, images, change signals,
the warm Lambda workers, the role sessions services act with.

Each component (Glue job runs, SageMaker jobs, endpoints, stacks, the pipeline engine) is built
with a `Runtime` and registers its operations on `runtime.aws.gateway`.
"""
from __future__ import annotations

import datetime as dt
import re
import shlex
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from mlops_local.access_log import Access, AccessLog
from mlops_local.gateway import LocalAws, account_id
from mlops_local.lambda_workers import LambdaWorkers

if TYPE_CHECKING:
    from mlops_local.iam.actions import Check
    from mlops_local.iam.principals import Principal


class Changes:
    """A counter that components bump when any job or endpoint changes state.

    The pipeline engine waits on it to re-invoke a continuation as soon as something changed,
    instead of sleeping a fixed interval.
    """

    def __init__(self) -> None:
        self._version = 0
        self._condition = threading.Condition()

    @property
    def version(self) -> int:
        return self._version

    def notify(self) -> None:
        with self._condition:
            self._version += 1
            self._condition.notify_all()

    def wait(self, since: int, timeout: float) -> int:
        """Block until the version passes `since` or the timeout ends; return the version."""
        with self._condition:
            self._condition.wait_for(lambda: self._version > since, timeout=timeout)
            return self._version


@dataclass(frozen=True)
class LocalImage:
    """A container image that is not built here: its programs run from the source tree."""
    uri: str
    dockerfile: Path
    programs: dict[str, list[str]]          # "train" / "serve" -> argv
    code: Path                              # where the image's Python packages come from here
    lambda_handler: str | None = None       # CMD of a Lambda image, e.g. lambdas.endpoint_test.handler

    def command(self, program: str) -> list[str]:
        if program not in self.programs:
            raise KeyError(f"image {self.uri} ({self.dockerfile}) has no program '{program}'")
        return list(self.programs[program])

    def environment(self) -> dict[str, str]:
        """What a process of the image needs: its packages first on the path, as the image's
        PYTHONPATH puts the COPYed packages (not whatever copy of them this interpreter has)."""
        return {"PYTHONPATH": str(self.code)}


def python_command(argv: list[str]) -> list[str]:
    """A container's `python3 -m x` runs with this interpreter, which has the project installed."""
    if argv and re.fullmatch(r"python(3(\.\d+)?)?", Path(argv[0]).name):
        return [sys.executable, *argv[1:]]
    return argv


def image_from_dockerfile(uri: str, dockerfile: Path, source_root: Path) -> LocalImage:
    """Read what an image would run from its Dockerfile: bin/ programs on PATH, or a Lambda CMD.

    COPY sources are relative to `source_root`, the build context of every Dockerfile here."""
    text = dockerfile.read_text(encoding="utf-8")
    programs: dict[str, list[str]] = {}
    for source in re.findall(r"^COPY\s+(\S+/bin/?)\s+\S+\s*$", text, flags=re.M):
        for script in sorted((source_root / source).glob("*")):
            match = re.search(r"^exec\s+(.+?)\s+\"\$@\"\s*$", script.read_text(encoding="utf-8"), flags=re.M)
            if match:
                programs[script.name] = python_command(shlex.split(match.group(1)))
    cmd = re.search(r'^CMD\s+\["([\w.]+)"\]\s*$', text, flags=re.M)
    return LocalImage(uri=uri, dockerfile=dockerfile, programs=programs, code=source_root / "src",
                      lambda_handler=cmd.group(1) if cmd and not programs else None)


@dataclass
class ImageMap:
    """Image URI -> local image. The Build stage (skipped here) records what it would have built."""
    source_root: Path
    images: dict[str, LocalImage] = field(default_factory=dict)

    def add(self, uri: str, dockerfile: Path) -> LocalImage:
        image = image_from_dockerfile(uri, dockerfile, self.source_root)
        self.images[uri] = image
        return image

    def resolve(self, uri: str) -> LocalImage:
        if uri in self.images:
            return self.images[uri]
        # The same repository under another tag runs the same source.
        repository = uri.rsplit(":", 1)[0].split("@", 1)[0]
        for known, image in self.images.items():
            if known.rsplit(":", 1)[0].split("@", 1)[0] == repository:
                return image
        raise KeyError(f"image {uri} is not known here: no Build action produced it and no Dockerfile "
                       "maps to its repository")


class RoleNotAssumable(Exception):
    """A service cannot assume the role: it does not exist or its trust policy does not allow it."""


@dataclass(frozen=True)
class RoleCredentials:
    """Temporary credentials of a role session, as a service hands them to the code it runs."""
    arn: str  # arn:aws:sts::<account>:assumed-role/<RoleName>/<session>
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expiration: dt.datetime = field(repr=False)  # UTC
    role_arn: str = ""
    session_name: str = ""
    session_policy: str | None = field(default=None, repr=False)

    def environment(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
                "AWS_SESSION_TOKEN": self.session_token}

    def client_options(self) -> dict[str, str]:
        """boto3.client(...) keyword arguments that sign as this session."""
        return {"aws_access_key_id": self.access_key_id, "aws_secret_access_key": self.secret_access_key,
                "aws_session_token": self.session_token}

    def principal(self) -> Principal:
        from mlops_local.iam.principals import Principal

        return Principal("assumed-role", self.arn, self.access_key_id, role_arn=self.role_arn,
                         session_name=self.session_name, session_policy=self.session_policy)


SESSION_SECONDS = 3600  # AssumeRole's default DurationSeconds (STS API Reference, AssumeRole)
# Credentials are renewed this long before they expire: Lambda's longest timeout (900 s, Lambda
# Developer Guide, "Configure Lambda function timeout") plus a margin, so an invocation started with
# cached credentials never outlives them.
RENEW_SECONDS = 1200


class RoleSessions:
    """Role sessions services act with, from the stand-in's STS: (role, session name) -> credentials.

    A service assumes its role as AWS's does: as the service principal (lambda.amazonaws.com, ...),
    which the role's trust policy must allow. moto's AssumeRole checks neither the trust policy nor
    that the role exists, so `credentials` checks both first (principals.service_may_assume). The call
    goes to moto's STS directly: it is the service's, not a request of the account's principals.
    Sessions are reused until RENEW_SECONDS before they expire, so a warm Lambda worker (keyed by its
    environment, credentials included) stays warm across invocations and executions. A session is kept per
    confused-deputy keys the service sent (principals.source_keys): one made for one SageMaker job is never
    handed to another job, whose aws:SourceArn the trust policy has not judged; Lambda sends none, so its
    sessions, and its warm workers, stay one per function.
    """

    def __init__(self, region: str) -> None:
        self.region = region
        self._sessions: dict[tuple[str, str, str | None, tuple[tuple[str, str], ...]], RoleCredentials] = {}
        self._lock = threading.Lock()

    def credentials(self, role_arn: str, session_name: str, service: str, policy: str | None = None,
                    source_arn: str | None = None) -> RoleCredentials:
        """Raises RoleNotAssumable with a message naming the role and the service. `policy` is a session
        policy (JSON text) that limits the session, as AssumeRole's Policy does. `source_arn` is the
        resource the service acts for (a CodeBuild project, a SageMaker job): the trust policy is judged
        with the aws:SourceAccount / aws:SourceArn the service sends for it (principals.source_keys)."""
        from mlops_local.iam import principals

        sent = tuple(sorted(principals.source_keys(service, account_id(), source_arn).items()))
        key = (role_arn, session_name, policy, sent)
        with self._lock:
            cached = self._sessions.get(key)
            if cached is not None and self._usable(cached):
                return cached
            decision = principals.service_may_assume(role_arn, service, account_id(), self.region, source_arn)
            if isinstance(decision, str) or decision.denied:
                reason = decision if isinstance(decision, str) else decision.message
                raise RoleNotAssumable(f"{service} cannot assume the role {role_arn}: {reason}")
            session = self._assume(role_arn, session_name, policy)
            self._sessions[key] = session
            return session

    def _usable(self, cached: RoleCredentials) -> bool:
        """Not about to expire, and still in moto's records (a moto reset empties them)."""
        from mlops_local.iam import principals

        remaining = (cached.expiration - dt.datetime.now(dt.timezone.utc)).total_seconds()
        principal = principals.resolve(cached.access_key_id, cached.session_token, account_id(), self.region)
        return remaining > RENEW_SECONDS and principal.arn == cached.arn

    def _assume(self, role_arn: str, session_name: str, policy: str | None) -> RoleCredentials:
        from mlops_local.iam.actions import partition
        from mlops_local.moto_access import backend

        sts = backend("sts", account_id(), partition(self.region))  # STS records live per partition
        session = sts.assume_role(region_name=self.region, role_session_name=session_name, role_arn=role_arn,
                                  policy=policy, duration=SESSION_SECONDS, external_id=None)
        return RoleCredentials(arn=session.arn, access_key_id=session.access_key_id,
                               secret_access_key=session.secret_access_key, session_token=session.session_token,
                               expiration=session.expiration.replace(tzinfo=dt.timezone.utc),
                               role_arn=role_arn, session_name=session_name, session_policy=policy)


@dataclass
class Runtime:
    """`source_root` is the project checkout whose code the local runtime runs (templates, Dockerfiles,
    src/): passed in by the CLI or a test, never derived from where this package is installed."""
    aws: LocalAws
    workdir: Path
    source_root: Path
    images: ImageMap = field(init=False)
    changes: Changes = field(default_factory=Changes)
    # Bumped when a Manual approval opens (also a change): the auto-approver sweeps on it alone, as the
    # hundred-odd other changes of a run would each cost it a sweep (two requests through the gateway).
    approvals: Changes = field(default_factory=Changes)
    lambda_workers: LambdaWorkers = field(default_factory=LambdaWorkers)
    role_sessions: RoleSessions = field(init=False)

    def __post_init__(self) -> None:
        self.source_root = self.source_root.resolve()
        self.images = ImageMap(self.source_root)
        self.role_sessions = RoleSessions(self.aws.gateway.region)

    @property
    def access_log(self) -> AccessLog:
        """Every request the stand-in served: principal, operation, IAM checks (access_log.AccessLog)."""
        return self.aws.gateway.access_log

    # -- acting as a principal --------------------------------------------------------------
    def session(self, role_arn: str, session_name: str, service: str, policy: str | None = None,
                source_arn: str | None = None) -> RoleCredentials:
        """The role session a service acts with for `source_arn` (RoleSessions.credentials; raises
        RoleNotAssumable)."""
        return self.role_sessions.credentials(role_arn, session_name, service, policy, source_arn)

    def client_as(self, service: str, session: RoleCredentials, **kwargs: Any) -> Any:
        """A client of the stand-in that signs as the session: its requests are judged as the role's."""
        return self.aws.client(service, **session.client_options(), **kwargs)

    def authorize(self, session: RoleCredentials, service: str, operation: str, params: Mapping[str, Any]) -> None:
        """Judge and record what a service does as the session without a request to the gateway
        (CodePipeline invoking a function, ...), as iam.actions maps the API call; raises
        enforcement.AccessDenied (code, AWS's message) when IAM denies it."""
        from mlops_local.iam import enforcement

        enforcement.authorize(self.access_log, session.principal(), service, operation, params, account_id(),
                              self.aws.gateway.region, enforce=self.aws.gateway.enforce)

    def authorize_checks(self, session: RoleCredentials, service: str, operation: str,
                         checks: Sequence[Check]) -> None:
        """As `authorize`, for checks the caller makes up itself (an image pull: actions.image_pull)."""
        import time

        from mlops_local.iam import enforcement
        from mlops_local.iam.actions import Mapped

        access = Access(time.time(), session.principal(), service, operation, Mapped(service, operation, tuple(checks)))
        enforcement.record(self.access_log, access, account_id(), self.aws.gateway.region,
                           enforce=self.aws.gateway.enforce)

    def denial(self, session: RoleCredentials, since: int, bucket: str = "") -> str | None:
        """AWS's message for the latest request of the session denied after access-log mark `since`
        (one naming `bucket` first, when given). S3 answers a denied HeadObject (the first request of
        a download) with a bare 403 and no body, so a staging error does not carry the text; the access
        log has it, as AWS's GetObject answer would."""
        fallback = None
        for access in reversed(self.access_log.records(since)):
            decided = access.decided
            if access.principal.access_key_id != session.access_key_id or decided is None or not decided.denied:
                continue
            if not bucket or any(f":::{bucket}{end}" in decided.message for end in ("/", " ", '"')):  # S3 quotes
                return decided.message
            if access.service == "s3" and fallback is None:
                fallback = decided.message
        return fallback

    def close(self) -> None:
        """End what the runtime itself keeps running: the idle Lambda workers."""
        self.lambda_workers.close()
