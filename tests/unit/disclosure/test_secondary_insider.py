"""The insider checks of magnitude tables: settled by feasible tables where they can be, never weaker."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tre_lib.disclosure import protect_table
from tre_lib.disclosure import secondary as sec
from tre_lib.disclosure.audit import Auditor
from tre_lib.disclosure.structure import MARGIN, CellKey, TableStructure


def contributions(seed: int, rows: int = 5, cols: int = 4) -> pd.DataFrame:
    """Microdata of a sum table: 0 to 12 contributors per cell (singletons included), heavy-tailed values."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(rows):
        for j in range(cols):
            n = int(rng.choice([0, 1, 1, 2, 3, 5, 8, 12]))
            records += [(f"r{i}", f"c{j}", float(v)) for v in rng.lognormal(3, 1.5, n)]
    return pd.DataFrame(records, columns=["r", "c", "v"])


def test_spread_moves_each_table_only_as_far_as_the_insider_knows() -> None:
    # Cell 0 is the insider's, cell 1 the one they look at. Tables: the truth (5, 10), p (0, 20), q (8, 0).
    tables = np.array([[5.0, 10.0], [0.0, 20.0], [8.0, 0.0]])
    # Knowing cell 0 >= 4: p moves towards the truth until cell 0 is 4, a fifth of the way: (4, 12); q stays.
    assert sec._spread_for_insider(tables, 0, (4.0, np.inf), [1]).tolist() == [12.0]
    # Knowing cell 0 = 5 exactly (a sole contributor): only mixes of p and q with cell 0 at 5 remain,
    # 3/8 of the way from q to p: (5, 7.5); with the truth (5, 10) the spread is 2.5.
    assert sec._spread_for_insider(tables, 0, (5.0, 5.0), [1]).tolist() == [2.5]


# (seed 11 dropped: with sided p% protection the outside attacker's pattern already covers its insiders)
@pytest.mark.parametrize("seed", [1, 2, 4, 5])
@pytest.mark.parametrize("aggfunc", ["sum", "mean"])
def test_insider_shortcuts_leave_pattern_and_intervals_unchanged(
    seed: int, aggfunc: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On these tables the insider checks add suppressions (the pattern differs without them).
    df = contributions(seed)
    fast = protect_table(df, "r", "c", values="v", aggfunc=aggfunc)
    naive = protect_table(df, "r", "c", values="v", aggfunc=aggfunc, rules={"insider_protection": False})
    assert set(naive.intervals) != set(fast.intervals)
    # The old path: every requirement solved by LP on every round, nothing remembered or settled by tables.
    find_deficits = sec.find_deficits
    monkeypatch.setattr(sec, "find_deficits", lambda *a, met=None, **k: find_deficits(*a, **k))
    monkeypatch.setattr(
        sec, "_spread_for_insider", lambda tables, cell, known, others, rows=None: np.zeros(len(others))
    )
    slow = protect_table(df, "r", "c", values="v", aggfunc=aggfunc)
    assert fast.table.isna().equals(slow.table.isna())
    assert fast.intervals.keys() == slow.intervals.keys()
    for key, (lo, hi) in slow.intervals.items():
        assert fast.intervals[key] == pytest.approx((lo, hi), rel=1e-9, abs=1e-9)
    assert (fast.status, fast.notes) == (slow.status, slow.notes)
    assert fast.lp_solves < slow.lp_solves


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(st.floats(0.0, 100.0), min_size=12, max_size=12),
    hidden=st.lists(st.booleans(), min_size=12, max_size=12),
    known=st.lists(st.floats(0.0, 1.0), min_size=12, max_size=12),
    sole=st.booleans(),
)
def test_spread_never_exceeds_the_insiders_exact_interval(
    values: list[float], hidden: list[bool], known: list[float], sole: bool
) -> None:
    # A 4x3 table with margins; every hidden interior cell's insider knows a share of it (or all of it).
    structure = TableStructure([(r,) for r in "abcd"] + [(MARGIN,)], [(c,) for c in "xyz"] + [(MARGIN,)])
    full = np.zeros((5, 4))
    full[:4, :3] = np.reshape(values, (4, 3))
    full[:4, 3], full[4, :3], full[4, 3] = full[:4, :3].sum(1), full[:4, :3].sum(0), full[:4, :3].sum()
    size = structure.size
    auditor = Auditor(structure, full.reshape(-1), np.zeros(size), np.full(size, np.inf))
    auditor.keep_witnesses()
    suppressed = np.zeros(size, dtype=bool)
    interior = [4 * r + c for r in range(4) for c in range(3)]
    suppressed[[cell for cell, h in zip(interior, hidden, strict=True) if h]] = True
    auditor.intervals(suppressed)  # the plain optima, kept as tables
    tables = auditor.witnesses(suppressed)
    for cell, share in zip(interior, known, strict=True):
        if not suppressed[cell]:
            continue
        v = float(auditor.values[cell])
        bounds = (v, v) if sole else (share * v, np.inf)
        others = [c for c in auditor.group_of(cell, suppressed) if c != cell]
        if not others:
            continue
        spread = sec._spread_for_insider(tables, cell, bounds, others)
        exact = auditor.intervals(suppressed, knowledge={cell: bounds}, only=others)
        for other, width in zip(others, spread.tolist(), strict=True):
            lo, hi = exact[other]
            assert width <= hi - lo + 1e-6 * max(1.0, hi)


def lone_row(contributors: int, width: float) -> tuple[TableStructure, Auditor, np.ndarray, sec.Requirement]:
    """A 3x3 sum table whose row c is one cell, (c, x) = 100: its row margin (c, All) is the same 100.

    Both are primary. With one contributor, that contributor's record is the whole of both cells; with two
    (99 and 1), the larger knows only that both are at least 99.
    """
    structure = TableStructure([(r,) for r in "abc"] + [(MARGIN,)], [(c,) for c in "xyz"] + [(MARGIN,)])
    full = np.zeros((4, 4))
    full[:3, :3] = [[40, 50, 45], [45, 60, 55], [100, 0, 0]]
    full[:3, 3], full[3, :3], full[3, 3] = full[:3, :3].sum(1), full[:3, :3].sum(0), full[:3, :3].sum()
    size = structure.size
    auditor = Auditor(structure, full.reshape(-1), np.zeros(size), np.full(size, np.inf))
    cells = [structure.index[(("c",), ("x",))], structure.index[(("c",), (MARGIN,))]]
    primary = np.zeros(size, dtype=bool)
    primary[cells] = True
    known = (100.0, 100.0) if contributors == 1 else (99.0, np.inf)
    req = sec.Requirement(np.full(size, width), np.full(size, 1e-6), dict.fromkeys(cells, known))
    return structure, auditor, primary, req


def complements(
    structure: TableStructure, result: sec.SuppressionResult, primary: np.ndarray
) -> list[CellKey]:
    return sorted(structure.cells[c] for c in np.flatnonzero(result.suppressed & ~primary))


def test_a_cell_is_not_protected_against_the_one_person_it_is_made_of(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    structure, auditor, primary, req = lone_row(1, 30.0)
    cx, call = np.flatnonzero(primary).tolist()
    after = sec.suppress_secondary(structure, auditor, primary, req)
    outsider_only = sec.suppress_secondary(
        structure, *lone_row(1, 30.0)[1:3], sec.Requirement(req.primary_width, req.secondary_width)
    )
    monkeypatch.setattr(sec, "sole_contributor_pairs", lambda structure, insider: {})
    before = sec.suppress_secondary(structure, *lone_row(1, 30.0)[1:3], req)
    # Before: more complements, only to hide (c, All) from the one person who makes it up (empty cells
    # are never complements: an attacker knows structural zeros, so the extra cells are non-empty ones).
    assert len(complements(structure, before, primary)) > len(complements(structure, after, primary))
    assert complements(structure, after, primary) == complements(structure, outsider_only, primary)
    assert complements(structure, after, primary) == [(("a",), (MARGIN,)), (("a",), ("x",))]
    assert after.exempt == [(cx, call), (call, cx)] and not after.unmet
    # Every suppressed cell still meets its width against the outside attacker.
    for cell, (lo, hi) in auditor.intervals(after.suppressed).items():
        assert hi - lo >= sec.required_width(cell, primary, req) - 1e-9
    # The only insider requirements the pattern leaves unmet are the two skipped, vacuous ones.
    deficits, _ = sec.find_deficits(auditor, after.suppressed, primary, req)
    assert {(d.cell, d.knowledge[0][0]) for d in deficits} <= {(cx, call), (call, cx)}


def test_two_contributors_are_still_protected_against_each_other() -> None:
    # With two people in (c, x), its larger contributor knows (c, All) >= 99 only: 41 wide, 50 needed.
    structure, auditor, primary, req = lone_row(2, 50.0)
    cx, call = np.flatnonzero(primary).tolist()
    assert sec.sole_contributor_pairs(structure, req.insider) == {}
    result = sec.suppress_secondary(structure, auditor, primary, req)
    outsider_only = sec.suppress_secondary(
        structure, *lone_row(2, 50.0)[1:3], sec.Requirement(req.primary_width, req.secondary_width)
    )
    assert result.exempt == [] and not result.unmet
    assert len(complements(structure, result, primary)) > len(complements(structure, outsider_only, primary))
    met: set[sec.DeficitKey] = set()
    assert sec.find_deficits(auditor, result.suppressed, primary, req, met=met)[0] == []
    assert (call, ((cx, 99.0, np.inf),)) in met


def test_sole_contributor_pairs_only_where_one_cell_contains_the_other() -> None:
    # Rows a/x, a/y, a/All, b/x, All; one column level. Sole contributors in (a/x, c), (a/All, All),
    # (b/x, c) and (All, d): a/x is inside a/All and the whole table; b/x and (All, d) are beside a/x.
    rows = [("a", "x"), ("a", "y"), ("a", MARGIN), ("b", "x"), ("b", MARGIN), (MARGIN, MARGIN)]
    structure = TableStructure(rows, [("c",), ("d",), (MARGIN,)])
    at = {
        name: structure.index[key]
        for name, key in {
            "ax_c": (("a", "x"), ("c",)),
            "a_all": (("a", MARGIN), (MARGIN,)),
            "bx_c": (("b", "x"), ("c",)),
            "all_d": ((MARGIN, MARGIN), ("d",)),
            "ay_d": (("a", "y"), ("d",)),
        }.items()
    }
    insider = {at[n]: (5.0, 5.0) for n in ("ax_c", "a_all", "bx_c", "all_d")}
    insider[at["ay_d"]] = (5.0, np.inf)  # two or more contributors: never paired
    pairs = sec.sole_contributor_pairs(structure, insider)
    assert pairs == {at["ax_c"]: frozenset({at["a_all"]}), at["a_all"]: frozenset({at["ax_c"]})}


def test_the_skipped_pair_is_in_the_tables_notes() -> None:
    # Row r4 is one record in (r4, c0): the skip is written down for a checker, and is no failure.
    rng = np.random.default_rng(3)
    records = [
        (f"r{i}", f"c{j}", float(v))
        for i in range(4)
        for j in range(4)
        for v in rng.lognormal(3, 1, 12 if (i + j) % 3 else 4)
    ]
    df = pd.DataFrame([*records, ("r4", "c0", 8000.0)], columns=["r", "c", "v"])
    result = protect_table(df, "r", "c", values="v", aggfunc="sum")
    assert result.status == "review"
    skipped = [n for n in result.notes if "is not protected against the sole contributor" in n]
    assert skipped == [
        "cell (('r4',), ('All',)) is not protected against the sole contributor of cell (('r4',), ('c0',)): "
        "both cells are that one contributor's record alone, so they know it exactly whatever is suppressed; "
        "it is protected against the outside attacker and every other contributor"
    ]
