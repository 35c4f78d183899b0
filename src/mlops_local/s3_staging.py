"""What a local job run needs around its process: S3 staged in and out, the child, its log.

Glue job runs (`mlops_local.glue_runs`) and SageMaker training / processing jobs
(`mlops_local.sagemaker_jobs`) both copy S3 data into a per-run folder, run a child process there
with a log file, and copy results back. The S3 calls go through the stand-in with an ordinary
client, so they see exactly what a job on AWS would see.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path, PurePosixPath
from typing import Mapping


class StagingError(Exception):
    """S3 data could not be staged in or out; the message says which URI and why."""


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise StagingError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise StagingError(f"no bucket in {uri!r}")
    return bucket, key


def object_exists(s3, uri: str) -> bool:
    """True when the URI names one object (not a prefix)."""
    from botocore.exceptions import ClientError

    bucket, key = split_s3_uri(uri)
    if not key or key.endswith("/"):
        return False
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
            return False
        raise


def download_object(s3, uri: str, path: Path) -> Path:
    bucket, key = split_s3_uri(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        s3.download_file(bucket, key, str(path))
    except Exception as exc:  # botocore's ClientError or S3 transfer errors
        raise StagingError(f"cannot download {uri}: {exc}") from None
    return path


def download_prefix(s3, uri: str, directory: Path) -> list[Path]:
    """SageMaker's S3Prefix: every object under the prefix, at its key relative to the prefix.

    A URI that names one object (`.../features.json`) lands as that file in the directory. Objects
    are matched on whole path segments: `s3://b/etl/train` takes `etl/train/...`, not `etl/train-2/...`.
    Returns the files written; an empty list when nothing is there.
    """
    bucket, key = split_s3_uri(uri)
    directory.mkdir(parents=True, exist_ok=True)
    folder = key.rstrip("/")
    listed: list[tuple[str, str]] = []
    try:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder)
        for page in pages:
            for item in page.get("Contents", []):
                name = item["Key"]
                if name == key and not key.endswith("/"):
                    listed.append((name, PurePosixPath(name).name))
                elif not folder or name.startswith(folder + "/"):
                    relative = name[len(folder):].lstrip("/")
                    if relative and not relative.endswith("/"):  # "folder/" marker objects hold nothing
                        listed.append((name, relative))
    except Exception as exc:
        raise StagingError(f"cannot list {uri}: {exc}") from None
    written = []
    for name, relative in listed:
        target = directory.joinpath(*PurePosixPath(relative).parts)
        if directory.resolve() not in target.resolve().parents:
            raise StagingError(f"object key s3://{bucket}/{name} escapes the staging folder")
        written.append(download_object(s3, f"s3://{bucket}/{name}", target))
    return written


def upload_dir(s3, directory: Path, uri: str) -> list[str]:
    """Every file under the directory to `<uri>/<relative path>`; returns the keys written.

    Hidden files (Hadoop's `.part-0000.csv.crc` checksums) stay behind, as S3 committers never
    write them.
    """
    bucket, key = split_s3_uri(uri)
    prefix = key.rstrip("/")
    keys = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = path.relative_to(directory)
        if any(part.startswith(".") for part in relative.parts):
            continue
        name = "/".join(filter(None, [prefix, relative.as_posix()]))
        try:
            s3.upload_file(str(path), bucket, name)
        except Exception as exc:
            raise StagingError(f"cannot upload {path} to s3://{bucket}/{name}: {exc}") from None
        keys.append(name)
    return keys


def upload_file(s3, path: Path, uri: str) -> str:
    bucket, key = split_s3_uri(uri)
    try:
        s3.upload_file(str(path), bucket, key)
    except Exception as exc:
        raise StagingError(f"cannot upload {path} to {uri}: {exc}") from None
    return uri


# -- the job's process ----------------------------------------------------------------------------
def start_child(argv: list[str], env: Mapping[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    """The job's process in a session of its own, so a stop ends it and everything it started
    (Spark's JVM, data loaders) and nothing else."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=dict(env), cwd=cwd, start_new_session=True)


def terminate(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM to the job's process group (as a container stop does), SIGKILL after the grace."""
    if process.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)  # the child leads its own session: pgid == pid
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*:")


def last_error(log: Path, limit: int = 1024) -> str:
    """The line a person wants first: the last Python exception line of the log, else the last line
    that mentions an error, else the last line."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "no log"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if EXCEPTION_LINE.match(line):
            return line[:limit]
    for line in reversed(lines):
        if "error" in line.lower():
            return line[:limit]
    return lines[-1][:limit] if lines else "no output"
