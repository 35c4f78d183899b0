"""Source/CodeCommit: a local folder stands for the repository's branch; its files become the artifact.

`sources(repository, branch)` names the folder; the artifact is a zip of the files a commit of it
would hold, and CommitId is a hash of their content (not a git commit).
"""
from __future__ import annotations

import hashlib
import io
import subprocess
import threading
import zipfile
from pathlib import Path

from mlops_local.codepipeline.actions.context import ActionContext, ActionFailed, ActionResult, put_artifact
from mlops_local.gateway import now

EXCLUDED = {".git", ".venv", "runs", "build", "dist", "__pycache__", ".pytest_cache", ".ruff_cache",
            ".mypy_cache", "node_modules"}


def source_codecommit(ctx: ActionContext) -> ActionResult:
    repository, branch = ctx.require("RepositoryName"), ctx.require("BranchName")
    if ctx.source_override:
        raise ActionFailed("source revision overrides of CodeCommit actions are not supported locally: "
                           "the source is the working tree", "ConfigurationError")
    # What CodePipeline's CodeCommit source does as the pipeline's role (CodePipeline User Guide,
    # "CodePipeline service role": codecommit:GetBranch, GetCommit, UploadArchive, GetUploadArchiveStatus).
    for operation in ("GetBranch", "GetCommit", "UploadArchive", "GetUploadArchiveStatus"):
        ctx.authorize("codecommit", operation, {"repositoryName": repository})
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
    created = now()
    message = f"local working tree {folder} (content hash, not a git commit)"
    stamp = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    return ActionResult(
        summary=message,
        variables={"CommitId": commit, "CommitMessage": message, "BranchName": branch,
                   "RepositoryName": repository, "AuthorDate": stamp, "CommitterDate": stamp},
        external_id=commit,
        revision={"revisionId": commit, "revisionChangeId": commit, "revisionSummary": message, "created": created},
        artifact_revision=commit)


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


# The pipeline's three CodeCommit sources are one working tree, zipped at the same moment: the first zips it,
# the others wait for it and reuse it while no file's size or mtime changed (git's own index heuristic).
_zipped: dict[tuple[str, tuple[tuple[str, int, int], ...]], tuple[bytes, str]] = {}
_zip_lock = threading.Lock()
MAX_ZIPPED = 4


def zip_folder(folder: Path) -> tuple[bytes, str]:
    """(zip bytes, content hash): the hash names the content like a commit id would."""
    names = source_files(folder)
    stats = [(folder / name).stat() for name in names]
    key = (str(folder.resolve()), tuple((n, s.st_size, s.st_mtime_ns) for n, s in zip(names, stats)))
    with _zip_lock:
        if key not in _zipped:
            if len(_zipped) >= MAX_ZIPPED:
                _zipped.pop(next(iter(_zipped)))
            _zipped[key] = _zip(folder, names)
        return _zipped[key]


def _zip(folder: Path, names: list[str]) -> tuple[bytes, str]:
    digest = hashlib.sha1()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in names:
            data = (folder / name).read_bytes()
            digest.update(name.encode() + b"\0" + data + b"\0")
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # content, not mtime, names it
            info.external_attr = ((folder / name).stat().st_mode & 0o777) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue(), digest.hexdigest()
