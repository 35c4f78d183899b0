"""Synthetic rows: same schema as the source, deterministic per seed, and labelled synthetic."""
from __future__ import annotations

import csv
import json

import pytest

from mlops_local.cli import main
from training.dataset import load_config

from tests.conftest import DATA, DATASET_CONFIG


def read(path):
    with path.open(newline="") as fh:
        return list(csv.reader(fh))


def test_rows_have_the_source_schema_and_label(tmp_path):
    out = tmp_path / "synthetic.csv"
    assert main(["synthetic", "--rows", "500", "--out", str(out), "--seed", "3"]) == 0
    rows = read(out)
    config = load_config(DATASET_CONFIG)
    config.check_header(rows[0])
    assert len(rows) == 501
    header = rows[0]
    for row in rows[1:]:
        record = dict(zip(header, row))
        assert record["cut"] in config.ordinal["cut"]
        assert float(record["carat"]) >= 0 and float(record["price"]) > 0
        assert record["price"].isdigit()  # the source's precision: whole dollars
    label = json.loads((tmp_path / "synthetic.csv.synthetic.json").read_text())
    assert label["synthetic"] is True and label["rows"] == 500 and label["seed"] == 3


def test_same_seed_same_rows(tmp_path):
    for name in ("a.csv", "b.csv"):
        main(["synthetic", "--rows", "50", "--out", str(tmp_path / name), "--seed", "1"])
    main(["synthetic", "--rows", "50", "--out", str(tmp_path / "c.csv"), "--seed", "2"])
    assert read(tmp_path / "a.csv") == read(tmp_path / "b.csv")
    assert read(tmp_path / "a.csv") != read(tmp_path / "c.csv")


def test_gzip_output(tmp_path):
    import gzip

    out = tmp_path / "s.csv.gz"
    main(["synthetic", "--rows", "10", "--out", str(out), "--data", str(DATA)])
    assert gzip.open(out, "rt").read().count("\n") == 11


def test_zero_rows_is_an_error(tmp_path):
    from mlops_local.synthetic import write_synthetic

    with pytest.raises(ValueError, match="rows must be >= 1"):
        write_synthetic(DATA, DATASET_CONFIG, tmp_path / "x.csv", 0)
