"""Contributors are units (the index id a profile names), not rows; rows only where no unit is declared."""

from __future__ import annotations

import pandas as pd
import pytest

from tre_lib.disclosure import TableSpecError, load_profile, protect_table


def _business_records() -> pd.DataFrame:
    # Cell (north, retail): one business with 12 records; every other cell: 12 businesses, one record each.
    rows = [("north", "retail", "b0", 100.0)] * 12
    for region, sector in (("north", "food"), ("south", "retail"), ("south", "food")):
        rows += [(region, sector, f"{region}-{sector}-{i}", 10.0 + i) for i in range(12)]
    return pd.DataFrame(rows, columns=["region", "sector", "business_id", "turnover"])


def test_threshold_counts_distinct_units_not_rows() -> None:
    df = _business_records()
    by_rows = protect_table(df, "region", "sector")
    by_units = protect_table(df, "region", "sector", unit="business_id")
    assert not by_rows.cells[("north", "retail")].primary  # 12 rows pass a threshold of 10
    cell = by_units.cells[("north", "retail")]
    assert cell.primary and cell.verdicts["threshold"].detail["contributors"] == 1
    assert by_units.table.isna().loc["north", "retail"]


def test_dominance_sums_a_units_records_before_ranking() -> None:
    # 12 businesses of 10 records; one business has 10 records of 100 each: as rows no record dominates.
    rows = [("a", "x", "big", 100.0)] * 10 + [("a", "x", f"s{i}", 10.0) for i in range(11)]
    rows += [("b", "x", f"t{i}", 50.0) for i in range(12)]
    df = pd.DataFrame(rows, columns=["r", "c", "business_id", "v"])
    by_rows = protect_table(df, "r", "c", values="v", aggfunc="sum")
    by_units = protect_table(df, "r", "c", values="v", aggfunc="sum", unit="business_id")
    assert by_rows.cells[("a", "x")].verdicts["dominance"].outcome == "pass"
    assert by_units.cells[("a", "x")].stats.top[0] == 1000.0
    assert by_units.cells[("a", "x")].verdicts["dominance"].outcome == "suppress"


def test_margin_counts_a_unit_in_two_children_once() -> None:
    rows = [("a", "x", "p1"), ("a", "y", "p1")] * 3
    df = pd.DataFrame(rows, columns=["r", "c", "person_id"])
    result = protect_table(df, "r", "c", unit="person_id", rules={"threshold": 2})
    assert result.cells[("a", "All")].stats.n_units == 1
    assert result.cells[("a", "All")].primary


def test_profile_unit_is_used_when_the_data_has_it_and_the_record_says_so() -> None:
    rules = load_profile("business-tier2")
    assert rules.unit == "business_id"
    result = protect_table(_business_records(), "region", "sector", rules=rules)
    record = result.record()
    assert record["contributors"] == {"counted": "units", "unit": "business_id"}
    assert result.cells[("north", "retail")].primary


def test_rows_are_the_fallback_and_the_record_says_so() -> None:
    df = _business_records().drop(columns="business_id")
    plain = protect_table(df, "region", "sector")
    assert plain.record()["contributors"] == {"counted": "records", "unit": None}
    declared = protect_table(df, "region", "sector", rules={"unit": "business_id"})
    assert declared.record()["contributors"]["counted"] == "records"
    assert declared.status == "review"
    assert any("business_id" in note for note in declared.notes)


def test_unknown_unit_column_is_a_clear_error() -> None:
    with pytest.raises(TableSpecError, match="unit column 'nope'"):
        protect_table(_business_records(), "region", "sector", unit="nope")


def test_dask_data_with_a_unit_counts_units_like_pandas() -> None:
    dd = pytest.importorskip("dask.dataframe")
    df = _business_records()
    local = protect_table(df, "region", "sector", values="turnover", aggfunc="sum", unit="business_id")
    remote = protect_table(
        dd.from_pandas(df, npartitions=3),
        "region",
        "sector",
        values="turnover",
        aggfunc="sum",
        unit="business_id",
    )
    assert remote.record()["contributors"] == {"counted": "units", "unit": "business_id"}
    pd.testing.assert_frame_equal(remote.table, local.table)
