"""S3 staged in and out of a local job's folder, and the one s3:// URI parser of the stand-in.

Glue job runs, SageMaker jobs and endpoints copy S3 data into a per-run folder and copy results
back. The S3 calls go through the stand-in with an ordinary client, so they see exactly what a job
on AWS would see.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

S3Client = Any  # a boto3 S3 client (no type stubs installed)


class StagingError(Exception):
    """S3 data could not be staged in or out; the message says which URI and why."""


def split_s3_uri(uri: Any) -> tuple[str, str]:
    """(bucket, key) of `s3://bucket/key`; StagingError for anything else."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise StagingError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise StagingError(f"no bucket in {uri!r}")
    return bucket, key


def object_exists(s3: S3Client, uri: str) -> bool:
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


def download_object(s3: S3Client, uri: str, path: Path) -> Path:
    bucket, key = split_s3_uri(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        s3.download_file(bucket, key, str(path))
    except Exception as exc:  # botocore's ClientError or S3 transfer errors
        raise StagingError(f"cannot download {uri}: {exc}") from None
    return path


def download_prefix(s3: S3Client, uri: str, directory: Path) -> list[Path]:
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


def upload_dir(s3: S3Client, directory: Path, uri: str) -> list[str]:
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


def upload_file(s3: S3Client, path: Path, uri: str) -> str:
    bucket, key = split_s3_uri(uri)
    try:
        s3.upload_file(str(path), bucket, key)
    except Exception as exc:
        raise StagingError(f"cannot upload {path} to {uri}: {exc}") from None
    return uri
