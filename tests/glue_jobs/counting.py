"""The ETL's data-quality figures counted in plain Python, independently of the job (so a test of the
job's conservation identity does not hold by construction)."""
from __future__ import annotations

import csv
import gzip
from pathlib import Path

from training.dataset import DatasetConfig


def count_rows(path: Path, config: DatasetConfig) -> dict[str, int]:
    """rows_in, quarantined and duplicates counted in plain Python, independently of the job: a row is
    quarantined when it breaks one of the config's rules (the only checks rows of the shipped data
    fail), a duplicate when it repeats a valid row field for field."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = list(reader)
    index = {c: header.index(c) for c in header}

    def breaks_a_rule(row: list[str]) -> bool:
        for rule in config.rules:
            value = row[index[rule.column]]
            if rule.allowed is not None and value.strip() not in rule.allowed:
                return True
            if rule.min is not None and float(value) < rule.min or rule.max is not None and float(value) > rule.max:
                return True
        return False

    valid = [tuple(row) for row in rows if not breaks_a_rule(row)]
    return {"rows_in": len(rows), "quarantined": len(rows) - len(valid), "duplicates": len(valid) - len(set(valid)),
            "exact_duplicates_in_file": len(rows) - len({tuple(row) for row in rows})}
