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


def test_sample_keeps_every_nth_row_and_the_rows_the_rules_quarantine(tmp_path):
    from mlops_local.synthetic import write_sample

    rows = read(write_sample(DATA, DATASET_CONFIG, tmp_path / "s.csv", every=100, duplicate_every=700))
    header, body = rows[0], rows[1:]
    config = load_config(DATASET_CONFIG)
    config.check_header(header)
    sizes = [header.index(c) for c in ("x", "y", "z")]
    zero_size = [r for r in body if any(float(r[i]) == 0 for i in sizes)]
    assert len(zero_size) == 20  # every row of the source the rules quarantine
    # rows 0, 700, 1400, ... written twice, plus the source's own repeated zero-size pair
    assert len(body) - len({tuple(r) for r in body}) == len(range(0, 53_940, 700)) + 1
    with pytest.raises(ValueError, match="every must be >= 1"):
        write_sample(DATA, DATASET_CONFIG, tmp_path / "x.csv", every=0)
