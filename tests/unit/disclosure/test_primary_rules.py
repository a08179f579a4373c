"""Each rule on hand-checkable tables, and the independence of their findings."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from disclosure_factories import magnitude_records, table_from_counts

from tre_lib.disclosure import protect_table


def test_threshold_marks_small_counts_primary_including_margins() -> None:
    df = table_from_counts([[20, 30, 3], [25, 40, 35], [30, 12, 50]], "abc", "xyz")
    result = protect_table(df, "r", "c")
    primaries = [k for k, c in result.cells.items() if c.primary]
    assert primaries == [("a", "z")]
    finding = result.cells[("a", "z")]
    assert finding.verdicts["threshold"].outcome == "suppress"
    assert finding.verdicts["threshold"].detail["contributors"] == 3
    assert result.cells[("c", "y")].verdicts["threshold"].outcome == "pass"  # 12 >= 10
    assert result.status == "review"


def test_count_margin_below_threshold_is_primary() -> None:
    df = table_from_counts([[2, 3], [30, 40]], "ab", "xy")
    result = protect_table(df, "r", "c")
    assert result.cells[("a", "All")].primary  # 5 < 10
    assert result.cells[("a", "x")].primary and result.cells[("a", "y")].primary


def test_no_findings_means_pass_and_int_table_equal_to_crosstab() -> None:
    df = table_from_counts([[12, 15], [20, 11]], "ab", "xy")
    result = protect_table(df, "r", "c")
    assert result.status == "pass"
    expected = pd.crosstab(df["r"], df["c"], margins=True)
    pd.testing.assert_frame_equal(result.table, expected, check_names=False, check_dtype=False)
    assert result.intervals == {}


def test_dominance_fails_when_top_two_exceed_k() -> None:
    # top two 100 + 50 = 150 of 160 = 93.75% > 90%; remainder 10 >= 10% of 100, so p% passes.
    cells = {
        ("a", "x"): [100, 50] + [1] * 10,
        ("a", "y"): [10] * 12,
        ("b", "x"): [10] * 12,
        ("b", "y"): [10] * 12,
    }
    result = protect_table(magnitude_records(cells), "r", "c", values="v", aggfunc="sum")
    verdicts = result.cells[("a", "x")].verdicts
    assert verdicts["dominance"].outcome == "suppress"
    assert verdicts["dominance"].detail["share"] == pytest.approx(150 / 160)
    assert verdicts["p_percent"].outcome == "pass"
    assert verdicts["threshold"].outcome == "pass"
    assert result.cells[("a", "y")].verdicts["dominance"].outcome == "pass"


def test_p_percent_fails_independently_of_dominance() -> None:
    # x1=100, x2=1, remainder 7 < 10% of 100: p% fails; top two 101/108 = 93.5% <= k=0.95: dominance passes.
    cells = {
        ("a", "x"): [100, 1] + [0.875] * 8,
        ("a", "y"): [10] * 12,
        ("b", "x"): [10] * 12,
        ("b", "y"): [10] * 12,
    }
    result = protect_table(
        magnitude_records(cells), "r", "c", values="v", aggfunc="sum", rules={"dominance_k": 0.95}
    )
    verdicts = result.cells[("a", "x")].verdicts
    assert verdicts["p_percent"].outcome == "suppress"
    assert verdicts["p_percent"].detail["remainder"] == pytest.approx(7.0)
    assert verdicts["dominance"].outcome == "pass"
    assert result.cells[("a", "x")].primary


def test_empty_cell_is_flagged_not_suppressed_by_default() -> None:
    df = table_from_counts([[12, 0], [20, 11]], "ab", "xy")
    result = protect_table(df, "r", "c")
    zero = result.cells[("a", "y")]
    assert zero.verdicts["zero"].outcome == "review"
    assert zero.verdicts["threshold"].outcome == "not_applicable"
    assert not zero.suppressed and result.table.loc["a", "y"] == 0
    assert result.status == "review"


def test_structural_zero_is_allowed_and_zero_suppression_is_a_rule_choice() -> None:
    df = table_from_counts([[12, 0], [20, 11]], "ab", "xy")
    declared = protect_table(df, "r", "c", rules={"structural_zeros": [["a", "y"]]})
    assert declared.cells[("a", "y")].verdicts["zero"].outcome == "pass"
    assert declared.status == "pass"
    suppressed = protect_table(df, "r", "c", rules={"zeros": "suppress"})
    assert suppressed.cells[("a", "y")].primary
    assert math.isnan(suppressed.table.loc["a", "y"])


def test_structural_zero_with_data_goes_to_review() -> None:
    df = table_from_counts([[12, 15], [20, 11]], "ab", "xy")
    result = protect_table(df, "r", "c", rules={"structural_zeros": [["a", "y"]]})
    assert result.cells[("a", "y")].verdicts["zero"].outcome == "review"


def test_negative_values_flag_review_and_do_not_hide_other_findings() -> None:
    cells = {
        ("a", "x"): [-5.0, 20, 30],  # negative AND below threshold
        ("a", "y"): [10.0] * 12,
        ("b", "x"): [10.0] * 12,
        ("b", "y"): [200.0, 5] + [1.0] * 10,  # dominated, no negatives
    }
    result = protect_table(magnitude_records(cells), "r", "c", values="v", aggfunc="sum")
    ax = result.cells[("a", "x")].verdicts
    assert ax["negative"].outcome == "review" and ax["negative"].detail["negative"] == 1
    assert ax["dominance"].outcome == "review" and ax["p_percent"].outcome == "review"
    assert ax["threshold"].outcome == "suppress"  # still judged despite the negative value
    assert result.cells[("b", "y")].verdicts["dominance"].outcome == "suppress"
    assert result.cells[("b", "y")].verdicts["negative"].outcome == "pass"
    # With a negative anywhere the attacker no longer knows cells are non-negative: intervals unbounded.
    assert all(math.isinf(lo) for lo, _ in result.intervals.values())


def test_missing_values_are_counted_and_excluded_from_contributors() -> None:
    cells = {
        ("a", "x"): [10.0] * 9 + [np.nan] * 4,
        ("a", "y"): [10.0] * 12,
        ("b", "x"): [10.0] * 12,
        ("b", "y"): [10.0] * 12,
    }
    result = protect_table(magnitude_records(cells), "r", "c", values="v", aggfunc="sum")
    ax = result.cells[("a", "x")]
    assert ax.verdicts["missing"].detail["missing"] == 4
    assert ax.verdicts["missing"].outcome == "pass"  # reported only, by default
    assert ax.verdicts["threshold"].outcome == "suppress"  # 9 non-missing < 10 although 13 records
    strict = protect_table(
        magnitude_records(cells), "r", "c", values="v", aggfunc="sum", rules={"missing": "review"}
    )
    assert strict.cells[("a", "x")].verdicts["missing"].outcome == "review"


def test_min_max_fail_unless_allowed() -> None:
    df = table_from_counts([[12, 15], [20, 11]], "ab", "xy").assign(v=1.0)
    refused = protect_table(df, "r", "c", values="v", aggfunc="max")
    assert refused.status == "fail"
    assert refused.table.isna().all().all()
    assert refused.cells[("a", "x")].verdicts["min_max"].outcome == "fail"
    allowed = protect_table(df, "r", "c", values="v", aggfunc="min", rules={"allow_min_max": True})
    assert allowed.status == "review" and allowed.table.loc["a", "x"] == 1.0


def test_median_and_quantile_use_threshold_not_dominance() -> None:
    cells = {
        ("a", "x"): [1000.0, 1, 1] + [2.0] * 9,
        ("a", "y"): [5.0] * 3,
        ("b", "x"): [10.0] * 12,
        ("b", "y"): [10.0] * 12,
    }
    df = magnitude_records(cells)
    result = protect_table(df, "r", "c", values="v", aggfunc="median")
    assert result.cells[("a", "x")].verdicts["dominance"].outcome == "not_applicable"
    assert result.cells[("a", "y")].primary  # 3 contributors
    assert result.table.loc["a", "x"] == 2.0
    assert result.intervals[("a", "y")] == (-math.inf, math.inf)  # no linear relation to margins
    q90 = protect_table(df, "r", "c", values="v", aggfunc="quantile", q=0.9)
    assert q90.table.loc["b", "x"] == pytest.approx(df[(df.r == "b") & (df.c == "x")].v.quantile(0.9))
    assert q90.cells[("a", "y")].primary
