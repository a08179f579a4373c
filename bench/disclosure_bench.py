"""Benchmark: tre's disclosure control, one section per capability, against ACRO where ACRO has one.

Run: ``.venv/bin/python bench/disclosure_bench.py [--only SECTION ...] [--rows 1000000]
[--big-rows 1000 --big-cols 100] [--small-rows 3000] [--long-rows 20000]``

Sections (``SECTIONS`` at the end of the file; each is a function returning rows of one results table):

* ``acro_comparison``: 1,000,000 microdata rows (20 areas x 10 sectors, rare categories, heavy-tailed
  turnover) become a 20x10 crosstab of counts, sums and means with margins. ACRO (SACRO's Python engine,
  the real ``acro`` package, in the same run) does its primary checks and suppression only, recomputing
  margins from the redacted data; ours adds secondary suppression and the attacker LP audit. An attacker who
  combines each published table with the true margins (ACRO releases its 1-D tables too; ours publishes true
  margins) solves an LP (``attacker_intervals``) for every suppressed cell: *recovered* means width 0,
  *under-protected* narrower than the protection level (the threshold for counts, 10% of the total for
  sums and means, whose totals an attacker with the count table gets as mean x count). ACRO's margins that
  differ from the true totals are counted too. Goal: ours at least 5x faster.
* ``large_count_table``: ours on a ``--big-rows x --big-cols`` count table (100,000 cells), in a child
  process stopped after ``--limit`` seconds. Goal: under 10 s.
* ``insider_audit``: ours on 20x10 sum and mean tables from ``--small-rows`` rows (many dominated and
  sole-contributor cells), secondary suppression against each primary cell's largest contributor.
* ``long_table_memory``: peak memory (maximum resident set, as ``/usr/bin/time -v``) of a
  ``--long-rows x 2`` count table from three records per row, in a fresh interpreter. Goal: under 2 GB
  (it was killed at 23 GB before the 4-cycle bounds were computed per neighbour set).
* ``unit_counting``: the 1,000,000-row 20x10 sum table with contributors counted as distinct businesses
  (about 5 records each) against the same table counted by rows: the cost of units.
* ``cell_limit``: a table over the cell limit is refused before any protection work (seconds to refuse).

Wall-clock seconds on a shared machine depend on its load, which is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import logging
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from tre_lib.disclosure import TableTooLargeError, attacker_intervals, protect_table

MARGIN = "All"
#: ACRO's default threshold and our default profile's (both 10); protection level for magnitudes.
THRESHOLD = 10
RELATIVE = 0.10


def make_data(rows: int, seed: int) -> pd.DataFrame:
    """20 row categories and 10 column categories, some rare, with heavy-tailed values."""
    rng = np.random.default_rng(seed)
    row_p = np.geomspace(1, 0.002, 20)
    col_p = np.geomspace(1, 0.05, 10)
    return pd.DataFrame(
        {
            "area": rng.choice([f"a{i:02d}" for i in range(20)], rows, p=row_p / row_p.sum()),
            "sector": rng.choice([f"s{j}" for j in range(10)], rows, p=col_p / col_p.sum()),
            "turnover": rng.lognormal(3, 1.5, rows),
        }
    )


def make_big_data(n_rows: int, n_cols: int, seed: int, mean_cell: float = 50.0) -> pd.DataFrame:
    """Microdata of an ``n_rows x n_cols`` table: Poisson cell counts around skewed row and column sizes.

    Most cells are well above the threshold; a few in a hundred are small, as in a fine-grained
    geography x classification table.
    """
    rng = np.random.default_rng(seed)
    row_w = rng.lognormal(0.0, 0.5, n_rows)
    col_w = rng.lognormal(0.0, 0.5, n_cols)
    expected = np.outer(row_w, col_w)
    expected *= mean_cell / expected.mean()
    counts = rng.poisson(expected).reshape(-1)
    cell = np.repeat(np.arange(counts.size), counts)
    return pd.DataFrame(
        {"area": (cell // n_cols).astype("int32"), "code": (cell % n_cols).astype("int32")}
    ).sample(frac=1.0, random_state=seed, ignore_index=True)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """ACRO logs every table and check; keep the benchmark's output readable."""
    logging.disable(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logging.disable(logging.NOTSET)


@contextlib.contextmanager
def scratch_dir() -> Iterator[None]:
    """ACRO may write an outputs folder into the working directory; keep it out of the repository."""
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as workdir:
        os.chdir(workdir)
        try:
            yield
        finally:
            os.chdir(cwd)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def audit(
    published: pd.DataFrame, truth: pd.DataFrame, relative: float | None, width: float
) -> dict[str, int]:
    """Suppressed, recovered and under-protected cells of a published table (NaN = suppressed)."""
    intervals = attacker_intervals(published)
    recovered = under = 0
    for (r, c), (lo, hi) in intervals.items():
        needed = width if relative is None else relative * abs(float(truth.loc[r, c]))
        span = hi - lo
        recovered += span < 1e-6
        under += span < needed - 1e-6
    return {"suppressed": len(intervals), "recovered": recovered, "under": under}


def attack_table(published: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """A published table's interior cells with the true margins (released through 1-D tables)."""
    attack = published.reindex(index=truth.index, columns=truth.columns).astype(float)
    attack.loc[:, MARGIN] = truth.loc[:, MARGIN]
    attack.loc[MARGIN, :] = truth.loc[MARGIN, :]
    return attack


def as_totals(mean_table: pd.DataFrame, counts: pd.DataFrame) -> pd.DataFrame:
    """Mean x count: the totals an attacker who knows the count table reads off a mean table."""
    return mean_table.reindex(index=counts.index, columns=counts.columns).astype(float) * counts


def compare(rows: int, seed: int) -> list[dict[str, Any]]:
    """Part 1: ACRO and ours on the same 20x10 count and mean tables."""
    from acro import ACRO  # the peer; installed with the "bench" extra

    df = make_data(rows, seed)
    counts = pd.crosstab(df["area"], df["sector"], margins=True).astype(float)
    sums = pd.crosstab(df["area"], df["sector"], values=df["turnover"], aggfunc="sum", margins=True)
    tables: dict[str, tuple[dict[str, Any], dict[str, Any], pd.DataFrame, float | None]] = {
        "count": ({}, {}, counts, None),
        "sum": (
            {"values": df["turnover"], "aggfunc": "sum"},
            {"values": "turnover", "aggfunc": "sum"},
            sums.astype(float),
            RELATIVE,
        ),
        "mean": (
            {"values": df["turnover"], "aggfunc": "mean"},
            {"values": "turnover", "aggfunc": "mean"},
            sums.astype(float),
            RELATIVE,
        ),
    }
    # Warm up both (imports, first-call caches) on a small sample, untimed.
    small = df.head(5_000)
    with quiet(), scratch_dir():
        warm = ACRO(suppress=True)
        warm.crosstab(small["area"], small["sector"], margins=True)
    protect_table(small, "area", "sector")
    out = []
    for kind, (acro_kw, ours_kw, truth, relative) in tables.items():
        with quiet(), scratch_dir():
            session = ACRO(suppress=True)
            acro_table, acro_s = timed(
                lambda kw=acro_kw, acro=session: acro.crosstab(df["area"], df["sector"], margins=True, **kw)
            )
        ours, ours_s = timed(lambda kw=ours_kw: protect_table(df, "area", "sector", **kw))
        acro_pub = acro_table.astype(float)
        shown = truth if kind != "mean" else counts.mul(np.nan)  # a mean table's margins are means
        wrong_margins = (
            int(
                (~np.isclose(acro_pub.loc[:, MARGIN], shown.loc[acro_pub.index, MARGIN])).sum()
                + (~np.isclose(acro_pub.loc[MARGIN, :], shown.loc[MARGIN, acro_pub.columns])).sum()
            )
            if kind != "mean"
            else None
        )
        ours_pub = ours.table.astype(float)
        if kind == "mean":
            acro_pub, ours_pub = as_totals(acro_pub, counts), as_totals(ours_pub, counts)
        out.append(
            {
                "table": f"20x10 {kind}",
                "acro_s": acro_s,
                "ours_s": ours_s,
                "acro": audit(attack_table(acro_pub, truth), truth, relative, THRESHOLD),
                "ours": audit(ours_pub, truth, relative, THRESHOLD),
                "ours_status": ours.status,
                "lp": ours.lp_solves,
                "wrong_margins": wrong_margins,
            }
        )
    return out


def magnitudes(rows: int, seed: int) -> list[dict[str, Any]]:
    """Part 3: ours alone on small 20x10 sum and mean tables, where secondary suppression must also protect
    every primary cell against its largest contributor (who knows their own value) -- the insider audit."""
    df = make_data(rows, seed)
    counts = pd.crosstab(df["area"], df["sector"], margins=True).astype(float)
    truth = pd.crosstab(df["area"], df["sector"], values=df["turnover"], aggfunc="sum", margins=True)
    out = []
    for aggfunc in ("sum", "mean"):
        cpu = time.process_time()
        result, seconds = timed(
            lambda a=aggfunc: protect_table(df, "area", "sector", values="turnover", aggfunc=a)
        )
        cpu = time.process_time() - cpu
        published = result.table.astype(float)
        if aggfunc == "mean":
            published = as_totals(published, counts)
        out.append(
            {
                "table": f"20x10 {aggfunc} ({rows:,} rows)",
                "seconds": seconds,
                "cpu_seconds": cpu,
                "primary": sum(1 for c in result.cells.values() if c.primary),
                "secondary": sum(1 for c in result.cells.values() if c.secondary),
                "audit": audit(published, truth.astype(float), RELATIVE, THRESHOLD),
                "lp": result.lp_solves,
                "status": result.status,
            }
        )
    return out


def _big_child(n_rows: int, n_cols: int, seed: int, conn: Any) -> None:
    df = make_big_data(n_rows, n_cols, seed)
    cpu = time.process_time()
    result, seconds = timed(lambda: protect_table(df, "area", "code"))
    cpu = time.process_time() - cpu
    need = result.rules.required_count_width
    # The attacker's own audit, from the published table alone (not from our recorded intervals).
    seen = attacker_intervals(result.table.astype(float))
    under = sum(1 for lo, hi in seen.values() if hi - lo < need - 1e-6)
    recovered = sum(1 for lo, hi in seen.values() if hi - lo < 1e-6)
    conn.send(
        {
            "seconds": seconds,
            "cpu_seconds": cpu,
            "microdata_rows": len(df),
            "cells": int(result.table.size),
            "primary": sum(1 for c in result.cells.values() if c.primary),
            "secondary": sum(1 for c in result.cells.values() if c.secondary),
            "under": under,
            "recovered": recovered,
            "lp": result.lp_solves,
            "status": result.status,
        }
    )
    conn.close()


def big(n_rows: int, n_cols: int, seed: int, limit: float) -> dict[str, Any]:
    """Part 2: ours alone on a large table, in a child process stopped after ``limit`` seconds."""
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_big_child, args=(n_rows, n_cols, seed, child))
    start = time.perf_counter()
    proc.start()
    child.close()
    got = parent.poll(limit)
    if not got:
        proc.terminate()
        proc.join()
        return {"finished": False, "seconds": time.perf_counter() - start}
    out: dict[str, Any] = parent.recv()
    proc.join()
    out["finished"] = True
    return out


def _audit_text(found: dict[str, int]) -> str:
    return (
        f"suppressed {found['suppressed']}, recovered {found['recovered']}, under-protected {found['under']}"
    )


def acro_comparison(args: argparse.Namespace) -> list[dict[str, Any]]:
    """ACRO and ours on the same 20x10 count, sum and mean tables (one pair of rows per table)."""
    rows = []
    for r in compare(args.rows, args.seed):
        wrong = "" if r["wrong_margins"] is None else f", wrong margins {r['wrong_margins']}"
        rows.append(
            {
                "benchmark": f"{r['table']} ({args.rows:,} rows)",
                "tool": f"ACRO {metadata.version('acro')}",
                "does": "primary only",
                "seconds": r["acro_s"],
                "ratio": "1.00",
                "figures": _audit_text(r["acro"]) + wrong,
                "goal": "",
            }
        )
        speedup = r["acro_s"] / r["ours_s"]
        rows.append(
            {
                "benchmark": f"{r['table']} ({args.rows:,} rows)",
                "tool": "tre",
                "does": "primary + secondary + audit",
                "seconds": r["ours_s"],
                "ratio": f"{speedup:.2f}x faster",
                "figures": _audit_text(r["ours"]) + f", wrong margins 0, LP solves {r['lp']}",
                "goal": f">= 5x faster: {'met' if speedup >= 5 else 'MISSED'}",
            }
        )
    return rows


def large_count_table(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Ours alone on a large count table, stopped after ``--limit`` seconds."""
    large = big(args.big_rows, args.big_cols, args.seed, args.limit)
    shape = f"{args.big_rows}x{args.big_cols} count"
    if not large["finished"]:
        return [
            {
                "benchmark": shape,
                "tool": "tre",
                "does": "primary + secondary + audit",
                "seconds": large["seconds"],
                "ratio": "-",
                "figures": "stopped",
                "goal": "< 10 s: MISSED",
            }
        ]
    return [
        {
            "benchmark": f"{shape} ({large['cells']:,} cells, {large['microdata_rows']:,} rows)",
            "tool": "tre",
            "does": "primary + secondary + audit",
            "seconds": large["seconds"],
            "ratio": "-",
            "figures": f"{large['primary']} + {large['secondary']} suppressed, "
            f"recovered {large['recovered']}, under-protected {large['under']}, "
            f"{large['cpu_seconds']:.2f} s CPU",
            "goal": f"< 10 s: {'met' if large['seconds'] < 10 else 'MISSED'}",
        }
    ]


def insider_audit(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Ours alone on small magnitude tables with the insider audit."""
    return [
        {
            "benchmark": m["table"],
            "tool": "tre",
            "does": "primary + secondary + insider audit",
            "seconds": m["seconds"],
            "ratio": "-",
            "figures": f"{m['primary']} + {m['secondary']} suppressed, recovered {m['audit']['recovered']}, "
            f"under-protected {m['audit']['under']}, {m['cpu_seconds']:.2f} s CPU",
            "goal": "",
        }
        for m in magnitudes(args.small_rows, args.seed)
    ]


def _long_table_child(rows: int, seed: int) -> None:
    """In a fresh interpreter: protect the long table and print its figures as JSON."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"r": rng.integers(0, rows, 3 * rows), "c": rng.integers(0, 2, 3 * rows)})
    cpu = time.process_time()
    result, seconds = timed(lambda: protect_table(df, "r", "c"))
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": time.process_time() - cpu,
                "peak_bytes": peak_kb * 1024,
                "cells": int(result.table.size),
                "suppressed": len(result.suppressed),
                "status": result.status,
            }
        )
    )


def long_table_memory(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Peak memory of a ``--long-rows x 2`` count table (three records per row), in its own process."""
    done = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--long-table-child", str(args.long_rows)],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return [
            {
                "benchmark": f"{args.long_rows:,}x2 count, peak memory",
                "tool": "tre",
                "does": "primary + secondary + audit",
                "seconds": float("nan"),
                "ratio": "-",
                "figures": f"failed (exit {done.returncode}): {done.stderr.strip()[-200:]}",
                "goal": "< 2 GB: MISSED",
            }
        ]
    got = json.loads(lines[-1])
    gb = got["peak_bytes"] / 1e9
    return [
        {
            "benchmark": f"{args.long_rows:,}x2 count ({3 * args.long_rows:,} rows), peak memory",
            "tool": "tre",
            "does": "primary + secondary + audit",
            "seconds": got["seconds"],
            "ratio": "-",
            "figures": f"peak RSS {gb:.2f} GB, {got['cells']:,} cells, {got['suppressed']:,} suppressed, "
            f"{got['cpu_seconds']:.1f} s CPU, {got['status']}",
            "goal": f"< 2 GB: {'met' if gb < 2 else 'MISSED'}",
        }
    ]


def unit_counting(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The 20x10 sum table counted by distinct businesses against the same table counted by rows."""
    df = make_data(args.rows, args.seed)
    rng = np.random.default_rng(args.seed)
    df["business_id"] = rng.integers(0, max(1, args.rows // 5), len(df))
    rows_result, rows_s = timed(lambda: protect_table(df, "area", "sector", values="turnover", aggfunc="sum"))
    units_result, units_s = timed(
        lambda: protect_table(df, "area", "sector", values="turnover", aggfunc="sum", unit="business_id")
    )
    return [
        {
            "benchmark": f"20x10 sum ({args.rows:,} rows), contributors = rows",
            "tool": "tre",
            "does": "records as contributors",
            "seconds": rows_s,
            "ratio": "1.00",
            "figures": f"{len(rows_result.suppressed)} suppressed",
            "goal": "",
        },
        {
            "benchmark": f"20x10 sum ({args.rows:,} rows), contributors = businesses",
            "tool": "tre",
            "does": "per-unit sums, distinct units",
            "seconds": units_s,
            "ratio": f"{units_s / rows_s:.2f}x the time",
            "figures": f"{len(units_result.suppressed)} suppressed",
            "goal": "",
        },
    ]


def cell_limit(args: argparse.Namespace) -> list[dict[str, Any]]:
    """A table over the cell limit is refused before protection: how long the refusal takes."""
    rng = np.random.default_rng(args.seed)
    n = 200_000
    df = pd.DataFrame({"r": rng.integers(0, n, 3 * n), "c": rng.integers(0, 2, 3 * n)})
    start = time.perf_counter()
    try:
        protect_table(df, "r", "c", max_cells=100_000)
        refused = "NOT refused"
    except TableTooLargeError as err:
        refused = f"refused: {str(err)[:60]}..."
    seconds = time.perf_counter() - start
    return [
        {
            "benchmark": f"{n:,}x2 count ({3 * n:,} rows) over a 100,000-cell limit",
            "tool": "tre",
            "does": "limit checked before protection",
            "seconds": seconds,
            "ratio": "-",
            "figures": refused,
            "goal": "refused, no protection work",
        }
    ]


#: The benchmarks, in the order they run: (name, what it measures). Add a section by appending here.
SECTIONS: list[tuple[str, Callable[[argparse.Namespace], list[dict[str, Any]]]]] = [
    ("acro_comparison", acro_comparison),
    ("large_count_table", large_count_table),
    ("insider_audit", insider_audit),
    ("long_table_memory", long_table_memory),
    ("unit_counting", unit_counting),
    ("cell_limit", cell_limit),
]


def report(console: Console, rows: list[dict[str, Any]], load: tuple[tuple[float, ...], ...]) -> None:
    """One table of every section's rows, then the machine's load."""
    table = Table(title="Disclosure control benchmarks (tre vs ACRO where ACRO has the capability)")
    for col in ("section", "benchmark", "tool", "does", "seconds", "vs peer", "figures", "goal"):
        table.add_column(col, justify="left" if col in ("figures", "benchmark") else "right")
    for r in rows:
        table.add_row(
            r["section"],
            r["benchmark"],
            r["tool"],
            r["does"],
            f"{r['seconds']:.3f}",
            r["ratio"],
            r["figures"],
            r["goal"],
        )
    console.print(table)
    console.print(
        f"Load average (1, 5, 15 min) {' / '.join(f'{x:.2f}' for x in load[0])} at the start, "
        f"{' / '.join(f'{x:.2f}' for x in load[1])} at the end, on {os.cpu_count()} cores."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", nargs="*", choices=[name for name, _ in SECTIONS], help="sections to run")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big-rows", type=int, default=1_000)
    parser.add_argument("--big-cols", type=int, default=100)
    parser.add_argument("--limit", type=float, default=300.0, help="seconds before the large run is stopped")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--small-rows", type=int, default=3_000, help="rows of the small sum and mean tables")
    parser.add_argument("--long-rows", type=int, default=20_000, help="rows of the long 2-column table")
    parser.add_argument("--long-table-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.long_table_child is not None:
        _long_table_child(args.long_table_child, args.seed)
        return
    console = Console(width=200)
    load_start = os.getloadavg()
    rows: list[dict[str, Any]] = []
    for name, section in SECTIONS:
        if args.only and name not in args.only:
            continue
        with console.status(f"{name}..."):
            rows += [{"section": name, **row} for row in section(args)]
    report(console, rows, (load_start, os.getloadavg()))


# Server side: differencing by unit incidence ------------------------------------------------------


def server_differencing(n_released: int = 1_000, rows: int = 20_000, seed: int = 7) -> dict[str, Any]:
    """A new 20x10 count table checked against ``n_released`` released 20x10 tables of the same view.

    The released tables cross different pairs of variables of one person-level view (each with 20 and 10
    categories), as a project's releases would; the check is
    :func:`tre_lib.disclosure.differencing.check_unit_differencing` (goal: under 2 s).
    """
    from tre_lib.disclosure.differencing import UnitTable, check_unit_differencing, element_keys

    rng = np.random.default_rng(seed)
    n_vars = 12
    frame = pd.DataFrame(
        {f"v{k}": rng.integers(0, 20 if k % 2 == 0 else 10, rows).astype(str) for k in range(n_vars)}
    )
    row_keys, unit_keys = element_keys([f"u{i}" for i in range(rows)])
    with quiet():

        def table(tid: str, row_var: str, col_var: str) -> UnitTable:
            protected = protect_table(frame, row_var, col_var, rules="default")
            return UnitTable.from_frame(tid, protected, frame, row_keys, unit_keys, universe="bench")

        pairs = [(f"v{2 * (k % 6)}", f"v{2 * ((k // 6) % 6) + 1}") for k in range(36)]
        templates = [table(f"t{k}", r, c) for k, (r, c) in enumerate(pairs)]
        released = [
            dataclasses.replace(templates[k % len(templates)], table_id=f"r{k}") for k in range(n_released)
        ]
        new = table("new", "v0", "v1")
        findings, seconds = timed(lambda: check_unit_differencing(new, released))
    return {
        "released_tables": n_released,
        "rows": rows,
        "seconds": round(seconds, 3),
        "findings": len(findings),
        "goal_seconds": 2.0,
        "within_goal": seconds < 2.0,
    }


def server_differencing_section(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The server's differencing check as a results row (see :func:`server_differencing`)."""
    result = server_differencing()
    return [
        {
            "benchmark": f"new 20x10 table vs {result['released_tables']:,} released tables (unit incidence)",
            "tool": "tre",
            "does": "differencing over everything released or in flight",
            "seconds": result["seconds"],
            "ratio": "-",
            "figures": f"{result['findings']} findings",
            "goal": "< 2 s",
        }
    ]


SECTIONS.append(("server_differencing", server_differencing_section))


if __name__ == "__main__":
    main()
