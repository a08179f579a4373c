"""Per-cell statistics of a table, computed by an engine (pandas here; Spark and Dask in ``engines``).

Every rule needs only a handful of numbers per cell: how many records, how many non-missing values, how
many negative, the total, the largest few contributions and the published statistic itself. Engines compute
these for every grouping of the table (leaves and each level of margins) and hand back only these numbers,
so the rules never need the microdata in the driver.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from tre_lib.disclosure.errors import TableSpecError
from tre_lib.disclosure.structure import MARGIN, CellKey, Key

AGGFUNCS = ("count", "sum", "mean", "median", "quantile", "min", "max", "std", "var")
ADDITIVE = ("count", "sum")


@dataclass(frozen=True)
class CellStats:
    """What the rules know about one cell.

    Attributes:
        n_rows: records in the cell.
        n: contributors with a non-missing value (records, for a count table).
        n_missing: records whose value is missing.
        n_negative: contributions below zero.
        total: sum of the values (the count, for a count table).
        top: the largest contributions, largest first.
        value: the published statistic (NaN when undefined, e.g. the mean of an empty cell).
    """

    n_rows: int = 0
    n: int = 0
    n_missing: int = 0
    n_negative: int = 0
    total: float = 0.0
    top: tuple[float, ...] = ()
    value: float = math.nan


@dataclass
class TableStats:
    """Per-cell statistics of a whole table, as an engine returns them."""

    row_keys: list[Key]
    col_keys: list[Key]
    cells: dict[CellKey, CellStats] = field(default_factory=dict)
    dropped_rows: int = 0

    def get(self, cell: CellKey, aggfunc: str) -> CellStats:
        """Statistics of a cell; an unobserved cell is empty (count and sum 0, other statistics NaN)."""
        found = self.cells.get(cell)
        if found is not None:
            return found
        return CellStats(value=0.0 if aggfunc in ADDITIVE else math.nan)


def check_spec(
    columns_present: Iterable[str],
    index: Sequence[str],
    columns: Sequence[str],
    values: str | None,
    aggfunc: str,
) -> None:
    """Raise TableSpecError unless the table can be built from these columns."""
    present = set(columns_present)
    if not index:
        raise TableSpecError("index must name at least one column to group rows by")
    for name in (*index, *columns, *([values] if values is not None else [])):
        if name not in present:
            raise TableSpecError(f"column {name!r} is not in the data; columns are {sorted(present)}")
    if len(set(index) | set(columns)) != len(index) + len(columns):
        raise TableSpecError("a column may appear only once across index and columns")
    if aggfunc not in AGGFUNCS:
        raise TableSpecError(f"aggfunc {aggfunc!r} is not supported; use one of {', '.join(AGGFUNCS)}")
    if aggfunc != "count" and values is None:
        raise TableSpecError(f"aggfunc={aggfunc!r} needs values=<a numeric column>")


def grouping_sets(n_index: int, n_columns: int, margins: bool) -> list[tuple[int, int]]:
    """(row levels, column levels) kept by each grouping: the leaves and, with margins, every prefix."""
    rows = range(n_index + 1) if margins else [n_index]
    cols = range(n_columns + 1) if margins and n_columns else [n_columns]
    return [(i, j) for i in rows for j in cols]


def split_key(group: Any, n_keys: int, i: int, j: int, n_index: int, n_columns: int) -> CellKey:
    """Turn a groupby key of the first ``i`` index and ``j`` column variables into (row key, column key)."""
    parts: tuple[Hashable, ...]
    if n_keys == 0:
        parts = ()
    elif isinstance(group, tuple):
        parts = tuple(_plain(p) for p in group)
    else:
        parts = (_plain(group),)
    row = (*parts[:i], *([MARGIN] * (n_index - i)))
    col = (*parts[i:], *([MARGIN] * (n_columns - j)))
    return row, col


def _plain(value: Any) -> Hashable:
    """numpy scalars as Python ones, so keys compare and serialise simply."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def ordered_keys(leaves: Iterable[Key], nlevels: int, margins: bool) -> list[Key]:
    """Keys in display order: sorted leaves, each subtotal after its children, the grand total last."""
    leaf_list = sorted(set(leaves), key=_sort_key)
    if not margins or nlevels == 0:
        return leaf_list

    def walk(prefix: Key, level: int) -> list[Key]:
        if level == nlevels:
            return [prefix]
        out: list[Key] = []
        seen: list[Hashable] = []
        for leaf in leaf_list:
            if leaf[:level] == prefix and leaf[level] not in seen:
                seen.append(leaf[level])
        for part in seen:
            out.extend(walk((*prefix, part), level + 1))
        out.append((*prefix, *([MARGIN] * (nlevels - level))))
        return out

    return walk((), 0)


def _sort_key(key: Key) -> tuple[tuple[int, str, Any], ...]:
    # Mixed types (e.g. int and str categories) cannot be compared directly; sort by type name first.
    return tuple((0 if isinstance(p, int | float) else 1, type(p).__name__, p) for p in key)


def check_no_margin_label(leaves: Iterable[Key]) -> None:
    """A category literally called like the margin would be confused with it."""
    for key in leaves:
        if MARGIN in key:
            raise TableSpecError(
                f"a category is called {MARGIN!r}, which is the margin label; rename that category first"
            )


def pandas_cell_stats(
    df: pd.DataFrame,
    index: Sequence[str],
    columns: Sequence[str],
    values: str | None,
    aggfunc: str,
    q: float,
    top_k: int,
    margins: bool,
) -> TableStats:
    """Per-cell statistics of a pandas DataFrame for every grouping of the table.

    Args:
        df: the microdata, one row per contributor.
        index: row variables.
        columns: column variables (may be empty for a 1-D table).
        values: value column, or None for a count table.
        aggfunc: the published statistic.
        q: quantile, for ``aggfunc="quantile"``.
        top_k: how many of the largest contributions to keep per cell.
        margins: also compute every margin.

    Returns:
        The table's keys and per-cell statistics.
    """
    keys = [*index, *columns]
    data = df[[*keys, *([values] if values is not None else [])]]
    complete = data[keys].notna().all(axis=1)
    dropped = int((~complete).sum())
    data = data[complete]
    # Factorise each key column once: every grouping below (leaves and margins) then groups on integer
    # codes instead of hashing the (often string) categories again.
    data = data.assign(
        **{k: data[k].astype("category") for k in keys if not isinstance(data[k].dtype, pd.CategoricalDtype)}
    )
    if values is not None:
        if not pd.api.types.is_numeric_dtype(data[values]):
            raise TableSpecError(f"values column {values!r} must be numeric, got {data[values].dtype}")
        data = data.assign(__neg=(data[values] < 0).astype("int64"))
        ranked = data.dropna(subset=[values]).sort_values(values, ascending=False, kind="stable")
    out: dict[CellKey, CellStats] = {}
    for i, j in grouping_sets(len(index), len(columns), margins):
        gkeys = [*index[:i], *columns[:j]]
        groups: Any = data.groupby(gkeys, observed=True, sort=False, dropna=True) if gkeys else None
        if values is None:
            if not gkeys:
                out[split_key((), 0, i, j, len(index), len(columns))] = count_cell(len(data))
                continue
            sizes = groups.size()
            for parts, size in zip(_python_keys(sizes.index), sizes.tolist(), strict=True):
                out[split_key(parts, len(gkeys), i, j, len(index), len(columns))] = count_cell(size)
            continue
        if gkeys:
            column = groups[values]
            summary = pd.DataFrame(
                {
                    "n_rows": groups.size(),
                    "n": column.count(),
                    "total": column.sum(),
                    "n_negative": groups["__neg"].sum(),
                    "value": _aggregate(column, aggfunc, q),
                }
            )
            tops = (
                ranked.groupby(gkeys, observed=True, sort=False)
                .head(top_k)
                .groupby(gkeys, observed=True, sort=False)[values]
                .agg(tuple)
            )
        else:
            series = data[values]
            summary = pd.DataFrame(
                {
                    "n_rows": [len(data)],
                    "n": [int(series.count())],
                    "total": [float(series.sum())],
                    "n_negative": [int(data["__neg"].sum())],
                    "value": [_aggregate(series, aggfunc, q)],
                },
                index=pd.Index([()], tupleize_cols=False),
            )
            tops = pd.Series([tuple(ranked[values].head(top_k))], index=pd.Index([()], tupleize_cols=False))
        top_lookup = tops.to_dict()
        for group, row in zip(summary.index, summary.itertuples(index=False), strict=True):
            cell = split_key(group, len(gkeys), i, j, len(index), len(columns))
            out[cell] = magnitude_cell(
                aggfunc, row.n_rows, row.n, row.total, row.n_negative, row.value, top_lookup.get(group, ())
            )
    return assemble_table_stats(out, len(index), len(columns), margins, dropped)


def _python_keys(index: pd.Index) -> list[tuple[Hashable, ...]]:
    """A groupby result's keys as tuples of plain Python values, a level at a time (fast on big tables)."""
    if isinstance(index, pd.MultiIndex):
        levels = [index.get_level_values(k).tolist() for k in range(index.nlevels)]
        return list(zip(*levels, strict=True))
    return [(v,) for v in index.tolist()]


@functools.lru_cache(maxsize=4096)
def count_cell(n_rows: int) -> CellStats:
    """Statistics of a cell of a count table without a value column: every record is a contributor."""
    return CellStats(n_rows=n_rows, n=n_rows, total=float(n_rows), value=float(n_rows))


def magnitude_cell(
    aggfunc: str,
    n_rows: Any,
    n: Any,
    total: Any,
    n_negative: Any,
    value: Any,
    top: Iterable[Any],
) -> CellStats:
    """Statistics of a cell with a value column, from the numbers an engine aggregated.

    Every engine hands its aggregates through here so that they mean the same on pandas, Spark and Dask:
    a missing total (an engine's sum over no values) is 0 as in pandas, a missing statistic is NaN, and a
    count table publishes the number of non-missing values.

    Args:
        aggfunc: the published statistic.
        n_rows: records in the cell.
        n: records with a non-missing value (the contributors).
        total: sum of the values (None or NaN when there are none).
        n_negative: values below zero.
        value: the published statistic (None or NaN when undefined).
        top: the largest values, largest first.

    Returns:
        The cell's statistics.
    """
    rows, contributors = int(n_rows), int(n)
    return CellStats(
        n_rows=rows,
        n=contributors,
        n_missing=rows - contributors,
        n_negative=int(n_negative or 0),
        total=_number(total, 0.0),
        top=tuple(float(x) for x in top),
        value=float(contributors)
        if aggfunc == "count"
        else _number(value, 0.0 if aggfunc == "sum" else math.nan),
    )


def _number(x: Any, missing: float) -> float:
    if x is None:
        return missing
    out = float(x)
    return missing if math.isnan(out) else out


def assemble_table_stats(
    cells: dict[CellKey, CellStats], n_index: int, n_columns: int, margins: bool, dropped_rows: int
) -> TableStats:
    """The table's keys in display order around the cells an engine computed.

    Args:
        cells: statistics of every observed cell, margins included.
        n_index: number of row variables.
        n_columns: number of column variables.
        margins: the table has margins.
        dropped_rows: records left out for a missing row or column category.

    Returns:
        The table statistics.

    Raises:
        TableSpecError: a category is named like the margin label.
    """
    leaves = [cell for cell in cells if MARGIN not in cell[0] and MARGIN not in cell[1]]
    check_no_margin_label(k for cell in leaves for k in cell)
    return TableStats(
        row_keys=ordered_keys((r for r, _ in leaves), n_index, margins),
        col_keys=ordered_keys((c for _, c in leaves), n_columns, margins),
        cells=cells,
        dropped_rows=dropped_rows,
    )


def _aggregate(column: Any, aggfunc: str, q: float) -> Any:
    # A cell whose values are all missing has no median/quantile: NaN is the answer (the missing rule
    # reports it), not a warning about an empty slice.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "All-NaN slice encountered", RuntimeWarning)
        warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
        if aggfunc == "quantile":
            return column.quantile(q)
        if aggfunc == "count":
            return column.count()
        return column.agg(aggfunc)
