"""Per-cell statistics of a table, computed by an engine (pandas here; Spark and Dask in ``engines``).

Every rule needs only a handful of numbers per cell: how many records, how many non-missing values, how
many negative, the total, the largest few contributions and the published statistic itself. Engines compute
these for every grouping of the table (leaves and each level of margins) and hand back only these numbers,
so the rules never need the microdata in the driver.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
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
        top: the largest contributions, largest first (per unit, summed over its records, when a unit
            column is declared).
        value: the published statistic (NaN when undefined, e.g. the mean of an empty cell).
        n_units: distinct units (persons, businesses) with a non-missing value, when a unit column is
            declared; None when every record counts as its own contributor.
    """

    n_rows: int = 0
    n: int = 0
    n_missing: int = 0
    n_negative: int = 0
    total: float = 0.0
    top: tuple[float, ...] = ()
    value: float = math.nan
    n_units: int | None = None

    @property
    def contributors(self) -> int:
        """Who the threshold counts: distinct units when declared, else records with a value."""
        return self.n if self.n_units is None else self.n_units


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
    unit: str | None = None,
) -> TableStats:
    """Per-cell statistics of a pandas DataFrame for every grouping of the table.

    Args:
        df: the microdata, one row per record.
        index: row variables.
        columns: column variables (may be empty for a 1-D table).
        values: value column, or None for a count table.
        aggfunc: the published statistic.
        q: quantile, for ``aggfunc="quantile"``.
        top_k: how many of the largest contributions to keep per cell.
        margins: also compute every margin.
        unit: column of the unit id (person, business): contributors are then distinct units and each
            unit's contribution is the sum of its records' values. Records without a unit id count as one
            unit together (the cautious choice: fewer contributors, a larger largest one).

    Returns:
        The table's keys and per-cell statistics.

    Raises:
        TableSpecError: bad input (see :func:`check_values`, :func:`check_categories`).
    """
    keys = [*index, *columns]
    extra = [c for c in (values, unit) if c is not None and c not in keys]
    data = df[[*keys, *dict.fromkeys(extra)]]
    complete = data[keys].notna().all(axis=1)
    dropped = int((~complete).sum())
    data = data[complete]
    for k in keys:
        check_categories(data[k], k)
    if values is not None:
        data = data.assign(**{values: check_values(data[values], values)})
    if unit is not None:
        data = data.assign(__unit=data[unit].astype(object).where(data[unit].notna(), "__tre_no_unit__"))
    # Factorise each key column once: every grouping below (leaves and margins) then groups on integer
    # codes instead of hashing the (often string) categories again.
    data = data.assign(
        **{k: data[k].astype("category") for k in keys if not isinstance(data[k].dtype, pd.CategoricalDtype)}
    )
    ranked: pd.DataFrame | None = None
    if values is not None:
        data = data.assign(__neg=(data[values] < 0).astype("int64"))
        if unit is not None:
            # Each unit contributes the sum of its records (NaN when all its values are missing).
            with np.errstate(over="ignore", invalid="ignore"):  # overflow is refused by check_total
                per_unit = (
                    data.groupby([*keys, "__unit"], observed=True, sort=False)[values]
                    .sum(min_count=1)
                    .reset_index()
                )
            ranked = per_unit.dropna(subset=[values]).sort_values(values, ascending=False, kind="stable")
        else:
            ranked = data.dropna(subset=[values]).sort_values(values, ascending=False, kind="stable")
    out: dict[CellKey, CellStats] = {}
    with np.errstate(over="ignore", invalid="ignore"):  # an overflowing total is refused by check_total
        for i, j in grouping_sets(len(index), len(columns), margins):
            _grouping_stats(
                data,
                ranked,
                index,
                columns,
                values,
                aggfunc,
                q,
                top_k,
                unit,
                i,
                j,
                out,
            )
    return assemble_table_stats(out, len(index), len(columns), margins, dropped)


def _grouping_stats(
    data: pd.DataFrame,
    ranked: pd.DataFrame | None,
    index: Sequence[str],
    columns: Sequence[str],
    values: str | None,
    aggfunc: str,
    q: float,
    top_k: int,
    unit: str | None,
    i: int,
    j: int,
    out: dict[CellKey, CellStats],
) -> None:
    """The cells of one grouping (the first ``i`` row and ``j`` column variables) into ``out``."""
    gkeys = [*index[:i], *columns[:j]]
    groups: Any = data.groupby(gkeys, observed=True, sort=False, dropna=True) if gkeys else None
    units = _unit_counts(data, ranked, gkeys, unit, values)
    if values is None:
        if not gkeys:
            out[split_key((), 0, i, j, len(index), len(columns))] = count_cell(
                len(data), units.get((), None) if units is not None else None
            )
            return
        sizes = groups.size()
        for parts, group, size in zip(_python_keys(sizes.index), sizes.index, sizes.tolist(), strict=True):
            out[split_key(parts, len(gkeys), i, j, len(index), len(columns))] = count_cell(
                size, int(units[group]) if units is not None else None
            )
        return
    assert ranked is not None  # always built for a value column
    top_source = ranked
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
        if unit is not None:
            # A margin's units are summed over its children first (one unit may sit in several).
            top_source = (
                ranked.groupby([*gkeys, "__unit"], observed=True, sort=False)[values].sum().reset_index()
            )
            top_source = top_source.sort_values(values, ascending=False, kind="stable")
        tops = (
            top_source.groupby(gkeys, observed=True, sort=False)
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
        if unit is not None:
            top_source = ranked.groupby("__unit", sort=False)[values].sum().sort_values(ascending=False)
            tops = pd.Series([tuple(top_source.head(top_k))], index=pd.Index([()], tupleize_cols=False))
        else:
            tops = pd.Series([tuple(ranked[values].head(top_k))], index=pd.Index([()], tupleize_cols=False))
    top_lookup = tops.to_dict()
    for group, row in zip(summary.index, summary.itertuples(index=False), strict=True):
        cell = split_key(group, len(gkeys), i, j, len(index), len(columns))
        stats = magnitude_cell(
            aggfunc, row.n_rows, row.n, row.total, row.n_negative, row.value, top_lookup.get(group, ())
        )
        if units is not None:
            stats = dataclasses.replace(stats, n_units=int(units.get(group, 0)))
        check_total(stats, values, cell)
        out[cell] = stats


def _unit_counts(
    data: pd.DataFrame, ranked: pd.DataFrame | None, gkeys: list[str], unit: str | None, values: str | None
) -> Any:
    """Distinct units per group (with a non-missing value, for a magnitude table), or None without units."""
    if unit is None:
        return None
    source = data if ranked is None else ranked  # ranked: one row per (leaf, unit) with a value
    if not gkeys:
        return {(): int(source["__unit"].nunique())}
    counts = source.groupby(gkeys, observed=True, sort=False)["__unit"].nunique()
    return counts.to_dict()


def check_categories(column: pd.Series, name: str) -> None:
    """Refuse categories that would be tabulated wrongly.

    Raises:
        TableSpecError: two different values print the same (``1`` and ``"1"``) and would be two rows that
            look alike, or a category is infinite.
    """
    if column.dtype == object or isinstance(column.dtype, pd.CategoricalDtype):
        uniques = pd.unique(column.astype(object))
        seen: dict[str, Any] = {}
        for value in uniques:
            text = str(value)
            if text in seen and seen[text] is not value and type(seen[text]) is not type(value):
                raise TableSpecError(
                    f"column {name!r} holds {seen[text]!r} ({type(seen[text]).__name__}) and {value!r} "
                    f"({type(value).__name__}): two categories that print alike; convert the column to "
                    "one type first (e.g. .astype(str))"
                )
            seen.setdefault(text, value)
        if MARGIN in seen and seen[MARGIN] == MARGIN:
            raise TableSpecError(
                f"column {name!r} has a category {MARGIN!r}, which is the margin label: its row would be "
                "confused with the totals; rename that category first"
            )
    elif pd.api.types.is_float_dtype(column.dtype):
        arr = column.to_numpy(dtype=float, na_value=math.nan)
        infinite = np.isinf(arr)
        if infinite.any():
            raise TableSpecError(
                f"column {name!r} has the category {float(arr[infinite][0])!r}; an infinite value is not a "
                "category"
            )


def check_values(column: pd.Series, name: str) -> pd.Series:
    """The value column as float64, or a clear error.

    Nullable integers and floats (``Int64``, ``Float64``) become float64 with their ``NA`` as NaN (a missing
    value, reported by the missing rule).

    Raises:
        TableSpecError: the column is not numeric, or holds +inf or -inf (naming the column and the value).
    """
    if not pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype):
        raise TableSpecError(f"values column {name!r} must be numeric, got {column.dtype}")
    as_float = pd.Series(column.to_numpy(dtype=float, na_value=math.nan), index=column.index, name=name)
    infinite = as_float[(as_float.abs() == math.inf).to_numpy()]
    if len(infinite):
        raise TableSpecError(
            f"values column {name!r} holds {infinite.iloc[0]!r} ({len(infinite)} infinite value(s)); an "
            "infinite contribution cannot be tabulated - remove or correct those records"
        )
    return as_float


def check_total(stats: CellStats, values: str | None, cell: CellKey) -> None:
    """Refuse a cell whose total overflowed (e.g. values near 1e308 summed to infinity) or is NaN."""
    if values is not None and stats.n and not math.isfinite(stats.total):
        raise TableSpecError(
            f"values column {values!r}: the total of cell {cell} is {stats.total!r} (the values overflow "
            "float64 when summed); rescale the column (e.g. to thousands) before tabulating"
        )


def _python_keys(index: pd.Index) -> list[tuple[Hashable, ...]]:
    """A groupby result's keys as tuples of plain Python values, a level at a time (fast on big tables)."""
    if isinstance(index, pd.MultiIndex):
        levels = [index.get_level_values(k).tolist() for k in range(index.nlevels)]
        return list(zip(*levels, strict=True))
    return [(v,) for v in index.tolist()]


@functools.lru_cache(maxsize=4096)
def count_cell(n_rows: int, n_units: int | None = None) -> CellStats:
    """Statistics of a cell of a count table without a value column: every record is a contributor
    (``n_units``: distinct units, when a unit column is declared)."""
    return CellStats(n_rows=n_rows, n=n_rows, total=float(n_rows), value=float(n_rows), n_units=n_units)


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
