"""The ETL job's transform in single-process pandas: the baseline bench_etl measures Spark against.

What a Glue Python-shell job (and the original sample) does: one process, the whole file in memory.
Same work as src/glue_jobs/etl.py: parse every column as text, quarantine by the same checks in the
same order (first failure wins), de-duplicate on the parsed values, split by a seeded hash of the
record, fit the FeatureSpec on the training split, transform, and write the same outputs (train/,
validation/, test/, endpoint-test/, quarantine/, features.json, data-quality.json).

Not bit-identical, on purpose where matching Spark would cost more than the job itself:
- the split hash is pandas' (SipHash over the parsed values with a seed-derived key), not Spark's
  xxhash64, so the same record may land in another split; the fractions are the same;
- pandas' C parser pads a line with too few fields with empty strings, so such a line is quarantined
  under its first missing column rather than as malformed_row (a line with too many fields is
  malformed_row, as in Spark);
- Java-only number spellings ("1.5d", "0x1p3") are not_a_number because pandas' parser rejects them
  itself, so the job's extra regex is not needed.
rows_in, rows_out, quarantined and duplicates match the Spark job (bench_etl checks this).

    python -m bench.etl_pandas --input X.csv --dataset-config data/diamonds.yaml --output DIR
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from training.dataset import DatasetConfig, load_config
from training.features import FeatureSpec, safe_std

SPLITS = ("train", "validation", "test")
BUCKETS = 10_000  # as etl.BUCKETS
WHITESPACE = " \t\n\r\f\v"  # as etl.WHITESPACE
NON_FINITE = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}
MALFORMED = "malformed_row"
SKIPPED_LINE = re.compile(r"Skipping line (\d+)")


def read_raw(path: Path) -> tuple[pd.DataFrame, list[str], pd.Series]:
    """Every column as text (missing -> null, as Spark's CSV reader), the header, and the whole line
    of each malformed row (null elsewhere), appended at the end of the frame."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""],
                            on_bad_lines="warn", engine="c")
    header = list(frame.columns)
    bad = sorted(int(m.group(1)) for w in caught for m in [SKIPPED_LINE.search(str(w.message))] if m)
    corrupt = pd.Series(pd.NA, index=frame.index, dtype=object)
    if bad:
        wanted, lines = set(bad), []
        with open(path, encoding="utf-8", newline="") as fh:
            for number, line in enumerate(fh, start=1):
                if number in wanted:
                    lines.append(line.rstrip("\r\n"))
        extra = pd.DataFrame({c: pd.Series([pd.NA] * len(lines), dtype=str) for c in header})
        frame = pd.concat([frame, extra], ignore_index=True)
        corrupt = pd.concat([corrupt, pd.Series(lines, dtype=object)], ignore_index=True)
    return frame, header, corrupt


def parse(raw: pd.DataFrame, config: DatasetConfig) -> tuple[dict[str, pd.Series], dict[str, pd.Series]]:
    """Parsed values (doubles for numeric columns, trimmed text otherwise) and, for numeric
    columns, whether the text spells a non-finite number."""
    parsed, special = {}, {}
    for column in (config.target,) + config.numeric:
        text = raw[column].str.strip(WHITESPACE)
        # +0.0 turns -0.0 into 0.0 so "-0" and "0" hash alike, as in the Spark job
        try:  # the fast path: every value parses
            values = text.astype("float64")
        except ValueError:
            values = pd.to_numeric(text, errors="coerce").astype("float64")
        parsed[column] = values + 0.0
        special[column] = text.str.lower().isin(NON_FINITE).fillna(False).to_numpy(bool)
    for column in tuple(config.ordinal) + config.categorical:
        parsed[column] = raw[column].str.strip(WHITESPACE)
    for column in config.drop:
        parsed[column] = raw[column]
    return parsed, special


def quarantine_reason(raw: pd.DataFrame, corrupt: pd.Series, parsed: dict[str, pd.Series],
                      special: dict[str, pd.Series], config: DatasetConfig) -> pd.Series:
    """The first failing check of each row, in the Spark job's order; null for a valid row."""
    reasons: list[str] = []
    code = np.zeros(len(raw), dtype=np.int16)

    def check(mask: Any, reason: str) -> None:
        hit = np.asarray(mask, dtype=bool) & (code == 0)
        reasons.append(reason)
        code[hit] = len(reasons)

    check(corrupt.notna().to_numpy(), MALFORMED)
    numeric = (config.target,) + config.numeric
    for column in numeric + tuple(config.ordinal) + config.categorical:
        value = parsed[column]
        if column in numeric:
            values = value.to_numpy()
            blank = raw[column].isna().to_numpy() | (raw[column].str.strip(WHITESPACE) == "").to_numpy(bool)
            unparsed = np.isnan(values) & ~special[column]
            check(unparsed & blank, f"missing:{column}")
            check(unparsed, f"not_a_number:{column}")
            check(~np.isfinite(values), f"not_finite:{column}")
        else:
            check((value.isna() | (value == "")).to_numpy(bool), f"missing:{column}")
            if column in config.ordinal:
                check(~value.isin(config.ordinal[column]).to_numpy(bool), f"unknown_level:{column}")
    if config.target_transform == "log":
        check((parsed[config.target] <= 0).to_numpy(bool), f"not_positive:{config.target}")
    for rule in config.rules:
        value = parsed[rule.column]
        if rule.min is not None:
            check((value < rule.min).fillna(False).to_numpy(bool), f"rule_min:{rule.column}")
        if rule.max is not None:
            check((value > rule.max).fillna(False).to_numpy(bool), f"rule_max:{rule.column}")
        if rule.allowed is not None:
            check(~value.isin(rule.allowed).to_numpy(bool), f"rule_allowed:{rule.column}")
    labels = np.array([None] + reasons, dtype=object)
    return pd.Series(labels[code], index=raw.index, dtype=object)


def key_columns(config: DatasetConfig) -> list[str]:
    return list((config.target,) + config.numeric + tuple(config.ordinal) + config.categorical + config.drop)


def split_of(keys: pd.DataFrame, config: DatasetConfig) -> tuple[np.ndarray, np.ndarray]:
    """A seeded hash of the parsed record, and the split its bucket falls in."""
    hashes = pd.util.hash_pandas_object(keys, index=False, hash_key=f"{config.split.seed:016d}"[-16:])
    hashes = hashes.to_numpy()
    bucket = hashes % BUCKETS
    train = round(config.split.train * BUCKETS)
    validation = round((config.split.train + config.split.validation) * BUCKETS)
    split = np.where(bucket < train, "train", np.where(bucket < validation, "validation", "test"))
    return hashes, split


def fit_features(train: pd.DataFrame, config: DatasetConfig, header: Sequence[str]) -> FeatureSpec:
    numeric = []
    for column in config.numeric:
        values = train[column].to_numpy()
        numeric.append((column, float(values.mean()), float(safe_std(float(values.std())))))
    return FeatureSpec(
        target=config.target, target_transform=config.target_transform,
        input_columns=tuple(c for c in header if c != config.target),
        numeric=tuple(numeric),
        ordinal=tuple((c, tuple(levels)) for c, levels in config.ordinal.items()),
        categorical=tuple((c, tuple(sorted(train[c].dropna().unique()))) for c in config.categorical),
    )


def transform(records: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """FeatureSpec.transform, vectorised: target in original units, then the features."""
    out = {spec.target: records[spec.target].to_numpy()}
    for column, mean, std in spec.numeric:
        out[column] = (records[column].to_numpy() - mean) / std
    for column, levels in spec.ordinal:
        out[column] = records[column].map({v: i / (len(levels) - 1) for i, v in enumerate(levels)}).to_numpy(float)
    for column, categories in spec.categorical:
        values = records[column].to_numpy(object)
        for category in categories:
            out[f"{column}={category}"] = (values == category).astype(np.float64)
    return pd.DataFrame(out, columns=[spec.target] + spec.feature_names)


def write_csv(frame: pd.DataFrame, directory: Path) -> None:
    """One CSV file per output folder, as the Spark job's part files (header, nulls empty).

    Through pyarrow's writer, not DataFrame.to_csv: to_csv formats every double in Python and took
    60% of the job at 2M rows; a baseline slowed by that would flatter Spark."""
    from pyarrow import Table, csv

    directory.mkdir(parents=True, exist_ok=True)
    table = Table.from_pandas(frame, preserve_index=False)
    # arrow quotes every string when "needed"; numbers-only outputs need no quotes at all
    numbers_only = all(pd.api.types.is_numeric_dtype(t) for t in frame.dtypes)
    csv.write_csv(table, directory / "part-00000.csv",
                  csv.WriteOptions(quoting_style="none" if numbers_only else "needed"))


def run_etl(config: DatasetConfig, input_path: Path, output: Path, endpoint_rows: int = 200) -> dict[str, Any]:
    """The whole job; returns data-quality.json's content (the Spark job's keys)."""
    raw, header, corrupt = read_raw(input_path)
    config.check_header(header)
    parsed, special = parse(raw, config)
    reason = quarantine_reason(raw, corrupt, parsed, special, config)
    bad = reason.notna().to_numpy()
    by_reason = reason[bad].value_counts().to_dict()

    quarantine = raw.loc[bad, header].assign(_corrupt_record=corrupt[bad], quarantine_reason=reason[bad])
    write_csv(quarantine, output / "quarantine")

    keys = key_columns(config)
    valid = pd.DataFrame({c: parsed[c][~bad] for c in keys}).reset_index(drop=True)
    raw_valid = raw.loc[~bad, header].reset_index(drop=True)
    del raw, parsed, special, quarantine
    valid["_hash"], valid["_split"] = split_of(valid[keys], config)
    first = ~valid.duplicated(subset=keys).to_numpy()
    deduped = valid[first]
    spec = fit_features(deduped[deduped["_split"] == "train"], config, header)
    splits = {}
    for name in SPLITS:
        part = deduped[deduped["_split"] == name]
        splits[name] = len(part)
        write_csv(transform(part, spec), output / name)

    # endpoint-test: the test records with the smallest hash, each in its smallest raw spelling
    chosen = deduped[deduped["_split"] == "test"].sort_values(["_hash"] + keys).head(endpoint_rows)
    raw_columns = list(spec.input_columns) + [spec.target]
    candidates = raw_valid[valid["_hash"].isin(chosen["_hash"]).to_numpy()]
    candidates = candidates.assign(**{"_k" + c: valid.loc[candidates.index, c] for c in keys + ["_hash"]})
    picked = (candidates.sort_values(raw_columns).drop_duplicates(["_k" + c for c in keys])
              .sort_values(["_k_hash"] + ["_k" + c for c in keys]))
    write_csv(picked[raw_columns], output / "endpoint-test")

    rows_in = len(reason)
    rows_out = sum(splits.values())
    quality = {
        "rows_in": rows_in, "rows_out": rows_out, "quarantined": int(bad.sum()),
        "duplicates": int(len(valid) - rows_out),
        "quarantined_by_reason": {k: int(v) for k, v in sorted(by_reason.items())},
        "splits": splits, "endpoint_test": len(picked),
    }
    (output / "features.json").write_text(json.dumps(spec.to_dict(), indent=2) + "\n")
    (output / "data-quality.json").write_text(json.dumps(quality, indent=2) + "\n")
    return quality


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.etl_pandas")
    parser.add_argument("--input", required=True, type=Path)
    parser.add_argument("--dataset-config", required=True, type=Path)
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--endpoint-test-rows", type=int, default=200)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    quality = run_etl(load_config(args.dataset_config), args.input, args.output, args.endpoint_test_rows)
    print(f"etl_pandas: rows_in={quality['rows_in']} rows_out={quality['rows_out']} "
          f"quarantined={quality['quarantined']} duplicates={quality['duplicates']} "
          f"in {time.perf_counter() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
