"""Per-cell statistics on Dask: groupby aggregations and a top-k tree reduction, one ``dask.compute``.

For every grouping set of the table (the leaves and each margin; the grand total groups by a constant
column) the engine builds:

* a groupby named aggregation: records, contributors (``count``), ``sum``, negatives and the published
  statistic (``mean``, ``min``, ``max``, ``std``, ``var``; Dask reduces these as a tree of partial
  aggregates);
* for ``median`` and ``quantile``, ``groupby().apply(Series.quantile)``: exact quantiles need all values of
  a cell together, so Dask shuffles the value column by cell to the workers (never to the client);
* the ``k`` largest values per cell by a tree reduction (:meth:`dask.dataframe.DataFrame.reduction`): each
  partition keeps its ``k`` largest values per cell, pairs of partial results are merged keeping ``k``, and
  the last step returns one row per cell with its top values. This avoids the full shuffle a
  ``groupby().apply(nlargest)`` would make.

Everything is evaluated in one ``dask.compute`` so the input is read once per task graph, and the client
receives only per-cell frames (see :func:`dask_cell_graph`). NaN values and NaN keys count as missing, as in
pandas.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from tre_lib.disclosure.errors import TableSpecError
from tre_lib.disclosure.stats import (
    CellStats,
    TableStats,
    assemble_table_stats,
    check_spec,
    count_cell,
    grouping_sets,
    magnitude_cell,
    split_key,
)
from tre_lib.disclosure.structure import CellKey

_ALL = "__tre_all"
_ONE = "__tre_one"
_NEG = "__tre_neg"
_SET = "__tre_set"
_GROUP = "__tre_group"
# Statistics Dask reduces itself; a sum table publishes "total" and a count table "n".
_NAMED = ("mean", "min", "max", "std", "var")


def _dask() -> Any:
    try:
        import dask
    except ImportError as err:  # pragma: no cover - dask is a core dependency of tre
        raise ImportError("the Dask engine needs dask[dataframe]: pip install 'dask[dataframe]'") from err
    return dask


def dask_cell_graph(
    ddf: Any,
    index: Sequence[str],
    columns: Sequence[str],
    values: str | None,
    aggfunc: str,
    q: float,
    top_k: int,
    margins: bool,
) -> dict[str, Any]:
    """The lazy Dask objects whose results are the table's per-cell statistics.

    Args:
        ddf: the microdata as a Dask DataFrame, one row per contributor.
        index: row variables.
        columns: column variables (may be empty).
        values: value column, or None for a count table.
        aggfunc: the published statistic.
        q: quantile, for ``aggfunc="quantile"``.
        top_k: how many of the largest contributions to keep per cell.
        margins: also aggregate every margin.

    Returns:
        ``{"dropped": scalar, "summary/<i>/<j>": frame per grouping set, "quantile/<i>/<j>": series,
        "top": frame}``, all lazy; each computed frame has one row per cell of its grouping set.

    Raises:
        TableSpecError: a column is missing, or the value column is not numeric.
    """
    check_spec(ddf.columns, index, columns, values, aggfunc)
    keys = [*index, *columns]
    data = ddf[[*keys, *([values] if values is not None else [])]]
    complete = data[keys[0]].notnull()
    for key in keys[1:]:
        complete = complete & data[key].notnull()
    graph: dict[str, Any] = {"dropped": (~complete).sum()}
    data = data[complete]
    if values is not None:
        if not pd.api.types.is_numeric_dtype(data[values].dtype):
            raise TableSpecError(f"values column {values!r} must be numeric, got {data[values].dtype}")
        data = data.assign(**{_NEG: (data[values] < 0).astype("int64")})
    data = data.assign(**{_ALL: 0, _ONE: 1})
    sets = _set_keys(index, columns, margins)
    for (i, j), gkeys in sets.items():
        groups = data.groupby(gkeys, dropna=True, observed=True, sort=False)
        if values is None:
            graph[f"summary/{i}/{j}"] = groups.agg(n_rows=(_ONE, "sum"))
            continue
        named = {
            "n_rows": (_ONE, "sum"),
            "n": (values, "count"),
            "total": (values, "sum"),
            "n_negative": (_NEG, "sum"),
        }
        if aggfunc in _NAMED:
            named["value"] = (values, aggfunc)
        graph[f"summary/{i}/{j}"] = groups.agg(**named)
        if aggfunc in ("median", "quantile"):
            level = 0.5 if aggfunc == "median" else q
            graph[f"quantile/{i}/{j}"] = groups[values].apply(_quantile, level, meta=(values, "float64"))
    if values is not None:
        ordered = list(sets.values())
        graph["top"] = data[[*keys, _ALL, values]].reduction(
            _top_chunk,
            combine=_top_chunk,
            aggregate=_top_aggregate,
            meta=pd.DataFrame(
                {
                    _SET: pd.Series([], dtype="int64"),
                    _GROUP: pd.Series([], dtype=object),
                    "top": pd.Series([], dtype=object),
                }
            ),
            sets=ordered,
            value=values,
            k=top_k,
        )
    return graph


def _quantile(series: pd.Series, level: float) -> float:
    return float(series.quantile(level))


def _set_keys(
    index: Sequence[str], columns: Sequence[str], margins: bool
) -> dict[tuple[int, int], list[str]]:
    """Grouping columns of each grouping set; the grand total groups by a constant column."""
    return {
        (i, j): [*index[:i], *columns[:j]] or [_ALL]
        for i, j in grouping_sets(len(index), len(columns), margins)
    }


def _top_chunk(part: pd.DataFrame, sets: list[list[str]], value: str, k: int) -> pd.DataFrame:
    """The ``k`` largest values per cell of every grouping set, of one partition or of merged partials."""
    tagged = _SET in part.columns
    ranked = (part if tagged else part.dropna(subset=[value])).sort_values(
        value, ascending=False, kind="stable"
    )
    pieces = []
    for s, gkeys in enumerate(sets):
        subset = ranked[ranked[_SET] == s] if tagged else ranked
        head = subset.groupby(gkeys, observed=True, sort=False, dropna=True).head(k)
        pieces.append(head.assign(**{_SET: s}) if not tagged else head)
    return pd.concat(pieces, ignore_index=True)


def _top_aggregate(part: pd.DataFrame, sets: list[list[str]], value: str, k: int) -> pd.DataFrame:
    """Last step of the reduction: one row per cell, ``(set, group key, top values)``."""
    merged = _top_chunk(part, sets, value, k)
    rows: list[tuple[int, tuple[Any, ...], tuple[float, ...]]] = []
    for s, gkeys in enumerate(sets):
        subset = merged[merged[_SET] == s]
        for group, tops in subset.groupby(gkeys, observed=True, sort=False)[value]:
            rows.append((s, group if isinstance(group, tuple) else (group,), tuple(tops)))
    return pd.DataFrame(rows, columns=[_SET, _GROUP, "top"])


def dask_cell_stats(
    ddf: Any,
    index: Sequence[str],
    columns: Sequence[str],
    values: str | None,
    aggfunc: str,
    q: float,
    top_k: int,
    margins: bool,
) -> TableStats:
    """Per-cell statistics of a Dask DataFrame; only per-cell results reach the client.

    Args:
        ddf: the microdata as a Dask DataFrame, one row per contributor.
        index: row variables.
        columns: column variables (may be empty).
        values: value column, or None for a count table.
        aggfunc: the published statistic.
        q: quantile, for ``aggfunc="quantile"``.
        top_k: how many of the largest contributions to keep per cell.
        margins: also compute every margin.

    Returns:
        The same statistics the pandas engine computes on the same rows.
    """
    dask = _dask()
    graph = dask_cell_graph(ddf, index, columns, values, aggfunc, q, top_k, margins)
    names = list(graph)
    computed = dict(zip(names, dask.compute(*graph.values()), strict=True))
    sets = _set_keys(index, columns, margins)
    n_index, n_columns = len(index), len(columns)

    def cell_of(i: int, j: int, group: Any) -> CellKey:
        n_keys = i + j
        return split_key(group if n_keys else (), n_keys, i, j, n_index, n_columns)

    tops: dict[CellKey, tuple[float, ...]] = {}
    if "top" in computed:
        order = list(sets)
        for s, group, top in computed["top"].itertuples(index=False):
            i, j = order[s]
            tops[cell_of(i, j, group)] = top
    out: dict[CellKey, CellStats] = {}
    for i, j in sets:
        summary: pd.DataFrame = computed[f"summary/{i}/{j}"]
        found = computed.get(f"quantile/{i}/{j}")
        quantiles = found.to_dict() if found is not None else None
        for group, row in zip(summary.index, summary.itertuples(index=False), strict=True):
            cell = cell_of(i, j, group)
            if values is None:
                out[cell] = count_cell(int(row.n_rows))
                continue
            if quantiles is not None:
                value = quantiles.get(group)
            else:
                value = row.total if aggfunc == "sum" else getattr(row, "value", None)
            out[cell] = magnitude_cell(
                aggfunc, row.n_rows, row.n, row.total, row.n_negative, value, tops.get(cell, ())
            )
    return assemble_table_stats(out, n_index, n_columns, margins, int(computed["dropped"]))


__all__ = ["dask_cell_graph", "dask_cell_stats"]
