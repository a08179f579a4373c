"""Bad input to protect_table: a typed error whose message says what is wrong, never a table of nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tre_lib.disclosure import (
    DisclosureError,
    ProfileNotFoundError,
    RulesError,
    TableSpecError,
    protect_table,
)

GOOD = pd.DataFrame({"r": list("ab") * 20, "c": list("xxyy") * 10, "v": np.arange(40.0)})

CASES: dict[str, tuple[Callable[[], Any], type[DisclosureError], str]] = {
    "empty frame": (
        lambda: protect_table(GOOD.head(0), "r", "c"),
        TableSpecError,
        "no rows to tabulate",
    ),
    "empty frame, sums": (
        lambda: protect_table(GOOD.head(0), "r", "c", values="v", aggfunc="sum"),
        TableSpecError,
        "no rows to tabulate",
    ),
    "all-NaN category column": (
        lambda: protect_table(GOOD.assign(r=np.nan), "r", "c"),
        TableSpecError,
        r"40 record\(s\) had a missing row or column category",
    ),
    "all-NaN value column": (
        lambda: protect_table(GOOD.assign(v=np.nan), "r", "c", values="v", aggfunc="sum"),
        TableSpecError,
        "'v' has no non-missing values",
    ),
    "all-NaN value column, median": (
        lambda: protect_table(GOOD.assign(v=np.nan), "r", "c", values="v", aggfunc="median"),
        TableSpecError,
        "'v' has no non-missing values",
    ),
    "non-numeric values": (
        lambda: protect_table(GOOD.assign(v="ten"), "r", "c", values="v", aggfunc="mean"),
        TableSpecError,
        "must be numeric",
    ),
    "unknown rule name": (
        lambda: protect_table(GOOD, "r", "c", rules={"thresold": 5}),
        RulesError,
        "'thresold': unknown parameter; known ones are",
    ),
    "unknown profile": (
        lambda: protect_table(GOOD, "r", "c", rules="no-such-profile"),
        ProfileNotFoundError,
        "known profiles: .*default",
    ),
    "unknown aggfunc": (
        lambda: protect_table(GOOD, "r", "c", values="v", aggfunc="mode"),
        TableSpecError,
        "aggfunc 'mode' is not supported",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_a_typed_error_that_says_what_is_wrong(case: str) -> None:
    call, error, message = CASES[case]
    with pytest.raises(error, match=message):
        call()


def test_some_missing_values_are_still_a_table() -> None:
    # Only a column with no value at all is refused; a few missing values are reported per cell.
    partly = GOOD.assign(v=GOOD["v"].where(GOOD.index % 7 != 0))
    result = protect_table(partly, "r", "c", values="v", aggfunc="sum", rules={"threshold": 3})
    assert result.cells[("a", "x")].stats.n_missing > 0
    assert result.status in ("pass", "review")
