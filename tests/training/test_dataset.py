"""The dataset config: valid configs load, and every mistake names the key or column at fault."""
from __future__ import annotations

import copy

import pytest

from training.dataset import DatasetConfigError, load_config, parse_config

from tests.conftest import DATASET_CONFIG

BASE = {
    "target": "price",
    "numeric": ["carat", "depth"],
    "categorical": ["shop"],
    "ordinal": {"cut": ["Fair", "Good", "Ideal"]},
    "drop": ["id"],
    "rules": [{"column": "carat", "min": 0.01, "max": 10}, {"column": "shop", "allowed": ["a", "b"]}],
    "split": {"train": 0.7, "validation": 0.15, "test": 0.15, "seed": 7},
    "target_transform": "log",
    "quality_threshold": 600,
}


def with_change(path: str, value):
    raw = copy.deepcopy(BASE)
    node = raw
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last = keys[-1]
    if value is KeyError:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return raw


def test_shipped_config_loads():
    config = load_config(DATASET_CONFIG)
    assert config.target == "price"
    assert config.feature_columns == ("carat", "depth", "table", "x", "y", "z", "cut", "color", "clarity")
    assert config.split.train == 0.70 and config.split.seed == 42
    assert config.target_transform == "log"
    assert config.quality_threshold == 600


def test_valid_config_parses():
    config = parse_config(BASE)
    assert config.ordinal == {"cut": ("Fair", "Good", "Ideal")}
    assert config.rules[1].allowed == ("a", "b")
    assert config.known_columns == ("price", "carat", "depth", "cut", "shop", "id")


@pytest.mark.parametrize("path, value, message", [
    ("target", KeyError, "required key 'target' is missing"),
    ("split", KeyError, "required key 'split' is missing"),
    ("numeric", "carat", "'numeric' must be a list"),
    ("numeric", ["carat", "carat"], "repeats column(s) ['carat']"),
    ("categorical", ["carat"], "column 'carat' is listed under both 'numeric' and 'categorical'"),
    ("drop", ["price"], "column 'price' is listed under both 'target' and 'drop'"),
    ("ordinal", {"cut": ["Fair"]}, "ordinal column 'cut' needs an ordered list of at least two values"),
    ("ordinal", {"cut": ["a", "a"]}, "ordinal column 'cut' repeats a value"),
    ("target_transform", "sqrt", "target_transform must be one of ['none', 'log'], got 'sqrt'"),
    ("quality_threshold", -1, "'quality_threshold' must be > 0"),
    ("quality_threshold", "high", "'quality_threshold' must be a finite number"),
    ("split.train", 0.5, "split fractions must add up to 1, got 0.8"),
    ("split.test", 1.5, "'split.test' must be between 0 and 1"),
    ("split.seed", "x", "'split.seed' must be an integer"),
    ("split.validation", KeyError, "'split.validation' is missing"),
    ("rules.0.column", "nope", "rules[0]: column 'nope' is not a target or feature column"),
    ("rules.0.column", "id", "rules[0]: column 'id' is not a target or feature column"),
    ("rules.0.min", 20, "rules[0]: min 20 is greater than max 10 for 'carat'"),
    ("rules.1", {"column": "shop", "min": 1}, "min/max apply to numeric columns, 'shop' is categorical"),
    ("rules.0", {"column": "carat", "allowed": ["1"]}, "'allowed' applies to categorical or ordinal columns"),
    ("rules.0", {"column": "carat"}, "sets none of min, max, allowed"),
    ("rules.0", {"column": "carat", "minimum": 1}, "unknown key(s) ['minimum']"),
    ("extra", 1, "unknown key(s) ['extra']"),
])
def test_config_errors_name_the_problem(path, value, message):
    with pytest.raises(DatasetConfigError) as caught:
        parse_config(with_change(path, value), source="cfg.yaml")
    assert message in str(caught.value)
    assert "cfg.yaml" in str(caught.value)


def test_no_features_is_an_error():
    raw = {"target": "y", "split": BASE["split"]}
    with pytest.raises(DatasetConfigError, match="no feature columns"):
        parse_config(raw)


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("target: [unclosed\n")
    with pytest.raises(DatasetConfigError, match="bad.yaml is not valid YAML"):
        load_config(path)


@pytest.mark.parametrize("header, message", [
    (["price", "carat", "depth", "cut", "shop"], "column(s) 'id' named in the dataset config"),
    (["price", "carat", "depth", "cut", "shop", "id", "colour"],
     "column(s) 'colour' of the data are not named"),
    (["price", "carat", "carat", "depth", "cut", "shop", "id"], "data header repeats column(s): carat"),
], ids=["config-column-missing-from-data", "data-column-not-in-config", "repeated-header"])
def test_header_check_names_the_column(header, message):
    with pytest.raises(DatasetConfigError) as caught:
        parse_config(BASE).check_header(header)
    assert message in str(caught.value)


def test_header_in_any_order_passes():
    parse_config(BASE).check_header(["id", "shop", "cut", "depth", "carat", "price"])
