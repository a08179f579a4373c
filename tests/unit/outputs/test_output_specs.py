"""Declared computations: parsing, filters, table comparison and regressions, with hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tre_lib.outputs.specs import (
    Filter,
    RegressionSpec,
    SpecError,
    TableSpec,
    apply_filters,
    coefficients_csv,
    compare_tables,
    design_matrix,
    fit_regression,
    read_coefficients,
    read_data,
    read_table_csv,
    table_cells,
    table_to_csv,
    worst,
    write_data,
)


def test_a_table_spec_round_trips_and_lists_the_columns_it_reads() -> None:
    spec = TableSpec.from_dict(
        {
            "index": "region",
            "columns": ["sex"],
            "values": "cost",
            "aggfunc": "sum",
            "filters": [["age", ">=", 18]],
        }
    )
    assert spec.needed_columns == ["region", "sex", "cost", "age"]
    assert TableSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"index": []}, "at least one column"),
        ({"index": "a", "aggfunc": "eval"}, "unknown aggfunc"),
        ({"index": "a", "aggfunc": "sum"}, "needs values="),
        ({"index": "a", "code": "import os"}, "unknown table spec key"),
        ({"index": "a", "filters": [["a", "~", 1]]}, "unknown filter operator"),
        ({"index": "a", "filters": [["a", "in", 1]]}, "needs a list"),
        ({"index": "a", "margins": "yes"}, "true or false"),
    ],
)
def test_a_malformed_table_spec_says_what_is_wrong(raw: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        TableSpec.from_dict(raw)


def test_filters_keep_exactly_the_matching_rows_and_are_idempotent() -> None:
    frame = pd.DataFrame({"age": [10, 18, 30, None], "region": ["n", "s", "n", "e"]})
    filters = (
        Filter.from_value(["age", ">=", 18]),
        Filter.from_value({"column": "region", "op": "in", "value": ["n"]}),
    )
    kept = apply_filters(frame, filters)
    assert kept["age"].tolist() == [30.0]
    assert apply_filters(kept, filters).equals(kept)
    with pytest.raises(SpecError, match="not in the data"):
        apply_filters(frame, (Filter("income", "==", 1),))


def test_table_cells_use_text_labels_and_nan_for_suppressed_cells() -> None:
    table = pd.DataFrame({"f": [12.0, np.nan], "m": [3.0, 4.0]}, index=pd.Index([1, 2], name="band"))
    cells = table_cells(table)
    assert cells[(("1",), ("f",))] == 12.0
    assert math.isnan(cells[(("2",), ("f",))])


def test_a_csv_round_trip_of_a_two_way_table_compares_equal() -> None:
    spec = TableSpec(index=("region",), columns=("sex",))
    table = pd.DataFrame(
        {"f": [20.0, np.nan, 41.0], "m": [21.0, 15.0, 36.0], "All": [41.0, np.nan, 77.0]},
        index=pd.Index(["n", "s", "All"], name="region"),
    )
    back = read_table_csv(table_to_csv(table), spec)
    assert compare_tables(back, table).ok


def test_compare_tables_finds_published_suppressed_mismatched_and_extra_cells() -> None:
    reference = pd.DataFrame({"f": [20.0, np.nan], "m": [21.0, 15.0]}, index=["n", "s"])
    submitted = pd.DataFrame({"f": [20.0, 3.0], "m": [np.nan, 16.0]}, index=["n", "s"])
    submitted.loc["w"] = [1.0, 2.0]
    result = compare_tables(submitted, reference)
    assert result.published_but_suppressed == [(("s",), ("f",))]
    assert result.mismatched == [(("s",), ("m",))]
    assert result.more_suppressed == [(("n",), ("m",))]
    assert len(result.extra) == 2
    assert not result.ok
    assert len(result.problems()) == 3


def test_design_matrix_adds_a_constant_and_drops_the_first_level() -> None:
    frame = pd.DataFrame({"y": [1.0, 2.0, 3.0, 4.0], "x": [0.0, 1.0, 2.0, 3.0], "g": ["a", "b", "c", "a"]})
    y, x = design_matrix(frame, RegressionSpec("ols", "y", ("x",), ("g",)))
    assert list(x.columns) == ["const", "x", "g_b", "g_c"]
    assert x["g_b"].tolist() == [0.0, 1.0, 0.0, 0.0]
    assert y.tolist() == [1.0, 2.0, 3.0, 4.0]


def test_an_exact_line_is_recovered_and_its_coefficients_round_trip() -> None:
    x = np.arange(30.0)
    frame = pd.DataFrame({"y": 3.0 + 2.0 * x + np.where(x % 2 == 0, 0.5, -0.5), "x": x})
    fitted, warnings = fit_regression(frame, RegressionSpec("ols", "y", ("x",)))
    assert warnings == []
    coefficients = read_coefficients(coefficients_csv(fitted))
    assert coefficients is not None
    assert coefficients["x"] == pytest.approx(2.0, abs=0.01)
    assert fitted.df_resid == 28
    assert read_coefficients(b"a plain text summary\n") is None


def test_regression_specs_never_take_formulas() -> None:
    with pytest.raises(SpecError, match="unknown regression spec key"):
        RegressionSpec.from_dict({"model": "ols", "outcome": "y", "predictors": ["x"], "formula": "y ~ x"})
    with pytest.raises(SpecError, match="unknown model"):
        RegressionSpec.from_dict({"model": "glm", "outcome": "y", "predictors": ["x"]})


def test_data_round_trips_through_parquet_and_bad_files_are_refused() -> None:
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    assert read_data(write_data(frame), "d.parquet").equals(frame)
    assert read_data(b"a,b\n1,x\n", "d.csv")["b"].tolist() == ["x"]
    with pytest.raises(SpecError, match="cannot be read"):
        read_data(b"not parquet", "d.parquet")
    with pytest.raises(SpecError, match="must be"):
        read_data(b"", "d.xlsx")


def test_worst_orders_fail_over_review_over_pass() -> None:
    assert worst("pass", "review") == "review"
    assert worst("review", "fail", "pass") == "fail"
    assert worst() == "pass"
