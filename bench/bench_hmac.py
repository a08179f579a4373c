"""Benchmark HMAC-SHA256 pseudonymisation on every engine against the pure-Python ``hmac`` peer.

The per-engine comparison (including Spark's four methods); ``bench/pseudonymise_bench.py`` is the 10M-value
headline run, and this file reuses its key, IDs and timer.

Run: ``.venv/bin/python bench/bench_hmac.py [--rows 200000] [--distinct 1.0] [--repeat 2]
[--engines local,spark]``

The peer is ``[hmac.new(key, v, sha256).hexdigest() for v in values]``. Every candidate's output is checked
against the peer before it is timed. Spark reads IDs generated inside the JVM (no Python-to-JVM transfer),
is forced with the ``noop`` writer, and runs on ``local[1]`` unless ``--spark-master`` says otherwise, so
its figures compare one core with one core. "leaks key" marks variants that put the key in the query plan
as a literal (shown only as a reference for what hiding the key costs).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import sys
from collections.abc import Callable
from typing import Any

from pseudonymise_bench import KEY, make_ids
from pseudonymise_bench import best_of as _best
from rich.console import Console
from rich.table import Table


def _ids(rows: int, distinct: float) -> list[str]:
    """``ID`` + 10 digits, as the Spark runs generate in the JVM with ``format_string("ID%010d", ...)``."""
    return make_ids(rows, distinct, prefix="ID").to_pylist()  # type: ignore[no-any-return]


def _local(ids: list[str], repeat: int, full: bool = True) -> list[tuple[str, str, float]]:
    import dask
    import dask.dataframe as dd
    import pandas as pd
    import polars as pl
    import pyarrow as pa

    from tre_lib.pseudonymise import HmacKey, hmac_sha256
    from tre_lib.pseudonymise._core import _hex_python

    encoded = [v.encode() for v in ids]
    expected = [hmac.new(KEY, v, hashlib.sha256).hexdigest() for v in encoded]
    pseries = pd.Series(ids, dtype=object)
    plseries = pl.Series("v", ids)
    lazy = pl.DataFrame({"v": ids}).lazy()
    dseries = dd.from_pandas(pd.Series(ids, name="v"), npartitions=4)
    arrow_ids = pa.array(ids)

    candidates: list[tuple[str, str, Callable[[], Any], Callable[[Any], list[Any]]]] = [
        (
            "peer",
            "python hmac.new",
            lambda: [hmac.new(KEY, v, hashlib.sha256).hexdigest() for v in encoded],
            list,
        ),
        ("ours", "python list", lambda: hmac_sha256(ids, KEY), list),
        ("ours", "arrow array", lambda: hmac_sha256(arrow_ids, KEY), lambda r: r.to_pylist()),
        (
            "ours",
            "arrow array, pure-Python fallback",
            lambda: _hex_python(arrow_ids, HmacKey(KEY)),
            lambda r: r.to_pylist(),
        ),
        ("ours", "pandas Series", lambda: hmac_sha256(pseries, KEY), lambda r: r.tolist()),
        ("ours", "polars Series", lambda: hmac_sha256(plseries, KEY), lambda r: r.to_list()),
        (
            "ours",
            "polars Expr (lazy)",
            lambda: lazy.select(hmac_sha256(pl.col("v"), KEY)).collect(),
            lambda r: r["v"].to_list(),
        ),
        (
            "ours",
            "dask Series (4 partitions, threads)",
            lambda: hmac_sha256(dseries, KEY).compute(),
            lambda r: [None if v is pd.NA else v for v in r.tolist()],
        ),
    ]
    out = []
    if not full:
        candidates = candidates[:1]
    with dask.config.set(scheduler="threads"):
        for who, name, fn, to_list in candidates:
            if to_list(fn()) != expected:
                raise SystemExit(f"{name} disagrees with hmac.new; not timing it")
            out.append((who, name, _best(fn, repeat)))
    return out


def _spark(rows: int, distinct: float, repeat: int, master: str) -> list[tuple[str, str, float]]:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    from tre_lib.pseudonymise import spark_hmac_sha256
    from tre_lib.pseudonymise._core import HmacKey

    spark = (
        SparkSession.builder.master(master)
        .appName("bench-hmac")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    n_distinct = max(1, int(rows * distinct))
    # The same IDs as _ids(), generated in the JVM.
    df = (
        spark.range(rows)
        .select(F.format_string("ID%010d", (F.col("id") * 7919) % n_distinct).alias("v"))
        .cache()
    )
    df.count()
    ipad_key, opad_key = HmacKey(KEY).padded_keys()
    msg = F.col("v").cast("binary")
    variants: dict[str, Callable[[], Any]] = {
        "spark sha2 x2, literal keys (leaks key)": lambda: df.select(
            F.sha2(
                F.concat(F.lit(opad_key), F.unhex(F.sha2(F.concat(F.lit(ipad_key), msg), 256))), 256
            ).alias("h")
        ),
        "spark builtin hmac, literal key (leaks key)": lambda: df.select(
            F.lower(F.hex(F.hmac(F.lit(KEY), msg))).alias("h")
        ),
    }
    for method in ("sha2", "builtin", "arrow_udf", "pandas_udf"):
        variants[f"spark {method} (spark_hmac_sha256, key hidden)"] = lambda m=method: df.select(
            spark_hmac_sha256("v", KEY, method=m).alias("h")
        )
    out = []
    for name, build in variants.items():
        sample = build().select("h").limit(3).collect()
        probe = [f"ID{(i * 7919) % n_distinct:010d}" for i in range(3)]
        if [r["h"] for r in sample] != [hmac.new(KEY, p.encode(), hashlib.sha256).hexdigest() for p in probe]:
            raise SystemExit(f"{name} disagrees with hmac.new; not timing it")
        out.append(
            ("ours", name, _best(lambda b=build: b().write.format("noop").mode("overwrite").save(), repeat))
        )
    spark.stop()
    return out


def main() -> None:
    """Parse arguments, run every candidate, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument(
        "--distinct", type=float, default=1.0, help="fraction of distinct IDs (1.0 = all unique)"
    )
    parser.add_argument("--repeat", type=int, default=2, help="best of this many runs")
    parser.add_argument("--spark-master", default="local[1]")
    parser.add_argument("--engines", default="local,spark", help="comma list of: local, spark")
    args = parser.parse_args()

    console = Console()
    console.print(f"HMAC-SHA256 over {args.rows:,} IDs ({args.distinct:.0%} distinct), best of {args.repeat}")
    engines = set(args.engines.split(","))
    # The peer always runs, so every ratio in the table is measured in this run.
    results = _local(_ids(args.rows, args.distinct), args.repeat, full="local" in engines)
    if "spark" in engines:
        results += _spark(args.rows, args.distinct, args.repeat, args.spark_master)
    peer = results[0][2]
    table = Table("", "implementation", "seconds", "rows/s", "speed vs peer")
    for who, name, seconds in results:
        table.add_row(who, name, f"{seconds:.3f}", f"{args.rows / seconds:,.0f}", f"{peer / seconds:.2f}x")
    console.print(table)


if __name__ == "__main__":
    main()
