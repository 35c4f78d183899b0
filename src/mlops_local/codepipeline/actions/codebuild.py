"""Build/CodeBuild and Test/CodeBuild: the project's buildspec is evaluated, no image is built.

There is no container engine here, so the action reports SKIPPED and says why. Variables the
buildspec assigns are exported when they can be derived; `docker build -f <Dockerfile> -t <uri>`
records the image in `runtime.images`, whose programs then run from source (see `buildspec`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re

import yaml

from mlops_local.codepipeline.actions.buildspec import BuildLog, run_buildspec
from mlops_local.codepipeline.actions.context import (MAX_SUMMARY, ActionContext, ActionFailed, ActionResult,
                                                      extract_artifact, put_zip_artifact)
from mlops_local.runtime import RoleNotAssumable


def build_codebuild(ctx: ActionContext) -> ActionResult:
    project_name = ctx.require("ProjectName")
    # CodePipeline starts the build and polls it as the pipeline's role ...
    ctx.authorize("codebuild", "StartBuild", {"projectName": project_name})
    try:
        projects = ctx.internal("codebuild").batch_get_projects(names=[project_name]).get("projects", [])
    except Exception as exc:
        raise ActionFailed(f"cannot read CodeBuild project {project_name}: {exc}") from None
    if not projects:
        raise ActionFailed(f"CodeBuild project {project_name} does not exist", "ConfigurationError")
    project = projects[0]
    ctx.authorize("codebuild", "BatchGetBuilds", {"ids": [f"{project_name}:local"]})
    # ... and CodeBuild fetches the input artifacts, runs the buildspec and uploads as the project's role.
    ctx = _as_project_role(ctx, project)
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
    images = run_buildspec(ctx.client, spec, env, primary_dir, log)
    recorded = []
    for uri, dockerfile in images:
        in_source = (primary_dir / dockerfile).resolve()
        # The image's programs run from this interpreter's source tree, so name that Dockerfile.
        root = ctx.runtime.source_root
        local = root / dockerfile if (root / dockerfile).is_file() else in_source
        if not local.is_file():
            raise ActionFailed(f"the buildspec builds {uri} from {dockerfile}, which is not in the source")
        ctx.runtime.images.add(uri, local)
        _push_manifest(ctx, uri, dockerfile)
        recorded.append((uri, dockerfile))
        log.add(f"image {uri} recorded: runs from source {dockerfile}")

    exported = [str(v) for v in (spec.get("env") or {}).get("exported-variables") or []]
    variables = {name: value for name in exported if (value := env.get(name)) is not None}
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
        put_zip_artifact(ctx, artifact, "build.log", log_path.read_text(encoding="utf-8"))
    return ActionResult(summary=summary[:MAX_SUMMARY], variables=variables, external_url=log_path.as_uri(),
                        artifact_revision=primary.revision)


ECR_URI = re.compile(r"([0-9]{12})\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?/"
                     r"([^:@]+):([A-Za-z0-9_][A-Za-z0-9_.-]*)")
ALREADY_PUSHED = ("ImageAlreadyExistsException", "ImageTagAlreadyExistsException")


def _push_manifest(ctx: ActionContext, uri: str, dockerfile: str) -> None:
    """What `docker push` leaves in ECR: a manifest under the tag, put as the project's role (ecr:PutImage).
    No layer data: the image runs from source. Readers of the registry (DescribeImages, BatchGetImage,
    RegisterModel's retag) then find the image as on AWS. Its layer digest names the URI: one image per tag."""
    match = ECR_URI.fullmatch(uri)
    if not match:
        return
    registry, repository, tag = match.groups()
    layer = "sha256:" + hashlib.sha256(f"{uri} {dockerfile}".encode()).hexdigest()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                           "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 0,
                                      "digest": layer},
                           "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 0,
                                       "digest": layer}]})
    from botocore.exceptions import ClientError

    try:
        ctx.client("ecr").put_image(registryId=registry, repositoryName=repository, imageTag=tag,
                                    imageManifest=manifest)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ALREADY_PUSHED:  # a rebuild of the same commit
            raise ActionFailed(f"pushing {uri} failed: {exc}") from None


def _as_project_role(ctx: ActionContext, project: dict) -> ActionContext:
    """The context with `client` signing as the project's service role (codebuild.amazonaws.com)."""
    role = project.get("serviceRole") or ""
    try:
        session = ctx.runtime.session(role, f"AWSCodeBuild-{project['name']}"[:64], "codebuild.amazonaws.com",
                                      source_arn=project["arn"])  # aws:SourceArn: the project (SOURCE_KEYS)
    except RoleNotAssumable as exc:
        raise ActionFailed(f"CodeBuild cannot act as the project's service role: {exc}", "ConfigurationError") from None
    clients: dict[str, object] = {}

    def client(service: str) -> object:
        if service not in clients:
            clients[service] = ctx.runtime.client_as(service, session)
        return clients[service]
    return dataclasses.replace(ctx, client=client, session=session)
