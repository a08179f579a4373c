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
from tre_lib.disclosure.structure import MARGIN, TableStructure


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


@pytest.mark.parametrize("seed", [1, 2, 4, 5, 11])
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
