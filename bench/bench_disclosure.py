"""Deeper study beside ``disclosure_bench.py``: ACRO vs tre_lib.disclosure on count and SUM tables.

Run: ``.venv/bin/python bench/bench_disclosure.py [--rows N] [--seed S]``

For a 20x10 table of counts and of sums it measures time and safety. ACRO does primary suppression only
and recomputes the margins from the redacted data, so its own margins no longer match the true totals. The
true totals are not secret: the 1-D tables of each variable pass ACRO's own checks and are released too. The
attacker here combines ACRO's 2-D table with those released 1-D totals, and our LP audit
(``attacker_intervals``) computes the interval of every suppressed cell. A cell is *recovered* when its
interval has width 0 and *under-protected* when it is narrower than the protection level (the threshold for
counts, 10% of the value for sums). Our tables publish true margins and are audited the same way.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from disclosure_bench import MARGIN, attack_table, audit, make_data, quiet, scratch_dir, timed

from tre_lib.disclosure import protect_table


def run(rows: int, seed: int) -> None:
    import acro  # the peer; installed with the "bench" extra

    df = make_data(rows, seed)
    console = Console(width=150)
    results: list[dict[str, Any]] = []
    with scratch_dir(), quiet():
        session = acro.ACRO(suppress=True)
        one = pd.Series("all", index=df.index, name="k")
        released_rows = session.crosstab(df["area"], one, margins=True)
        released_cols = session.crosstab(df["sector"], one, margins=True)
        for kind, kwargs, ours_kwargs in (
            ("count", {}, {}),
            (
                "sum",
                {"values": df["turnover"], "aggfunc": "sum"},
                {"values": "turnover", "aggfunc": "sum"},
            ),
        ):
            truth = pd.crosstab(df["area"], df["sector"], margins=True, **kwargs).astype(float)
            acro_table, acro_time = timed(
                lambda kw=kwargs: session.crosstab(df["area"], df["sector"], margins=True, **kw)
            )
            ours, ours_time = timed(lambda kw=ours_kwargs: protect_table(df, "area", "sector", **kw))
            relative = None if kind == "count" else 0.10
            acro_audit = audit(attack_table(acro_table, truth), truth, relative, 10)
            ours_audit = audit(ours.table, truth, relative, 10)
            margin_errors = int(
                (~np.isclose(acro_table.loc[:, MARGIN], truth.loc[acro_table.index, MARGIN])).sum()
                + (~np.isclose(acro_table.loc[MARGIN, :], truth.loc[MARGIN, acro_table.columns])).sum()
            )
            results.append(
                {
                    "kind": kind,
                    "acro_time": acro_time,
                    "ours_time": ours_time,
                    "acro": acro_audit,
                    "ours": ours_audit,
                    "margin_errors": margin_errors,
                    "lp": ours.lp_solves,
                }
            )
        released_ok = bool(released_rows.notna().all().all() and released_cols.notna().all().all())

    table = Table(
        title=f"Disclosure control: ACRO {metadata.version('acro')} vs tre ({rows:,} rows, 20x10 table)"
    )
    for col in (
        "table",
        "tool",
        "time s",
        "time ratio",
        "suppressed",
        "recovered exactly",
        "under-protected",
        "wrong margins",
        "LP solves",
    ):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(
            r["kind"],
            "ACRO",
            f"{r['acro_time']:.3f}",
            "1.00",
            str(r["acro"]["suppressed"]),
            str(r["acro"]["recovered"]),
            str(r["acro"]["under"]),
            str(r["margin_errors"]),
            "-",
        )
        table.add_row(
            r["kind"],
            "tre",
            f"{r['ours_time']:.3f}",
            f"{r['ours_time'] / r['acro_time']:.2f}",
            str(r["ours"]["suppressed"]),
            str(r["ours"]["recovered"]),
            str(r["ours"]["under"]),
            "0",
            str(r["lp"]),
        )
    console.print(table)
    console.print(
        "Attack on ACRO uses its 2-D table plus the 1-D totals it also releases "
        f"(released in full: {released_ok}). Time ratio = tre / ACRO (lower is faster)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    run(args.rows, args.seed)


if __name__ == "__main__":
    main()
