from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from disclosure_factories import table_from_counts

from tre_lib.disclosure import TableSpecError, protect_table
from tre_lib.disclosure.rounding import controlled_round, round_nearest
from tre_lib.disclosure.structure import MARGIN, TableStructure

COUNTS = [[3, 17, 8], [12, 4, 21], [7, 9, 1]]


def _assert_additive(table: pd.DataFrame) -> None:
    body = table.drop(index=MARGIN, columns=MARGIN)
    assert (body.sum(axis=1) == table.loc[body.index, MARGIN]).all()
    assert (body.sum(axis=0) == table.loc[MARGIN, body.columns]).all()
    assert body.to_numpy().sum() == table.loc[MARGIN, MARGIN]


def test_controlled_rounding_is_additive_and_close() -> None:
    df = table_from_counts(COUNTS, "abc", "xyz")
    result = protect_table(df, "r", "c", rules={"mitigation": "round", "rounding_base": 5})
    truth = pd.crosstab(df["r"], df["c"], margins=True)
    assert (result.table % 5 == 0).all().all()
    assert (abs(result.table - truth) < 5).all().all()
    _assert_additive(result.table)
    assert result.status == "review"  # small cells were present; rounding mitigated them
    assert result.intervals == {} and not result.suppressed


def test_multiples_of_the_base_are_left_alone() -> None:
    df = table_from_counts([[5, 10], [15, 3]], "ab", "xy")
    result = protect_table(df, "r", "c", rules={"mitigation": "round"})
    assert (
        result.table.loc["a", "x"] == 5
        and result.table.loc["a", "y"] == 10
        and result.table.loc["b", "x"] == 15
    )


def test_nearest_rounding_that_breaks_additivity_is_audited_and_refused() -> None:
    df = table_from_counts([[3, 3, 3], [3, 3, 3]], "ab", "xyz")
    result = protect_table(df, "r", "c", rules={"mitigation": "round", "rounding_method": "nearest"})
    # 3 -> 5 each but 9 -> 10: three cells of at least 3 adding to at most 12 are each at most 6, narrower
    # than the rounding's own [3, 7]; the table is refused rather than published.
    assert result.status == "fail" and result.table.isna().all().all()


def test_nearest_rounding_passes_when_the_margins_give_nothing_back() -> None:
    df = table_from_counts([[10, 20], [15, 25]], "ab", "xy")
    result = protect_table(df, "r", "c", rules={"mitigation": "round", "rounding_method": "nearest"})
    assert result.status == "pass" and result.table.loc["a", MARGIN] == 30
    assert list(round_nearest(np.array([2.0, 2.5, 7.4, 12.5]), 5)) == [0, 5, 5, 15]


def test_controlled_rounding_on_a_hierarchy_and_in_3_levels() -> None:
    structure = TableStructure(
        [("n", "a"), ("n", "b"), ("n", MARGIN), ("s", "c"), ("s", MARGIN), (MARGIN, MARGIN)],
        [("x",), ("y",), (MARGIN,)],
    )
    body = np.array([[3, 8], [6, 2], [11, 14]], dtype=float)
    rows = [body[0], body[1], body[0] + body[1], body[2], body[2], body.sum(axis=0)]
    values = np.array([[*r, r.sum()] for r in rows]).reshape(-1)
    rounded = controlled_round(structure, values, 5)
    assert structure.check_additive(rounded) == []
    assert np.all(np.abs(rounded - values) < 5) and np.all(rounded % 5 == 0)


def test_rounding_refuses_magnitude_tables() -> None:
    df = table_from_counts(COUNTS, "abc", "xyz").assign(v=1.0)
    with pytest.raises(TableSpecError, match="count tables"):
        protect_table(df, "r", "c", values="v", aggfunc="sum", rules={"mitigation": "round"})
