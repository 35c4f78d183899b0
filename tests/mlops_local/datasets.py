"""Small data sets of other shapes, each with its own dataset config, made on the fly (samples of
the shipped data come from mlops_local.synthetic.write_sample)."""
from __future__ import annotations

import csv
import random
from pathlib import Path


def write_houses(folder: Path, rows: int = 1500) -> tuple[Path, Path]:
    """Rents with a numeric, a one-hot, an ordinal and a dropped column, plus one unparseable row."""
    rng = random.Random(5)
    data = folder / "houses.csv"
    with data.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["listing", "area_m2", "city", "condition", "rooms", "rent"])
        for i in range(rows):
            area, rooms = rng.uniform(20, 200), rng.randint(1, 6)
            city, condition = rng.choice("abc"), rng.choice(["poor", "fair", "good"])
            rent = 10 * area + 50 * rooms + {"a": 0, "b": 300, "c": 600}[city] \
                + {"poor": 0, "fair": 100, "good": 250}[condition] + rng.gauss(0, 40)
            writer.writerow([f"L{i}", f"{area:.1f}", city, condition, rooms, f"{rent:.0f}"])
        writer.writerow(["L-bad", "n/a", "a", "good", 2, "900"])  # quarantined, not lost
    config = folder / "houses.yaml"
    config.write_text(
        "target: rent\nnumeric: [area_m2, rooms]\ncategorical: [city]\n"
        "ordinal: {condition: [poor, fair, good]}\ndrop: [listing]\n"
        "split: {train: 0.7, validation: 0.15, test: 0.15, seed: 1}\nquality_threshold: 400\n")
    return data, config
