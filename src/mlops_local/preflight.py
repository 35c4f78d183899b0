"""Checks before a run starts: what would otherwise fail only after deploy, upload and ETL.

`check` returns every problem it finds (an empty list: go), each message naming the problem and
the file or option at fault:
- the data file exists, is not empty, has a data row after its header, and a .gz decompresses whole
  (a truncated or corrupt gzip fails the Glue job only after Spark has started);
- its header matches the dataset config (training.dataset: the one parser and the one header check
  the ETL uses too);
- the quality threshold is a positive finite number (the Evaluation gate compares RMSE with it);
- the hyperparameters are known names with valid values (training.contract: the trainer's own parser).
"""
from __future__ import annotations

import codecs
import csv
import gzip
import math
import zlib
from pathlib import Path
from typing import BinaryIO, Mapping, cast

from training.contract import PARSERS, SDK_PREFIX, parse_hyperparameters
from training.dataset import DatasetConfigError, load_config
from training.errors import UserError

CHUNK = 1 << 20


def check(data: Path, dataset_config: Path, quality_threshold: float | None,
          hyperparameters: Mapping[str, str]) -> list[str]:
    """Every problem that dooms a run with these inputs; [] when none is found."""
    problems: list[str] = []
    header, data_problem = read_header(data)
    if data_problem:
        problems.append(data_problem)
    problems += check_config(dataset_config, data, header)
    threshold_problem = check_threshold(quality_threshold)
    if threshold_problem:
        problems.append(threshold_problem)
    problems += check_hyperparameters(hyperparameters)
    return problems


def read_header(data: Path) -> tuple[list[str] | None, str | None]:
    """(header, None) for a usable data file, else (None, what is wrong with it)."""
    if not data.is_file():
        return None, f"data file {data} does not exist"
    if data.stat().st_size == 0:
        return None, f"data file {data} is empty"
    try:
        with _open(data) as stream:
            first = stream.readline()
            second = stream.readline()
            if data.suffix == ".gz":
                while stream.read(CHUNK):  # to the end: gzip checks the CRC and length there
                    pass
    except (OSError, EOFError, zlib.error) as exc:
        return None, f"data file {data} is not a readable gzip file ({type(exc).__name__}: {exc})"
    if not first.strip():
        what = "decompresses to nothing" if data.suffix == ".gz" and not first else "has no header line"
        return None, f"data file {data} {what}"
    try:
        text = codecs.decode(first, "utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, f"data file {data}: the header line is not UTF-8 ({exc})"
    header = next(csv.reader([text.rstrip("\r\n")]))
    if not second.strip():
        return header, f"data file {data} has a header but no data rows"
    return header, None


def _open(data: Path) -> BinaryIO:
    # Decompressed by the name, as Spark (Hadoop's codec factory) reads it.
    return cast(BinaryIO, gzip.open(data, "rb") if data.suffix == ".gz" else data.open("rb"))


def check_config(dataset_config: Path, data: Path, header: list[str] | None) -> list[str]:
    """The config's own problems, then (when both are readable) the header against it."""
    if not dataset_config.is_file():
        return [f"dataset config {dataset_config} does not exist"]
    try:
        config = load_config(dataset_config)
    except (DatasetConfigError, UnicodeDecodeError) as exc:
        return [str(exc)]
    if header is None:
        return []
    try:
        config.check_header(header)
    except DatasetConfigError as exc:
        return [f"data file {data}: {exc}"]
    return []


def check_threshold(threshold: float | None) -> str | None:
    if threshold is None:
        return "no quality threshold: pass --quality-threshold or set quality_threshold in the dataset config"
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) \
            or not math.isfinite(threshold) or threshold <= 0:
        return f"quality threshold {threshold!r} must be a positive finite number (the RMSE a model must reach)"
    return None


def check_hyperparameters(hyperparameters: Mapping[str, str]) -> list[str]:
    """One message per bad key (the trainer's parser stops at the first)."""
    unknown = {k: v for k, v in hyperparameters.items() if k not in PARSERS and not k.startswith(SDK_PREFIX)}
    keys = [{k: v} for k, v in hyperparameters.items() if k in PARSERS]
    problems = []
    for item in ([unknown] if unknown else []) + keys:
        try:
            parse_hyperparameters(item)
        except UserError as exc:
            problems.append(f"--hyperparameter: {exc}")
    return problems
