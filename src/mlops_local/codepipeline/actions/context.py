"""What an action provider works with: its context, its result, its errors and its artifacts.

The scheduler builds an `ActionContext` for one action execution; a provider returns an
`ActionResult` or raises `ActionFailed` (or `ActionAbandoned` when the execution is abandoned).
"""
from __future__ import annotations

import io
import secrets
import threading
import time
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping

from mlops_local.runtime import Runtime

SourceProvider = Callable[[str, str], Path]
"""(RepositoryName, BranchName) -> the local folder that branch's code is in."""

MAX_SUMMARY = 2048
MAX_MESSAGE = 5000


class ActionFailed(Exception):
    """The action fails with this message; code is CodePipeline's ErrorDetails.code."""

    def __init__(self, message: str, code: str = "JobFailed") -> None:
        super().__init__(message[:MAX_MESSAGE])
        self.message, self.code = message[:MAX_MESSAGE], code


class ActionAbandoned(Exception):
    """StopPipelineExecution with abandon=True reached this action while it ran."""


@dataclass(frozen=True)
class ArtifactRef:
    name: str
    bucket: str
    key: str
    revision: str | None = None

    def job_artifact(self) -> dict[str, Any]:
        """As in a CodePipeline job (event and GetJobDetails)."""
        artifact: dict[str, Any] = {
            "name": self.name,
            "location": {"type": "S3", "s3Location": {"bucketName": self.bucket, "objectKey": self.key}}}
        if self.revision:
            artifact["revision"] = self.revision
        return artifact

    def detail(self) -> dict[str, Any]:
        """As in ListActionExecutions (ArtifactDetail)."""
        return {"name": self.name, "s3location": {"bucket": self.bucket, "key": self.key}}


@dataclass
class ActionResult:
    summary: str
    variables: dict[str, str] = field(default_factory=dict)
    external_id: str | None = None
    external_url: str | None = None
    revision: dict[str, Any] | None = None   # source actions: revisionId, revisionSummary, created
    artifact_revision: str | None = None     # revision the output artifacts carry


@dataclass
class Approval:
    """One open approval request of a Manual approval action, keyed by its token."""
    token: str
    pipeline: str
    stage: str
    action: str
    execution_id: str
    action_execution_id: str
    state: str = "Open"                  # Open -> Approved | Rejected | Expired (timed out or abandoned)
    summary: str | None = None
    by: str | None = None                # the ARN of the principal that answered
    at: datetime | None = None
    answered: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, status: str, summary: str, by: str, at: datetime) -> str:
        """Record PutApprovalResult's answer; the state the request was in (Open when this answer counts)."""
        with self.lock:
            before = self.state
            if before == "Open":
                self.state, self.summary, self.by, self.at = status, summary, by, at
                self.answered.set()
            return before

    def expire(self) -> bool:
        """Close an unanswered request (timeout, abandon); False when an answer came first."""
        with self.lock:
            if self.state != "Open":
                return False
            self.state = "Expired"
            return True


@dataclass
class ActionContext:
    """What a provider may use. Built by the scheduler for one action execution."""
    runtime: Runtime
    pipeline: str
    pipeline_arn: str
    execution_id: str
    stage: str
    action: str
    action_execution_id: str
    declaration: Mapping[str, Any]
    configuration: dict[str, str]          # variables resolved
    inputs: list[ArtifactRef]
    outputs: list[ArtifactRef]
    encryption_key: dict[str, str] | None
    account_id: str
    region: str
    workdir: Path
    deadline: float                        # time.monotonic() by which the action must end
    client: Callable[[str], Any]           # signs as the pipeline's role: what CodePipeline does on AWS
    internal: Callable[[str], Any]         # the stand-in's own reads (a function's code, a project's buildspec)
    session: Any                           # runtime.RoleCredentials of the pipeline's role
    sources: SourceProvider
    stack_applier: Callable[[str], object] | None
    abandoned: Callable[[], bool]
    progress: Callable[..., None]          # progress(summary=, percent=, external_id=, external_url=)
    new_job: Callable[[str | None], Any]   # new_job(continuation_token) -> models.Job
    end_job: Callable[[Any], None]
    poll_interval: tuple[float, float]     # first and longest wait between continuation invocations
    source_override: dict[str, str] | None = None
    open_approval: Callable[[], Approval] | None = None  # registers this action's approval request

    def input(self, name: str | None = None) -> ArtifactRef:
        if name is None:
            if len(self.inputs) != 1:
                raise ActionFailed(f"the action needs exactly one input artifact, has {len(self.inputs)}",
                                   "ConfigurationError")
            return self.inputs[0]
        for artifact in self.inputs:
            if artifact.name == name:
                return artifact
        raise ActionFailed(f"the action has no input artifact named '{name}' "
                           f"(has: {[a.name for a in self.inputs]})", "ConfigurationError")

    def require(self, key: str) -> str:
        value = self.configuration.get(key)
        if not value:
            raise ActionFailed(f"configuration {key} is required for {self.provider_name}", "ConfigurationError")
        return value

    @property
    def provider_name(self) -> str:
        kind = self.declaration["actionTypeId"]
        return f"{kind['category']}/{kind['provider']}"

    def authorize(self, service: str, operation: str, params: Mapping[str, Any]) -> None:
        """What CodePipeline does as its role without a request to the stand-in (lambda Invoke,
        codebuild StartBuild, codecommit GetBranch ...): judged and recorded; a denial fails the action."""
        from mlops_local.iam.enforcement import AccessDenied

        try:
            self.runtime.authorize(self.session, service, operation, params)
        except AccessDenied as exc:
            raise ActionFailed(f"{exc.code}: {exc.message}", "JobFailed") from None

    def check_time(self) -> None:
        if self.abandoned():
            raise ActionAbandoned()
        if time.monotonic() > self.deadline:
            raise ActionFailed("the action timed out (the local engine's action timeout)", "JobFailed")


# -- artifacts ------------------------------------------------------------------------------
def new_artifact_key(pipeline: str, artifact: str) -> str:
    """<pipeline[:20]>/<artifact[:10]>/<random>, as CodePipeline names artifact objects."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return f"{pipeline[:20]}/{artifact[:10]}/{''.join(secrets.choice(alphabet) for _ in range(7))}"


def put_artifact(ctx: ActionContext, artifact: ArtifactRef, body: bytes) -> None:
    extra = {}
    if ctx.encryption_key:
        extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": ctx.encryption_key["id"]}
    ctx.client("s3").put_object(Bucket=artifact.bucket, Key=artifact.key, Body=body, **extra)


def put_zip_artifact(ctx: ActionContext, artifact: ArtifactRef, name: str, text: str) -> None:
    """An artifact that is a zip of one text file (a build log, stack outputs)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, text)
    put_artifact(ctx, artifact, buffer.getvalue())


def get_artifact(ctx: ActionContext, artifact: ArtifactRef) -> bytes:
    try:
        body: bytes = ctx.client("s3").get_object(Bucket=artifact.bucket, Key=artifact.key)["Body"].read()
    except Exception as exc:
        raise ActionFailed(f"cannot read input artifact '{artifact.name}' "
                           f"(s3://{artifact.bucket}/{artifact.key}): {exc}") from None
    return body


def read_artifact_file(ctx: ActionContext, reference: str, what: str) -> bytes:
    """`ArtifactName::path/in/zip`, as TemplatePath and TemplateConfiguration name files."""
    name, sep, path = reference.partition("::")
    if not sep or not name or not path:
        raise ActionFailed(f"{what} must be ArtifactName::path, got {reference!r}", "ConfigurationError")
    body = get_artifact(ctx, ctx.input(name))
    try:
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            return archive.read(path)
    except zipfile.BadZipFile:
        raise ActionFailed(f"{what}: input artifact '{name}' is not a zip archive") from None
    except KeyError:
        raise ActionFailed(f"{what}: input artifact '{name}' has no file '{path}'", "ConfigurationError") from None


def extract_artifact(ctx: ActionContext, artifact: ArtifactRef, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(io.BytesIO(get_artifact(ctx, artifact))) as archive:
            archive.extractall(into)
    except zipfile.BadZipFile:
        raise ActionFailed(f"input artifact '{artifact.name}' is not a zip archive") from None
    return into
