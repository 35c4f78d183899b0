"""The Glue ETL job (src/glue_jobs/etl.py) on local Spark: outputs, quarantine, split, features."""
from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pyspark.sql import functions as F

from glue_jobs import etl
from training.dataset import DatasetConfigError
from training.features import FeatureSpec, iter_rows, read_csv_dir

from tests.glue_jobs.counting import count_rows

from .conftest import DATA, DATASET_CONFIG, ROOT, good_rows, read_json, small_config, write_lines

pytestmark = pytest.mark.spark

SMALL_HEADER = "id,a,o,c,y"


def csv_rows(directory: Path) -> list[dict[str, str]]:
    return list(iter_rows(directory))


def sorted_lines(directory: Path) -> list[str]:
    lines = []
    for path in sorted(directory.glob("*.csv")):
        lines += path.read_text(encoding="utf-8").splitlines()[1:]
    return sorted(lines)


# -- the shipped data -----------------------------------------------------------------------------

def test_diamonds_writes_every_output(diamonds_run):
    out, quality = diamonds_run
    for name in ("train", "validation", "test", "endpoint-test", "quarantine"):
        assert list((out / name).glob("part-*.csv")), name
    assert read_json(out / "data-quality.json") == quality
    assert len(list((out / "endpoint-test").glob("part-*.csv"))) == 1


def test_diamonds_conservation_and_counts(diamonds_run, diamonds_config):
    out, q = diamonds_run
    assert q["rows_in"] == 53_940
    assert q["rows_in"] == q["rows_out"] + q["quarantined"] + q["duplicates"]
    assert q["rows_out"] == sum(q["splits"].values())
    # 146 exact duplicates in the file, but one duplicated pair has z = 0: both copies are
    # quarantined (quarantine comes first), leaving 145 duplicates among valid rows.
    assert q["duplicates"] == 145
    assert q["quarantined"] == 20
    assert q["quarantined_by_reason"] == {"rule_min:x": 8, "rule_min:z": 12}
    # counted without the job, so the identity above does not hold by construction
    counted = count_rows(DATA, diamonds_config)
    assert (q["rows_in"], q["quarantined"], q["duplicates"]) == (
        counted["rows_in"], counted["quarantined"], counted["duplicates"])
    quarantine = csv_rows(out / "quarantine")
    assert len(quarantine) == 20
    assert all(r["quarantine_reason"].startswith("rule_min:") for r in quarantine)
    assert all(0.0 in (float(r["x"]), float(r["y"]), float(r["z"])) for r in quarantine)


def test_diamonds_split_fractions(diamonds_run):
    _, q = diamonds_run
    fractions = {k: v / q["rows_out"] for k, v in q["splits"].items()}
    assert fractions == pytest.approx({"train": 0.70, "validation": 0.15, "test": 0.15}, abs=0.01)


def test_diamonds_split_files_fit_the_training_reader(diamonds_run):
    out, q = diamonds_run
    spec = FeatureSpec.load(out / "features.json")
    assert spec.feature_names == ["carat", "depth", "table", "x", "y", "z", "cut", "color", "clarity"]
    assert spec.input_columns == ("carat", "cut", "color", "clarity", "depth", "table", "x", "y", "z")
    for name in etl.SPLITS:
        header, values = read_csv_dir(out / name)
        assert header == ["price"] + spec.feature_names
        assert values.shape == (q["splits"][name], 10)
        assert np.isfinite(values).all()
        assert values[:, 0].min() >= 326  # the target stays in dollars, not log-dollars
    endpoint = csv_rows(out / "endpoint-test")
    assert len(endpoint) == q["endpoint_test"] == 200
    assert list(endpoint[0]) == list(spec.input_columns) + ["price"]


def test_diamonds_statistics_come_from_the_training_split_only(diamonds_run):
    """Standardised with training statistics: exactly mean 0 / std 1 on train, not on the rest."""
    out, _ = diamonds_run
    spec = FeatureSpec.load(out / "features.json")
    _, train = read_csv_dir(out / "train")
    _, test = read_csv_dir(out / "test")
    numeric = train[:, 1:1 + len(spec.numeric)]
    np.testing.assert_allclose(numeric.mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(numeric.std(axis=0), 1.0, atol=1e-9)
    # the held-out split has its own mean: if it had been fitted on all rows, train would not be 0
    assert np.abs(test[:, 1:1 + len(spec.numeric)].mean(axis=0)).max() > 1e-4
    # and the spec's raw mean is the training rows' mean, recovered from the standardised values
    carat_mean, carat_std = spec.numeric[0][1:]
    assert (numeric[:, 0] * carat_std + carat_mean).mean() == pytest.approx(carat_mean, rel=1e-12)


def assert_parity(spark, data: Path, config, out: Path, test_rows_written: int) -> FeatureSpec:
    """PARITY: Spark expressions and FeatureSpec.transform give the same features for the test split
    of a run of the job (data -> out), and the written test split is that transform of its distinct
    records."""
    spec = FeatureSpec.load(out / "features.json")
    raw_columns = list(spec.input_columns) + [spec.target]
    header = etl.read_header(spark, str(data))
    checked = etl.check_rows(etl.read_raw(spark, str(data), header), config)
    test_rows = (checked.where(F.col(etl.SPLIT) == "test")
                 .select(*raw_columns, *etl.parsed_columns(config)))
    rows = etl.transform(test_rows, spec, keep=[F.col(c).alias("raw_" + c) for c in raw_columns]).collect()
    assert len(rows) >= test_rows_written > 0  # before de-duplication

    raw = [[r["raw_" + c] for c in spec.input_columns] for r in rows]
    spark_features = np.array([[r[name] for name in spec.feature_names] for r in rows])
    np.testing.assert_allclose(spark_features, spec.transform(raw), atol=1e-5)

    # the written test split is that transform of the distinct test records
    distinct = sorted({tuple(r["raw_" + c] for c in raw_columns) for r in rows})
    expected = np.column_stack([np.array([float(d[-1]) for d in distinct]),
                                spec.transform([list(d[:-1]) for d in distinct])]).astype(np.float32)
    _, written = read_csv_dir(out / "test")
    written = written.astype(np.float32)
    assert written.shape == expected.shape
    order = lambda m: m[np.lexsort(m.T[::-1])]  # noqa: E731 - rows sorted by every column
    np.testing.assert_allclose(order(written), order(expected), atol=1e-5)
    return spec


def test_diamonds_features_match_the_numpy_transform(spark, diamonds_run, diamonds_config):
    """PARITY on the shipped data: numeric and ordinal columns (its config has no categorical one)."""
    out, q = diamonds_run
    spec = assert_parity(spark, DATA, diamonds_config, out, q["splits"]["test"])
    assert spec.numeric and spec.ordinal


def test_one_hot_features_match_the_numpy_transform(spark, tmp_path):
    """PARITY with a categorical column (one-hot) and an ordinal one, and a test category that
    training never saw (all zeros on both sides)."""
    config = small_config(rules=[], categorical=["c", "u"])
    rows = [f"{line},{'new' if i % 9 == 0 else 'uv'[i % 2]}" for i, line in enumerate(good_rows(120))]
    data = write_lines(tmp_path / "categorical.csv", ["id,a,o,c,y,u"] + rows + rows[:5])
    q = etl.run_etl(spark, config, str(data), str(tmp_path / "out"))
    spec = assert_parity(spark, data, config, tmp_path / "out", q["splits"]["test"])
    assert dict(spec.categorical)["c"] == ("p", "q", "r") and spec.ordinal
    assert len([n for n in spec.feature_names if "=" in n]) >= 5


def test_endpoint_rows_are_raw_test_records(spark, diamonds_run):
    out, _ = diamonds_run
    spec = FeatureSpec.load(out / "features.json")
    endpoint = csv_rows(out / "endpoint-test")
    # raw strings, as the source spells them (e.g. "63.0", "Very Good"), usable by the numpy transform
    features = spec.transform([{c: r[c] for c in spec.input_columns} for r in endpoint])
    assert features.shape == (200, len(spec.feature_names))
    with DATA.open("rb") as fh:
        import gzip
        source = {tuple(row) for row in csv.reader(gzip.open(fh, "rt"))}
    order = ["carat", "cut", "color", "clarity", "depth", "table", "price", "x", "y", "z"]
    assert all(tuple(r[c] for c in order) in source for r in endpoint)


# -- quarantine -----------------------------------------------------------------------------------

BAD_ROWS = [
    # (id, line, expected reason)
    ("not_a_number", "b1,abc,lo,p,5", "not_a_number:a"),
    ("java_only_number", "b2,1.5d,lo,p,5", "not_a_number:a"),
    ("not_finite", "b3,inf,lo,p,5", "not_finite:a"),
    ("missing_numeric", "b4,,lo,p,5", "missing:a"),
    ("blank_categorical", "b5,1,lo,  ,5", "missing:c"),
    ("missing_target", "b6,1,lo,p,", "missing:y"),
    ("unknown_level", "b7,1,top,p,5", "unknown_level:o"),
    ("rule_min", "b8,-0.5,lo,p,5", "rule_min:a"),
    ("rule_max", "b9,10.5,lo,p,5", "rule_max:a"),
    ("rule_allowed", "b10,1,lo,zz,5", "rule_allowed:c"),
    ("too_few_fields", "b11,1,lo", "malformed_row"),
    ("too_many_fields", "b12,1,lo,p,5,6", "malformed_row"),
    ("log_target_zero", "b13,1,lo,p,0", "not_positive:y"),
    ("log_target_negative", "b14,1,lo,p,-3", "not_positive:y"),
    ("first_failure_wins", "b15,x,top,zz,-1", "not_a_number:a"),
    ("invalid_utf8", "b16,1,lo,p\udce9,5", "invalid_utf8:c"),  # a Latin-1 'é' in a UTF-8 file
    ("invalid_utf8_beyond_the_header", "b17,1,lo,p,5,\udcff", "invalid_utf8"),
]
GOOD = good_rows(40)
DUPLICATES = GOOD[:3]


@pytest.fixture(scope="module")
def small_run(spark, tmp_path_factory):
    base = tmp_path_factory.mktemp("small")
    lines = [SMALL_HEADER] + GOOD + [line for _, line, _ in BAD_ROWS] + DUPLICATES
    data = write_lines(base / "small.csv", lines)
    quality = etl.run_etl(spark, small_config(), str(data), str(base / "out"))
    return base / "out", quality


@pytest.mark.parametrize("row_id, line, reason", BAD_ROWS, ids=[case[0] for case in BAD_ROWS])
def test_bad_row_is_quarantined_with_its_reason(small_run, row_id, line, reason):
    out, _ = small_run
    by_id = {r["id"]: r for r in csv_rows(out / "quarantine")}
    row = by_id[line.split(",")[0]]
    assert row["quarantine_reason"] == reason
    line = as_spark_reads(line)
    if reason in ("malformed_row", "invalid_utf8"):
        assert row["_corrupt_record"] == line  # the whole line is kept
    else:
        assert [row[c] for c in SMALL_HEADER.split(",")] == [v if v.strip() else "" for v in line.split(",")]


def as_spark_reads(line: str) -> str:
    """The line as Spark decodes it: each undecodable byte becomes U+FFFD."""
    return line.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def test_small_run_loses_nothing(small_run):
    out, q = small_run
    assert q["rows_in"] == len(GOOD) + len(BAD_ROWS) + len(DUPLICATES)
    assert q["quarantined"] == len(BAD_ROWS) == len(csv_rows(out / "quarantine"))
    assert q["duplicates"] == len(DUPLICATES)
    assert q["rows_out"] == len(GOOD)
    assert q["rows_in"] == q["rows_out"] + q["quarantined"] + q["duplicates"]
    expected = {}
    for _, _, reason in BAD_ROWS:
        expected[reason] = expected.get(reason, 0) + 1
    assert q["quarantined_by_reason"] == expected
    assert q["invalid_utf8"] == 2
    assert q["warnings"] == []
    assert sum(read_csv_dir(out / s)[1].shape[0] for s in etl.SPLITS) == len(GOOD)


def test_one_hot_over_training_categories(small_run, spark, tmp_path):
    out, q = small_run
    spec = FeatureSpec.load(out / "features.json")
    assert spec.categorical == (("c", ("p", "q", "r")),)
    assert spec.feature_names == ["a", "o", "c=p", "c=q", "c=r"]
    header, train = read_csv_dir(out / "train")
    assert header == ["y"] + spec.feature_names
    np.testing.assert_array_equal(train[:, 3:].sum(axis=1), 1.0)
    assert set(np.unique(train[:, 2])) <= {0.0, 0.5, 1.0}  # ordinal lo/mid/hi
    # a category never seen in training is all zeros in the numpy transform
    unseen = spec.transform([{"id": "n", "a": "1", "o": "hi", "c": "zz"}])
    np.testing.assert_array_equal(unseen[0, 2:], [0.0, 0.0, 0.0])
    assert unseen[0, 1] == 1.0


def test_wide_categorical_column_is_reported_in_data_quality(spark, tmp_path, monkeypatch):
    monkeypatch.setattr(etl, "CATEGORIES_WARN", 2)  # column c has 3 categories
    data = write_lines(tmp_path / "in.csv", [SMALL_HEADER] + good_rows(30))
    quality = etl.run_etl(spark, small_config(), str(data), str(tmp_path / "out"), endpoint_rows=0)
    assert len(quality["warnings"]) == 1
    assert "categorical column 'c' has 3 distinct values" in quality["warnings"][0]
    assert read_json(tmp_path / "out" / "data-quality.json")["warnings"] == quality["warnings"]
    monkeypatch.setattr(etl, "CATEGORIES_LIMIT", 2)
    with pytest.raises(DatasetConfigError, match="column 'c' has 3 distinct values"):
        etl.run_etl(spark, small_config(), str(data), str(tmp_path / "refused"), endpoint_rows=0)
    assert not (tmp_path / "refused" / "train").exists()


def test_category_absent_from_training_is_all_zeros_in_spark(spark, tmp_path):
    """A categorical column with one value per row: test rows carry categories training never saw."""
    config = small_config(rules=[], categorical=["c", "u"])
    lines = ["id,a,o,c,y,u"] + [f"{line},u{i}" for i, line in enumerate(good_rows(30))]
    data = write_lines(tmp_path / "unique.csv", lines)
    q = etl.run_etl(spark, config, str(data), str(tmp_path / "out"))
    spec = FeatureSpec.load(tmp_path / "out" / "features.json")
    seen = dict(spec.categorical)["u"]
    assert len(seen) == q["splits"]["train"]
    header, test = read_csv_dir(tmp_path / "out" / "test")
    u_columns = [i for i, name in enumerate(header) if name.startswith("u=")]
    assert len(u_columns) == len(seen) and test.shape[0] == q["splits"]["test"] > 0
    np.testing.assert_array_equal(test[:, u_columns], 0.0)
    _, train = read_csv_dir(tmp_path / "out" / "train")
    np.testing.assert_array_equal(train[:, u_columns].sum(axis=1), 1.0)


# -- the split ------------------------------------------------------------------------------------

@pytest.mark.parametrize("partitions", [1, 7], ids=["one-partition", "seven-partitions"])
def test_split_ignores_partitioning(spark, diamonds_config, partitions):
    header = etl.read_header(spark, str(DATA))
    raw = etl.read_raw(spark, str(DATA), header)
    reference = etl.deduplicate(etl.check_rows(raw, diamonds_config), diamonds_config)
    shuffled = etl.deduplicate(etl.check_rows(raw.repartition(partitions), diamonds_config),
                               diamonds_config)
    keys = etl.key_columns(diamonds_config)
    as_set = lambda df: set(map(tuple, df.select(*keys, etl.SPLIT).collect()))  # noqa: E731
    first = as_set(shuffled)
    assert len(first) == 53_940 - 20 - 145
    assert first == as_set(reference)


def test_the_seed_chooses_the_split(spark):
    """Same seed, same split; another seed, another split (with the same fractions)."""
    raw = spark.createDataFrame([line.split(",") for line in good_rows(400)], SMALL_HEADER.split(","))
    raw = raw.withColumn(etl.CORRUPT, F.lit(None).cast("string"))

    def splits(seed: int) -> dict[str, str]:
        config = small_config(split={"train": 0.6, "validation": 0.2, "test": 0.2, "seed": seed})
        rows = etl.check_rows(raw, config).select("id", etl.SPLIT).collect()
        return {r["id"]: r[etl.SPLIT] for r in rows}

    first, again, other = splits(7), splits(7), splits(8)
    assert first == again and len(first) == 400
    moved = sum(first[k] != other[k] for k in first)
    assert moved > 100  # two independent 60/20/20 draws differ on about half the rows
    assert sorted(set(other.values())) == ["test", "train", "validation"]


def test_two_runs_write_the_same_data(spark, tmp_path):
    data = write_lines(tmp_path / "in.csv", [SMALL_HEADER] + good_rows(60))
    outs = [tmp_path / "run1", tmp_path / "run2"]
    qualities = [etl.run_etl(spark, small_config(), str(data), str(o), endpoint_rows=5) for o in outs]
    assert qualities[0] == qualities[1]
    for name in etl.SPLITS:
        assert sorted_lines(outs[0] / name) == sorted_lines(outs[1] / name)
        assert sorted_lines(outs[0] / name)  # not vacuously equal
    endpoint = [(o / "endpoint-test").joinpath(next((o / "endpoint-test").glob("*.csv")).name)
                .read_text() for o in outs]
    assert endpoint[0] == endpoint[1] and len(endpoint[0].splitlines()) == 6
    assert (outs[0] / "features.json").read_text() == (outs[1] / "features.json").read_text()


def respelled(line: str, zeros: int) -> str:
    """The same record with `zeros` trailing zeros on its numeric value a ("3.7" -> "3.700")."""
    fields = line.split(",")
    fields[1] += ("" if "." in fields[1] else ".") + "0" * zeros
    return ",".join(fields)


@pytest.mark.parametrize("rows", [0, 1, 3, 8], ids=["none", "one", "three", "every-test-record"])
def test_endpoint_rows_ignore_duplicates_and_take_the_smallest_spelling(spark, tmp_path, rows):
    """Each record four times more, spelled longer: the same records, in the same order, as the
    source spells them first (many copies per record, so the first rows in order hold fewer records)."""
    good = good_rows(40)
    plain = write_lines(tmp_path / "plain.csv", [SMALL_HEADER] + good)
    copies = [respelled(line, zeros) for line in good for zeros in (3, 2, 1, 4)]
    noisy = write_lines(tmp_path / "noisy.csv", [SMALL_HEADER] + copies + good)
    outs = {}
    for name, data in (("plain", plain), ("noisy", noisy)):
        quality = etl.run_etl(spark, small_config(), str(data), str(tmp_path / name), endpoint_rows=rows)
        outs[name] = csv_rows(tmp_path / name / "endpoint-test")
        assert quality["endpoint_test"] == len(outs[name]) == min(rows, quality["splits"]["test"])
    assert outs["noisy"] == outs["plain"]
    assert len({r["id"] for r in outs["plain"]}) == len(outs["plain"])


def test_split_bounds_follow_the_fractions(diamonds_config):
    assert etl.split_bounds(diamonds_config) == (7000, 8500)


# -- config and schema errors ---------------------------------------------------------------------

@pytest.mark.parametrize("overrides, header, column", [
    ({"numeric": ["a", "w"]}, SMALL_HEADER, "'w'"),
    ({}, SMALL_HEADER + ",extra", "'extra'"),
    ({}, "id,a,o,a,y", "a"),
], ids=["config-column-not-in-csv", "csv-column-not-in-config", "repeated-header-column"])
def test_schema_errors_name_the_column(spark, tmp_path, overrides, header, column):
    values = ",".join(["1"] * len(header.split(",")))
    data = write_lines(tmp_path / "in.csv", [header, values])
    with pytest.raises(DatasetConfigError, match=column):
        etl.run_etl(spark, small_config(**overrides), str(data), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def run_script(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK")}
    return subprocess.run([sys.executable, str(ROOT / "src" / "glue_jobs" / "etl.py"), *args],
                          capture_output=True, text=True, timeout=180, env=env, cwd=ROOT)


def test_script_fails_with_the_column_named(tmp_path):
    data = write_lines(tmp_path / "in.csv", ["carat,cut,colour", "1,Good,H"])
    result = run_script("--JOB_NAME", "t", "--input", data.as_uri(), "--dataset-config",
                        DATASET_CONFIG.as_uri(), "--output", (tmp_path / "out").as_uri())
    assert result.returncode != 0
    assert "DatasetConfigError" in result.stderr and "'color'" in result.stderr
    assert not (tmp_path / "out").exists()


def test_script_succeeds_with_file_uris(tmp_path):
    data = write_lines(tmp_path / "in.csv", [SMALL_HEADER] + good_rows(30) + ["x1,zz,lo,p,1"])
    config = tmp_path / "config.yaml"
    config.write_text(
        "target: y\nnumeric: [a]\nordinal: {o: [lo, mid, hi]}\ncategorical: [c]\ndrop: [id]\n"
        "split: {train: 0.6, validation: 0.2, test: 0.2, seed: 1}\ntarget_transform: log\n")
    out = tmp_path / "out"
    result = run_script("--JOB_NAME", "t", "--input", data.as_uri(), "--dataset-config",
                        config.as_uri(), "--output", out.as_uri(), "--endpoint-test-rows", "3",
                        "--TempDir", "ignored")
    assert result.returncode == 0, result.stderr[-3000:]
    q = read_json(out / "data-quality.json")
    assert (q["rows_in"], q["rows_out"], q["quarantined"], q["endpoint_test"]) == (31, 30, 1, 3)
    assert q["quarantined_by_reason"] == {"not_a_number:a": 1}
    assert "t: rows_in=31 rows_out=30 quarantined=1" in result.stdout
    assert FeatureSpec.load(out / "features.json").feature_names[:2] == ["a", "o"]
    assert len(csv_rows(out / "endpoint-test")) == 3


# -- arguments and small files ----------------------------------------------------------------------

def test_parse_args_like_glue():
    args = etl.parse_args(["etl.py", "--JOB_NAME", "j", "--input", "s3://b/raw/d.csv",
                           "--dataset-config", "s3://b/raw/d.yaml", "--output", "s3://b/runs/1/etl",
                           "--job-bookmark-option", "job-bookmark-disable", "--TempDir", "s3://t/"])
    assert args == etl.JobArgs("j", "s3://b/raw/d.csv", "s3://b/raw/d.yaml", "s3://b/runs/1/etl", 200)
    assert etl.parse_args(["etl.py", "--input", "i", "--dataset-config", "c", "--output", "o",
                           "--endpoint-test-rows", "7"]).endpoint_test_rows == 7
    with pytest.raises(DatasetConfigError, match="endpoint-test-rows"):
        etl.parse_args(["etl.py", "--input", "i", "--dataset-config", "c", "--output", "o",
                        "--endpoint-test-rows", "many"])


class RecordingS3:
    def __init__(self):
        self.calls = []

    def put_object(self, **kwargs):
        self.calls.append(kwargs)


@pytest.mark.parametrize("uri_of", [str, lambda p: p.as_uri()], ids=["path", "file-uri"])
def test_write_text_locally_creates_folders(tmp_path, uri_of):
    target = tmp_path / "a" / "b" / "f.json"
    etl.write_text(uri_of(target), "{}\n")
    assert target.read_text() == "{}\n"


def test_write_text_to_s3_puts_the_object():
    s3 = RecordingS3()
    etl.write_text("s3://bucket/runs/1/etl/features.json", "{}", s3_client=s3)
    assert s3.calls == [{"Bucket": "bucket", "Key": "runs/1/etl/features.json", "Body": b"{}",
                         "ContentType": "application/json"}]


@pytest.mark.parametrize("as_uri", [True, False], ids=["file-uri", "path"])
def test_config_is_read_before_spark_starts(as_uri):
    config = etl.load_dataset_config(DATASET_CONFIG.as_uri() if as_uri else str(DATASET_CONFIG))
    assert config.target == "price" and config.split.seed == 42


def test_config_on_s3_is_read_with_get_object():
    class S3:
        def get_object(self, **kwargs):
            assert kwargs == {"Bucket": "bucket", "Key": "config/dataset.yaml"}
            return {"Body": io.BytesIO(DATASET_CONFIG.read_bytes())}

    assert etl.load_dataset_config("s3://bucket/config/dataset.yaml", s3_client=S3()).target == "price"


@pytest.mark.parametrize("content, says", [
    (None, "cannot read"), (b"  \n", "is empty"), (b"\xff\xfe x", "not UTF-8"), (b"a: [", "not valid YAML")])
def test_an_unreadable_config_is_a_clear_error(tmp_path, content, says):
    path = tmp_path / "dataset.yaml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DatasetConfigError, match=says):
        etl.load_dataset_config(str(path))
