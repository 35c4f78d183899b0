"""The dataset config: the one place that names a data set's columns.

Schema (YAML): target, numeric, categorical, ordinal, drop, rules, split, target_transform,
quality_threshold. See docs/ARCHITECTURE.md section 4. Every error names the key or column at fault.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

TARGET_TRANSFORMS = ("none", "log")
ALLOWED_KEYS = frozenset(
    {"target", "numeric", "categorical", "ordinal", "drop", "rules", "split",
     "target_transform", "quality_threshold"}
)
RULE_KEYS = frozenset({"column", "min", "max", "allowed"})


class DatasetConfigError(ValueError):
    """The dataset config, or the data's header, does not fit the schema."""


@dataclass(frozen=True)
class Rule:
    column: str
    min: float | None = None
    max: float | None = None
    allowed: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Split:
    train: float
    validation: float
    test: float
    seed: int


@dataclass(frozen=True)
class DatasetConfig:
    target: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    ordinal: Mapping[str, tuple[str, ...]]
    split: Split
    drop: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()
    target_transform: str = "none"
    quality_threshold: float | None = None
    source: str = field(default="<dict>", compare=False)

    @property
    def feature_columns(self) -> tuple[str, ...]:
        """Raw columns that feed the model, in config order."""
        return self.numeric + tuple(self.ordinal) + self.categorical

    @property
    def known_columns(self) -> tuple[str, ...]:
        return (self.target,) + self.feature_columns + self.drop

    def check_header(self, header: Sequence[str]) -> None:
        """Fail with the column's name when the data's header and the config disagree."""
        seen = set(header)
        dupes = sorted({c for c in header if list(header).count(c) > 1})
        if dupes:
            raise DatasetConfigError(f"data header repeats column(s): {', '.join(dupes)}")
        missing = [c for c in self.known_columns if c not in seen]
        if missing:
            raise DatasetConfigError(
                f"column(s) {', '.join(repr(c) for c in missing)} named in the dataset config "
                f"({self.source}) are not in the data header {list(header)}"
            )
        unknown = [c for c in header if c not in set(self.known_columns)]
        if unknown:
            raise DatasetConfigError(
                f"column(s) {', '.join(repr(c) for c in unknown)} of the data are not named in the "
                f"dataset config ({self.source}); list them under 'drop' to ignore them"
            )


def load_config(path: str | Path) -> DatasetConfig:
    import yaml  # imported here: the model server never needs it

    text = Path(path).read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DatasetConfigError(f"dataset config {path} is not valid YAML: {exc}") from exc
    return parse_config(raw, source=str(path))


def parse_config(raw: Any, source: str = "<dict>") -> DatasetConfig:
    where = f"dataset config ({source})"
    if not isinstance(raw, dict):
        raise DatasetConfigError(f"{where} must be a mapping, got {type(raw).__name__}")
    unknown = sorted(set(raw) - ALLOWED_KEYS)
    if unknown:
        raise DatasetConfigError(
            f"{where}: unknown key(s) {unknown}; allowed keys are {sorted(ALLOWED_KEYS)}"
        )
    for key in ("target", "split"):
        if key not in raw:
            raise DatasetConfigError(f"{where}: required key '{key}' is missing")

    target = _name(raw["target"], f"{where}: 'target'")
    numeric = _names(raw.get("numeric", []), f"{where}: 'numeric'")
    categorical = _names(raw.get("categorical", []), f"{where}: 'categorical'")
    drop = _names(raw.get("drop", []), f"{where}: 'drop'")
    ordinal = _ordinal(raw.get("ordinal", {}), where)

    named: dict[str, str] = {target: "target"}
    for role, columns in (("numeric", numeric), ("ordinal", tuple(ordinal)),
                          ("categorical", categorical), ("drop", drop)):
        for column in columns:
            if column in named:
                raise DatasetConfigError(
                    f"{where}: column '{column}' is listed under both '{named[column]}' and '{role}'"
                )
            named[column] = role
    if not numeric and not ordinal and not categorical:
        raise DatasetConfigError(f"{where}: no feature columns (numeric, ordinal or categorical)")

    transform = raw.get("target_transform", "none")
    if transform not in TARGET_TRANSFORMS:
        raise DatasetConfigError(
            f"{where}: target_transform must be one of {list(TARGET_TRANSFORMS)}, got {transform!r}"
        )
    threshold = raw.get("quality_threshold")
    if threshold is not None:
        threshold = _number(threshold, f"{where}: 'quality_threshold'")
        if threshold <= 0:
            raise DatasetConfigError(f"{where}: 'quality_threshold' must be > 0, got {threshold}")

    return DatasetConfig(
        target=target,
        numeric=numeric,
        categorical=categorical,
        ordinal=ordinal,
        split=_split(raw["split"], where),
        drop=drop,
        rules=_rules(raw.get("rules", []), named, where),
        target_transform=transform,
        quality_threshold=threshold,
        source=source,
    )


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DatasetConfigError(f"{what} must be a non-empty column name, got {value!r}")
    return value


def _names(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise DatasetConfigError(f"{what} must be a list of column names, got {type(value).__name__}")
    names = tuple(_name(v, what) for v in value)
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DatasetConfigError(f"{what} repeats column(s) {dupes}")
    return names


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DatasetConfigError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _ordinal(value: Any, where: str) -> dict[str, tuple[str, ...]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DatasetConfigError(f"{where}: 'ordinal' must map column -> ordered list of values")
    result = {}
    for column, levels in value.items():
        what = f"{where}: ordinal column '{column}'"
        if not isinstance(levels, list) or len(levels) < 2:
            raise DatasetConfigError(f"{what} needs an ordered list of at least two values")
        levels = tuple(str(v) for v in levels)
        if len(set(levels)) != len(levels):
            raise DatasetConfigError(f"{what} repeats a value in {list(levels)}")
        result[_name(column, what)] = levels
    return result


def _split(value: Any, where: str) -> Split:
    if not isinstance(value, dict):
        raise DatasetConfigError(f"{where}: 'split' must map train/validation/test/seed")
    extra = sorted(set(value) - {"train", "validation", "test", "seed"})
    if extra:
        raise DatasetConfigError(f"{where}: 'split' has unknown key(s) {extra}")
    fractions = {}
    for key in ("train", "validation", "test"):
        if key not in value:
            raise DatasetConfigError(f"{where}: 'split.{key}' is missing")
        fraction = _number(value[key], f"{where}: 'split.{key}'")
        if not 0 < fraction < 1:
            raise DatasetConfigError(f"{where}: 'split.{key}' must be between 0 and 1, got {fraction}")
        fractions[key] = fraction
    total = sum(fractions.values())
    if abs(total - 1.0) > 1e-6:
        raise DatasetConfigError(f"{where}: split fractions must add up to 1, got {total:g}")
    seed = value.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DatasetConfigError(f"{where}: 'split.seed' must be an integer, got {seed!r}")
    return Split(seed=seed, **fractions)


def _rules(value: Any, named: Mapping[str, str], where: str) -> tuple[Rule, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise DatasetConfigError(f"{where}: 'rules' must be a list of {{column, min, max, allowed}}")
    rules = []
    for i, item in enumerate(value):
        what = f"{where}: rules[{i}]"
        if not isinstance(item, dict) or "column" not in item:
            raise DatasetConfigError(f"{what} must be a mapping with a 'column'")
        extra = sorted(set(item) - RULE_KEYS)
        if extra:
            raise DatasetConfigError(f"{what} has unknown key(s) {extra}; allowed are {sorted(RULE_KEYS)}")
        column = _name(item["column"], f"{what}.column")
        role = named.get(column)
        if role is None or role == "drop":
            raise DatasetConfigError(f"{what}: column '{column}' is not a target or feature column")
        low = None if item.get("min") is None else _number(item["min"], f"{what}.min")
        high = None if item.get("max") is None else _number(item["max"], f"{what}.max")
        allowed = item.get("allowed")
        numeric_role = role in ("numeric", "target")
        if (low is not None or high is not None) and not numeric_role:
            raise DatasetConfigError(f"{what}: min/max apply to numeric columns, '{column}' is {role}")
        if low is not None and high is not None and low > high:
            raise DatasetConfigError(f"{what}: min {low:g} is greater than max {high:g} for '{column}'")
        if allowed is not None:
            if numeric_role:
                raise DatasetConfigError(
                    f"{what}: 'allowed' applies to categorical or ordinal columns, '{column}' is {role}")
            if not isinstance(allowed, list) or not allowed:
                raise DatasetConfigError(f"{what}.allowed must be a non-empty list")
            allowed = tuple(str(v) for v in allowed)
        if low is None and high is None and allowed is None:
            raise DatasetConfigError(f"{what} for '{column}' sets none of min, max, allowed")
        rules.append(Rule(column=column, min=low, max=high, allowed=allowed))
    return tuple(rules)
