"""The max-flow audit of 2-D count tables gives exactly the LP's intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tre_lib.disclosure import attacker_intervals, audit
from tre_lib.disclosure.audit import Auditor
from tre_lib.disclosure.structure import MARGIN, TableStructure


def _table(counts: np.ndarray) -> tuple[TableStructure, np.ndarray]:
    n_rows, n_cols = counts.shape
    full = np.zeros((n_rows + 1, n_cols + 1))
    full[:n_rows, :n_cols] = counts
    full[:n_rows, n_cols] = counts.sum(axis=1)
    full[n_rows, :n_cols] = counts.sum(axis=0)
    full[n_rows, n_cols] = counts.sum()
    rows = [(f"r{i}",) for i in range(n_rows)] + [(MARGIN,)]
    cols = [(f"c{j}",) for j in range(n_cols)] + [(MARGIN,)]
    return TableStructure(rows, cols), full.reshape(-1)


def _both(structure: TableStructure, values: np.ndarray, suppressed: np.ndarray) -> tuple[dict, dict]:
    size = structure.size
    flow = Auditor(structure, values, np.zeros(size), np.full(size, np.inf), integer=True)
    lp = Auditor(structure, values, np.zeros(size), np.full(size, np.inf), integer=True)
    lp._arcs = None  # force the LP
    found = flow.intervals(suppressed)
    assert flow.lp_solves == 0 and flow.flow_solves + flow.flow_settled > 0
    return found, lp.intervals(suppressed)


def test_hand_worked_rectangle_and_an_unbounded_cell() -> None:
    structure, values = _table(np.array([[20, 30, 3], [25, 40, 35], [30, 12, 50]]))
    suppressed = np.zeros(structure.size, dtype=bool)
    for i in (2, 0, 4, 6):  # (a,z), (a,x), (b,x), (b,z): one free rectangle, t in [-3, 20]
        suppressed[i] = True
    flow, lp = _both(structure, values, suppressed)
    assert flow == lp == {0: (0.0, 23.0), 2: (0.0, 23.0), 4: (22.0, 45.0), 6: (15.0, 38.0)}
    # Hiding the grand total and one column total as well leaves a cell with no upper bound.
    suppressed[:] = False
    for i in (0, 3, 12, 15):  # (a,x), (a,All), (All,x), (All,All)
        suppressed[i] = True
    flow, lp = _both(structure, values, suppressed)
    assert flow == lp
    assert flow[0] == (0.0, np.inf)


def test_hand_worked_six_cycle_and_a_bridge_cell() -> None:
    # Six cells on one cycle r0-c0-r2-c2-r1-c1-r0 (no rectangle among them): the only freedom is
    # +t on (r0,c0), (r1,c1), (r2,c2) and -t on (r0,c1), (r1,c2), (r2,c0), with t in [-8, 3] ((r1,c1) = 8
    # and (r1,c2) = 3 may not go negative). (r3,c0) is alone in its row: a bridge of the network, exact.
    structure, values = _table(np.array([[10, 20, 5], [7, 8, 3], [12, 6, 9], [4, 11, 13]]))
    suppressed = np.zeros(structure.size, dtype=bool)
    suppressed[[0, 1, 5, 6, 10, 8, 12]] = True  # 4 columns per row: index = 4 * row + column
    flow, lp = _both(structure, values, suppressed)
    expected = {
        0: (2.0, 13.0),
        1: (17.0, 28.0),
        5: (0.0, 11.0),
        6: (0.0, 11.0),
        10: (1.0, 12.0),
        8: (9.0, 20.0),
        12: (4.0, 4.0),
    }
    assert flow == lp == expected


def test_four_cycles_settle_shrinks_to_zero_and_flows_answer_the_rest() -> None:
    # The rectangle of the first test: (a,x) = 20 and (a,z) = 3 can fall to zero along the rectangle itself
    # (through (b,z) = 35 and (b,x) = 25), so those two ends need no flow; (b,x) and (b,z) cannot (3 and 20
    # flow, less than their values), and every growth is a flow capped at the cut around the cell.
    structure, values = _table(np.array([[20, 30, 3], [25, 40, 35], [30, 12, 50]]))
    size = structure.size
    rectangle = np.zeros(size, dtype=bool)
    rectangle[[0, 2, 4, 6]] = True
    auditor = Auditor(structure, values, np.zeros(size), np.full(size, np.inf), integer=True)
    assert auditor.intervals(rectangle)[4] == (22.0, 45.0)
    assert (auditor.flow_settled, auditor.flow_solves) == (2, 1)
    # The six-cycle has no 4-cycle: every end is a flow.
    structure, values = _table(np.array([[10, 20, 5], [7, 8, 3], [12, 6, 9]]))
    cycle = np.zeros(structure.size, dtype=bool)
    cycle[[0, 1, 5, 6, 10, 8]] = True
    auditor = Auditor(
        structure, values, np.zeros(structure.size), np.full(structure.size, np.inf), integer=True
    )
    assert auditor.intervals(cycle)[0] == (2.0, 13.0)
    assert auditor.flow_solves == 1 and auditor.flow_settled == 0


TABLES = st.integers(2, 4).flatmap(
    lambda r: st.integers(2, 4).flatmap(
        lambda c: st.tuples(
            st.lists(st.integers(0, 40), min_size=r * c, max_size=r * c).map(
                lambda v: np.array(v, dtype=float).reshape(r, c)
            ),
            st.lists(st.booleans(), min_size=(r + 1) * (c + 1), max_size=(r + 1) * (c + 1)),
        )
    )
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TABLES)
def test_flow_intervals_equal_lp_intervals(case: tuple[np.ndarray, list[bool]]) -> None:
    counts, mask = case
    structure, values = _table(counts)
    flow, lp = _both(structure, values, np.array(mask, dtype=bool)) if any(mask) else ({}, {})
    assert flow == lp


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TABLES)
def test_flows_alone_equal_lp_intervals(case: tuple[np.ndarray, list[bool]]) -> None:
    # With the bounds switched off every interval end is a max-flow question (cell arcs removed per copy).
    counts, mask = case
    if not any(mask):
        return
    structure, values = _table(counts)

    def nothing_known(self: audit._FlowGroup, ks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.zeros(len(ks)), np.full(len(ks), np.inf), np.zeros(len(ks))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(audit._FlowGroup, "_bounds", nothing_known)
        flow, lp = _both(structure, values, np.array(mask, dtype=bool))
    assert flow == lp


def _published(structure: TableStructure, values: np.ndarray, suppressed: np.ndarray) -> pd.DataFrame:
    shown = np.where(suppressed, np.nan, values).reshape(len(structure.row_keys), len(structure.col_keys))
    return pd.DataFrame(
        shown, index=[k[0] for k in structure.row_keys], columns=[k[0] for k in structure.col_keys]
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TABLES)
def test_published_table_intervals_by_flow_equal_the_lp(case: tuple[np.ndarray, list[bool]]) -> None:
    # On a published table the suppressed values are unknown: the flows start from an LP vertex instead.
    counts, mask = case
    structure, values = _table(counts)
    published = _published(structure, values, np.array(mask, dtype=bool))
    by_flow = attacker_intervals(published, integer=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(audit, "_network_arcs", lambda _structure: None)
        by_lp = attacker_intervals(published, integer=True)
    assert by_flow == by_lp


def test_edge_blocks_split_at_cut_vertices_and_bridges() -> None:
    # Two triangles 0-1-2 and 2-3-4 sharing node 2, and a bridge 4-5.
    edges = [(0, 1), (1, 2), (2, 0), (2, 3), (3, 4), (4, 2), (4, 5)]
    blocks = audit.edge_blocks(6, edges)
    assert blocks[0] == blocks[1] == blocks[2]
    assert blocks[3] == blocks[4] == blocks[5]
    assert len({blocks[0], blocks[3], blocks[6]}) == 3
