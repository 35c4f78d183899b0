"""Fixtures for the Glue ETL tests: one local SparkSession, the shipped data run once, small CSVs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from glue_jobs import etl
from training.dataset import load_config, parse_config

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
    # surrogateescape: a line may carry raw undecodable bytes, spelled "\udce9" for the byte 0xE9
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogateescape")
    return path


def good_rows(n: int, start: int = 0):
    """Valid rows of the small schema, distinct and spread over every level and category."""
    levels, cats = ["lo", "mid", "hi"], ["p", "q", "r"]
    return [f"g{i},{(i * 37) % 100 / 10},{levels[i % 3]},{cats[(i // 3) % 3]},{1 + i * 3.5}"
            for i in range(start, start + n)]


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))
