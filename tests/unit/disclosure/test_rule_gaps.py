"""Rules an attacker got round: extreme quantiles, one-sided p% protection, nearest rounding, regression
dummies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from disclosure_factories import magnitude_records, table_from_counts

from tre_lib.disclosure import check_regression, protect_table


def _twelve_per_cell() -> pd.DataFrame:
    cells = {(r, c): [float(10 * i + 1) for i in range(12)] for r in "ab" for c in "xy"}
    return magnitude_records(cells)


@pytest.mark.parametrize("q", [1.0, 0.0, 0.95, 0.05])
def test_quantile_within_one_over_n_of_an_end_fails_like_max(q: float) -> None:
    df = _twelve_per_cell()
    assert protect_table(df, "r", "c", values="v", aggfunc="max").status == "fail"
    result = protect_table(df, "r", "c", values="v", aggfunc="quantile", q=q)
    assert result.status == "fail"
    assert result.cells[("a", "x")].verdicts["min_max"].outcome == "fail"


def test_interior_quantile_still_passes() -> None:
    result = protect_table(_twelve_per_cell(), "r", "c", values="v", aggfunc="quantile", q=0.5)
    assert result.status == "pass"


def _one_sided_table() -> pd.DataFrame:
    # Cell a: total 2000, x1 = 1950, x2 = 40: p% needs 0.1 * 1950 - 10 = 185 on each side of 2000.
    # Cell b: 30 from 10 contributors, safe; its suppression alone leaves a in [0, 2030].
    return magnitude_records({("a", "x"): [1950.0, 40.0] + [1.25] * 8, ("b", "x"): [3.0] * 10})


def test_p_percent_needs_upper_protection_not_just_width() -> None:
    result = protect_table(_one_sided_table(), "r", "c", values="v", aggfunc="sum")
    assert result.cells[("a", "x")].primary
    lo, hi = result.intervals[("a", "x")]
    needed = 0.1 * 1950 - (2000 - 1950 - 40)
    assert hi - 2000 >= needed  # before: [0, 2030] was accepted (width 2030, upper side only 30)
    assert 2000 - lo >= needed


def test_nearest_rounding_that_margins_undo_is_refused() -> None:
    # Cells 2 and 2 round to 0 and 0 but their total 4 rounds to 5: as 0 <= cell <= 2 and the total is
    # at least 3, each cell is at least 1 - the margin says both are small non-zero counts.
    df = table_from_counts([[2], [2]], ["a", "b"], ["x"])
    rules = {"mitigation": "round", "rounding_method": "nearest", "threshold": 10}
    result = protect_table(df, "r", "c", rules=rules)
    assert result.status == "fail"
    assert any("nearest rounding" in note for note in result.notes)
    assert result.table.isna().all().all()


def test_ols_with_a_dummy_on_one_record_fails_and_lists_support() -> None:
    rng = np.random.default_rng(0)
    n = 60
    x = rng.normal(size=n)
    dummy = np.zeros(n)
    dummy[7] = 1.0
    y = 2 * x + 5 * dummy + rng.normal(size=n)
    exog = sm.add_constant(pd.DataFrame({"x": x, "only_one": dummy}))
    check = check_regression(sm.OLS(y, exog).fit())
    assert check.status == "fail"
    support = {entry["name"]: entry for entry in check.record()["coefficient_support"]}
    assert support["only_one"]["nonzero"] == 1
    assert support["x"]["nonzero"] == n


def test_ols_with_a_dummy_on_all_but_one_record_fails() -> None:
    rng = np.random.default_rng(1)
    n = 60
    dummy = np.ones(n)
    dummy[3] = 0.0
    exog = sm.add_constant(pd.DataFrame({"x": rng.normal(size=n), "all_but_one": dummy}))
    assert check_regression(sm.OLS(rng.normal(size=n), exog).fit()).status == "fail"


def test_regression_support_counts_units_when_given() -> None:
    rng = np.random.default_rng(2)
    n = 60
    dummy = np.zeros(n)
    dummy[:12] = 1.0  # 12 records, but all from one person
    units = np.array(["p0"] * 12 + [f"p{i}" for i in range(1, n - 11)])
    exog = sm.add_constant(pd.DataFrame({"x": rng.normal(size=n), "d": dummy}))
    fit = sm.OLS(rng.normal(size=n), exog).fit()
    assert check_regression(fit).status == "pass"
    assert check_regression(fit, units=units).status == "fail"
