"""Action providers of the local pipeline engine: what each CodePipeline action type does here.

Each provider takes an `ActionContext` (resolved configuration, input and output artifacts, clients
that reach the stand-in) and returns an `ActionResult` or raises `ActionFailed`. The engine
(`mlops_local.engine`) owns ordering, variables, state and the job API.

- Source/CodeCommit: a `SourceProvider` maps (repository, branch) to a local folder; its files
  (as git would commit them) become the artifact zip. CommitId is a content hash, not a git commit.
- Source/S3: the object; a zip object is the artifact as is (as on AWS), any other object is
  wrapped in a zip under its key's basename so every downstream action can unzip its input.
- Build/CodeBuild: no container engine here, so no image is built and the action says so
  ("SKIPPED: ..."). The buildspec is read; plain variable assignments are evaluated to export its
  variables; `docker build -f <Dockerfile> -t <uri>` records the image in `runtime.images` (its
  programs then run from source); the few file steps the pipeline relies on (mkdir, rm, zip,
  `aws s3 cp` of a local file) are done directly. Everything else (docker, pip, tests) is skipped
  and listed in the action's build log.
- Deploy/CloudFormation: CREATE_UPDATE, REPLACE_ON_FAILURE, DELETE_ONLY through the stand-in's
  CloudFormation, then the engine's stack applier (resources moto's CloudFormation drops).
- Invoke/Lambda: the function's handler runs in a warm worker, a child process of this interpreter
  kept per (function, environment), with the function's environment and the stand-in's endpoint,
  once per job; the job ends when the handler reports PutJobSuccessResult/PutJobFailureResult.
  See `invoke_lambda` and `LambdaWorkers`.
"""
from __future__ import annotations

import atexit
import fnmatch
import hashlib
import io
import json
import logging
import os
import re
import secrets
import shlex
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from mlops_local.runtime import Runtime

logger = logging.getLogger(__name__)

SourceProvider = Callable[[str, str], Path]
"""(RepositoryName, BranchName) -> the local folder that branch's code is in."""

EXCLUDED = {".git", ".venv", "runs", "build", "dist", "__pycache__", ".pytest_cache", ".ruff_cache",
            ".mypy_cache", "node_modules"}
MAX_SUMMARY = 2048
MAX_MESSAGE = 5000
# Not real credentials: the stand-in accepts any. They mark the event as the local engine's.
FAKE_ARTIFACT_CREDENTIALS = {"accessKeyId": "ASIALOCALFAKEARTIFACT",
                             "secretAccessKey": "local-stand-in-fake-artifact-credentials",
                             "sessionToken": "local-stand-in-fake-session-token-not-a-secret"}


class ActionFailed(Exception):
    """The action fails with this message; code is CodePipeline's ErrorDetails.code."""

    def __init__(self, message: str, code: str = "JobFailed"):
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
        artifact = {"name": self.name,
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
class ActionContext:
    """What a provider may use. Built by the engine for one action execution."""
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
    client: Callable[[str], Any]
    sources: SourceProvider
    stack_applier: Callable[[str], None] | None
    abandoned: Callable[[], bool]
    progress: Callable[..., None]          # progress(summary=, percent=, external_id=, external_url=)
    new_job: Callable[[str | None], Any]   # new_job(continuation_token) -> engine Job
    end_job: Callable[[Any], None]
    poll_interval: tuple[float, float]     # first and longest wait between continuation invocations
    source_override: dict[str, str] | None = None

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

    def check_time(self) -> None:
        if self.abandoned():
            raise ActionAbandoned()
        if time.monotonic() > self.deadline:
            raise ActionFailed("the action timed out (the local engine's action timeout)", "JobFailed")


# -- artifacts ------------------------------------------------------------------------------
def put_artifact(ctx: ActionContext, artifact: ArtifactRef, body: bytes) -> None:
    extra = {}
    if ctx.encryption_key:
        extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": ctx.encryption_key["id"]}
    ctx.client("s3").put_object(Bucket=artifact.bucket, Key=artifact.key, Body=body, **extra)


def get_artifact(ctx: ActionContext, artifact: ArtifactRef) -> bytes:
    try:
        return ctx.client("s3").get_object(Bucket=artifact.bucket, Key=artifact.key)["Body"].read()
    except Exception as exc:
        raise ActionFailed(f"cannot read input artifact '{artifact.name}' "
                           f"(s3://{artifact.bucket}/{artifact.key}): {exc}") from None


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


def source_files(folder: Path) -> list[str]:
    """Files as a commit of this folder would hold them: git's view when it is a work tree."""
    try:
        listed = subprocess.run(["git", "-C", str(folder), "ls-files", "-z", "--cached", "--others",
                                 "--exclude-standard"], capture_output=True, check=True, timeout=60).stdout
        names = sorted({n for n in listed.decode("utf-8", "surrogateescape").split("\0") if n})
        return [n for n in names if (folder / n).is_file() and not EXCLUDED.intersection(Path(n).parts)]
    except (OSError, subprocess.SubprocessError):
        pass
    names = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and not EXCLUDED.intersection(relative.parts) and not relative.parts[0].startswith(".venv"):
            names.append(relative.as_posix())
    return names


def zip_folder(folder: Path) -> tuple[bytes, str]:
    """(zip bytes, content hash): the hash names the content like a commit id would."""
    digest = hashlib.sha1()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in source_files(folder):
            data = (folder / name).read_bytes()
            digest.update(name.encode() + b"\0" + data + b"\0")
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # content, not mtime, names it
            info.external_attr = ((folder / name).stat().st_mode & 0o777) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue(), digest.hexdigest()


# -- Source -----------------------------------------------------------------------------------
def source_codecommit(ctx: ActionContext) -> ActionResult:
    repository, branch = ctx.require("RepositoryName"), ctx.require("BranchName")
    if ctx.source_override:
        raise ActionFailed("source revision overrides of CodeCommit actions are not supported locally: "
                           "the source is the working tree", "ConfigurationError")
    try:
        folder = Path(ctx.sources(repository, branch))
    except Exception as exc:
        raise ActionFailed(f"no local source for {repository}@{branch}: {exc}", "ConfigurationError") from None
    if not folder.is_dir():
        raise ActionFailed(f"the local source of {repository}@{branch} is not a folder: {folder}",
                           "ConfigurationError")
    body, commit = zip_folder(folder)
    for artifact in ctx.outputs:
        put_artifact(ctx, artifact, body)
    now = datetime.now(timezone.utc)
    message = f"local working tree {folder} (content hash, not a git commit)"
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return ActionResult(
        summary=message,
        variables={"CommitId": commit, "CommitMessage": message, "BranchName": branch,
                   "RepositoryName": repository, "AuthorDate": stamp, "CommitterDate": stamp},
        external_id=commit,
        revision={"revisionId": commit, "revisionChangeId": commit, "revisionSummary": message, "created": now},
        artifact_revision=commit)


def source_s3(ctx: ActionContext) -> ActionResult:
    bucket, key = ctx.require("S3Bucket"), ctx.require("S3ObjectKey")
    extra = {}
    override = ctx.source_override or {}
    if override.get("revisionType") == "S3_OBJECT_VERSION_ID":
        extra["VersionId"] = override["revisionValue"]
    elif override.get("revisionType") == "S3_OBJECT_KEY":
        key = override["revisionValue"]
    elif override:
        raise ActionFailed(f"revision type {override.get('revisionType')} does not apply to an S3 source",
                           "ConfigurationError")
    try:
        obj = ctx.client("s3").get_object(Bucket=bucket, Key=key, **extra)
    except Exception as exc:
        raise ActionFailed(f"cannot read the source object s3://{bucket}/{key}: {exc}") from None
    data = obj["Body"].read()
    if zipfile.is_zipfile(io.BytesIO(data)):
        body = data  # a zip is the artifact as is, as on AWS
    else:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(key.rsplit("/", 1)[-1], data)
        body = buffer.getvalue()
    for artifact in ctx.outputs:
        put_artifact(ctx, artifact, body)
    version = obj.get("VersionId") or "null"
    etag = obj.get("ETag", "").strip('"')
    summary = f"s3://{bucket}/{key} version {version}"
    return ActionResult(summary=summary, variables={"VersionId": version, "ETag": etag},
                        external_id=version,
                        revision={"revisionId": version, "revisionChangeId": etag or version,
                                  "revisionSummary": summary, "created": obj.get("LastModified")
                                  or datetime.now(timezone.utc)},
                        artifact_revision=version)


# -- Build (CodeBuild): no container engine, so the image is not built ---------------------------
class NotDerivable(Exception):
    """A buildspec value that only running the build would give (command output, unset variable)."""


PARAMETER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:\?|:-|%%|%|##|#)([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")
ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)


def expand(text: str, env: Mapping[str, str | None]) -> str:
    """Bash parameter expansion for the forms buildspecs use; single-quoted text stays literal."""
    if "$(" in text or "`" in text:
        raise NotDerivable("command substitution")

    def one(match: re.Match) -> str:
        name = match.group(1) or match.group(4)
        op, arg = match.group(2), match.group(3) or ""
        value = env.get(name)
        if name in env and value is None:
            raise NotDerivable(name)
        if op == ":?":
            if not value:
                raise ActionFailed(f"buildspec: {name}: {arg or 'parameter null or not set'}")
            return value
        if op == ":-":
            return value or arg
        if value is None:
            raise NotDerivable(name)
        if op in ("%%", "%"):
            return _strip(value, arg, suffix=True, longest=op == "%%")
        if op in ("##", "#"):
            return _strip(value, arg, suffix=False, longest=op == "##")
        return value

    parts = re.split(r"('[^']*')", text)
    return "".join(p if p.startswith("'") else PARAMETER.sub(one, p) for p in parts)


def _strip(value: str, pattern: str, suffix: bool, longest: bool) -> str:
    cuts = range(len(value) + 1)
    order = cuts if (suffix and longest) or (not suffix and not longest) else reversed(cuts)
    for i in order:
        piece = value[i:] if suffix else value[:i]
        if fnmatch.fnmatchcase(piece, pattern):
            return value[:i] if suffix else value[i:]
    return value


@dataclass
class BuildLog:
    lines: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.lines.append(line)


def run_buildspec(ctx: ActionContext, spec: Mapping[str, Any], env: dict[str, str | None], cwd: Path,
                  log: BuildLog) -> list[tuple[str, str]]:
    """Evaluate what can be evaluated without a build container; return [(image uri, Dockerfile)]."""
    images: list[tuple[str, str]] = []
    for phase in ("install", "pre_build", "build", "post_build"):
        for command in ((spec.get("phases") or {}).get(phase) or {}).get("commands") or []:
            command = str(command).strip()
            for line in command.splitlines():
                if "docker build" in line:
                    images.append(_docker_build(line[line.index("docker build"):], env, cwd))
            if "\n" in command or re.match(r"^(if|for|while|case)\b", command):
                log.add(f"[{phase}] skipped (a block that needs the build container): {command.splitlines()[0]} ...")
                continue
            _run_command(ctx, phase, command, env, cwd, log)
    return images


def _docker_build(line: str, env: Mapping[str, str | None], cwd: Path) -> tuple[str, str]:
    def value(raw: str) -> str:  # only the words we need: a --build-arg may hold what we cannot know
        try:
            return " ".join(shlex.split(expand(raw, env)))
        except NotDerivable as exc:
            raise ActionFailed(f"cannot tell which image the build would push: {exc} is not known without "
                               f"running the build ({line.strip()})", "ConfigurationError") from None

    words = shlex.split(line, posix=False)  # keeps quotes, so single-quoted text stays literal
    dockerfile, tag = "Dockerfile", None
    for i, word in enumerate(words):
        if word in ("-f", "--file") and i + 1 < len(words):
            dockerfile = value(words[i + 1])
        elif word in ("-t", "--tag") and i + 1 < len(words):
            tag = value(words[i + 1])
    if not tag:
        raise ActionFailed(f"the buildspec's docker build names no image (-t): {line.strip()}", "ConfigurationError")
    return tag, dockerfile


def _run_command(ctx: ActionContext, phase: str, command: str, env: dict[str, str | None], cwd: Path,
                 log: BuildLog) -> None:
    subshell = command.startswith("(") and command.endswith(")")
    steps = [s.strip() for s in (command[1:-1] if subshell else command).split("&&")]
    assignment = ASSIGNMENT.match(command)
    if assignment and len(steps) == 1:
        name, raw = assignment.groups()
        try:
            words = shlex.split(expand(raw, env))
            env[name] = " ".join(words)
            log.add(f"[{phase}] {name}={env[name]}")
        except NotDerivable as exc:
            env[name] = None
            log.add(f"[{phase}] {name}: not derivable without running the build ({exc})")
        return
    try:
        parsed = [shlex.split(expand(step, env)) for step in steps]
    except NotDerivable as exc:
        log.add(f"[{phase}] skipped ({exc} is not known here): {command}")
        return
    supported = all(p and (p[0] in ("mkdir", "rm", "cd", "zip", "echo") or p[:3] == ["aws", "s3", "cp"])
                    for p in parsed)
    if not supported:
        log.add(f"[{phase}] skipped (needs the build container): {command}")
        return
    here = cwd
    for words in parsed:
        here = _do(ctx, words, here, cwd)
    log.add(f"[{phase}] done here: {command}")


def _do(ctx: ActionContext, words: list[str], here: Path, root: Path) -> Path:
    def local(path: str) -> Path:
        target = (here / path).resolve()
        return target

    verb = words[0]
    if verb == "cd":
        return local(words[1])
    if verb == "echo":
        return here
    if verb == "mkdir":
        for path in (w for w in words[1:] if not w.startswith("-")):
            local(path).mkdir(parents=True, exist_ok=True)
    elif verb == "rm":
        for path in (w for w in words[1:] if not w.startswith("-")):
            target = local(path)
            if target.is_file():
                target.unlink()
    elif verb == "zip":
        _zip(words[1:], here)
    elif words[:3] == ["aws", "s3", "cp"]:
        args = [w for w in words[3:] if not w.startswith("--")]
        if len(args) != 2 or not args[1].startswith("s3://") or args[0].startswith("s3://"):
            raise ActionFailed(f"buildspec: only `aws s3 cp <local file> s3://...` runs here: {' '.join(words)}")
        source = local(args[0])
        if not source.is_file():
            raise ActionFailed(f"buildspec: aws s3 cp: {args[0]} does not exist in the build's sources")
        bucket, _, key = args[1][5:].partition("/")
        if not key or key.endswith("/"):
            key += source.name
        ctx.client("s3").put_object(Bucket=bucket, Key=key, Body=source.read_bytes())
    return here


def _zip(args: list[str], here: Path) -> None:
    excludes: list[str] = []
    plain: list[str] = []
    in_excludes = False
    for arg in args:
        if arg in ("-x", "--exclude"):
            in_excludes = True
        elif arg.startswith("-"):
            in_excludes = False
        elif in_excludes:
            excludes.append(arg)
        else:
            plain.append(arg)
    if len(plain) < 2:
        raise ActionFailed(f"buildspec: zip needs an archive and inputs: zip {' '.join(args)}")
    out, inputs = (here / plain[0]).resolve(), plain[1:]
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "a" if out.exists() else "w", zipfile.ZIP_DEFLATED) as archive:
        for item in inputs:
            base = here / item
            paths = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
            for path in paths:
                name = path.relative_to(here).as_posix()
                if not any(fnmatch.fnmatchcase(name, pattern) for pattern in excludes):
                    archive.write(path, name)


def build_codebuild(ctx: ActionContext) -> ActionResult:
    import yaml

    project_name = ctx.require("ProjectName")
    try:
        projects = ctx.client("codebuild").batch_get_projects(names=[project_name]).get("projects", [])
    except Exception as exc:
        raise ActionFailed(f"cannot read CodeBuild project {project_name}: {exc}") from None
    if not projects:
        raise ActionFailed(f"CodeBuild project {project_name} does not exist", "ConfigurationError")
    project = projects[0]
    if not ctx.inputs:
        raise ActionFailed("a CodeBuild action needs an input artifact", "ConfigurationError")
    primary = ctx.input(ctx.configuration.get("PrimarySource")) if len(ctx.inputs) > 1 else ctx.inputs[0]
    sources = {a.name: extract_artifact(ctx, a, ctx.workdir / "src" / a.name) for a in ctx.inputs}
    primary_dir = sources[primary.name]

    spec_ref = (project.get("source") or {}).get("buildspec") or "buildspec.yml"
    if "\n" not in spec_ref and (primary_dir / spec_ref).is_file():
        spec_text = (primary_dir / spec_ref).read_text(encoding="utf-8")
    elif "\n" in spec_ref:
        spec_text = spec_ref
    else:
        raise ActionFailed(f"the source artifact '{primary.name}' has no buildspec {spec_ref}", "ConfigurationError")
    try:
        spec = yaml.safe_load(spec_text) or {}
    except yaml.YAMLError as exc:
        raise ActionFailed(f"buildspec {spec_ref} is not valid YAML: {exc}", "ConfigurationError") from None

    # Precedence as on CodeBuild: action > project > buildspec.
    env: dict[str, str | None] = {k: str(v) for k, v in ((spec.get("env") or {}).get("variables") or {}).items()}
    for variable in (project.get("environment") or {}).get("environmentVariables") or []:
        env[variable["name"]] = variable["value"] if variable.get("type", "PLAINTEXT") == "PLAINTEXT" else None
    if ctx.configuration.get("EnvironmentVariables"):
        try:
            for variable in json.loads(ctx.configuration["EnvironmentVariables"]):
                plain = variable.get("type", "PLAINTEXT") == "PLAINTEXT"
                env[variable["name"]] = str(variable["value"]) if plain else None
        except (ValueError, KeyError, TypeError) as exc:
            raise ActionFailed(f"EnvironmentVariables is not a JSON list of {{name, value}}: {exc}",
                               "ConfigurationError") from None
    env.update({"CODEBUILD_SRC_DIR": str(primary_dir), "AWS_REGION": ctx.region, "AWS_DEFAULT_REGION": ctx.region,
                "CODEBUILD_RESOLVED_SOURCE_VERSION": primary.revision or "",
                "CODEBUILD_INITIATOR": f"codepipeline/{ctx.pipeline}"})
    for name, folder in sources.items():
        if name != primary.name:
            env[f"CODEBUILD_SRC_DIR_{name}"] = str(folder)

    log = BuildLog([f"CodeBuild project {project_name}: not run (no container engine here); "
                    f"buildspec {spec_ref} evaluated by the local engine"])
    images = run_buildspec(ctx, spec, env, primary_dir, log)
    recorded = []
    for uri, dockerfile in images:
        in_source = (primary_dir / dockerfile).resolve()
        # The image's programs run from this interpreter's source tree, so name that Dockerfile.
        root = ctx.runtime.source_root
        local = root / dockerfile if (root / dockerfile).is_file() else in_source
        if not local.is_file():
            raise ActionFailed(f"the buildspec builds {uri} from {dockerfile}, which is not in the source")
        ctx.runtime.images.add(uri, local)
        recorded.append((uri, dockerfile))
        log.add(f"image {uri} recorded: runs from source {dockerfile}")

    exported = [str(v) for v in (spec.get("env") or {}).get("exported-variables") or []]
    variables = {name: env[name] for name in exported if env.get(name) is not None}
    missing = [name for name in exported if env.get(name) is None]
    if missing:
        log.add(f"exported variables not derivable without running the build: {', '.join(missing)}")
    log_path = ctx.workdir / "build.log"
    log_path.write_text("\n".join(log.lines) + "\n", encoding="utf-8")
    if recorded:
        summary = "SKIPPED: no container engine here; " + "; ".join(
            f"image {uri} runs from source {dockerfile}" for uri, dockerfile in recorded)
    else:
        summary = "SKIPPED: no container engine here; the buildspec builds no image"
    for artifact in ctx.outputs:  # secondary artifacts are not produced: the build did not run
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("build.log", log_path.read_text(encoding="utf-8"))
        put_artifact(ctx, artifact, buffer.getvalue())
    return ActionResult(summary=summary[:MAX_SUMMARY], variables=variables, external_url=log_path.as_uri(),
                        artifact_revision=primary.revision)


# -- Deploy (CloudFormation) ------------------------------------------------------------------
FAILED_STATES = ("CREATE_FAILED", "ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "DELETE_FAILED",
                 "UPDATE_ROLLBACK_COMPLETE", "UPDATE_ROLLBACK_FAILED", "UPDATE_FAILED")


def deploy_cloudformation(ctx: ActionContext) -> ActionResult:
    from botocore.exceptions import ClientError

    mode, stack = ctx.require("ActionMode"), ctx.require("StackName")
    cfn = ctx.client("cloudformation")
    current = _stack(cfn, stack)
    if mode == "DELETE_ONLY":
        if current:
            cfn.delete_stack(StackName=stack, **_role(ctx))
            _wait_stack(ctx, cfn, stack)
        return ActionResult(summary=f"Stack {stack} deleted" if current else f"Stack {stack} did not exist")
    if mode not in ("CREATE_UPDATE", "REPLACE_ON_FAILURE"):
        raise ActionFailed(f"ActionMode {mode} is not supported locally (CREATE_UPDATE, REPLACE_ON_FAILURE, "
                           "DELETE_ONLY are)", "ConfigurationError")

    template = read_artifact_file(ctx, ctx.require("TemplatePath"), "TemplatePath").decode("utf-8")
    parameters: dict[str, str] = {}
    tags: dict[str, str] = {}
    if ctx.configuration.get("TemplateConfiguration"):
        raw = read_artifact_file(ctx, ctx.configuration["TemplateConfiguration"], "TemplateConfiguration")
        try:
            config = json.loads(raw)
            parameters.update({k: _param(v) for k, v in (config.get("Parameters") or {}).items()})
            tags.update({k: str(v) for k, v in (config.get("Tags") or {}).items()})
        except (ValueError, AttributeError) as exc:
            raise ActionFailed(f"TemplateConfiguration is not JSON {{\"Parameters\", \"Tags\"}}: {exc}",
                               "ConfigurationError") from None
    if ctx.configuration.get("ParameterOverrides"):
        try:
            overrides = json.loads(ctx.configuration["ParameterOverrides"])
            if not isinstance(overrides, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            raise ActionFailed(f"ParameterOverrides is not a JSON object: {exc}", "ConfigurationError") from None
        parameters.update({k: _param(v) for k, v in overrides.items()})  # overrides win
    capabilities = [c.strip() for c in ctx.configuration.get("Capabilities", "").split(",") if c.strip()]
    request: dict[str, Any] = {"StackName": stack, "TemplateBody": template,
                               "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
                               "Capabilities": capabilities, **_role(ctx)}
    if tags:
        request["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]

    if current and (current["StackStatus"] == "ROLLBACK_COMPLETE"
                    or (mode == "REPLACE_ON_FAILURE" and current["StackStatus"] in FAILED_STATES)):
        cfn.delete_stack(StackName=stack, **_role(ctx))
        _wait_stack(ctx, cfn, stack)
        current = None
    try:
        if current:
            try:
                cfn.update_stack(**request)
            except ClientError as exc:
                if "No updates are to be performed" not in str(exc):
                    raise
        else:
            cfn.create_stack(**request)
    except ClientError as exc:
        raise ActionFailed(f"CloudFormation rejected stack {stack}: {exc.response['Error'].get('Message', exc)}") \
            from None
    final = _wait_stack(ctx, cfn, stack)
    status = final["StackStatus"] if final else "DELETE_COMPLETE"
    if status not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        raise ActionFailed(f"stack {stack} ended {status}: {_failure_reason(cfn, stack)}")
    if ctx.stack_applier is not None:
        try:
            ctx.stack_applier(stack)
        except Exception as exc:
            logger.exception("stack applier failed for %s", stack)
            raise ActionFailed(f"stack {stack}: creating the resources moto's CloudFormation drops failed: "
                               f"{exc}") from None
        final = _stack(cfn, stack) or final
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in final.get("Outputs", [])}
    if ctx.configuration.get("OutputFileName") and ctx.outputs:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr(ctx.configuration["OutputFileName"], json.dumps(outputs, indent=2))
        put_artifact(ctx, ctx.outputs[0], buffer.getvalue())
    return ActionResult(summary=f"Stack {stack} {status}", variables=outputs, external_id=final.get("StackId"))


def _param(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _role(ctx: ActionContext) -> dict[str, str]:
    return {"RoleARN": ctx.configuration["RoleArn"]} if ctx.configuration.get("RoleArn") else {}


def _stack(cfn, name: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    live = [s for s in stacks if s["StackStatus"] != "DELETE_COMPLETE"]
    return live[0] if live else None


def _wait_stack(ctx: ActionContext, cfn, name: str) -> dict[str, Any] | None:
    while True:
        stack = _stack(cfn, name)
        if stack is None or not stack["StackStatus"].endswith("_IN_PROGRESS"):
            return stack
        ctx.check_time()
        time.sleep(0.2)


def _failure_reason(cfn, stack: str) -> str:
    try:
        events = cfn.describe_stack_events(StackName=stack)["StackEvents"]
    except Exception:
        return "see the stack's events"
    reasons = [f"{e['LogicalResourceId']}: {e['ResourceStatusReason']}" for e in events
               if e.get("ResourceStatus", "").endswith("FAILED") and e.get("ResourceStatusReason")]
    return "; ".join(reasons[:3]) or "see the stack's events"


# -- Invoke (Lambda) ----------------------------------------------------------------------------
MIN_FUNCTION_SECONDS = 30.0  # a cold worker starts slower than a warm Lambda; never below this
IDLE_SECONDS = 600.0  # a worker unused this long is ended, as Lambda reclaims idle environments
MAX_IDLE_WORKERS = 24  # beyond this many idle workers the longest idle ones end (each holds ~60 MB)
LAMBDA_WORKER = "from mlops_local.actions import lambda_worker; lambda_worker()"


def invoke_lambda(ctx: ActionContext) -> ActionResult:
    """Run the function once per job until it reports success without a continuation token.

    Each invocation goes to a warm worker (`LambdaWorkers`): a child interpreter of this one that
    serves only this function with this environment, as Lambda reuses a warm execution environment.
    The function's own environment (and nothing of another function's), killed at the function's
    timeout or on abandon, so parallel actions run truly in parallel and a hung or crashing handler
    cannot take the engine with it. The first invocation pays ~0.4 s of interpreter and boto3 start;
    later ones (continuations, the next execution) reuse the worker and its imports.
    """
    from botocore.exceptions import ClientError

    name = ctx.require("FunctionName")
    try:
        function = ctx.client("lambda").get_function(FunctionName=name)
    except ClientError as exc:
        raise ActionFailed(f"Lambda function {name}: {exc.response['Error'].get('Message', exc)}",
                           "ConfigurationError") from None
    config = function["Configuration"]
    handler = _handler(ctx, function)
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")}
    root = ctx.runtime.source_root
    path = [str(root / "src"), str(root), os.environ.get("PYTHONPATH")]  # the zip's lambdas/ and tests' handlers
    env.update({"PYTHONPATH": os.pathsep.join(filter(None, path)),
                "PYTHONUNBUFFERED": "1", "LAMBDA_TASK_ROOT": str(root / "src"), "_HANDLER": handler,
                "AWS_LAMBDA_FUNCTION_NAME": config["FunctionName"],
                "AWS_LAMBDA_FUNCTION_VERSION": config.get("Version", "$LATEST"),
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.get("MemorySize", 128)),
                "AWS_LAMBDA_LOG_GROUP_NAME": (config.get("LoggingConfig") or {}).get(
                    "LogGroup", f"/aws/lambda/{config['FunctionName']}")})
    env.update((config.get("Environment") or {}).get("Variables") or {})
    env.update(ctx.runtime.aws.environment())  # boto3 in the handler reaches the stand-in
    function_seconds = max(float(config.get("Timeout", 3)), MIN_FUNCTION_SECONDS)

    token: str | None = None
    since = ctx.runtime.changes.version
    first, longest = ctx.poll_interval
    delay = first
    invocation = 0
    while True:
        ctx.check_time()
        invocation += 1
        job = ctx.new_job(token)
        log = ctx.workdir / f"invocation-{invocation}.log"
        try:
            error = _run_child(ctx, handler, job.event(), config, env, log, function_seconds)
        finally:
            ctx.end_job(job)
        result = job.result
        if result is None:
            reason = error or "the function ended without PutJobSuccessResult/PutJobFailureResult"
            raise ActionFailed(f"Lambda {name}: {reason} (log: {log})")
        if result["type"] == "failure":
            details = result["failureDetails"]
            ctx.progress(external_id=details.get("externalExecutionId"), external_url=log.as_uri())
            raise ActionFailed(details.get("message") or "the function reported a failure",
                               details.get("type", "JobFailed"))
        details = result.get("executionDetails") or {}
        ctx.progress(summary=details.get("summary"), percent=details.get("percentComplete"),
                     external_id=details.get("externalExecutionId"), external_url=log.as_uri())
        if not result.get("continuationToken"):
            return ActionResult(summary=details.get("summary") or f"Lambda {name} succeeded",
                                variables=dict(result.get("outputVariables") or {}),
                                external_id=details.get("externalExecutionId"), external_url=log.as_uri())
        token = result["continuationToken"]
        # Re-invoke as soon as a job or endpoint changed state; else after a short backoff.
        waited_until = time.monotonic() + delay
        changed = False
        while not changed and time.monotonic() < waited_until:
            ctx.check_time()
            version = ctx.runtime.changes.wait(since, timeout=min(0.5, max(0.0, waited_until - time.monotonic())))
            changed = version > since
            since = version
        delay = first if changed else min(delay * 2, longest)


def _handler(ctx: ActionContext, function: Mapping[str, Any]) -> str:
    config = function["Configuration"]
    uri = (function.get("Code") or {}).get("ImageUri", "")
    # moto's CloudFormation creates image functions with PackageType Zip; the image URI tells.
    if config.get("PackageType") != "Image" and not uri:
        if not config.get("Handler"):
            raise ActionFailed(f"Lambda {config['FunctionName']} has no Handler", "ConfigurationError")
        return config["Handler"]
    try:
        image = ctx.runtime.images.resolve(uri)
    except KeyError as exc:
        raise ActionFailed(f"Lambda {config['FunctionName']}: {exc.args[0]}", "ConfigurationError") from None
    command = ((config.get("ImageConfigResponse") or {}).get("ImageConfig") or {}).get("Command") or []
    handler = command[0] if command else image.lambda_handler
    if not handler:
        raise ActionFailed(f"Lambda {config['FunctionName']}: image {uri} ({image.dockerfile}) has no handler CMD",
                           "ConfigurationError")
    return handler


def _run_child(ctx: ActionContext, handler: str, event: dict, config: Mapping[str, Any], env: dict[str, str],
               log: Path, seconds: float) -> str | None:
    """Run the handler in a warm worker; return why it failed, or None when it returned."""
    deadline = min(time.monotonic() + seconds, ctx.deadline)
    payload = {"handler": handler, "event": event, "log": str(log), "cwd": str(ctx.workdir),
               "context": {"function_name": config["FunctionName"],
                           "function_version": config.get("Version", "$LATEST"),
                           "invoked_function_arn": config.get("FunctionArn", ""),
                           "memory_limit_in_mb": int(config.get("MemorySize", 128)),
                           "aws_request_id": event["CodePipeline.job"]["id"],
                           "log_group_name": env["AWS_LAMBDA_LOG_GROUP_NAME"],
                           "log_stream_name": str(log), "deadline_epoch": time.time() + (deadline - time.monotonic())}}
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"")  # this invocation's own log; the worker appends to it while it serves the invocation
    key = (config["FunctionName"], hashlib.sha256(json.dumps(env, sort_keys=True).encode()).hexdigest())
    worker_log = ctx.runtime.workdir / "lambda-workers" / f"{config['FunctionName']}.log"
    worker = WORKERS.acquire(key, env, ctx.workdir, worker_log)
    if not worker.send(payload) and worker.invocations > 1:
        worker.kill()  # it died while idle: a fresh one takes the invocation, as Lambda would
        worker = WORKERS.acquire(key, env, ctx.workdir, worker_log, reuse=False)
        worker.send(payload)
    answered = False
    try:
        while True:
            if ctx.abandoned():
                raise ActionAbandoned()
            if time.monotonic() > deadline:
                return f"the function timed out after {seconds:.0f} s"
            try:
                outcome = worker.receive(timeout=0.05)
            except EOFError:
                return f"the function's process exited with code {worker.exit_code()} before returning"
            if outcome is not None:
                answered = True
                return outcome.get("error")
    finally:
        if answered:
            WORKERS.release(key, worker)
        else:  # timed out, abandoned or crashed: this environment is not reused
            worker.kill()


class _Worker:
    """One warm execution environment: a child interpreter that serves one function's invocations.

    Requests go in on its stdin and answers come back on a pipe of their own, one JSON line each;
    its stdout and stderr are the current invocation's log (`lambda_worker`).
    """

    def __init__(self, env: dict[str, str], cwd: Path, log: Path):
        log.parent.mkdir(parents=True, exist_ok=True)
        read_fd, write_fd = os.pipe()
        try:
            with open(log, "ab") as out:  # what the worker prints between invocations
                self.process = subprocess.Popen(
                    [sys.executable, "-c", LAMBDA_WORKER, str(write_fd)], stdin=subprocess.PIPE, stdout=out,
                    stderr=subprocess.STDOUT, env=env, cwd=str(cwd), pass_fds=(write_fd,))
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self._answers = read_fd
        self._buffer = b""
        self.invocations = 0
        self.idle_since = time.monotonic()

    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, payload: Mapping[str, Any]) -> bool:
        """False when the worker is gone."""
        self.invocations += 1
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(json.dumps(payload).encode() + b"\n")
            self.process.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def receive(self, timeout: float) -> dict[str, Any] | None:
        """The answer, None if there is none yet; EOFError when the worker ended without one."""
        import select

        if self._answers < 0:
            raise EOFError
        if b"\n" not in self._buffer:
            readable, _, _ = select.select([self._answers], [], [], timeout)
            if not readable:
                return None
            chunk = os.read(self._answers, 65536)
            if not chunk:
                raise EOFError
            self._buffer += chunk
            if b"\n" not in self._buffer:
                return None
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def exit_code(self) -> int | None:
        try:
            return self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if self.process.stdin is not None:
            try:
                self.process.stdin.close()
            except OSError:
                pass
        if self._answers >= 0:
            os.close(self._answers)
            self._answers = -1


class LambdaWorkers:
    """Idle warm workers by (function name, hash of its environment).

    A worker serves one invocation at a time: concurrent invocations of a function get workers of
    their own (as Lambda scales out). One that timed out, was abandoned or crashed is killed and
    never reused, so the next invocation starts a fresh one. Idle workers end after `idle_seconds`,
    beyond `max_idle` (longest idle first), when this interpreter exits (`close`, registered with
    atexit) or when their stdin closes (this interpreter died).
    """

    def __init__(self, idle_seconds: float = IDLE_SECONDS, max_idle: int = MAX_IDLE_WORKERS):
        import threading

        self.idle_seconds = idle_seconds
        self.max_idle = max_idle
        self._idle: dict[tuple[str, str], list[_Worker]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: tuple[str, str], env: dict[str, str], cwd: Path, log: Path,
                reuse: bool = True) -> _Worker:
        stale: list[_Worker] = []
        found = None
        with self._lock:
            now = time.monotonic()
            for other, workers in list(self._idle.items()):
                keep = [w for w in workers if w.alive() and now - w.idle_since <= self.idle_seconds]
                stale += [w for w in workers if w not in keep]
                if keep:
                    self._idle[other] = keep
                else:
                    del self._idle[other]
            if reuse and self._idle.get(key):
                found = self._idle[key].pop()
        for worker in stale:
            worker.kill()
        if found is not None:
            return found
        return _Worker(env, cwd, log)

    def release(self, key: tuple[str, str], worker: _Worker) -> None:
        if not worker.alive():
            worker.kill()
            return
        worker.idle_since = time.monotonic()
        with self._lock:
            self._idle.setdefault(key, []).append(worker)
            idle = sorted(((w.idle_since, k, w) for k, ws in self._idle.items() for w in ws), key=lambda i: i[0])
            evicted = [(k, w) for _, k, w in idle[:max(0, len(idle) - self.max_idle)]]
            for k, w in evicted:
                self._idle[k].remove(w)
                if not self._idle[k]:
                    del self._idle[k]
        for _, w in evicted:
            w.kill()

    def close(self) -> None:
        with self._lock:
            workers = [w for idle in self._idle.values() for w in idle]
            self._idle.clear()
        for worker in workers:
            worker.kill()


WORKERS = LambdaWorkers()
atexit.register(WORKERS.close)


class _LambdaContext:
    def __init__(self, deadline_epoch: float, **fields: Any):
        self.__dict__.update(fields)
        self._deadline = deadline_epoch

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


def lambda_worker() -> None:
    """The worker side: serve invocations from stdin until it closes, answering on the fd in argv[1]."""
    answers = os.fdopen(int(sys.argv[1]), "wb", buffering=0)
    requests = os.fdopen(os.dup(0), "rb")
    nothing = os.open(os.devnull, os.O_RDONLY)  # a handler reading stdin must not read the requests
    os.dup2(nothing, 0)
    os.close(nothing)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="[%(levelname)s] %(asctime)s %(name)s %(message)s")
    handlers: dict[str, Callable[..., Any]] = {}
    try:
        for line in requests:
            answers.write(json.dumps(_serve(json.loads(line), handlers)).encode() + b"\n")
    except KeyboardInterrupt:  # Ctrl-C of the whole process group while idle
        pass


def _serve(payload: Mapping[str, Any], handlers: dict[str, Callable[..., Any]]) -> dict[str, Any]:
    """One invocation, its output in its own log: import the handler (once), call it, say how it ended."""
    import importlib
    import traceback

    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    log = os.open(payload["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    outcome: dict[str, Any] = {}
    try:
        os.chdir(payload["cwd"])
        name = payload["handler"]
        if name not in handlers:  # a failed import is retried by the next invocation, as Lambda's init
            module, _, function = name.rpartition(".")
            handlers[name] = getattr(importlib.import_module(module), function)
        handlers[name](payload["event"], _LambdaContext(**payload["context"]))
    except BaseException as exc:  # the runtime reports any error of the handler, as Lambda does
        traceback.print_exc()
        outcome["error"] = f"the function raised {type(exc).__name__}: {exc}"
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
    return outcome


PROVIDERS: dict[tuple[str, str, str], Callable[[ActionContext], ActionResult]] = {
    ("Source", "AWS", "CodeCommit"): source_codecommit,
    ("Source", "AWS", "S3"): source_s3,
    ("Build", "AWS", "CodeBuild"): build_codebuild,
    ("Test", "AWS", "CodeBuild"): build_codebuild,
    ("Deploy", "AWS", "CloudFormation"): deploy_cloudformation,
    ("Invoke", "AWS", "Lambda"): invoke_lambda,
}


def new_artifact_key(pipeline: str, artifact: str) -> str:
    """<pipeline[:20]>/<artifact[:10]>/<random>, as CodePipeline names artifact objects."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return f"{pipeline[:20]}/{artifact[:10]}/{''.join(secrets.choice(alphabet) for _ in range(7))}"
