"""Pseudonymise 10 million identifiers: our fastest engine against naive pandas ``Series.apply(hmac.new)``.

Run: ``.venv/bin/python bench/pseudonymise_bench.py [--values 10000000] [--distinct 1.0]
[--engines arrow,pandas-arrow,pandas-object,polars,fallback] [--candidates duckdb]``

The peer is ``Series.apply(lambda v: hmac.new(key, v.encode(), sha256).hexdigest())`` on an ``object`` Series,
the code a pandas user writes first. Every engine runs once in the same process as the peer (values/s are
wall-clock, so on a shared machine compare the ratios), and its whole output is compared with the peer's as
one Arrow array equality (all values, not a sample) before its figure is printed. The IDs are 10-digit
NHS-number-like strings.

Engines (all through ``tre_lib.pseudonymise.hmac_sha256``):

* ``arrow``: a ``pyarrow`` string array in and out (the view builder's path);
* ``pandas-arrow``: a ``string[pyarrow]`` Series (what Dask partitions hold by default);
* ``pandas-object``: an ``object`` Series, as the peer has (the time includes making 10M Python strings);
* ``polars``: a polars Series;
* ``fallback``: the pure-Python path used when the compiled helper is not installed.

``--candidates duckdb`` adds DuckDB's ``sha256`` in the two-hash RFC 2104 construction, one of the options
weighed in docs/adr/0007-fast-hmac.md. ``bench/bench_hmac.py`` compares the engines (and Spark's methods)
at smaller sizes, reusing this file's helpers.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Console
from rich.table import Table

KEY = hashlib.sha256(b"tre-bench-hmac").digest()
ENGINES = ("arrow", "pandas-arrow", "pandas-object", "polars", "fallback")


def make_ids(values: int, distinct: float = 1.0, prefix: str = "") -> pa.Array:
    """Return ``values`` 10-digit IDs (``prefix`` + zero-padded), ``distinct`` of them different, in Arrow.

    ``i * 7919 mod n`` permutes 0..n-1 (7919 is prime), so with ``distinct=1.0`` every ID appears once, in
    an order unlike sorted.
    """
    import numpy as np

    n_distinct = max(1, int(values * distinct))
    numbers = pa.array((np.arange(values, dtype=np.int64) * 7919) % n_distinct)
    ids = pc.utf8_lpad(pc.cast(numbers, pa.string()), 10, "0")
    return pc.binary_join_element_wise(prefix, ids, "") if prefix else ids


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """Return ``(fn(), wall seconds)``."""
    result, wall, _cpu = timed_cpu(fn)
    return result, wall


def timed_cpu(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """Return ``(fn(), wall seconds, CPU seconds of this process summed over its threads)``."""
    cpu, start = time.process_time(), time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start, time.process_time() - cpu


def best_of(fn: Callable[[], Any], repeat: int) -> float:
    """Return the best wall time of ``repeat`` calls of ``fn``."""
    return min(timed(fn)[1] for _ in range(max(1, repeat)))


def _engines(
    ids: pa.Array, names: list[str]
) -> dict[str, tuple[Callable[[], Any], Callable[[Any], pa.Array]]]:
    """Return ``{name: (run, to_arrow)}``; inputs are built here, outside the timed calls."""
    import pandas as pd
    import polars as pl

    from tre_lib.pseudonymise import HmacKey, hmac_sha256
    from tre_lib.pseudonymise._core import _hex_python

    hk = HmacKey(KEY)
    table: dict[str, tuple[Callable[[], Any], Callable[[Any], pa.Array]]] = {}
    for name in names:
        if name == "arrow":
            table[name] = (lambda: hmac_sha256(ids, hk), lambda r: r)
        elif name == "pandas-arrow":
            arrow_series = pd.Series(pd.arrays.ArrowStringArray(ids))
            table[name] = (lambda s=arrow_series: hmac_sha256(s, hk), lambda r: pa.array(r.array))
        elif name == "pandas-object":
            object_series = pd.Series(ids.to_numpy(zero_copy_only=False), dtype=object)
            table[name] = (
                lambda s=object_series: hmac_sha256(s, hk),
                lambda r: pa.array(r, type=pa.string()),
            )
        elif name == "polars":
            polars_series = pl.Series("v", ids)
            table[name] = (lambda s=polars_series: hmac_sha256(s, hk), lambda r: r.to_arrow())
        elif name == "fallback":
            table[name] = (lambda: _hex_python(ids, hk), lambda r: r)
        else:
            raise SystemExit(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")
    return table


def peer(series: Any) -> Callable[[], Any]:
    """Return the naive peer as a thunk: ``Series.apply`` of ``hmac.new(...).hexdigest()`` per value."""
    sha256 = hashlib.sha256
    return lambda: series.apply(lambda v: hmac.new(KEY, v.encode(), sha256).hexdigest())


def duckdb_two_sha2(ids: pa.Array) -> pa.Array:
    """HMAC as ``sha256(K0^opad || unhex(sha256(K0^ipad || m)))`` in DuckDB, keys as bound parameters."""
    import duckdb

    from tre_lib.pseudonymise import HmacKey

    ipad_key, opad_key = HmacKey(KEY).padded_keys()
    con = duckdb.connect()
    con.register("ids", pa.table({"v": ids}))
    sql = "SELECT sha256($2 || unhex(sha256($1 || encode(v)))) AS h FROM ids"
    return con.sql(sql, params=[ipad_key, opad_key]).to_arrow_table().column("h").combine_chunks()


def main() -> None:
    """Time the peer and each engine on the same IDs, check byte-identical output, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=10_000_000)
    parser.add_argument("--distinct", type=float, default=1.0, help="fraction of distinct IDs (1.0 = unique)")
    parser.add_argument("--engines", default=",".join(ENGINES), help=f"comma list of: {', '.join(ENGINES)}")
    parser.add_argument("--candidates", default="", help="extra non-tre candidates to time: duckdb")
    args = parser.parse_args()

    import os

    import pandas as pd

    from tre_lib.pseudonymise._core import _cores, fast_hmac_available

    console = Console()
    console.print(
        f"HMAC-SHA256 of {args.values:,} IDs ({args.distinct:.0%} distinct); compiled helper "
        f"{'installed' if fast_hmac_available() else 'NOT installed (pure-Python fallback)'}; "
        f"{_cores()} cores; load average {os.getloadavg()[0]:.1f}"
    )
    ids = make_ids(args.values, args.distinct)
    rows: list[tuple[str, str, float, float]] = []

    with console.status("peer: pandas Series.apply(hmac.new)..."):
        peer_out, seconds, cpu = timed_cpu(peer(pd.Series(ids.to_numpy(zero_copy_only=False), dtype=object)))
        rows.append(("peer", "pandas Series.apply(hmac.new(...).hexdigest())", seconds, cpu))
        expected = pa.array(peer_out, type=pa.string())
        del peer_out

    def check(name: str, got: pa.Array) -> None:
        if got.type != pa.string():
            got = got.cast(pa.string())
        if not got.equals(expected):  # the whole array, byte for byte, nulls included
            raise SystemExit(f"{name}: output differs from the peer's; not reporting its time")

    for name, (run, to_arrow) in _engines(ids, [e for e in args.engines.split(",") if e]).items():
        with console.status(f"ours: {name}..."):
            result, seconds, cpu = timed_cpu(run)
            check(name, to_arrow(result))
            del result
            rows.append(("ours", f"hmac_sha256, {name}", seconds, cpu))
    if "duckdb" in args.candidates.split(","):
        with console.status("candidate: duckdb..."):
            result, seconds, cpu = timed_cpu(lambda: duckdb_two_sha2(ids))
            check("duckdb", result)
            rows.append(("candidate", "duckdb two-sha256", seconds, cpu))

    peer_seconds = rows[0][2]
    table = Table(
        "",
        "implementation",
        "seconds",
        "values/s",
        "vs peer",
        "values/CPU-s",
        title="every output identical to the peer's (whole-array compare)",
        caption="values/CPU-s: values per second of CPU time summed over threads, less sensitive to other "
        "load on a shared machine; values/s and the ratio are wall-clock",
    )
    for who, name, seconds, cpu in rows:
        table.add_row(
            who,
            name,
            f"{seconds:.2f}",
            f"{args.values / seconds:,.0f}",
            f"{peer_seconds / seconds:.1f}x",
            f"{args.values / cpu:,.0f}" if cpu > 0 else "-",
        )
    console.print(table)
    fastest = min((r for r in rows if r[0] == "ours"), key=lambda r: r[2], default=None)
    if fastest is not None:
        console.print(
            f"fastest: {fastest[1]}: {args.values / fastest[2]:,.0f} values/s, "
            f"{peer_seconds / fastest[2]:.1f}x the peer (target: 4,000,000 values/s and 10x)"
        )


if __name__ == "__main__":
    main()
