"""The numpy feature transform that training, evaluation and the model server share."""
from __future__ import annotations

import numpy as np
import pytest

from training.features import FeatureSpec, RecordError, read_csv_dir, safe_std

SPEC = FeatureSpec(
    target="price",
    target_transform="log",
    input_columns=("carat", "cut", "shop", "id"),
    numeric=(("carat", 1.0, 0.5),),
    ordinal=(("cut", ("Fair", "Good", "Ideal")),),
    categorical=(("shop", ("a", "b")),),
)


def test_feature_names_follow_the_documented_order():
    assert SPEC.feature_names == ["carat", "cut", "shop=a", "shop=b"]


@pytest.mark.parametrize("record, expected", [
    (["2.0", "Ideal", "b", "x1"], [2.0, 1.0, 0.0, 1.0]),
    ({"carat": 0.5, "cut": "Fair", "shop": "a"}, [-1.0, 0.0, 1.0, 0.0]),
    ([" 1.0 ", "Good", "zzz", ""], [0.0, 0.5, 0.0, 0.0]),
], ids=["list", "dict", "unseen-category-is-all-zeros"])
def test_transform(record, expected):
    np.testing.assert_allclose(SPEC.transform([record])[0], expected)


@pytest.mark.parametrize("record, message", [
    (["abc", "Good", "a", "1"], "row 0, column 'carat': expected a number, got 'abc'"),
    (["", "Good", "a", "1"], "row 0, column 'carat': missing value"),
    (["nan", "Good", "a", "1"], "row 0, column 'carat': expected a finite number"),
    (["1", "Great", "a", "1"], "row 0, column 'cut': unknown value 'Great'"),
    (["1", "Good", "a"], "row 0: expected 4 values (carat, cut, shop, id), got 3"),
    ({"cut": "Good", "shop": "a"}, "row 0, column 'carat': missing"),
    ([True, "Good", "a", "1"], "row 0, column 'carat': expected a number, got True"),
    ("1,Good,a,1", "row 0: a record must be a list or an object, got str"),
], ids=["not-a-number", "empty", "nan", "unknown-level", "short-row", "missing-key", "bool", "string"])
def test_bad_records_name_row_and_column(record, message):
    with pytest.raises(RecordError) as caught:
        SPEC.transform([record])
    assert str(caught.value).startswith(message)


def test_error_names_the_failing_row():
    with pytest.raises(RecordError) as caught:
        SPEC.transform([["1", "Good", "a", "1"], ["1", "Good", "a", "1"], ["x", "Good", "a", "1"]])
    assert caught.value.row == 2 and caught.value.column == "carat"


def test_target_round_trip():
    y = np.array([326.0, 18823.0])
    np.testing.assert_allclose(SPEC.encode_target(y), np.log(y))
    np.testing.assert_allclose(SPEC.decode_target(SPEC.encode_target(y)), y)


def test_save_and_load(tmp_path):
    SPEC.save(tmp_path / "features.json")
    loaded = FeatureSpec.load(tmp_path / "features.json")
    assert loaded == SPEC


def test_unknown_format_version_is_refused():
    data = SPEC.to_dict() | {"format_version": 99}
    with pytest.raises(ValueError, match="format_version 99"):
        FeatureSpec.from_dict(data)


@pytest.mark.parametrize("std, expected", [(2.0, 2.0), (0.0, 1.0), (None, 1.0), (float("nan"), 1.0)])
def test_safe_std(std, expected):
    assert safe_std(std) == expected


def test_read_csv_dir_reads_all_part_files(tmp_path):
    (tmp_path / "part-0.csv").write_text("price,carat\n1,2\n3,4\n")
    (tmp_path / "part-1.csv").write_text("price,carat\n5,6\n")
    (tmp_path / "part-2.csv").write_text("")  # Spark writes empty parts for empty partitions
    header, values = read_csv_dir(tmp_path)
    assert header == ["price", "carat"]
    np.testing.assert_array_equal(values, [[1, 2], [3, 4], [5, 6]])


def test_read_csv_dir_refuses_mixed_headers(tmp_path):
    (tmp_path / "a.csv").write_text("price,carat\n1,2\n")
    (tmp_path / "b.csv").write_text("price,cut\n1,2\n")
    with pytest.raises(ValueError, match="has header"):
        read_csv_dir(tmp_path)


def test_read_csv_dir_without_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no CSV files"):
        read_csv_dir(tmp_path)


def test_read_csv_dir_skips_header_only_parts(tmp_path, recwarn):
    (tmp_path / "part-0.csv").write_text("price,carat\n")
    (tmp_path / "part-1.csv").write_text("price,carat\n5,6\n")
    assert read_csv_dir(tmp_path)[1].tolist() == [[5, 6]]
    assert not recwarn.list


NARROW = FeatureSpec(target="price", target_transform="none", input_columns=("carat",),
                     numeric=(("carat", 0.0, 1e-30),), ordinal=(), categorical=())


@pytest.mark.parametrize("spec, value, refused", [
    pytest.param(SPEC, "3e38", True, id="beyond-float32-after-scaling"),
    pytest.param(SPEC, "-1e308", True, id="minus-1e308"),
    pytest.param(SPEC, "1e38", False, id="float32-after-scaling"),
    pytest.param(NARROW, "1e10", True, id="tiny-std-scales-past-float32"),
    pytest.param(NARROW, "1e-25", False, id="tiny-std-small-value"),
])
def test_values_beyond_float32_after_scaling_are_refused(spec, value, refused):
    record = [value] + ["Good", "a", ""][: len(spec.input_columns) - 1]
    if refused:
        with pytest.raises(RecordError, match="column 'carat': .* is out of the range the model can compute with"):
            spec.transform([record])
    else:
        assert np.isfinite(spec.transform([record])).all()


def test_integer_beyond_float64_is_refused():
    with pytest.raises(RecordError, match=r"column 'carat': expected a finite number, got 1000.*\(401 digits\)"):
        SPEC.transform([[10 ** 400, "Good", "a", ""]])
