"""SYNTHETIC rows shaped like a real data set, at any size, for scale benchmarks.

Rows are bootstrapped from the source data (so columns keep their joint relationships) and each
numeric value is jittered by a relative N(0, 1%) and rounded to the source's precision. The
output is synthetic: it is not the source data and must not be used to judge model quality. A
sidecar `<out>.synthetic.json` says so, with the source, method and seed.
"""
from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path
from typing import IO, Sequence, cast

import numpy as np

from training.dataset import load_config

CHUNK_ROWS = 200_000
JITTER = 0.01


def _open_text(path: Path, mode: str) -> IO[str]:
    if path.suffix == ".gz":
        # text mode ("rt"/"wt"); typeshed cannot tell from a computed mode
        return cast(IO[str], gzip.open(path, mode + "t", encoding="utf-8", newline=""))
    return path.open(mode, encoding="utf-8", newline="")


def write_synthetic(source: Path, config_path: Path, out: Path, rows: int, seed: int = 0) -> Path:
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    config = load_config(config_path)
    with _open_text(source, "r") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        config.check_header(header)
        records = [r for r in reader if len(r) == len(header)]
    numeric = {c for c in config.numeric + (config.target,)}
    columns = list(zip(*records))
    decimals = {c: _decimals(columns[i]) for i, c in enumerate(header) if c in numeric}
    values = {c: np.array([_float(v) for v in columns[i]]) for i, c in enumerate(header) if c in numeric}
    text = {c: np.array(columns[i], dtype=object) for i, c in enumerate(header) if c not in numeric}

    rng = np.random.default_rng(seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    with _open_text(out, "w") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        for start in range(0, rows, CHUNK_ROWS):
            n = min(CHUNK_ROWS, rows - start)
            pick = rng.integers(0, len(records), size=n)
            block: list[list[str] | np.ndarray] = []
            for c in header:
                if c in numeric:
                    jittered = values[c][pick] * rng.normal(1.0, JITTER, size=n)
                    block.append(_format(jittered, decimals[c]))
                else:
                    block.append(text[c][pick])
            writer.writerows(zip(*block))
    Path(f"{out}.synthetic.json").write_text(json.dumps({
        "synthetic": True, "rows": rows, "seed": seed, "source": str(source),
        "method": f"bootstrap rows of the source, numeric values x N(1, {JITTER}), source precision",
    }, indent=2) + "\n")
    return out


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def _decimals(texts: Sequence[str]) -> int:
    return max((len(t.split(".")[1]) for t in texts[:1000] if "." in t), default=0)


def _format(values: np.ndarray, decimals: int) -> list[str]:
    if decimals == 0:
        return [str(int(v)) if np.isfinite(v) else "" for v in np.round(values)]
    return [f"{v:.{decimals}f}" if np.isfinite(v) else "" for v in values]


def write_sample(source: Path, config_path: Path, out: Path, every: int,
                 duplicate_every: int | None = None) -> Path:
    """Every n-th row of the REAL source (not synthetic), plus every row that breaks one of the
    config's rules, so a small run still quarantines; with duplicate_every, some kept rows are written
    twice so that de-duplication has work to do. For fast end-to-end runs and smoke benchmarks."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    rules = load_config(config_path).rules
    with _open_text(source, "r") as src, _open_text(out, "w") as dst:
        reader, writer = csv.reader(src), csv.writer(dst)
        header = next(reader)
        writer.writerow(header)
        checks = [(header.index(rule.column), rule) for rule in rules]
        for i, row in enumerate(reader):
            breaks_a_rule = any(
                (rule.min is not None and _float(row[c]) < rule.min)
                or (rule.max is not None and _float(row[c]) > rule.max)
                or (rule.allowed is not None and row[c] not in rule.allowed) for c, rule in checks)
            if i % every == 0 or breaks_a_rule:
                writer.writerow(row)
                if duplicate_every and i % duplicate_every == 0:
                    writer.writerow(row)
    return out
