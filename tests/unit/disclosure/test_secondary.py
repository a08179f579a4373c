"""Secondary suppression and the attacker audit, on tables worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from disclosure_factories import magnitude_records, table_from_counts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tre_lib.disclosure import attacker_intervals, protect_table
from tre_lib.disclosure.audit import Auditor
from tre_lib.disclosure.secondary import Requirement, find_deficits
from tre_lib.disclosure.structure import MARGIN, TableStructure, as_key

HAND_TABLE = [[20, 30, 3], [25, 40, 35], [30, 12, 50]]


def test_hand_worked_three_by_three() -> None:
    # (a,z)=3 is the only primary. The four rectangles through it cost (sum of complements):
    # {a,b}x{x,z}: 20+25+35=80, {a,c}x{x,z}: 100, {a,b}x{y,z}: 105, {a,c}x{y,z}: 92 -> the first is cheapest.
    result = protect_table(table_from_counts(HAND_TABLE, "abc", "xyz"), "r", "c")
    assert [k for k, c in result.cells.items() if c.secondary] == [("a", "x"), ("b", "x"), ("b", "z")]
    # One degree of freedom t: (a,z)=3+t, (a,x)=20-t, (b,x)=25+t, (b,z)=35-t with t in [-3, 20].
    assert result.intervals == {
        ("a", "x"): (0, 23),
        ("a", "z"): (0, 23),
        ("b", "x"): (22, 45),
        ("b", "z"): (15, 38),
    }
    assert result.table.loc["a", "All"] == 53 and result.table.loc["All", "z"] == 88


def test_cells_once_wide_enough_are_not_audited_again() -> None:
    # Suppressing more cells only widens intervals, so the search re-audits just the cells still short.
    structure = TableStructure([("a",), ("b",), ("c",), (MARGIN,)], [("x",), ("y",), ("z",), (MARGIN,)])
    full = np.zeros((4, 4))
    full[:3, :3] = HAND_TABLE
    full[:3, 3], full[3, :3], full[3, 3] = full[:3, :3].sum(1), full[:3, :3].sum(0), full[:3, :3].sum()
    size = structure.size
    auditor = Auditor(structure, full.reshape(-1), np.zeros(size), np.full(size, np.inf), integer=True)
    req = Requirement(np.full(size, 10.0), np.full(size, 10.0))
    primary = np.zeros(size, dtype=bool)
    primary[2] = True  # (a,z); index = 4 * row + column
    pattern = primary.copy()
    pattern[[0, 4, 6]] = True  # the rectangle (a,x), (b,x), (b,z) of the hand-worked test
    met: set[int] = set()
    deficits, intervals = find_deficits(auditor, pattern, primary, req, met=met)
    assert deficits == [] and met == {(0, ()), (2, ()), (4, ()), (6, ())} and intervals[6] == (15.0, 38.0)
    pattern[8] = True  # (c,x), alone in row c: recoverable from the row total
    deficits, intervals = find_deficits(auditor, pattern, primary, req, met=met)
    assert intervals == {8: (30.0, 30.0)}
    assert deficits == find_deficits(auditor, pattern, primary, req)[0]
    assert [(d.cell, d.width) for d in deficits] == [(8, 0.0)]


def test_primary_only_suppression_is_recoverable_from_margins() -> None:
    published = pd.crosstab(
        table_from_counts(HAND_TABLE, "abc", "xyz")["r"],
        table_from_counts(HAND_TABLE, "abc", "xyz")["c"],
        margins=True,
    ).astype(float)
    published.loc["a", "z"] = np.nan
    assert attacker_intervals(published) == {("a", "z"): (3.0, 3.0)}


def test_one_dimensional_table() -> None:
    df = pd.DataFrame({"r": ["a"] * 3 + ["b"] * 20 + ["c"] * 30})
    result = protect_table(df, "r", None)
    assert list(result.table.index) == ["a", "b", "c", MARGIN]
    assert list(result.table.columns) == ["count"]
    assert result.cells[("a", "count")].primary and result.cells[("b", "count")].secondary
    assert result.intervals[("a", "count")] == (0, 23)
    assert result.table.loc[MARGIN, "count"] == 53


def test_hierarchical_rows_protect_against_subtotals() -> None:
    counts = {
        ("n", "leeds", "f"): 4,
        ("n", "leeds", "m"): 30,
        ("n", "york", "f"): 25,
        ("n", "york", "m"): 22,
        ("s", "kent", "f"): 40,
        ("s", "kent", "m"): 35,
        ("s", "bath", "f"): 18,
        ("s", "bath", "m"): 27,
    }
    df = pd.DataFrame([k for k, n in counts.items() for _ in range(n)], columns=["region", "district", "sex"])
    result = protect_table(df, ["region", "district"], "sex")
    assert ("n", MARGIN) in list(result.table.index) and (MARGIN, MARGIN) in list(result.table.index)
    assert result.table.loc[("n", MARGIN), MARGIN] == 81
    assert result.cells[(("n", "leeds"), "f")].primary
    _assert_protected(result.table, result.rules.threshold)
    # the interval recomputed from the published table alone matches the one reported
    assert attacker_intervals(result.table) == result.intervals


def test_pandas_multiindex_margins_are_read() -> None:
    df = pd.DataFrame(
        {"a": list("xxxxyyyy") * 3, "b": list("ppqqppqq") * 3, "c": list("uv") * 12, "v": range(24)}
    )
    table = pd.pivot_table(df, index=["a", "b"], columns="c", values="v", aggfunc="sum", margins=True).astype(
        float
    )
    assert table.index[-1] == ("All", "")  # pandas writes the grand total row like this
    table.iloc[0, 0] = np.nan
    true_value = df[(df.a == "x") & (df.b == "p") & (df.c == "u")].v.sum()
    assert attacker_intervals(table) == {(("x", "p"), "u"): (true_value, true_value)}


def test_insider_knowing_own_value_forces_more_suppression() -> None:
    # Row a: A is one business (50), B three small ones (60), C is large. Both A and B are primary.
    # Outsiders see only A+B=110; but A's owner knows A=50 and would get B=60 exactly, so C is hidden too.
    cells = {
        ("a", "A"): [50.0],
        ("a", "B"): [20.0, 20, 20],
        ("a", "C"): [100.0] * 10,
        ("b", "A"): [40.0] * 12,
        ("b", "B"): [40.0] * 12,
        ("b", "C"): [40.0] * 12,
    }
    df = magnitude_records(cells)
    naive = protect_table(df, "r", "c", values="v", aggfunc="sum", rules={"insider_protection": False})
    careful = protect_table(df, "r", "c", values="v", aggfunc="sum")
    known = {("a", "A"): (50.0, 50.0)}
    naive_view = attacker_intervals(naive.table, knowledge=known)
    careful_view = attacker_intervals(careful.table, knowledge=known)
    assert naive_view[("a", "B")][1] - naive_view[("a", "B")][0] < 1e-6  # recovered by the insider
    width = careful_view[("a", "B")][1] - careful_view[("a", "B")][0]
    assert width >= careful.rules.protection_level * 60
    assert len(careful.suppressed) > len(naive.suppressed)


def test_mean_table_intervals_are_on_the_mean_scale() -> None:
    df = table_from_counts(HAND_TABLE, "abc", "xyz").assign(v=2.0)
    result = protect_table(df, "r", "c", values="v", aggfunc="mean")
    lo, hi = result.intervals[("a", "z")]
    assert lo <= 2.0 <= hi
    assert result.cells[("a", "z")].primary and result.table.loc["b", "y"] == 2.0


def _assert_protected(table: pd.DataFrame, width: float) -> None:
    """Every NaN cell's interval is at least ``width`` wide and no margin equation has one NaN."""
    for (_r, _c), (lo, hi) in attacker_intervals(table).items():
        assert hi - lo >= width - 1e-7
    structure = TableStructure(
        [as_key(r, table.index.nlevels) for r in table.index],
        [as_key(c, table.columns.nlevels) for c in table.columns],
    )
    hidden = np.isnan(table.to_numpy(dtype=float).reshape(-1))
    for e in range(len(structure.equations)):
        assert sum(hidden[m] for m in structure.members(e)) != 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    counts=st.integers(2, 4).flatmap(
        lambda rows: st.integers(2, 4).flatmap(
            lambda cols: st.lists(
                st.lists(st.integers(0, 30), min_size=cols, max_size=cols), min_size=rows, max_size=rows
            )
        )
    ),
    threshold=st.integers(3, 10),
)
def test_property_suppressed_cells_are_protected(counts: list[list[int]], threshold: int) -> None:
    rows = [f"r{i}" for i in range(len(counts))]
    cols = [f"c{j}" for j in range(len(counts[0]))]
    df = table_from_counts(counts, rows, cols)
    if df.empty:
        return
    result = protect_table(df, "r", "c", rules={"threshold": threshold})
    truth = pd.crosstab(df["r"], df["c"], margins=True)
    if result.status == "fail":
        assert result.notes  # a failure always says why
        return
    intervals = attacker_intervals(result.table)
    assert set(intervals) == set(result.intervals)
    for (r, c), (lo, hi) in intervals.items():
        true_value = truth.loc[r, c] if r in truth.index and c in truth.columns else 0
        assert lo - 1e-7 <= true_value <= hi + 1e-7
        assert hi - lo >= threshold - 1e-7
        assert result.intervals[(r, c)] == (lo, hi) or math.isclose(result.intervals[(r, c)][1], hi)
    _assert_protected(result.table, threshold)
    for (r, c), cell in result.cells.items():
        if 0 < cell.stats.n < threshold:
            assert math.isnan(result.table.loc[r, c])
