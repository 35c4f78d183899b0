"""The images' files as the Dockerfiles lay them out, whatever modes the build's source checkout had.

CodePipeline hands CodeBuild a zip of the branch; a zip may carry no Unix modes, so the build context
can have lost the +x of src/training/bin/* or hold owner-only files. No container engine runs here:
`lay_out` follows the Dockerfile's COPY, ENV and `RUN chmod` instructions into a folder instead.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from mlops_local.runtime import image_from_dockerfile
from tests.conftest import ROOT

TRAINING = ROOT / "src/training/Dockerfile"
LAMBDAS = ROOT / "src/lambdas/Dockerfile"
# What the base images define that the Dockerfiles use. LAMBDA_TASK_ROOT: the Lambda documentation's
# "Defined runtime environment variables" (/var/task).
BASE_ENV = {
    TRAINING: {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
    LAMBDAS: {"PATH": "/var/lang/bin:/usr/local/bin:/usr/bin:/bin", "LAMBDA_TASK_ROOT": "/var/task"},
}
# (file mode, directory mode) the checkout may have: a zip without Unix modes extracted under a
# default umask (no +x), or under umask 077 (owner only).
SOURCE_MODES = {"no-exec-bits": (0o644, 0o755), "owner-only": (0o600, 0o700)}


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    lines = (line.strip() for line in text.splitlines())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines
            if line and not line.startswith("#")]


def expand(text: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), text)


def inside(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def copy_in(source: Path, target: Path, file_mode: int, dir_mode: int) -> None:
    """COPY source (a file or a folder's contents) to target, with the checkout's modes."""
    sources = sorted(source.rglob("*")) if source.is_dir() else [source]
    for path in sources:
        if "__pycache__" in path.parts:
            continue
        dest = target / path.relative_to(source) if source.is_dir() else (
            target / path.name if str(target).endswith("/") or target.is_dir() else target)
        if path.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            dest.chmod(dir_mode)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
            dest.chmod(file_mode)
    for folder in [target, *target.rglob("*")] if source.is_dir() else []:
        if folder.is_dir():
            folder.chmod(dir_mode)


def lay_out(dockerfile: Path, root: Path, file_mode: int, dir_mode: int,
            base_env: dict[str, str] | None = None) -> dict[str, str]:
    """The files an image built from dockerfile holds, under root; returns the image's ENV."""
    env = dict(BASE_ENV[dockerfile] if base_env is None else base_env)
    for instruction, arguments in instructions(dockerfile):
        if instruction == "ENV":
            for word in shlex.split(arguments):
                name, _, value = word.partition("=")
                env[name] = expand(value, env)
        elif instruction == "COPY":
            words = shlex.split(expand(arguments, env))
            flags = [w for w in words if w.startswith("--")]
            *sources, dest = [w for w in words if not w.startswith("--")]
            target = Path(str(inside(root, dest)) + ("/" if dest.endswith("/") else ""))
            for source in sources:
                copy_in(ROOT / source, target, file_mode, dir_mode)
            for flag in flags:
                if flag.startswith("--chmod="):
                    subprocess.run(["chmod", "-R", flag.split("=", 1)[1], str(target)], check=True)
        elif instruction == "RUN":
            for step in re.split(r"&&|;", arguments):
                words = shlex.split(expand(step, env))
                if words and words[0] == "chmod":
                    paths = [str(p) for w in words[1:] if w.startswith("/") for p in root.glob(w.lstrip("/"))]
                    assert paths, f"{dockerfile}: `{step.strip()}` matches nothing"
                    options = [w for w in words[1:] if not w.startswith("/")]
                    subprocess.run(["chmod", *options, *paths], check=True)
    return env


def which(program: str, root: Path, env: dict[str, str]) -> Path | None:
    """The file a shell in the image runs for `program` (PATH order, executable files only)."""
    found = shutil.which(program, path=os.pathsep.join(str(inside(root, p)) for p in env["PATH"].split(":")))
    return Path(found) if found else None


@pytest.mark.parametrize("modes", SOURCE_MODES.values(), ids=SOURCE_MODES.keys())
@pytest.mark.parametrize("program", ["train", "serve"])
def test_sagemaker_runs_our_programs_whatever_the_checkout_modes(tmp_path: Path, modes: tuple[int, int],
                                                                 program: str) -> None:
    """SageMaker starts `<image> train|serve`; the DLC's entrypoint runs that name from PATH. The DLC has
    a `train` of its own (sagemaker-training's console script, aws/sagemaker-training-toolkit setup.py),
    which a shell would run instead if ours were not executable (the decoy stands for it, and for any
    other `serve`)."""
    root = tmp_path / "image"
    decoy = inside(root, "/usr/local/bin") / program
    decoy.parent.mkdir(parents=True)
    decoy.write_text("#!/bin/sh\n")
    decoy.chmod(0o755)
    env = lay_out(TRAINING, root, *modes)
    found = which(program, root, env)
    assert found == inside(root, "/opt/program/bin") / program, f"`{program}` runs {found}"
    assert found is not None
    assert stat.S_IMODE(found.stat().st_mode) & 0o555 == 0o555, oct(found.stat().st_mode)


@pytest.mark.parametrize("modes", SOURCE_MODES.values(), ids=SOURCE_MODES.keys())
def test_the_lambda_user_can_read_every_file_of_the_handler(tmp_path: Path, modes: tuple[int, int]) -> None:
    """Lambda runs the image as a least-privileged user that must read every file the handler needs
    (docs.aws.amazon.com/lambda/latest/dg/images-create.html, container image requirements)."""
    root = tmp_path / "image"
    lay_out(LAMBDAS, root, *modes)
    code = inside(root, "/var/task/lambdas")
    assert (code / "endpoint_test.py").is_file()
    for path in [code, *code.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        need = 0o005 if path.is_dir() else 0o004
        assert mode & need == need, f"{path.relative_to(root)}: {oct(mode)} is not readable by others"


def test_the_local_runtime_still_finds_the_programs() -> None:
    """mlops_local.runtime reads `COPY <x>/bin/ ...` lines: the Dockerfile must keep that form."""
    image = image_from_dockerfile("local/training:test", TRAINING, ROOT)
    assert sorted(image.programs) == ["serve", "train"]
    assert image.programs["train"][1:] == ["-m", "training.train"]


def test_lay_out_follows_copy_chmod(tmp_path: Path) -> None:
    """The COPY --chmod form is understood too, so the tests above hold whichever form the Dockerfile uses."""
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM x\nCOPY --chmod=0755 src/training/bin/ /opt/program/bin/\n")
    env = lay_out(dockerfile, tmp_path / "image", 0o644, 0o755, base_env={"PATH": "/opt/program/bin"})
    assert which("train", tmp_path / "image", env) == tmp_path / "image/opt/program/bin/train"
