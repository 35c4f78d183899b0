"""A small interpreter for CodeBuild buildspecs, for builds that cannot run here (no container engine).

It evaluates what can be known without the build container: variable assignments (bash parameter
expansion), `docker build -f/-t` (which image from which Dockerfile), and the file steps the pipeline
relies on (mkdir, rm, cd, zip, echo, `aws s3 cp` of a local file). Everything else is skipped and
written to the build log.
"""
from __future__ import annotations

import fnmatch
import re
import shlex
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from mlops_local.codepipeline.actions.context import ActionFailed
from mlops_local.s3_staging import StagingError, split_s3_uri

Client = Callable[[str], Any]
"""service name -> boto3 client (the action context's `client`)."""


class NotDerivable(Exception):
    """A buildspec value that only running the build would give (command output, unset variable)."""


PARAMETER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:\?|:-|%%|%|##|#)([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")
ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)


def expand(text: str, env: Mapping[str, str | None]) -> str:
    """Bash parameter expansion for the forms buildspecs use; single-quoted text stays literal."""
    if "$(" in text or "`" in text:
        raise NotDerivable("command substitution")

    def one(match: re.Match[str]) -> str:
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


def run_buildspec(client: Client, spec: Mapping[str, Any], env: dict[str, str | None], cwd: Path,
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
            _run_command(client, phase, command, env, cwd, log)
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


def _run_command(client: Client, phase: str, command: str, env: dict[str, str | None], cwd: Path,
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
        here = _do(client, words, here)
    log.add(f"[{phase}] done here: {command}")


def _do(client: Client, words: list[str], here: Path) -> Path:
    def local(path: str) -> Path:
        return (here / path).resolve()

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
        try:
            bucket, key = split_s3_uri(args[1])
        except StagingError as exc:
            raise ActionFailed(f"buildspec: aws s3 cp: {exc}") from None
        if not key or key.endswith("/"):
            key += source.name
        client("s3").put_object(Bucket=bucket, Key=key, Body=source.read_bytes())
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
