"""Factories for small hand-checkable tables (imported by the tests of this folder)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd


def table_from_counts(
    counts: Sequence[Sequence[int]], rows: Sequence[str], cols: Sequence[str]
) -> pd.DataFrame:
    """Microdata (one record per person) whose crosstab is ``counts``."""
    records = [(r, c) for i, r in enumerate(rows) for j, c in enumerate(cols) for _ in range(counts[i][j])]
    return pd.DataFrame(records, columns=["r", "c"])


def magnitude_records(cells: dict[tuple[str, str], Sequence[float]]) -> pd.DataFrame:
    """Microdata with one record per contribution, ``{(row, col): [values...]}``."""
    records = [(r, c, v) for (r, c), values in cells.items() for v in values]
    return pd.DataFrame(records, columns=["r", "c", "v"])
