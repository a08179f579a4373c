"""Benchmark: protect_table on pandas, Spark and Dask, and the peer ACRO on pandas, for the same table.

Run: ``.venv/bin/python bench/bench_disclosure_engines.py [--rows N] [--seed S] [--spark-master local[2]]``

A synthetic microdata set (20 areas x 10 sectors, rare categories, heavy-tailed turnover; the generator of
``bench/bench_disclosure.py``) is loaded into each engine first (Spark cached, Dask persisted), so the
timings measure the check, not the loading. For a count table and a sum table it times:

* ACRO's ``crosstab`` with suppression (primary rules only) on pandas;
* ``protect_table`` on pandas, Spark and Dask (per-cell statistics in the engine, then the same rules,
  secondary suppression and attacker LP audit on the driver).

Each engine is warmed up on a small table first (JVM start-up and query compilation are not counted). The
ratio columns are time / ACRO's time and time / our pandas time. The run also checks that every engine
published exactly the pandas table. The default size finishes in about a minute on a shared 2-core machine;
``--rows 1000000`` is the 1M-row run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_disclosure import make_data, quiet

from tre_lib.disclosure import protect_table
from tre_lib.disclosure.engines import engine_cell_stats
from tre_lib.disclosure.stats import pandas_cell_stats

TABLES = {"count": {}, "sum": {"values": "turnover", "aggfunc": "sum"}}


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def cell_stats(frame: Any, kwargs: dict[str, Any]) -> Any:
    """Only the engine's part: the per-cell statistics (top 2), without rules, suppression or audit."""
    values, aggfunc = kwargs.get("values"), kwargs.get("aggfunc", "count")
    stats = pandas_cell_stats if isinstance(frame, pd.DataFrame) else engine_cell_stats
    return stats(frame, ["area"], ["sector"], values, aggfunc, 0.5, 2, True)


def run(rows: int, seed: int, master: str, partitions: int) -> None:
    import acro  # the peer; installed with the "bench" extra
    import dask
    import dask.dataframe as dd
    from pyspark.sql import SparkSession

    console = Console(width=140)
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
    warm = {
        "pandas": small,
        "spark": spark.createDataFrame(small),
        "dask": dd.from_pandas(small, npartitions=2),
    }
    results: list[dict[str, Any]] = []
    with dask.config.set(scheduler="threads"):
        for frame in warm.values():
            for kwargs in TABLES.values():
                protect_table(frame, "area", "sector", **kwargs)
        with tempfile.TemporaryDirectory() as workdir, quiet():
            cwd = os.getcwd()
            os.chdir(workdir)  # ACRO may write an outputs folder; keep it out of the repository
            try:
                session = acro.ACRO(suppress=True)
                acro_times = {}
                for kind, kwargs in TABLES.items():
                    acro_kwargs = {"values": df["turnover"], "aggfunc": "sum"} if kwargs else {}
                    _, acro_times[kind] = timed(
                        lambda kw=acro_kwargs: session.crosstab(df["area"], df["sector"], margins=True, **kw)
                    )
            finally:
                os.chdir(cwd)
        for kind, kwargs in TABLES.items():
            reference = None
            for name, frame in engines.items():
                _, stats_seconds = timed(lambda f=frame, kw=kwargs: cell_stats(f, kw))
                result, seconds = timed(lambda f=frame, kw=kwargs: protect_table(f, "area", "sector", **kw))
                if reference is None:
                    reference = result
                same = bool(
                    np.allclose(result.table.to_numpy(float), reference.table.to_numpy(float), equal_nan=True)
                    and result.status == reference.status
                )
                results.append(
                    {
                        "kind": kind,
                        "engine": name,
                        "time": seconds,
                        "stats": stats_seconds,
                        "acro": acro_times[kind],
                        "suppressed": len(result.suppressed),
                        "same": same,
                    }
                )
    spark.stop()
    pandas_time = {r["kind"]: r["time"] for r in results if r["engine"] == "pandas"}
    table = Table(
        title=(
            f"protect_table engines vs ACRO {metadata.version('acro')} "
            f"({rows:,} rows, 20x10 table with margins; Spark {master}, {partitions} partitions)"
        )
    )
    for col in (
        "table",
        "tool",
        "time s",
        "/ ACRO",
        "/ pandas",
        "of which cell stats s",
        "suppressed",
        "same table as pandas",
    ):
        table.add_column(col, justify="right")
    for kind in TABLES:
        table.add_row(
            kind, "ACRO (pandas, primary only)", f"{acro_times[kind]:.3f}", "1.00", "-", "-", "-", "-"
        )
        for r in (r for r in results if r["kind"] == kind):
            table.add_row(
                kind,
                f"tre {r['engine']}",
                f"{r['time']:.3f}",
                f"{r['time'] / r['acro']:.2f}",
                f"{r['time'] / pandas_time[kind]:.2f}",
                f"{r['stats']:.3f}",
                str(r["suppressed"]),
                "yes" if r["same"] else "NO",
            )
    console.print(table)
    console.print(
        "tre = per-cell statistics in the engine + primary rules + secondary suppression + LP audit; "
        "ACRO = primary suppression only. Ratios below 1 are faster."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--spark-master", default="local[2]")
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    run(args.rows, args.seed, args.spark_master, args.partitions)


if __name__ == "__main__":
    main()
