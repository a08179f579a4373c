"""Benchmark: protect_table on pandas, Spark and Dask, and the peer ACRO on pandas, for the same table.

Run: ``.venv/bin/python bench/bench_disclosure_engines.py [--rows N] [--seed S] [--spark-master local[2]]``

A synthetic microdata set (20 areas x 10 sectors, rare categories, heavy-tailed turnover; the generator of
``bench/disclosure_bench.py``) is loaded into each engine first (Spark cached, Dask persisted), so the
timings measure the check, not the loading. For a count table and a sum table it times:

* ACRO's ``crosstab`` with suppression (primary rules only) on pandas;
* the engine's part of ``protect_table`` on pandas, Spark and Dask: the per-cell statistics (records,
  contributors, totals, negatives, top 2 contributions, for the leaves and every margin), checked equal
  to pandas';
* the whole ``protect_table`` (statistics, rules, secondary suppression, attacker LP audit) on pandas, and
  with ``--full-all`` on Spark and Dask too (the driver part is the same code whatever the engine).

Each engine is warmed up on a small table first (JVM start-up and query compilation are not counted).
The default size finishes in about a minute on an idle 2-core machine; ``--rows 1000000`` is the 1M-row
run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from disclosure_bench import make_data, quiet

from tre_lib.disclosure import ProtectedTable, protect_table
from tre_lib.disclosure.engines import engine_cell_stats
from tre_lib.disclosure.stats import TableStats, pandas_cell_stats

TABLES: dict[str, dict[str, Any]] = {"count": {}, "sum": {"values": "turnover", "aggfunc": "sum"}}


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def cell_stats(frame: Any, kwargs: dict[str, Any]) -> TableStats:
    """The engine's part only: per-cell statistics (top 2 contributions), before rules and audit."""
    values, aggfunc = kwargs.get("values"), kwargs.get("aggfunc", "count")
    stats = pandas_cell_stats if isinstance(frame, pd.DataFrame) else engine_cell_stats
    return stats(frame, ["area"], ["sector"], values, aggfunc, 0.5, 2, True)


def same_stats(ours: TableStats, reference: TableStats) -> bool:
    """Every cell has the same counts and (to rounding) the same total and top values."""
    if ours.cells.keys() != reference.cells.keys() or ours.row_keys != reference.row_keys:
        return False
    for key, want in reference.cells.items():
        got = ours.cells[key]
        if (got.n_rows, got.n, got.n_negative) != (want.n_rows, want.n, want.n_negative):
            return False
        if not np.isclose(got.total, want.total, rtol=1e-9) or not np.allclose(got.top, want.top, rtol=1e-12):
            return False
    return True


def run(rows: int, seed: int, master: str, partitions: int, full_all: bool) -> None:
    import acro  # the peer; installed with the "bench" extra
    import dask
    import dask.dataframe as dd
    from pyspark.sql import SparkSession

    console = Console(width=150)
    df = make_data(rows, seed)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (
        SparkSession.builder.master(master)
        .appName("bench-disclosure-engines")
        .config("spark.sql.shuffle.partitions", str(partitions))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    sdf = spark.createDataFrame(df).repartition(partitions).cache()
    sdf.count()
    ddf = dd.from_pandas(df, npartitions=partitions).persist()
    small = df.head(2_000)
    engines: dict[str, Any] = {"pandas": df, "spark": sdf, "dask": ddf}
    warm = [small, spark.createDataFrame(small), dd.from_pandas(small, npartitions=2)]
    results: list[dict[str, Any]] = []
    with dask.config.set(scheduler="threads"):
        for frame in warm:
            for kwargs in TABLES.values():
                cell_stats(frame, kwargs)
        with tempfile.TemporaryDirectory() as workdir, quiet():
            cwd = os.getcwd()
            os.chdir(workdir)  # ACRO may write an outputs folder; keep it out of the repository
            try:
                session = acro.ACRO(suppress=True)
                acro_times = {}
                for kind, kwargs in TABLES.items():
                    acro_kwargs = {"values": df["turnover"], "aggfunc": "sum"} if kwargs else {}
                    _, acro_times[kind] = timed(
                        partial(session.crosstab, df["area"], df["sector"], margins=True, **acro_kwargs)
                    )
            finally:
                os.chdir(cwd)
        for kind, kwargs in TABLES.items():
            reference_stats: TableStats | None = None
            reference: ProtectedTable | None = None
            for name, frame in engines.items():
                stats, stats_seconds = timed(partial(cell_stats, frame, kwargs))
                reference_stats = reference_stats or stats
                entry: dict[str, Any] = {
                    "kind": kind,
                    "engine": name,
                    "stats": stats_seconds,
                    "same_stats": same_stats(stats, reference_stats),
                    "time": None,
                    "same_table": None,
                }
                if name == "pandas" or full_all:
                    result, seconds = timed(partial(protect_table, frame, "area", "sector", **kwargs))
                    reference = reference or result
                    entry["time"] = seconds
                    entry["suppressed"] = len(result.suppressed)
                    entry["same_table"] = bool(
                        np.allclose(
                            result.table.to_numpy(float), reference.table.to_numpy(float), equal_nan=True
                        )
                        and result.status == reference.status
                    )
                results.append(entry)
    spark.stop()
    report(console, results, acro_times, rows, master, partitions)


def report(
    console: Console,
    results: list[dict[str, Any]],
    acro_times: dict[str, float],
    rows: int,
    master: str,
    partitions: int,
) -> None:
    """Print one table: per engine the per-cell statistics time and the whole check's time."""
    pandas_stats = {r["kind"]: r["stats"] for r in results if r["engine"] == "pandas"}
    table = Table(
        title=(
            f"protect_table engines vs ACRO {metadata.version('acro')} "
            f"({rows:,} rows, 20x10 table with margins; Spark {master}, {partitions} partitions)"
        )
    )
    for col in (
        "table",
        "tool",
        "cell stats s",
        "stats / pandas",
        "whole check s",
        "/ ACRO",
        "suppressed",
        "same as pandas",
    ):
        table.add_column(col, justify="right")
    for kind in TABLES:
        table.add_row(
            kind, "ACRO (pandas, primary only)", "-", "-", f"{acro_times[kind]:.3f}", "1.00", "-", "-"
        )
        for r in (r for r in results if r["kind"] == kind):
            same = r["same_stats"] and r["same_table"] is not False
            table.add_row(
                kind,
                f"tre {r['engine']}",
                f"{r['stats']:.3f}",
                f"{r['stats'] / pandas_stats[kind]:.2f}",
                "-" if r["time"] is None else f"{r['time']:.3f}",
                "-" if r["time"] is None else f"{r['time'] / acro_times[kind]:.2f}",
                str(r.get("suppressed", "-")),
                "yes" if same else "NO",
            )
    console.print(table)
    console.print(
        "cell stats = the engine's work (per-cell counts, sums, negatives, top 2, margins included); "
        "whole check = protect_table: cell stats + primary rules + secondary suppression + LP audit, the "
        "driver part being the same code for every engine (timed on all engines with --full-all). "
        "ACRO = primary suppression only. Ratios below 1 are faster."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--spark-master", default="local[2]")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--full-all", action="store_true", help="run the whole check on Spark and Dask too")
    args = parser.parse_args()
    run(args.rows, args.seed, args.spark_master, args.partitions, args.full_all)


if __name__ == "__main__":
    main()
