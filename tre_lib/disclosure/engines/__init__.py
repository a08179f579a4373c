"""Disclosure-control engines: per-cell statistics computed where the data lives.

:func:`tre_lib.disclosure.protect_table` accepts a pandas, Spark or Dask DataFrame. Whatever the engine, the
rules, secondary suppression and the attacker LP run on :class:`~tre_lib.disclosure.stats.TableStats`,
a handful of numbers per cell. The pandas engine is :func:`~tre_lib.disclosure.stats.pandas_cell_stats`;
this package holds the distributed ones:

* Spark (:mod:`.spark_engine`): one aggregation over ``GROUPING SETS`` (leaves and every margin) computes
  records, contributors, total, negatives, the published statistic and the top contributions per cell;
  the driver collects that aggregate, one row per cell.
* Dask (:mod:`.dask_engine`): one groupby aggregation per grouping set plus a tree reduction for the top
  contributions, evaluated in a single ``dask.compute``; the client receives one row per cell.

A *contributor* means the same on every engine: one record (row) with a non-missing value (every record, for
a count table without a value column). With a unit column (``protect_table(unit=...)`` or the rules'
``unit``), contributors are distinct units; the engines here aggregate per record, so ``protect_table``
then brings only the table's columns to the driver and counts units with the pandas engine.

The optional engines are imported lazily, so pandas-only installations never import pyspark or dask.
"""

from __future__ import annotations

from typing import Any

from tre_lib.disclosure.errors import TableSpecError
from tre_lib.disclosure.stats import TableStats


def engine_name(df: Any) -> str | None:
    """Which distributed engine a DataFrame belongs to ("spark", "dask") or None if neither.

    Args:
        df: any object.

    Returns:
        The engine's name, or None.
    """
    module = type(df).__module__
    if module.startswith("pyspark.") and hasattr(df, "groupingSets"):
        return "spark"
    if module.startswith("dask.") and hasattr(df, "groupby") and hasattr(df, "columns"):
        return "dask"
    return None


def engine_cell_stats(
    df: Any,
    index: list[str],
    columns: list[str],
    values: str | None,
    aggfunc: str,
    q: float,
    top_k: int,
    margins: bool,
) -> TableStats:
    """Per-cell statistics of a Spark or Dask DataFrame, computed by its engine.

    Args:
        df: a Spark or Dask DataFrame, one row per contributor.
        index: row variables.
        columns: column variables (may be empty).
        values: value column, or None for a count table.
        aggfunc: the published statistic.
        q: quantile, for ``aggfunc="quantile"``.
        top_k: how many of the largest contributions to keep per cell.
        margins: also compute every margin.

    Returns:
        The table's keys and per-cell statistics, equal to what the pandas engine gives on the same rows.

    Raises:
        TableSpecError: the object is not a Spark or Dask DataFrame, or the table cannot be built from it.
    """
    name = engine_name(df)
    if name == "spark":
        from tre_lib.disclosure.engines.spark_engine import spark_cell_stats

        return spark_cell_stats(df, index, columns, values, aggfunc, q, top_k, margins)
    if name == "dask":
        from tre_lib.disclosure.engines.dask_engine import dask_cell_stats

        return dask_cell_stats(df, index, columns, values, aggfunc, q, top_k, margins)
    raise TableSpecError(
        f"protect_table takes a pandas, Spark or Dask DataFrame, got {type(df).__name__}; convert it first"
    )


__all__ = ["engine_cell_stats", "engine_name"]
