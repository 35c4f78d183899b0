"""Fixtures for the Glue ETL tests: one local SparkSession, the shipped data run once, small CSVs."""
from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

from glue_jobs import etl
from training.dataset import DatasetConfig, load_config, parse_config

from tests.conftest import DATA, DATASET_CONFIG, ROOT

__all__ = ["DATA", "DATASET_CONFIG", "ROOT"]  # re-exported for the test modules of this folder


@pytest.fixture(scope="session")
def spark():
    session = etl.build_spark("glue-etl-tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def diamonds_config():
    return load_config(DATASET_CONFIG)


@pytest.fixture(scope="session")
def diamonds_run(spark, diamonds_config, tmp_path_factory):
    """The job on the shipped data, once for every test that reads its outputs."""
    out = tmp_path_factory.mktemp("diamonds-etl")
    quality = etl.run_etl(spark, diamonds_config, str(DATA), str(out))
    return out, quality


def small_config(**overrides):
    """A config over the small hand-written CSVs: id (dropped), a (numeric), o (ordinal),
    c (categorical), y (target, log)."""
    raw = {
        "target": "y",
        "numeric": ["a"],
        "ordinal": {"o": ["lo", "mid", "hi"]},
        "categorical": ["c"],
        "drop": ["id"],
        "rules": [{"column": "a", "min": 0, "max": 10},
                  {"column": "c", "allowed": ["p", "q", "r"]}],
        "split": {"train": 0.6, "validation": 0.2, "test": 0.2, "seed": 7},
        "target_transform": "log",
    }
    raw.update(overrides)
    return parse_config(raw, source="small-config")


def write_lines(path: Path, lines) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def good_rows(n: int, start: int = 0):
    """Valid rows of the small schema, distinct and spread over every level and category."""
    levels, cats = ["lo", "mid", "hi"], ["p", "q", "r"]
    return [f"g{i},{(i * 37) % 100 / 10},{levels[i % 3]},{cats[(i // 3) % 3]},{1 + i * 3.5}"
            for i in range(start, start + n)]


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def count_rows(path: Path, config: DatasetConfig) -> dict[str, int]:
    """rows_in, quarantined and duplicates counted in plain Python, independently of the job: a row is
    quarantined when it breaks one of the config's rules (the only checks rows of the shipped data
    fail), a duplicate when it repeats a valid row field for field."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = list(reader)
    index = {c: header.index(c) for c in header}

    def breaks_a_rule(row: list[str]) -> bool:
        for rule in config.rules:
            value = row[index[rule.column]]
            if rule.allowed is not None and value.strip() not in rule.allowed:
                return True
            if rule.min is not None and float(value) < rule.min or rule.max is not None and float(value) > rule.max:
                return True
        return False

    valid = [tuple(row) for row in rows if not breaks_a_rule(row)]
    return {"rows_in": len(rows), "quarantined": len(rows) - len(valid), "duplicates": len(valid) - len(set(valid)),
            "exact_duplicates_in_file": len(rows) - len({tuple(row) for row in rows})}
