"""data/README.md's figures about the shipped data, held to the data (counted in plain Python)."""
from __future__ import annotations

import re

from training.dataset import load_config

from tests.conftest import DATA, DATASET_CONFIG, ROOT
from tests.glue_jobs.counting import count_rows


def figure(text: str, pattern: str) -> int:
    match = re.search(pattern, " ".join(text.split()))
    assert match, pattern
    return int(match.group(1).replace(",", ""))


def test_data_readme_figures_match_the_data():
    text = (ROOT / "data" / "README.md").read_text(encoding="utf-8")
    counted = count_rows(DATA, load_config(DATASET_CONFIG))
    assert figure(text, r"([\d,]+) round-cut diamonds") == counted["rows_in"] == 53_940
    assert figure(text, r"(\d+) rows with a 0 mm dimension") == counted["quarantined"]
    assert figure(text, r"(\d+) rows that repeat an earlier row exactly") == counted["exact_duplicates_in_file"]
    assert figure(text, r"counts (\d+) duplicates") == counted["duplicates"]
