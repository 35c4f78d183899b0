"""The ETL job: raw CSV -> quarantine, de-duplicated train/validation/test features, features.json.

Runs unchanged on AWS Glue 5.0 (Spark 3.5, Python 3.11) and on local Spark:

    python src/glue_jobs/etl.py --JOB_NAME etl --input data/diamonds.csv.gz \
        --dataset-config data/diamonds.yaml --output /tmp/etl [--endpoint-test-rows 200]

Outputs under --output (docs/ARCHITECTURE.md section 1):
    train/ validation/ test/   CSV: target (original units), then FeatureSpec.feature_names
    endpoint-test/             one CSV of raw test-split records (input_columns + target)
    quarantine/                CSV: the raw columns as read, _corrupt_record, quarantine_reason
    features.json              the fitted FeatureSpec (training split only)
    data-quality.json          rows_in/out, quarantined (by reason), duplicates, split sizes,
                               invalid_utf8 (rows with undecodable bytes, all quarantined), warnings

Everything is native Spark expressions (no Python UDFs) so the job scales with the cluster;
the numpy twin of the feature transform lives in training/features.py and a parity test holds
the two to the same numbers.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlparse

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from training.dataset import DatasetConfig, DatasetConfigError, parse_config
from training.features import FeatureSpec, safe_std

logger = logging.getLogger(__name__)

CORRUPT = "_corrupt_record"
REASON = "quarantine_reason"
HASH = "_row_hash"
SPLIT = "_split"
JAVA_SYNTAX = "_java_syntax"
HUGE_METHOD_LIMIT = 8000  # bytes of bytecode: HotSpot's -XX:-DontCompileHugeMethods threshold
PARSED_PREFIX = "_p_"
SPLITS = ("train", "validation", "test")
BUCKETS = 10_000
DEFAULT_ENDPOINT_TEST_ROWS = 200
# Python's float() strips all of these; Spark's trim() only strips spaces.
WHITESPACE = " \t\n\r\f\v"
# Java's parser (behind Spark's cast) also accepts "1.5d", "2f" and hex "0x1p3", which Python's
# float() -- the model server's parser -- rejects; a finite number spelled with these letters is
# quarantined so that training data only holds values serving can read too.
JAVA_ONLY_NUMBER = "[dDfFxX]"
# Spark decodes the input as UTF-8 and puts U+FFFD for each undecodable byte sequence; such a row is
# quarantined as invalid_utf8:<column> (invalid_utf8 for a malformed line), counted in
# data-quality.json, rather than trained on with a garbled value. (A file that spells U+FFFD
# itself, validly encoded, is indistinguishable and is quarantined too.)
REPLACEMENT_CHAR = "\ufffd"
# A categorical column is one-hot encoded over its training categories: one model input per
# category. Above WARN the job logs a warning (and data-quality.json lists it): often a numeric or
# identifier column declared categorical by mistake. Above LIMIT the job refuses: the model's
# input layer, features.json and every request's transform grow with it, and a column with that
# many distinct values is almost never a category.
CATEGORIES_WARN = 50
CATEGORIES_LIMIT = 1000


# -- arguments and I/O ----------------------------------------------------------------------------

@dataclass(frozen=True)
class JobArgs:
    job_name: str
    input: str
    dataset_config: str
    output: str
    endpoint_test_rows: int = DEFAULT_ENDPOINT_TEST_ROWS


def glue_available() -> bool:
    return importlib.util.find_spec("awsglue") is not None


def parse_args(argv: Sequence[str]) -> JobArgs:
    """Glue's resolver on Glue, argparse with the same names elsewhere (argv[0] is the script)."""
    argv = list(argv)
    if glue_available():
        from awsglue.utils import getResolvedOptions

        names = ["JOB_NAME", "input", "dataset-config", "output"]
        if "--endpoint-test-rows" in argv:  # getResolvedOptions has no optional arguments
            names.append("endpoint-test-rows")
        resolved = getResolvedOptions(argv, names)

        def get(name: str, default: Any = None) -> Any:  # argparse turns '-' into '_' in keys
            return resolved.get(name, resolved.get(name.replace("-", "_"), default))

        values = {"job_name": get("JOB_NAME"), "input": get("input"),
                  "dataset_config": get("dataset-config"), "output": get("output"),
                  "endpoint_test_rows": get("endpoint-test-rows", DEFAULT_ENDPOINT_TEST_ROWS)}
    else:
        parser = argparse.ArgumentParser(prog=Path(argv[0]).name if argv else "etl.py")
        parser.add_argument("--JOB_NAME", dest="job_name", default="etl-local")
        parser.add_argument("--input", required=True)
        parser.add_argument("--dataset-config", dest="dataset_config", required=True)
        parser.add_argument("--output", required=True)
        parser.add_argument("--endpoint-test-rows", dest="endpoint_test_rows",
                            default=DEFAULT_ENDPOINT_TEST_ROWS)
        # Glue adds arguments of its own (--TempDir, --job-bookmark-option, ...): ignore them.
        values = vars(parser.parse_known_args(argv[1:])[0])
    try:
        rows = int(values["endpoint_test_rows"])
    except (TypeError, ValueError):
        raise DatasetConfigError(
            f"--endpoint-test-rows must be an integer, got {values['endpoint_test_rows']!r}") from None
    if rows < 0:
        raise DatasetConfigError(f"--endpoint-test-rows must be >= 0, got {rows}")
    return JobArgs(job_name=values["job_name"], input=values["input"],
                   dataset_config=values["dataset_config"], output=values["output"],
                   endpoint_test_rows=rows)


def build_spark(app_name: str, driver_memory: str = "4g") -> SparkSession:
    """A local session sized for one machine (Glue builds its own through GlueContext)."""
    spark = (
        SparkSession.builder.master("local[*]")
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")  # progress bars garble job logs
        .config("spark.sql.shuffle.partitions", "8")   # the default 200 is for clusters
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", driver_memory)  # cache headroom; only read at JVM start
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    return spark


def _is_s3(uri: str) -> bool:
    return urlparse(uri).scheme in ("s3", "s3a", "s3n")


def _local_path(uri: str) -> Path:
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        # Taken literally, without percent-decoding, as Hadoop (so Spark) does: the JSON files land
        # beside the folders Spark writes.
        return Path(parsed.path)
    if parsed.scheme:
        raise ValueError(f"unsupported URI scheme {parsed.scheme!r} in {uri}; use a path, file:// or s3://")
    return Path(uri)


def join_uri(prefix: str, name: str) -> str:
    return prefix.rstrip("/") + "/" + name


def _s3_client() -> Any:
    import boto3  # lazily: local runs and tests never need it
    from botocore.config import Config

    return boto3.client("s3", config=Config(retries={"mode": "standard"}))


def read_text(uri: str, *, s3_client: Any = None) -> str:
    """A small file, before any Spark session exists: get_object on S3, a plain read locally, so a broken
    config fails in a second instead of after the JVM's start (~3-5 s). (Not faster when it is fine: the
    first Spark job's warm-up, which reading it through Spark paid, moves to the next job.)"""
    if _is_s3(uri):
        parsed = urlparse(uri)
        try:
            body = (s3_client or _s3_client()).get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))["Body"]
            data = body.read()
        except Exception as exc:  # botocore's ClientError without importing botocore here
            raise DatasetConfigError(f"cannot read {uri}: {exc}") from exc
    else:
        try:
            data = _local_path(uri).read_bytes()
        except OSError as exc:
            raise DatasetConfigError(f"cannot read {uri}: {exc.strerror or exc}") from exc
    if not data.strip():
        raise DatasetConfigError(f"{uri} is empty")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetConfigError(f"{uri} is not UTF-8 text: {exc}") from exc


def write_text(uri: str, text: str, *, s3_client: Any = None) -> None:
    """Write a small file: plain file write locally (creating folders), put_object on S3."""
    if _is_s3(uri):
        parsed = urlparse(uri)
        s3_client = s3_client or _s3_client()
        s3_client.put_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"),
                             Body=text.encode("utf-8"), ContentType="application/json")
        return
    path = _local_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def load_dataset_config(uri: str, *, s3_client: Any = None) -> DatasetConfig:
    import yaml

    text = read_text(uri, s3_client=s3_client)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DatasetConfigError(f"dataset config {uri} is not valid YAML: {exc}") from exc
    return parse_config(raw, source=uri)


def read_header(spark: SparkSession, uri: str) -> list[str]:
    """The column names from the data's first line (Spark's own header handling would rename
    repeated names, hiding the mistake check_header reports)."""
    first = spark.read.text(uri).first()
    if first is None or not first[0].strip():
        raise DatasetConfigError(f"input {uri} is empty: expected a CSV header line")
    return next(csv.reader([first[0].lstrip("\ufeff")]))


def read_raw(spark: SparkSession, uri: str, header: Sequence[str]) -> DataFrame:
    """Every column as a string, plus _corrupt_record for lines with the wrong number of fields."""
    reserved = [c for c in header if c in (CORRUPT, REASON, HASH, SPLIT, JAVA_SYNTAX)
                or c.startswith(PARSED_PREFIX)]
    if reserved:
        raise DatasetConfigError(f"data column(s) {reserved} use a name the ETL job reserves")
    schema = StructType([StructField(c, StringType()) for c in header]
                        + [StructField(CORRUPT, StringType())])
    return spark.read.csv(uri, schema=schema, header=True, enforceSchema=True, mode="PERMISSIVE",
                          columnNameOfCorruptRecord=CORRUPT)


# -- validation, split, de-duplication ------------------------------------------------------------

def parsed_name(column: str) -> str:
    return PARSED_PREFIX + column


def _text(column: str) -> Column:
    return F.btrim(F.col(column), F.lit(WHITESPACE))


def _number(column: str) -> Column:
    # +0.0 turns -0.0 into 0.0 so "-0" and "0" hash (and so split) alike.
    return F.col(column).cast("double") + F.lit(0.0)


def _numeric_columns(config: DatasetConfig) -> tuple[str, ...]:
    return (config.target,) + config.numeric


def parsed_columns(config: DatasetConfig) -> list[Column]:
    """Typed values of every known column, named _p_<column>: doubles for the target and numeric
    columns, trimmed text for ordinal and categorical ones, the raw string for drop columns."""
    exprs = [_number(c).alias(parsed_name(c)) for c in _numeric_columns(config)]
    exprs += [_text(c).alias(parsed_name(c)) for c in tuple(config.ordinal) + config.categorical]
    exprs += [F.col(c).alias(parsed_name(c)) for c in config.drop]
    return exprs


def key_columns(config: DatasetConfig) -> list[str]:
    """The parsed columns that identify a record: duplicates and the split are defined on them."""
    return [parsed_name(c) for c in _numeric_columns(config) + tuple(config.ordinal)
            + config.categorical + config.drop]


def quarantine_reason(config: DatasetConfig) -> Column:
    """The first failing check of a row, as 'check:column'; null for a valid row.

    Reads the parsed columns (see parse), so each value is cast or trimmed once per row.
    Order: undecodable bytes (invalid_utf8:column, then invalid_utf8 for a malformed line),
    unparseable line, then per column (target, then features in config order) missing /
    not_a_number / not_finite / unknown_level, then target <= 0 under a log transform, then the
    config's rules in their order."""
    checks: list[Column] = [F.when(F.col(c).contains(REPLACEMENT_CHAR), F.lit(f"invalid_utf8:{c}"))
                            for c in config.known_columns]
    checks.append(F.when(F.col(CORRUPT).contains(REPLACEMENT_CHAR), F.lit("invalid_utf8")))
    checks.append(F.when(F.col(CORRUPT).isNotNull(), F.lit("malformed_row")))
    numeric = _numeric_columns(config)
    for column in numeric + tuple(config.ordinal) + config.categorical:
        raw, value = F.col(column), F.col(parsed_name(column))
        if column in numeric:
            blank = raw.isNull() | (_text(column) == "")
            checks.append(F.when(value.isNull() & blank, F.lit(f"missing:{column}")))
            finite = ~F.isnan(value) & (F.abs(value) != F.lit(float("inf")))
            java_only = F.col(JAVA_SYNTAX) & raw.rlike(JAVA_ONLY_NUMBER) & finite
            checks.append(F.when(value.isNull() | java_only, F.lit(f"not_a_number:{column}")))
            checks.append(F.when(~finite, F.lit(f"not_finite:{column}")))
        else:
            checks.append(F.when(value.isNull() | (value == ""), F.lit(f"missing:{column}")))
            if column in config.ordinal:
                checks.append(F.when(~value.isin(*config.ordinal[column]),
                                     F.lit(f"unknown_level:{column}")))
    if config.target_transform == "log":
        checks.append(F.when(F.col(parsed_name(config.target)) <= 0,
                             F.lit(f"not_positive:{config.target}")))
    for rule in config.rules:
        value = F.col(parsed_name(rule.column))
        if rule.min is not None:
            checks.append(F.when(value < rule.min, F.lit(f"rule_min:{rule.column}")))
        if rule.max is not None:
            checks.append(F.when(value > rule.max, F.lit(f"rule_max:{rule.column}")))
        if rule.allowed is not None:
            checks.append(F.when(~value.isin(*rule.allowed), F.lit(f"rule_allowed:{rule.column}")))
    # coalesce stops at the first non-null: later checks may assume the earlier ones passed.
    return F.coalesce(*checks)


def split_bounds(config: DatasetConfig) -> tuple[int, int]:
    """Bucket thresholds: [0, train) -> train, [train, train+validation) -> validation, rest -> test."""
    train = round(config.split.train * BUCKETS)
    return train, round((config.split.train + config.split.validation) * BUCKETS)


def row_hash(config: DatasetConfig) -> Column:
    """A hash of the record's parsed values and the seed: the same record always lands in the same
    split, whatever the partitioning, and duplicates never straddle two splits."""
    return F.xxhash64(F.lit(config.split.seed), *[F.col(c) for c in key_columns(config)])


def split_of(hash_column: Column, config: DatasetConfig) -> Column:
    bucket = F.pmod(hash_column, F.lit(BUCKETS))
    train, validation = split_bounds(config)
    return (F.when(hash_column.isNull(), F.lit(None))
            .when(bucket < train, F.lit("train"))
            .when(bucket < validation, F.lit("validation"))
            .otherwise(F.lit("test")))


def parse(raw: DataFrame, config: DatasetConfig) -> DataFrame:
    """The raw columns plus the parsed ones (_p_<column>), computed once per row."""
    numeric_text = F.concat_ws("", *[F.col(c) for c in _numeric_columns(config)])
    # One regex per row over all numeric fields; the per-column check runs only when this hits.
    return raw.select("*", *parsed_columns(config), numeric_text.rlike(JAVA_ONLY_NUMBER).alias(JAVA_SYNTAX))


def check_rows(raw: DataFrame, config: DatasetConfig) -> DataFrame:
    """The raw columns, the parsed ones (_p_<column>), quarantine_reason, and for valid rows the
    row hash and split.

    Separate projections on purpose: Spark does not inline a costly expression into a consumer that
    reads it twice, so each value is parsed once and the reason and the hash computed once per row."""
    checked = parse(raw, config).withColumn(REASON, quarantine_reason(config))
    checked = checked.withColumn(HASH, F.when(F.col(REASON).isNull(), row_hash(config)))
    checked = checked.withColumn(SPLIT, split_of(F.col(HASH), config))
    return checked.select(*raw.columns, *key_columns(config), REASON, HASH, SPLIT)


def slim(checked: DataFrame, header: Sequence[str]) -> DataFrame:
    """The checked rows as the job caches them: raw strings only where an output reads them (the
    quarantine, and test rows for endpoint-test), null elsewhere, so the cache holds mostly doubles
    and de-duplication reads parsed values instead of casting and trimming every string again."""
    keep = F.col(REASON).isNotNull() | (F.col(SPLIT) == "test")
    raw = [F.when(keep, F.col(c)).alias(c) for c in header]
    return checked.select(*raw, *[c for c in checked.columns if c not in set(header)])


def quarantined(checked: DataFrame, header: Sequence[str]) -> DataFrame:
    # _corrupt_record keeps the whole line of a malformed row: never lose data.
    return checked.where(F.col(REASON).isNotNull()).select(*header, CORRUPT, REASON)


def deduplicate(checked: DataFrame, config: DatasetConfig) -> DataFrame:
    """Valid rows, typed, one per distinct record (the hash and split follow from the values)."""
    valid = checked.where(F.col(REASON).isNull())
    return valid.select(*key_columns(config), HASH, SPLIT).distinct()


# -- the feature transform ------------------------------------------------------------------------

def input_columns(header: Sequence[str], config: DatasetConfig) -> tuple[str, ...]:
    return tuple(c for c in header if c != config.target)


def fit_features(deduped: DataFrame, config: DatasetConfig, header: Sequence[str]
                 ) -> tuple[FeatureSpec, dict[str, int]]:
    """Fit the FeatureSpec on the training split in one aggregation, which also counts the splits."""
    train = F.col(SPLIT) == "train"
    aggs = [F.count(F.when(F.col(SPLIT) == s, True)).alias(f"n_{s}") for s in SPLITS]
    for column in config.numeric:
        value = F.when(train, F.col(parsed_name(column)))
        aggs += [F.avg(value).alias(f"mean_{column}"), F.stddev_pop(value).alias(f"std_{column}")]
    for column in config.categorical:
        aggs.append(F.collect_set(F.when(train, F.col(parsed_name(column)))).alias(f"cats_{column}"))
    first = deduped.agg(*aggs).first()
    assert first is not None  # an aggregation without groupBy has exactly one row
    row = first.asDict()
    counts = {s: int(row[f"n_{s}"]) for s in SPLITS}
    if counts["train"] == 0:
        raise DatasetConfigError(
            f"the training split is empty ({sum(counts.values())} valid rows after quarantine and "
            f"de-duplication); nothing to fit the features on")
    spec = FeatureSpec(
        target=config.target,
        target_transform=config.target_transform,
        input_columns=input_columns(header, config),
        numeric=tuple((c, float(row[f"mean_{c}"]), float(safe_std(row[f"std_{c}"])))
                      for c in config.numeric),
        ordinal=tuple((c, tuple(levels)) for c, levels in config.ordinal.items()),
        categorical=tuple((c, tuple(sorted(row[f"cats_{c}"]))) for c in config.categorical),
    )
    return spec, counts


def check_cardinality(column: str, categories: Sequence[str], source: str,
                      warn: int | None = None, limit: int | None = None) -> str | None:
    """A warning above `warn` (CATEGORIES_WARN) distinct training values, DatasetConfigError above
    `limit` (CATEGORIES_LIMIT), naming the column, its count and, when every value parses as a
    number, that it looks numeric."""
    warn = CATEGORIES_WARN if warn is None else warn
    limit = CATEGORIES_LIMIT if limit is None else limit
    count = len(categories)
    if count <= warn:
        return None
    hint = ""
    if all(_is_number(value) for value in categories):
        hint = "; all its values are numbers: list it under 'numeric' if it is a quantity"
    what = (f"categorical column '{column}' has {count} distinct values in the training split, so "
            f"{count} one-hot features")
    if count > limit:
        raise DatasetConfigError(f"{what}, over the limit of {limit} ({source}){hint}; "
                                 f"or list it under 'drop'")
    return f"{what} (more than {warn}; the limit is {limit}){hint}"


def category_warnings(spec: FeatureSpec, source: str) -> list[str]:
    """check_cardinality over every categorical column: warnings logged and returned; raises above
    the limit."""
    warnings = [w for column, categories in spec.categorical
                if (w := check_cardinality(column, categories, source))]
    for warning in warnings:
        logger.warning("%s", warning)
    return warnings


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def feature_expressions(spec: FeatureSpec) -> list[Column]:
    """FeatureSpec.transform as Spark column expressions over the parsed columns, in
    feature_names order (doubles)."""
    exprs = [((F.col(parsed_name(c)) - F.lit(mean)) / F.lit(std)) for c, mean, std in spec.numeric]
    for column, levels in spec.ordinal:
        value = F.col(parsed_name(column))
        expr = F.when(value == levels[0], F.lit(0.0))
        for i, level in enumerate(levels[1:], start=1):
            expr = expr.when(value == level, F.lit(i / (len(levels) - 1)))
        exprs.append(expr)
    for column, categories in spec.categorical:
        value = F.col(parsed_name(column))
        # an unseen category matches none of these: all zeros, as in the numpy transform
        exprs += [F.when(value == cat, F.lit(1.0)).otherwise(F.lit(0.0)) for cat in categories]
    return [e.cast("double").alias(name) for e, name in zip(exprs, spec.feature_names)]


def transform(parsed: DataFrame, spec: FeatureSpec, keep: Sequence[str | Column] = ()) -> DataFrame:
    """Target in original units, then the features; `keep` carries extra columns (e.g. a key)."""
    target = F.col(parsed_name(spec.target)).alias(spec.target)
    return parsed.select(*keep, target, *feature_expressions(spec))


def endpoint_test_rows(spark: SparkSession, checked: DataFrame, config: DatasetConfig,
                       spec: FeatureSpec, rows: int) -> DataFrame:
    """Up to `rows` raw test-split records, the ones with the smallest hash (deterministic), in
    (hash, record) order.

    Duplicates share a parsed record but may be spelled differently ("1.0" / "1.00"): each record's
    smallest spelling is taken. One top-k pass over the checked rows (no join, no shuffle): the first
    rows in (hash, record, spelling) order are collected, and each record's first row is its smallest
    spelling; if duplicates leave fewer than `rows` records among them, a larger k is taken."""
    keys = key_columns(config)
    raw_columns = list(spec.input_columns) + [spec.target]
    test = checked.where(F.col(SPLIT) == "test").select(HASH, *keys, *raw_columns)
    ordered = test.orderBy(HASH, *keys, *raw_columns)
    picked: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    k = rows
    while rows > 0:
        top = ordered.limit(k).collect()
        picked = {}
        for row in top:
            record = tuple(row[c] for c in (HASH, *keys))
            picked.setdefault(record, tuple(row[c] for c in raw_columns))
        if len(picked) >= rows or len(top) < k:
            break
        k *= 2
    schema = StructType([StructField(c, StringType()) for c in raw_columns])
    return spark.createDataFrame(list(picked.values())[:rows], schema).coalesce(1)


# -- the job --------------------------------------------------------------------------------------

def write_csv(frame: DataFrame, uri: str) -> None:
    frame.write.mode("overwrite").option("header", True).csv(uri)


def run_etl(spark: SparkSession, config: DatasetConfig, input_uri: str, output_uri: str,
            endpoint_rows: int = DEFAULT_ENDPOINT_TEST_ROWS) -> dict[str, Any]:
    """The whole job for a parsed config; returns data-quality.json's content."""
    # A config's checks make one wide expression; above HotSpot's 8000-byte limit a generated method
    # is never JIT-compiled and runs interpreted (3-5x slower). At this limit Spark falls back to
    # per-expression code, which it splits into small methods.
    spark.conf.set("spark.sql.codegen.hugeMethodLimit", str(HUGE_METHOD_LIMIT))
    # The two caches below are read a few times each, so encoding them costs more than it saves:
    # uncompressed, building and reading them took ~25% less CPU at 500k rows (more memory instead,
    # hence the 4g driver in build_spark).
    spark.conf.set("spark.sql.inMemoryColumnarStorage.compressed", "false")
    header = read_header(spark, input_uri)
    config.check_header(header)
    logger.info("reading %s (%d columns) with %s", input_uri, len(header), config.source)
    # Cached once, slim (see slim): every output below reads it, and Spark refuses queries on
    # _corrupt_record of an uncached CSV scan.
    checked = slim(check_rows(read_raw(spark, input_uri, header), config), header).cache()
    deduped = None
    try:
        by_reason = {r[REASON]: r["count"] for r in checked.groupBy(REASON).count().collect()}
        rows_in = sum(by_reason.values())
        valid = by_reason.pop(None, 0)
        deduped = deduplicate(checked, config).cache()
        spec, splits = fit_features(deduped, config, header)
        warnings = category_warnings(spec, config.source)  # before any output is written
        rows_out = sum(splits.values())

        write_csv(quarantined(checked, header), join_uri(output_uri, "quarantine"))
        endpoint = endpoint_test_rows(spark, checked, config, spec, endpoint_rows)
        write_csv(endpoint, join_uri(output_uri, "endpoint-test"))
        # the endpoint rows are the first test rows by hash, so their number is known without a pass
        endpoint_count = min(endpoint_rows, splits["test"])
        checked.unpersist()  # the splits only read the de-duplicated rows: free the memory first
        for name in SPLITS:
            write_csv(transform(deduped.where(F.col(SPLIT) == name), spec),
                      join_uri(output_uri, name))
    finally:
        if deduped is not None:
            deduped.unpersist()
        checked.unpersist()

    quality = {
        "rows_in": rows_in,
        "rows_out": rows_out,
        "quarantined": sum(by_reason.values()),
        "duplicates": valid - rows_out,
        "quarantined_by_reason": dict(sorted(by_reason.items())),
        "invalid_utf8": sum(n for reason, n in by_reason.items() if reason.split(":")[0] == "invalid_utf8"),
        "splits": splits,
        "endpoint_test": endpoint_count,
        "warnings": warnings,
    }
    write_text(join_uri(output_uri, "features.json"), json.dumps(spec.to_dict(), indent=2) + "\n")
    write_text(join_uri(output_uri, "data-quality.json"), json.dumps(quality, indent=2) + "\n")
    return quality


def summary_line(job_name: str, quality: dict[str, Any], output: str) -> str:
    s = quality["splits"]
    return (f"{job_name}: rows_in={quality['rows_in']} rows_out={quality['rows_out']} "
            f"quarantined={quality['quarantined']} duplicates={quality['duplicates']} "
            f"train={s['train']} validation={s['validation']} test={s['test']} "
            f"endpoint_test={quality['endpoint_test']} -> {output}")


def start(args: JobArgs) -> tuple[SparkSession, Callable[[], None]]:
    """The session and the call that ends the run: Glue's job bookkeeping on Glue, nothing locally."""
    if glue_available():
        from awsglue.context import GlueContext
        from awsglue.job import Job
        from pyspark.context import SparkContext

        glue_context = GlueContext(SparkContext.getOrCreate())
        job = Job(glue_context)
        job.init(args.job_name, {"JOB_NAME": args.job_name})
        return glue_context.spark_session, job.commit
    return build_spark(args.job_name), lambda: None


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)  # one line per gateway call otherwise
    args = parse_args(sys.argv if argv is None else argv)
    logger.info("job %s: %s + %s -> %s", args.job_name, args.input, args.dataset_config, args.output)
    config = load_dataset_config(args.dataset_config)  # a broken config fails before the JVM starts
    spark, finish = start(args)
    logger.info("job %s: Spark session ready", args.job_name)  # bench/bench_etl.py times start-up by it
    quality = run_etl(spark, config, args.input, args.output, args.endpoint_test_rows)
    finish()
    print(summary_line(args.job_name, quality, args.output), flush=True)
    return quality


if __name__ == "__main__":
    main()
