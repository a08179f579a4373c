"""Per-cell statistics on Spark: one grouping-sets aggregation, collected as one row per cell.

The table's leaves and every margin are the grouping sets of a single ``groupingSets(...).agg(...)``
(Spark 4.0+), so Spark expands each record once per grouping set and aggregates them in one job with
partial (map-side) aggregation. Per cell it computes:

* ``count(*)`` (records), ``count(v)`` (contributors), ``sum(v)``, ``count_if(v < 0)``;
* the published statistic: ``avg``, exact ``percentile`` (linear interpolation, as pandas), ``min``,
  ``max``, ``stddev_samp`` or ``var_samp``;
* the ``k`` largest values with ``max_by(v, v, k)`` (Spark 4.2+).

Why ``max_by(v, v, k)`` rather than a window ``row_number()`` over the value: the window shuffles and sorts
every record by cell before the top rows can be kept, while ``max_by`` with ``k`` is an aggregate with a
bounded heap per cell and per task, so only ``k`` values per cell and task cross the network, and it runs in
the same job as the other statistics, for the margins too.

Only the aggregate is collected (``DataFrame.collect`` of at most one row per cell); :func:`spark_cell_frame`
returns it uncollected, so a caller (or a test) can inspect the plan and count its rows. A second, small job
counts the records left out for a missing category (it reads only the key columns).

Float values that are NaN count as missing, as in pandas; so do NaN keys. Values are aggregated as doubles
(integers beyond 2**53 and high-precision decimals are rounded, as pandas does for float columns). Exact
percentiles need every distinct value of a cell in one executor's memory (Spark keeps a value-to-frequency
map per cell).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

_GID = "__tre_gid"
_VALUE = "__tre_v"
_STATS = ("n_rows", "n", "total", "n_negative", "value", "top")


def _spark() -> Any:
    try:
        from pyspark.sql import functions as F
    except ImportError as err:  # pragma: no cover - pyspark is a core dependency of tre
        raise ImportError("the Spark engine needs pyspark>=4.3: pip install 'pyspark>=4.3,<5'") from err
    return F


def _quote(name: str) -> str:
    """A column name as a Spark identifier, so dots and spaces are not read as struct access."""
    return "`" + name.replace("`", "``") + "`"


def _key_name(position: int) -> str:
    return f"__tre_k{position}"


def spark_cell_frame(
    df: DataFrame,
    index: Sequence[str],
    columns: Sequence[str],
    values: str | None,
    aggfunc: str,
    q: float,
    top_k: int,
    margins: bool,
) -> DataFrame:
    """The Spark aggregate that holds one row per cell of the table (not collected).

    Columns: one per table variable (``__tre_k0``, ... in the order index then columns; null where the row
    is a margin over that variable), ``__tre_gid`` (Spark's ``grouping_id``) and ``n_rows``, ``n``,
    ``total``, ``n_negative``, ``value``, ``top``.

    Args:
        df: the microdata, one row per contributor.
        index: row variables.
        columns: column variables (may be empty).
        values: value column, or None for a count table.
        aggfunc: the published statistic.
        q: quantile, for ``aggfunc="quantile"``.
        top_k: how many of the largest contributions to keep per cell.
        margins: also aggregate every margin.

    Returns:
        The per-cell aggregate, lazily.

    Raises:
        TableSpecError: a column is missing, or the value column is not numeric.
    """
    F = _spark()
    from pyspark.sql import types as T

    check_spec(df.columns, index, columns, values, aggfunc)
    keys = [*index, *columns]
    fields = {f.name: f.dataType for f in df.schema.fields}
    selected: list[Column] = [F.col(_quote(k)).alias(_key_name(p)) for p, k in enumerate(keys)]
    if values is not None:
        vtype = fields[values]
        value = F.col(_quote(values))
        if isinstance(vtype, T.BooleanType):
            value = value.cast("int")  # pandas sums booleans as 0/1
        elif not isinstance(vtype, T.NumericType):
            raise TableSpecError(f"values column {values!r} must be numeric, got {vtype.simpleString()}")
        if isinstance(vtype, T.FloatType | T.DoubleType):
            value = F.when(F.isnan(value), F.lit(None)).otherwise(value)
        selected.append(value.cast("double").alias(_VALUE))
    data = df.select(*selected).where(_complete(df, keys, fields))
    sets = [
        [_key_name(p) for p in range(i)] + [_key_name(len(index) + p) for p in range(j)]
        for i, j in grouping_sets(len(index), len(columns), margins)
    ]
    aggregates: list[Column] = [F.grouping_id().alias(_GID), F.count(F.lit(1)).alias("n_rows")]
    if values is None:
        aggregates += [F.lit(None).alias(name) for name in _STATS[1:]]
    else:
        v = F.col(_VALUE)
        aggregates += [
            F.count(v).alias("n"),
            F.sum(v).alias("total"),
            F.count_if(v < 0).alias("n_negative"),
            _statistic(F, v, aggfunc, q).alias("value"),
            F.max_by(v, v, top_k).alias("top"),
        ]
    return data.groupingSets(sets, *[_key_name(p) for p in range(len(keys))]).agg(*aggregates)


def _complete(df: DataFrame, keys: Sequence[str], fields: dict[str, Any]) -> Column:
    """Rows whose every key is present (pandas drops rows with a null or NaN category)."""
    F = _spark()
    from pyspark.sql import types as T

    condition = F.lit(True)
    for position, key in enumerate(keys):
        column = F.col(_key_name(position))
        present = column.isNotNull()
        if isinstance(fields[key], T.FloatType | T.DoubleType):
            present = present & ~F.isnan(column)
        condition = condition & present
    return condition


def _statistic(F: Any, v: Column, aggfunc: str, q: float) -> Column:
    if aggfunc == "count":
        return F.count(v)
    if aggfunc in ("median", "quantile"):
        # Exact, with linear interpolation between order statistics: the same as pandas' quantile.
        return F.percentile(v, 0.5 if aggfunc == "median" else q)
    functions = {
        "sum": F.sum,
        "mean": F.avg,
        "min": F.min,
        "max": F.max,
        "std": F.stddev_samp,
        "var": F.var_samp,
    }
    return functions[aggfunc](v)  # type: ignore[no-any-return]


def spark_cell_stats(
    df: DataFrame,
    index: Sequence[str],
    columns: Sequence[str],
    values: str | None,
    aggfunc: str,
    q: float,
    top_k: int,
    margins: bool,
) -> TableStats:
    """Per-cell statistics of a Spark DataFrame; only the per-cell aggregate reaches the driver.

    Args:
        df: the microdata, one row per contributor.
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
    F = _spark()
    frame = spark_cell_frame(df, index, columns, values, aggfunc, q, top_k, margins)
    keys = [*index, *columns]
    fields = {f.name: f.dataType for f in df.schema.fields}
    incomplete = df.select(*[F.col(_quote(k)).alias(_key_name(p)) for p, k in enumerate(keys)]).where(
        ~_complete(df, keys, fields)
    )
    dropped = int(incomplete.count())
    n_index, n_columns, n_keys = len(index), len(columns), len(keys)
    out: dict[CellKey, CellStats] = {}
    for row in frame.collect():
        gid = int(row[_GID])
        # grouping_id sets bit (n_keys - 1 - p) when key p is aggregated away (a margin over it).
        grouped = [p for p in range(n_keys) if not (gid >> (n_keys - 1 - p)) & 1]
        i = sum(1 for p in grouped if p < n_index)
        j = len(grouped) - i
        parts = tuple(row[_key_name(p)] for p in grouped)
        cell = split_key(parts, len(parts), i, j, n_index, n_columns)
        if values is None:
            out[cell] = count_cell(int(row["n_rows"]))
        else:
            out[cell] = magnitude_cell(
                aggfunc,
                row["n_rows"],
                row["n"],
                row["total"],
                row["n_negative"],
                row["value"],
                row["top"] or (),
            )
    return assemble_table_stats(out, n_index, n_columns, margins, dropped)


__all__ = ["spark_cell_frame", "spark_cell_stats"]
