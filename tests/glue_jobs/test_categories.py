"""The ETL's guard on one-hot width (glue_jobs.etl.check_cardinality): pure functions, no Spark."""
from __future__ import annotations

import logging

import pytest

from glue_jobs import etl
from training.dataset import DatasetConfigError
from training.features import FeatureSpec

NUMBERS = [str(100 + i) for i in range(etl.CATEGORIES_LIMIT + 1)]
WORDS = [f"shop-{i}" for i in range(etl.CATEGORIES_LIMIT + 1)]


@pytest.mark.parametrize("categories, expected", [
    pytest.param(WORDS[:3], None, id="few"),
    pytest.param(WORDS[:etl.CATEGORIES_WARN], None, id="at-the-warning-level"),
    pytest.param(WORDS[:etl.CATEGORIES_WARN + 1],
                 f"categorical column 'c' has {etl.CATEGORIES_WARN + 1} distinct values in the training split, "
                 f"so {etl.CATEGORIES_WARN + 1} one-hot features (more than {etl.CATEGORIES_WARN};",
                 id="above-the-warning-level"),
    pytest.param(NUMBERS[:etl.CATEGORIES_LIMIT], "all its values are numbers: list it under 'numeric'",
                 id="numeric-looking-at-the-limit"),
])
def test_warning(categories: list[str], expected: str | None) -> None:
    warning = etl.check_cardinality("c", categories, "cfg.yaml")
    if expected is None:
        assert warning is None
    else:
        assert warning is not None and expected in warning
        assert f"the limit is {etl.CATEGORIES_LIMIT}" in warning
        assert ("are numbers" in warning) == (categories[0] == NUMBERS[0])


@pytest.mark.parametrize("categories, numeric_hint", [
    pytest.param(NUMBERS, True, id="numeric-looking"),
    pytest.param(WORDS, False, id="words"),
])
def test_refused_above_the_limit(categories: list[str], numeric_hint: bool) -> None:
    with pytest.raises(DatasetConfigError) as caught:
        etl.check_cardinality("zip", categories, "cfg.yaml")
    message = str(caught.value)
    assert f"categorical column 'zip' has {etl.CATEGORIES_LIMIT + 1} distinct values" in message
    assert f"over the limit of {etl.CATEGORIES_LIMIT} (cfg.yaml)" in message
    assert ("list it under 'numeric'" in message) == numeric_hint


def test_category_warnings_cover_every_categorical_column(caplog: pytest.LogCaptureFixture) -> None:
    spec = FeatureSpec(target="y", target_transform="none", input_columns=("a", "b", "c"), numeric=(),
                       ordinal=(), categorical=(("a", tuple(WORDS[:3])), ("b", tuple(NUMBERS[:60])),
                                                ("c", tuple(WORDS[:51]))))
    with caplog.at_level(logging.WARNING, logger="glue_jobs.etl"):
        warnings = etl.category_warnings(spec, "cfg.yaml")
    assert [w.split("'")[1] for w in warnings] == ["b", "c"]
    assert [r.getMessage() for r in caplog.records] == warnings
    too_wide = FeatureSpec(**{**spec.__dict__, "categorical": (("a", tuple(WORDS)),)})
    with pytest.raises(DatasetConfigError, match="column 'a' has 1001 distinct"):
        etl.category_warnings(too_wide, "cfg.yaml")
