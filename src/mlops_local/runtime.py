"""What the local runtime's components share: the stand-in, a work folder, images, change signals,
the warm Lambda workers.

Each component (Glue job runs, SageMaker jobs, endpoints, stacks, the pipeline engine) is built
with a `Runtime` and registers its operations on `runtime.aws.gateway`.
"""
from __future__ import annotations

import re
import shlex
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from mlops_local.gateway import LocalAws
from mlops_local.lambda_workers import LambdaWorkers


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


@dataclass
class Runtime:
    """`source_root` is the project checkout whose code the local runtime runs (templates, Dockerfiles,
    src/): passed in by the CLI or a test, never derived from where this package is installed."""
    aws: LocalAws
    workdir: Path
    source_root: Path
    images: ImageMap = field(init=False)
    changes: Changes = field(default_factory=Changes)
    lambda_workers: LambdaWorkers = field(default_factory=LambdaWorkers)

    def __post_init__(self) -> None:
        self.source_root = self.source_root.resolve()
        self.images = ImageMap(self.source_root)

    def close(self) -> None:
        """End what the runtime itself keeps running: the idle Lambda workers."""
        self.lambda_workers.close()
