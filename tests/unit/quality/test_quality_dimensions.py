"""The quality dimensions give the same answers on pandas, Dask and Spark."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import pytest

from tre_lib.quality import ConsistencyRule, ValidityRule, assess, completeness, uniqueness, validity


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["a", "b", "b", "c", None, "a"],
            "age": [30.0, 200.0, 200.0, -1.0, 40.0, 30.0],
            "sex": ["F", "M", "M", "X", None, "F"],
            "nhs": ["9434765919", "9434765918", "9434765918", None, "943 476 5919", "9434765919"],
            "born": pd.to_datetime(
                ["1990-01-01", "2000-05-05", "2000-05-05", "2010-01-01", None, "1990-01-01"]
            ),
            "seen": pd.to_datetime(
                ["2024-01-01", "1999-01-01", "1999-01-01", "2024-06-30", "2023-01-01", "2024-01-01"]
            ),
        }
    )


RULES = [
    ValidityRule("age", min=0, max=120),
    ValidityRule("sex", allowed=("F", "M")),
    ValidityRule("nhs", check="nhs_number"),
    ValidityRule("id", pattern="[a-b]"),
]


def test_completeness_counts_present_values_and_complete_rows(frame: pd.DataFrame) -> None:
    result = completeness(frame)
    assert result.by_column["id"] == pytest.approx(5 / 6)
    assert result.by_column["age"] == 1.0
    assert result.overall == pytest.approx((36 - 4) / 36)
    assert result.complete_rows == pytest.approx(4 / 6)


def test_uniqueness_finds_duplicate_rows_and_distinct_keys(frame: pd.DataFrame) -> None:
    result = uniqueness(frame, ["id"])
    assert (result.n_rows, result.distinct_rows, result.duplicate_rows) == (6, 4, 2)
    assert result.distinct_by_column == {"id": 3}


def test_validity_judges_present_values_against_each_rule(frame: pd.DataFrame) -> None:
    result = validity(frame, RULES)
    assert result.by_rule["age:min+max"] == {"checked": 6, "invalid": 3, "valid": 0.5}
    assert result.by_rule["sex:allowed"]["invalid"] == 1
    assert result.by_rule["nhs:nhs_number"] == {"checked": 5, "invalid": 2, "valid": 0.6}
    assert result.by_rule["id:pattern"]["invalid"] == 1


def test_an_empty_frame_is_fully_good_not_undefined() -> None:
    empty = pd.DataFrame({"x": pd.Series([], dtype=float)})
    assert validity(empty, [ValidityRule("x", min=0)]).overall == 1.0
    assert completeness(empty).overall == 1.0


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 9)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def _on(engine: str, frame: pd.DataFrame, request: pytest.FixtureRequest) -> Any:
    if engine == "pandas":
        return frame
    if engine == "dask":
        import dask.dataframe as dd

        return dd.from_pandas(frame, npartitions=2)
    spark = request.getfixturevalue("spark")
    return spark.createDataFrame(frame.astype(object).where(frame.notna(), None))


@pytest.mark.parametrize("engine", ["dask", "spark"])
def test_every_engine_agrees_with_pandas(
    frame: pd.DataFrame, engine: str, request: pytest.FixtureRequest
) -> None:
    kwargs = {
        "validity_rules": RULES,
        "consistency_rules": [ConsistencyRule("born", "seen")],
        "key_columns": ["id"],
        "date_columns": ["seen"],
        "as_of": dt.date(2025, 1, 1),
    }
    expected = assess(frame, **kwargs).to_dict()
    got = assess(_on(engine, frame, request), **kwargs).to_dict()
    assert got["engine"] == engine
    for dimension in ("completeness", "uniqueness", "validity", "consistency", "timeliness"):
        assert _rounded(got[dimension]) == _rounded(expected[dimension]), dimension
    assert expected["consistency"]["by_rule"]["born<=seen"] == {
        "checked": 5,
        "inconsistent": 2,
        "consistent": 0.6,
    }
    assert expected["timeliness"]["lag_days"] == {"seen": 185}
