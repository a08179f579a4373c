"""Attacks on ``tre_lib.disclosure`` through its public functions, one per library move of issue 14.

Each test is a researcher trying to get a small number out through ``protect_table`` or
``check_regression``; each passed (or crashed unclearly) before the fix.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from tre_lib.disclosure import (
    TableSpecError,
    TableTooLargeError,
    check_regression,
    load_profile,
    protect_table,
)


def _magnitudes(cells: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(r, c, v) for (r, c), vs in cells.items() for v in vs], columns=["region", "sector", "turnover"]
    )


def test_quantile_one_cannot_publish_the_true_maximum() -> None:
    df = _magnitudes({(r, c): [float(7 * i + 3) for i in range(15)] for r in "ns" for c in "ab"})
    result = protect_table(df, "region", "sector", values="turnover", aggfunc="quantile", q=1.0)
    assert result.status == "fail"
    assert result.table.isna().all().all()


def test_suppressed_p_percent_cell_cannot_be_bounded_from_above_by_its_complement() -> None:
    # Largest 1950, second 40, others 10 (total 2000): p = 10% needs 185 of slack above and below 2000.
    df = _magnitudes({("n", "a"): [1950.0, 40.0] + [1.25] * 8, ("s", "a"): [3.0] * 10})
    result = protect_table(df, "region", "sector", values="turnover", aggfunc="sum")
    lo, hi = result.intervals[("n", "a")]
    assert hi >= 2000 + 185 and lo <= 2000 - 185


def test_one_business_with_twelve_records_is_not_twelve_contributors() -> None:
    rows = [("n", "a", "biz-1", 500.0)] * 12
    rows += [
        (r, c, f"{r}{c}{i}", 20.0 + i) for r, c in (("n", "b"), ("s", "a"), ("s", "b")) for i in range(12)
    ]
    df = pd.DataFrame(rows, columns=["region", "sector", "business_id", "turnover"])
    result = protect_table(df, "region", "sector", rules=load_profile("business-tier2"))
    assert result.cells[("n", "a")].primary
    assert math.isnan(result.table.loc["n", "a"])
    assert result.record()["contributors"] == {"counted": "units", "unit": "business_id"}


def test_ols_dummy_on_one_record_cannot_release_that_records_outcome() -> None:
    rng = np.random.default_rng(7)
    n = 80
    target = np.zeros(n)
    target[11] = 1.0
    exog = sm.add_constant(pd.DataFrame({"age": rng.normal(40, 10, n), "is_target": target}))
    y = rng.normal(size=n)
    check = check_regression(sm.OLS(y, exog).fit())
    assert check.status == "fail"
    assert {e["name"]: e["nonzero"] for e in check.record()["coefficient_support"]}["is_target"] == 1


@pytest.mark.parametrize("bad", [math.inf, -math.inf])
def test_infinite_contribution_is_refused_not_published(bad: float) -> None:
    df = _magnitudes({(r, c): [10.0] * 12 for r in "ns" for c in "ab"})
    df.loc[3, "turnover"] = bad
    with pytest.raises(TableSpecError, match="'turnover'"):
        protect_table(df, "region", "sector", values="turnover", aggfunc="sum")


def test_plus_and_minus_infinity_in_one_cell_are_not_published_as_zero() -> None:
    df = _magnitudes({(r, c): [10.0] * 12 for r in "ns" for c in "ab"})
    df.loc[0, "turnover"], df.loc[1, "turnover"] = math.inf, -math.inf
    with pytest.raises(TableSpecError, match="infinite"):
        protect_table(df, "region", "sector", values="turnover", aggfunc="sum")


def test_category_called_all_cannot_pose_as_the_total() -> None:
    df = _magnitudes({(r, c): [10.0] * 12 for r in ("All", "s") for c in "ab"})
    with pytest.raises(TableSpecError, match="'region' has a category 'All'"):
        protect_table(df, "region", "sector")


def test_duplicated_column_names_cannot_choose_which_is_tabulated() -> None:
    df = _magnitudes({(r, c): [10.0] * 12 for r in "ns" for c in "ab"})
    df = pd.concat([df, df[["turnover"]] * 1000], axis=1)
    with pytest.raises(TableSpecError, match="more than once"):
        protect_table(df, "region", "sector", values="turnover", aggfunc="sum")


def test_nullable_integer_with_na_is_reported_missing_not_a_crash() -> None:
    df = _magnitudes({(r, c): [10.0] * 12 for r in "ns" for c in "ab"})
    df["turnover"] = pd.array([10] * (len(df) - 1) + [None], dtype="Int64")
    result = protect_table(df, "region", "sector", values="turnover", aggfunc="sum")
    assert result.table.loc["All", "All"] == 10 * (len(df) - 1)
    assert sum(c.stats.n_missing for c in result.cells.values() if not c.is_margin) == 1


def test_int_and_string_one_cannot_split_a_category() -> None:
    df = _magnitudes({(r, c): [10.0] * 12 for r in "ns" for c in "ab"})
    df["region"] = [1, "1"] * (len(df) // 2)
    with pytest.raises(TableSpecError, match="print alike"):
        protect_table(df, "region", "sector")


def test_overflowing_sum_is_refused() -> None:
    df = _magnitudes({(r, c): [1e308] * 12 for r in "ns" for c in "ab"})
    with pytest.raises(TableSpecError, match="overflow"):
        protect_table(df, "region", "sector", values="turnover", aggfunc="sum")


def test_twenty_thousand_row_table_over_the_cell_limit_is_refused_before_work() -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"r": rng.integers(0, 20_000, 60_000), "c": rng.integers(0, 2, 60_000)})
    with pytest.raises(TableTooLargeError, match="at most 5000"):
        protect_table(df, "r", "c", max_cells=5000)
