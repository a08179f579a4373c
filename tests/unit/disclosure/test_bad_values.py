"""Bad values in the data: a typed error naming the column and the value, never a table that passes wrong."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from tre_lib.disclosure import TableSpecError, TableTooLargeError, protect_table


def _frame(values: list[float] | pd.Series) -> pd.DataFrame:
    return pd.DataFrame({"r": list("ab") * 20, "c": list("xxyy") * 10, "v": values})


@pytest.mark.parametrize("bad", [math.inf, -math.inf])
def test_infinite_value_in_a_summed_column_is_refused_by_name(bad: float) -> None:
    values = [float(i + 1) for i in range(40)]
    values[5] = bad
    with pytest.raises(TableSpecError, match=r"'v'.*inf"):
        protect_table(_frame(values), "r", "c", values="v", aggfunc="sum")


def test_plus_and_minus_inf_in_one_cell_are_not_published_as_zero() -> None:
    values = [float(i + 1) for i in range(40)]
    values[0], values[2] = math.inf, -math.inf  # both in cell (a, x)
    with pytest.raises(TableSpecError, match="infinite"):
        protect_table(_frame(values), "r", "c", values="v", aggfunc="sum")


def test_overflowing_total_is_refused() -> None:
    with pytest.raises(TableSpecError, match="overflow"):
        protect_table(_frame([1e308] * 40), "r", "c", values="v", aggfunc="sum")


def test_category_named_like_the_margin_is_refused_naming_the_column() -> None:
    df = _frame([1.0] * 40).assign(r=["All", "b"] * 20)
    with pytest.raises(TableSpecError, match=r"column 'r' has a category 'All'"):
        protect_table(df, "r", "c")


def test_duplicated_column_names_are_refused() -> None:
    df = pd.concat([_frame([1.0] * 40), _frame([2.0] * 40)[["v"]]], axis=1)
    with pytest.raises(TableSpecError, match="'v' appear more than once"):
        protect_table(df, "r", "c", values="v", aggfunc="sum")


def test_int_one_and_string_one_are_refused_as_two_categories() -> None:
    df = _frame([1.0] * 40).assign(r=[1, "1"] * 20)
    with pytest.raises(TableSpecError, match=r"column 'r' holds 1 \(int\) and '1' \(str\)"):
        protect_table(df, "r", "c")


def test_nullable_integer_with_na_is_a_missing_value_not_a_crash() -> None:
    values = pd.array([12] * 39 + [None], dtype="Int64")
    result = protect_table(_frame(values), "r", "c", values="v", aggfunc="sum", rules={"threshold": 5})
    cell = result.cells[("b", "y")]
    assert cell.stats.n_missing == 1
    assert result.table.loc["All", "All"] == 12 * 39


def test_infinite_category_is_refused() -> None:
    df = _frame([1.0] * 40).assign(r=[1.0, math.inf] * 20)
    with pytest.raises(TableSpecError, match="infinite"):
        protect_table(df, "r", "c")


def test_cell_limit_refuses_before_protection_work(monkeypatch: pytest.MonkeyPatch) -> None:
    from tre_lib.disclosure import table

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("protection ran on a table over the cell limit")

    monkeypatch.setattr(table, "evaluate_cell", no_work)
    df = pd.DataFrame({"r": np.arange(300) % 150, "c": np.arange(300) % 2})
    with pytest.raises(TableTooLargeError, match="453 cells"):
        protect_table(df, "r", "c", max_cells=400)
    with pytest.raises(TableTooLargeError):
        protect_table(df, "r", "c", rules={"max_cells": 400})
    with pytest.raises(TableTooLargeError, match="at least 300 cells"):  # leaves alone: before any stats
        protect_table(df, "r", "c", max_cells=299)


def test_memory_grows_linearly_with_a_long_two_column_table() -> None:
    # 3,000 x 2 with about three records per row: nearly every cell is suppressed in one linked group.
    # The 4-cycle bounds used to form a (rows x rows) matrix: ~800 MB here, 23 GB at 20,000 rows.
    rng = np.random.default_rng(0)
    n = 3000
    df = pd.DataFrame({"r": rng.integers(0, n, 3 * n), "c": rng.integers(0, 2, 3 * n)})
    tracemalloc.start()
    try:
        result = protect_table(df, "r", "c")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.status in ("review", "pass")
    assert peak < 250e6
