"""Property: tables released one by one through the unit-incidence differencing gate never let an
attacker recover a group of fewer than ``threshold`` units, whatever their nesting, recodes and filters.

The attacker here is written in the test, independently of the code under test: one LP
(``scipy.optimize.linprog``) over all released tables at once, its variables the groups of units that
fall in the same leaf of every table (the attacker is even granted which groups are non-empty), its
constraints every published cell. No group of 1..threshold-1 units may have an interval narrower than
the protection width.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from tre_lib.disclosure import Rules, protect_table
from tre_lib.disclosure.differencing import UnitTable, check_unit_differencing, element_keys

RULES = Rules()
# Dimensions: a fine geography nested in a region, an age in single years recoded into bands two ways.
DIMENSIONS = ("district", "region", "sex", "age", "band", "broad")


def population(seed: int, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    district = rng.choice(6, n, p=[0.3, 0.3, 0.2, 0.1, 0.07, 0.03])
    age = rng.integers(0, 8, n)
    return pd.DataFrame(
        {
            "unit": [f"u{k}" for k in range(n)],
            "district": district.astype(str),
            "region": (district // 3).astype(str),
            "sex": rng.choice(["f", "m"], n),
            "age": age.astype(str),
            "band": (age // 2).astype(str),
            "broad": (age // 4).astype(str),
        }
    )


table_strategy = st.tuples(
    st.sampled_from(DIMENSIONS),
    st.one_of(st.none(), st.sampled_from(DIMENSIONS)),
    st.one_of(st.none(), st.tuples(st.sampled_from(DIMENSIONS), st.integers(0, 5))),
    st.booleans(),
)


def attacker_finds_a_small_group(released: list[tuple[UnitTable, pd.DataFrame]], frame: pd.DataFrame) -> bool:
    """The test's own attacker: one LP over all released tables."""
    n = len(frame)
    signature = np.zeros((n, len(released)), dtype=np.int64)
    cells: list[tuple[int, np.ndarray, float]] = []
    for t, (_table, rows) in enumerate(released):
        dims = [c for c in DIMENSIONS if c in rows.attrs["dims"]]
        leaf = np.full(n, -1)
        leaf[rows.index.to_numpy()] = rows.groupby(dims, sort=True).ngroup().to_numpy()
        signature[:, t] = leaf
    atoms, inverse = np.unique(signature, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    inside = ~(atoms < 0).all(axis=1)
    sizes = np.bincount(inverse, minlength=len(atoms))
    for t, (table, _rows) in enumerate(released):
        for _labels, leaves, value in table.cells:
            if value is None:
                continue
            # Map the table's leaves (its own codes) to the test's codes through the rows they hold.
            members = np.zeros(len(atoms), dtype=bool)
            own = _own_leaf(table, frame)
            test_codes = set(np.unique(signature[np.isin(own, leaves), t]).tolist())
            members[np.isin(atoms[:, t], list(test_codes))] = True
            cells.append((t, members, value))
    if not cells:
        return False
    matrix = np.array([m for _t, m, _v in cells], dtype=float)[:, inside]
    values = np.array([v for _t, _m, v in cells])
    small = [k for k, a in enumerate(np.flatnonzero(inside)) if 0 < sizes[a] < RULES.threshold]
    for k in small:
        c = np.zeros(matrix.shape[1])
        c[k] = 1.0
        lo = linprog(c, A_eq=matrix, b_eq=values, bounds=(0, None), method="highs")
        hi = linprog(-c, A_eq=matrix, b_eq=values, bounds=(0, None), method="highs")
        assert lo.status == 0 and hi.status in (0, 3)
        if hi.status == 3:
            continue
        if (-hi.fun) - lo.fun < RULES.required_count_width - 1e-6:
            return True
    return False


def _own_leaf(table: UnitTable, frame: pd.DataFrame) -> np.ndarray:
    keys, _units = element_keys(frame["unit"].tolist())
    out = np.full(len(frame), -1)
    pos = np.searchsorted(table.keys, keys)
    pos = np.clip(pos, 0, max(len(table.keys) - 1, 0))
    hit = table.keys[pos] == keys if len(table.keys) else np.zeros(len(frame), dtype=bool)
    out[hit] = table.leaf[pos[hit]]
    return out


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(40, 160),
    tables=st.lists(table_strategy, min_size=2, max_size=5),
)
def test_no_group_below_the_threshold_is_ever_recoverable_from_the_released_tables(
    seed: int, n: int, tables: list[tuple[str, str | None, tuple[str, int] | None, bool]]
) -> None:
    frame = population(seed, n)
    row_keys, unit_keys = element_keys(frame["unit"].tolist())
    released: list[tuple[UnitTable, pd.DataFrame]] = []
    for k, (rows_var, cols_var, exclude, margins) in enumerate(tables):
        if cols_var == rows_var:
            cols_var = None
        data = frame
        if exclude is not None:
            data = frame[frame[exclude[0]] != str(exclude[1])]
        if data.empty:
            continue
        protected = protect_table(data, rows_var, cols_var, rules=RULES, margins=margins)
        if protected.status == "fail":
            continue
        idx = data.index.to_numpy()
        table = UnitTable.from_frame(f"t{k}", protected, data, row_keys[idx], unit_keys[idx], universe="u")
        if check_unit_differencing(table, [t for t, _ in released], RULES):
            continue
        rows = data.copy()
        rows.attrs["dims"] = [rows_var, *([cols_var] if cols_var else [])]
        released.append((table, rows))
        assert not attacker_finds_a_small_group(released, frame), [t.table_id for t, _ in released]
