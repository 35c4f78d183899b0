"""Preflight (mlops_local.preflight): a doomed run's inputs are refused before anything starts."""
from __future__ import annotations

import gzip
from pathlib import Path
from typing import Callable

import pytest

from mlops_local import preflight

from tests.conftest import DATA, DATASET_CONFIG

HEADER = "carat,cut,color,clarity,depth,table,price,x,y,z"
ROW = "0.23,Ideal,E,SI2,61.5,55,326,3.95,3.98,2.43"


def plain(text: str) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        path = folder / "data.csv"
        path.write_text(text, encoding="utf-8")
        return path
    return write


def gzipped(content: bytes) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        path = folder / "data.csv.gz"
        path.write_bytes(gzip.compress(content))
        return path
    return write


def truncated_gzip(folder: Path) -> Path:
    path = folder / "data.csv.gz"
    whole = gzip.compress((HEADER + "\n" + (ROW + "\n") * 2000).encode())
    path.write_bytes(whole[: len(whole) // 2])
    return path


def raw(name: str, content: bytes) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(content)
        return path
    return write


def missing(folder: Path) -> Path:
    return folder / "nowhere.csv"


def shipped(folder: Path) -> Path:
    return DATA


@pytest.mark.parametrize("make_data, expected", [
    pytest.param(shipped, None, id="shipped-data"),
    pytest.param(plain(f"{HEADER}\n{ROW}\n"), None, id="plain-csv"),
    pytest.param(plain(f"\ufeff{HEADER}\r\n{ROW}\r\n"), None, id="bom-and-crlf"),
    pytest.param(gzipped(f"{HEADER}\n{ROW}\n".encode()), None, id="gzip"),
    pytest.param(missing, "data file {data} does not exist", id="missing"),
    pytest.param(plain(""), "data file {data} is empty", id="empty-file"),
    pytest.param(gzipped(b""), "data file {data} decompresses to nothing", id="empty-gzip"),
    pytest.param(plain("\n\n"), "data file {data} has no header line", id="blank-lines"),
    pytest.param(plain(HEADER + "\n"), "data file {data} has a header but no data rows", id="header-only"),
    pytest.param(truncated_gzip, "data file {data} is not a readable gzip file (EOFError", id="truncated-gzip"),
    pytest.param(raw("data.csv.gz", f"{HEADER}\n{ROW}\n".encode()), "data file {data} is not a readable gzip file",
                 id="not-gzip-at-all"),
    pytest.param(raw("data.csv", b"carat,\xe9,color\n1,2,3\n"), "data file {data}: the header line is not UTF-8",
                 id="header-not-utf8"),
    pytest.param(plain(HEADER.replace("color", "colour") + f"\n{ROW}\n"),
                 "data file {data}: column(s) 'color' named in the dataset config", id="header-lacks-a-column"),
    pytest.param(plain(f"{HEADER},extra\n{ROW},1\n"),
                 "data file {data}: column(s) 'extra' of the data are not named in the dataset config",
                 id="header-has-an-extra-column"),
])
def test_data_file(tmp_path: Path, make_data: Callable[[Path], Path], expected: str | None) -> None:
    data = make_data(tmp_path)
    problems = preflight.check(data, DATASET_CONFIG, 600.0, {})
    if expected is None:
        assert problems == []
    else:
        assert len(problems) == 1, problems
        assert problems[0].startswith(expected.format(data=data)), problems[0]


@pytest.mark.parametrize("config_text, expected", [
    pytest.param(None, "dataset config {config} does not exist", id="missing"),
    pytest.param("target: [", "dataset config {config} is not valid YAML", id="not-yaml"),
    pytest.param("target: price\n", "dataset config ({config}): required key 'split' is missing",
                 id="missing-key"),
])
def test_dataset_config(tmp_path: Path, config_text: str | None, expected: str) -> None:
    config = tmp_path / "config.yaml"
    if config_text is not None:
        config.write_text(config_text, encoding="utf-8")
    problems = preflight.check(DATA, config, 600.0, {})
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected.format(config=config)), problems[0]


@pytest.mark.parametrize("threshold, ok", [
    pytest.param(600.0, True, id="positive"),
    pytest.param(1, True, id="integer"),
    pytest.param(0.0, False, id="zero"),
    pytest.param(-5.0, False, id="negative"),
    pytest.param(float("nan"), False, id="nan"),
    pytest.param(float("inf"), False, id="infinite"),
    pytest.param(None, False, id="none"),
])
def test_threshold(threshold: float | None, ok: bool) -> None:
    problems = preflight.check(DATA, DATASET_CONFIG, threshold, {})
    assert (problems == []) == ok, problems
    if not ok:
        assert len(problems) == 1 and "quality threshold" in problems[0]
        assert "positive finite number" in problems[0] or "pass --quality-threshold" in problems[0]


@pytest.mark.parametrize("hyperparameters, expected", [
    pytest.param({}, [], id="none"),
    pytest.param({"epochs": "5", "hidden_units": "64,32", "activation": "tanh", "sagemaker_region": "x"}, [],
                 id="valid-and-sdk-keys"),
    pytest.param({"epoch": "5"}, ["unknown hyperparameter(s) 'epoch'"], id="unknown-name"),
    pytest.param({"epochs": "0"}, ["hyperparameter 'epochs' must be an integer >= 1, got '0'"], id="bad-value"),
    pytest.param({"epochs": "x", "dropout": "1.5", "lr": "1"},
                 ["unknown hyperparameter(s) 'lr'", "hyperparameter 'epochs' must be",
                  "hyperparameter 'dropout' must be"],
                 id="every-problem-listed"),
])
def test_hyperparameters(hyperparameters: dict[str, str], expected: list[str]) -> None:
    problems = preflight.check(DATA, DATASET_CONFIG, 600.0, hyperparameters)
    assert len(problems) == len(expected), problems
    for problem, text in zip(problems, expected):
        assert problem.startswith("--hyperparameter: ") and text in problem


def test_every_problem_at_once(tmp_path: Path) -> None:
    data = plain(HEADER.replace("price", "cost") + f"\n{ROW}\n")(tmp_path)
    problems = preflight.check(data, DATASET_CONFIG, -1.0, {"epochs": "none"})
    assert [p.split(" ")[0] for p in problems] == ["data", "quality", "--hyperparameter:"]
    assert str(data) in problems[0] and "'price'" in problems[0]
