"""The fitted feature transform (features.json) and its numpy implementation.

The Glue job fits it on the training split and applies it with Spark expressions
(glue_jobs/etl.py); training, evaluation and the model server apply the same spec here.
A parity test holds the two implementations to the same numbers.

features.json:
    {"format_version": 1, "target": str, "target_transform": "none"|"log",
     "input_columns": [raw columns a request carries, in data-set order, target excluded],
     "numeric": [{"column", "mean", "std"}],          # standardised with training statistics
     "ordinal": [{"column", "levels": [...]}],        # index / (len(levels) - 1)
     "categorical": [{"column", "categories": [...]}],# one-hot; unseen category -> all zeros
     "feature_names": [...]}                           # model input order
"""
from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

FORMAT_VERSION = 1
# The model computes in float32: a standardised value beyond this is infinite there, so the record
# is refused (400 naming the column) instead of producing a non-finite prediction (500).
FLOAT32_MAX = float(np.finfo(np.float32).max)


class RecordError(ValueError):
    """A raw record that cannot be turned into features; names the row and column."""

    def __init__(self, row: int, column: str | None, problem: str):
        self.row, self.column, self.problem = row, column, problem
        where = f"row {row}" + (f", column '{column}'" if column else "")
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class FeatureSpec:
    target: str
    target_transform: str
    input_columns: tuple[str, ...]
    numeric: tuple[tuple[str, float, float], ...]          # (column, mean, std)
    ordinal: tuple[tuple[str, tuple[str, ...]], ...]       # (column, levels)
    categorical: tuple[tuple[str, tuple[str, ...]], ...]   # (column, categories)

    @property
    def feature_names(self) -> list[str]:
        names = [c for c, _, _ in self.numeric] + [c for c, _ in self.ordinal]
        for column, categories in self.categorical:
            names += [f"{column}={value}" for value in categories]
        return names

    # -- target ---------------------------------------------------------------------------
    def encode_target(self, y: np.ndarray) -> np.ndarray:
        return np.log(y) if self.target_transform == "log" else np.asarray(y, dtype=np.float64)

    def decode_target(self, y: np.ndarray) -> np.ndarray:
        return np.exp(y) if self.target_transform == "log" else np.asarray(y, dtype=np.float64)

    # -- features -------------------------------------------------------------------------
    def transform(self, records: Sequence[Sequence[Any]] | Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Raw records (lists in input_columns order, or dicts by column) -> float32 matrix."""
        index = {c: i for i, c in enumerate(self.input_columns)}
        out = np.zeros((len(records), len(self.feature_names)), dtype=np.float32)
        for r, record in enumerate(records):
            get = self._getter(r, record, index)
            j = 0
            for column, mean, std in self.numeric:
                out[r, j] = _standardise(r, column, _to_float(r, column, get(column)), mean, std)
                j += 1
            for column, levels in self.ordinal:
                value = _to_text(get(column))
                if value not in levels:
                    raise RecordError(r, column, f"unknown value {value!r}; expected one of {list(levels)}")
                out[r, j] = levels.index(value) / (len(levels) - 1)
                j += 1
            for column, categories in self.categorical:
                value = _to_text(get(column))
                if value in categories:  # an unseen category stays all zeros
                    out[r, j + categories.index(value)] = 1.0
                j += len(categories)
        return out

    def _getter(self, r: int, record: Any, index: Mapping[str, int]) -> Callable[[str], Any]:
        if isinstance(record, Mapping):
            def get(column: str) -> Any:
                if column not in record:
                    raise RecordError(r, column, "missing")
                return record[column]
            return get
        if isinstance(record, (list, tuple)):
            if len(record) != len(self.input_columns):
                raise RecordError(
                    r, None, f"expected {len(self.input_columns)} values "
                    f"({', '.join(self.input_columns)}), got {len(record)}")
            return lambda column: record[index[column]]
        raise RecordError(r, None, f"a record must be a list or an object, got {type(record).__name__}")

    # -- (de)serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "target": self.target,
            "target_transform": self.target_transform,
            "input_columns": list(self.input_columns),
            "numeric": [{"column": c, "mean": m, "std": s} for c, m, s in self.numeric],
            "ordinal": [{"column": c, "levels": list(v)} for c, v in self.ordinal],
            "categorical": [{"column": c, "categories": list(v)} for c, v in self.categorical],
            "feature_names": self.feature_names,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FeatureSpec":
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"features.json format_version {data.get('format_version')!r} is not "
                             f"{FORMAT_VERSION}")
        return cls(
            target=data["target"],
            target_transform=data["target_transform"],
            input_columns=tuple(data["input_columns"]),
            numeric=tuple((d["column"], float(d["mean"]), float(d["std"])) for d in data["numeric"]),
            ordinal=tuple((d["column"], tuple(d["levels"])) for d in data["ordinal"]),
            categorical=tuple((d["column"], tuple(d["categories"])) for d in data["categorical"]),
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "FeatureSpec":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def safe_std(std: float | None) -> float:
    """A constant column has no spread; dividing by 1 keeps it at zero instead of NaN."""
    return std if std is not None and math.isfinite(std) and std > 0 else 1.0


def _to_text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _to_float(r: int, column: str, value: Any) -> float:
    if isinstance(value, bool):
        raise RecordError(r, column, f"expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # a JSON integer beyond float64, e.g. 10**400
            raise RecordError(r, column, f"expected a finite number, got {_short(value)}") from None
    else:
        text = _to_text(value)
        if not text:
            raise RecordError(r, column, "missing value")
        try:
            number = float(text)
        except ValueError:
            raise RecordError(r, column, f"expected a number, got {text!r}") from None
    if not math.isfinite(number):
        raise RecordError(r, column, f"expected a finite number, got {value!r}")
    return number


def _standardise(r: int, column: str, number: float, mean: float, std: float) -> float:
    scaled = (number - mean) / std  # float64: inf when it overflows, never an exception
    if not abs(scaled) <= FLOAT32_MAX:
        raise RecordError(r, column, f"{number!r} is out of the range the model can compute with "
                                     f"(training mean {mean:.6g}, standard deviation {std:.6g})")
    return scaled


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} digits)"


def read_csv_dir(directory: str | Path) -> tuple[list[str], np.ndarray]:
    """Header and float64 values of every *.csv under a directory (Spark writes part files)."""
    files = sorted(p for p in Path(directory).rglob("*.csv") if p.stat().st_size > 0)
    if not files:
        raise FileNotFoundError(f"no CSV files under {directory}")
    header: list[str] | None = None
    blocks = []
    for path in files:
        with path.open(encoding="utf-8") as fh:
            first = fh.readline().strip().split(",")
            if header is None:
                header = first
            elif first != header:
                raise ValueError(f"{path} has header {first}, expected {header}")
            rest = fh.read()
        if rest.strip():  # Spark may write a header-only part for an empty partition
            blocks.append(np.loadtxt(io.StringIO(rest), delimiter=",", dtype=np.float64, ndmin=2))
    assert header is not None
    values = np.vstack(blocks) if blocks else np.empty((0, len(header)))
    return header, values


def iter_rows(directory: str | Path) -> Iterable[dict[str, str]]:
    """Raw records of the CSV part files under a directory, as dicts of strings."""
    import csv

    for path in sorted(Path(directory).rglob("*.csv")):
        with path.open(encoding="utf-8", newline="") as fh:
            yield from csv.DictReader(fh)
