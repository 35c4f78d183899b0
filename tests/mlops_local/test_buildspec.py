"""The buildspec interpreter: parameter expansion, the steps it runs here, the ones it skips and says so."""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import pytest

from mlops_local.codepipeline.actions.buildspec import BuildLog, NotDerivable, expand, run_buildspec
from mlops_local.codepipeline.actions.context import ActionFailed

URI = "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/model:abc123"
ENV: dict[str, str | None] = {"URI": URI, "FILE": "archive.tar.gz", "EMPTY": "", "SECRET": None}


class FakeS3:
    """Records put_object calls, the only S3 request a buildspec step makes here."""

    def __init__(self) -> None:
        self.puts: list[dict[str, Any]] = []

    def put_object(self, **request: Any) -> dict[str, Any]:
        self.puts.append(request)
        return {}


def run(spec_phases: dict[str, list[str]], cwd: Path, env: dict[str, str | None] | None = None,
        s3: FakeS3 | None = None) -> tuple[list[tuple[str, str]], dict[str, str | None], BuildLog]:
    s3 = s3 or FakeS3()

    def client(service: str) -> FakeS3:
        assert service == "s3"
        return s3

    env = dict(env or {})
    log = BuildLog()
    images = run_buildspec(client, {"phases": {p: {"commands": c} for p, c in spec_phases.items()}}, env, cwd, log)
    return images, env, log


# -- parameter expansion ----------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    pytest.param("${FILE}", "archive.tar.gz", id="braced"),
    pytest.param("$FILE-x", "archive.tar.gz-x", id="bare"),
    pytest.param("${FILE:-default}", "archive.tar.gz", id="default-when-set"),
    pytest.param("${EMPTY:-default}", "default", id="default-when-empty"),
    pytest.param("${NOPE:-default}", "default", id="default-when-unset"),
    pytest.param("${FILE:?no file}", "archive.tar.gz", id="required-when-set"),
    pytest.param("${FILE%.*}", "archive.tar", id="shortest-suffix"),
    pytest.param("${FILE%%.*}", "archive", id="longest-suffix"),
    pytest.param("${FILE#*.}", "tar.gz", id="shortest-prefix"),
    pytest.param("${FILE##*.}", "gz", id="longest-prefix"),
    pytest.param("${FILE%.zip}", "archive.tar.gz", id="suffix-no-match"),
    pytest.param("${FILE#zip.}", "archive.tar.gz", id="prefix-no-match"),
    pytest.param("${URI%%/*}", "123456789012.dkr.ecr.us-east-1.amazonaws.com", id="registry-of-uri"),
    pytest.param("${URI#*/}", "team/model:abc123", id="repository-of-uri"),
    pytest.param("'${FILE}' ${FILE}", "'${FILE}' archive.tar.gz", id="single-quotes-literal"),
    pytest.param('"${URI%:*}:latest"', f'"{URI.rsplit(":", 1)[0]}:latest"', id="inside-double-quotes"),
    pytest.param("no variables here", "no variables here", id="plain-text"),
])
def test_expand(text, expected):
    assert expand(text, ENV) == expected


@pytest.mark.parametrize("text, unknown", [
    pytest.param("$(git rev-parse HEAD)", "command substitution", id="command-substitution"),
    pytest.param("`date`", "command substitution", id="backticks"),
    pytest.param("${NOPE}", "NOPE", id="unset"),
    pytest.param("$NOPE", "NOPE", id="unset-bare"),
    pytest.param("${NOPE%.*}", "NOPE", id="unset-with-strip"),
    pytest.param("${SECRET}", "SECRET", id="known-not-derivable"),
    pytest.param("${SECRET:-default}", "SECRET", id="not-derivable-beats-default"),
    pytest.param("'$(literal)' $(date)", "command substitution", id="substitution-even-beside-quotes"),
])
def test_expand_not_derivable(text, unknown):
    with pytest.raises(NotDerivable) as raised:
        expand(text, ENV)
    assert str(raised.value) == unknown


@pytest.mark.parametrize("text, message", [
    pytest.param("${EMPTY:?no commit}", "buildspec: EMPTY: no commit", id="empty-with-message"),
    pytest.param("${NOPE:?}", "buildspec: NOPE: parameter null or not set", id="unset-default-message"),
])
def test_required_parameter_fails_the_action(text, message):
    with pytest.raises(ActionFailed) as raised:
        expand(text, ENV)
    assert raised.value.message == message and raised.value.code == "JobFailed"


# -- assignments ------------------------------------------------------------------------------
@pytest.mark.parametrize("commands, env, expected, logged", [
    pytest.param(['TAG="${SOURCE:?no commit}"', 'IMAGE="${REPO}:${TAG}"'], {"SOURCE": "c0ffee", "REPO": "r"},
                 {"TAG": "c0ffee", "IMAGE": "r:c0ffee"}, ["[pre_build] TAG=c0ffee", "[pre_build] IMAGE=r:c0ffee"],
                 id="chained"),
    pytest.param(["A='$HOME literal'"], {}, {"A": "$HOME literal"}, ["[pre_build] A=$HOME literal"],
                 id="single-quoted"),
    pytest.param(["A=$(git rev-parse HEAD)", "B=${A}-x"], {}, {"A": None, "B": None},
                 ["[pre_build] A: not derivable without running the build (command substitution)",
                  "[pre_build] B: not derivable without running the build (A)"], id="not-derivable-propagates"),
    pytest.param(["A=one", "A=${A}-two"], {}, {"A": "one-two"}, ["[pre_build] A=one", "[pre_build] A=one-two"],
                 id="reassigned"),
])
def test_assignments(tmp_path, commands, env, expected, logged):
    _, after, log = run({"pre_build": commands}, tmp_path, env)
    assert {k: after[k] for k in expected} == expected
    assert log.lines == logged


def test_phases_run_in_codebuild_order_whatever_the_yaml_order(tmp_path):
    _, env, log = run({"post_build": ["D=${C}-post"], "build": ["C=${B}-build"], "pre_build": ["B=${A}-pre"],
                       "install": ["A=install"]}, tmp_path)
    assert env["D"] == "install-pre-build-post"
    assert [line.split("]")[0] for line in log.lines] == ["[install", "[pre_build", "[build", "[post_build"]


# -- docker build -----------------------------------------------------------------------------
@pytest.mark.parametrize("command, expected", [
    pytest.param('docker build -f src/x/Dockerfile -t "$URI" .', (URI, "src/x/Dockerfile"), id="short-flags"),
    pytest.param("docker build --file a/Dockerfile --tag ${URI%:*}:latest .",
                 (URI.rsplit(":", 1)[0] + ":latest", "a/Dockerfile"), id="long-flags-with-expansion"),
    pytest.param('docker build -t "$URI" .', (URI, "Dockerfile"), id="default-dockerfile"),
    pytest.param("docker build --build-arg \"BASE=$(cat base.txt)\" -f D -t \"$URI\" .", (URI, "D"),
                 id="underivable-build-arg-ignored"),
    pytest.param("docker build -f D -t '$URI' .", ("$URI", "D"), id="single-quoted-tag-literal"),
    pytest.param('if [ "$NEW" = 1 ]; then\n  docker build -f D -t "$URI" .\nfi', (URI, "D"), id="inside-a-block"),
])
def test_docker_build_names_the_image_and_dockerfile(tmp_path, command, expected):
    images, _, log = run({"build": [command]}, tmp_path, {"URI": URI})
    assert images == [expected]
    assert all("done here" not in line for line in log.lines)  # nothing was built or run


@pytest.mark.parametrize("command, message", [
    pytest.param("docker build -f D .", r"names no image \(-t\)", id="no-tag"),
    pytest.param('docker build -t "$(cat tag)" .', "command substitution is not known", id="tag-not-derivable"),
    pytest.param('docker build -t "$NOPE" .', "NOPE is not known", id="tag-unset"),
])
def test_docker_build_without_a_knowable_tag_is_a_configuration_error(tmp_path, command, message):
    with pytest.raises(ActionFailed, match=message) as raised:
        run({"build": [command]}, tmp_path)
    assert raised.value.code == "ConfigurationError"


# -- blocks and unsupported commands ----------------------------------------------------------
@pytest.mark.parametrize("command, logged", [
    pytest.param("if [ -f x ]; then mkdir made; fi",
                 "[build] skipped (a block that needs the build container): if [ -f x ]; then mkdir made; fi ...",
                 id="one-line-if"),
    pytest.param("for d in a b; do mkdir made; done",
                 "[build] skipped (a block that needs the build container): for d in a b; do mkdir made; done ...",
                 id="for-loop"),
    pytest.param("mkdir made\nmkdir also",
                 "[build] skipped (a block that needs the build container): mkdir made ...", id="multi-line"),
    pytest.param("pip install --quiet x", "[build] skipped (needs the build container): pip install --quiet x",
                 id="pip"),
    pytest.param("docker push $URI", "[build] skipped (needs the build container): docker push $URI", id="docker-push"),
    pytest.param("mkdir made && python -m pytest",
                 "[build] skipped (needs the build container): mkdir made && python -m pytest",
                 id="one-unsupported-step-skips-all"),
    pytest.param("mkdir made/$(date)", "[build] skipped (command substitution is not known here): mkdir made/$(date)",
                 id="step-not-derivable"),
    pytest.param("mkdir $NOPE && mkdir made", "[build] skipped (NOPE is not known here): mkdir $NOPE && mkdir made",
                 id="step-unset"),
])
def test_what_cannot_run_here_is_skipped_and_logged(tmp_path, command, logged):
    _, _, log = run({"build": [command]}, tmp_path, {"URI": URI})
    assert log.lines == [logged]
    assert list(tmp_path.iterdir()) == []  # no step of it ran


# -- file steps -------------------------------------------------------------------------------
def test_mkdir_cd_and_rm(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "stale.txt").write_text("x")
    (tmp_path / "old" / "keep.txt").write_text("x")
    _, _, log = run({"build": ["mkdir -p out/deep && cd old && rm -f stale.txt missing.txt", "mkdir top"]}, tmp_path)
    assert (tmp_path / "out" / "deep").is_dir()
    assert (tmp_path / "top").is_dir()  # cd does not outlive its command
    assert not (tmp_path / "old" / "top").exists()
    assert sorted(p.name for p in (tmp_path / "old").iterdir()) == ["keep.txt"]
    assert log.lines == ["[build] done here: mkdir -p out/deep && cd old && rm -f stale.txt missing.txt",
                         "[build] done here: mkdir top"]


def test_rm_leaves_folders(tmp_path):
    (tmp_path / "folder").mkdir()
    run({"build": ["rm -rf folder"]}, tmp_path)
    assert (tmp_path / "folder").is_dir()


def test_zip_with_excludes_from_a_subshell(tmp_path):
    src = tmp_path / "src" / "training"
    src.mkdir(parents=True)
    (src / "train.py").write_text("train")
    (src / "cache.pyc").write_text("compiled")
    (tmp_path / "src" / "README").write_text("readme")
    run({"build": ['(cd src && zip -qr ../build/training.zip training -x "*.pyc")']}, tmp_path)
    with zipfile.ZipFile(tmp_path / "build" / "training.zip") as archive:
        assert archive.namelist() == ["training/train.py"]
        assert archive.read("training/train.py") == b"train"


def test_zip_appends_to_an_existing_archive(tmp_path):
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    run({"build": ["zip out.zip a.txt", "zip out.zip b.txt"]}, tmp_path)
    with zipfile.ZipFile(tmp_path / "out.zip") as archive:
        assert sorted(archive.namelist()) == ["a.txt", "b.txt"]


def test_zip_needs_an_archive_and_inputs(tmp_path):
    with pytest.raises(ActionFailed, match="zip needs an archive and inputs"):
        run({"build": ["zip -r out.zip"]}, tmp_path)


@pytest.mark.parametrize("target, bucket, key", [
    pytest.param("s3://code-bucket/glue/", "code-bucket", "glue/etl.py", id="prefix-keeps-file-name"),
    pytest.param("s3://code-bucket/glue/main.py", "code-bucket", "glue/main.py", id="explicit-key"),
    pytest.param("s3://code-bucket", "code-bucket", "etl.py", id="bucket-only"),
    pytest.param("s3://${BUCKET}/x/etl.py --quiet", "from-env", "x/etl.py", id="expanded-with-options"),
])
def test_aws_s3_cp_uploads_a_local_file(tmp_path, target, bucket, key):
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "etl.py").write_bytes(b"print('etl')")
    s3 = FakeS3()
    run({"post_build": [f"aws s3 cp jobs/etl.py {target}"]}, tmp_path, {"BUCKET": "from-env"}, s3)
    assert s3.puts == [{"Bucket": bucket, "Key": key, "Body": b"print('etl')"}]


@pytest.mark.parametrize("command, message", [
    pytest.param("aws s3 cp s3://a/b local.txt", "only `aws s3 cp <local file> s3://...` runs here", id="download"),
    pytest.param("aws s3 cp missing.py s3://a/b", "missing.py does not exist", id="missing-file"),
])
def test_aws_s3_cp_refuses_what_it_cannot_do(tmp_path, command, message):
    s3 = FakeS3()
    with pytest.raises(ActionFailed, match=message):
        run({"build": [command]}, tmp_path, s3=s3)
    assert s3.puts == []
