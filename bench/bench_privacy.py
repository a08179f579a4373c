"""Benchmark: tre_lib.privacy dp_count / dp_mean (OpenDP 0.16) against a naive numpy Laplace baseline.

Both run in the same process on the same data. For each statistic we report the median time per query, the
empirical 95th percentile of the absolute error over repeated releases, the stated 95% accuracy, and how
often the stated interval covered the truth. The peer "states" the textbook Laplace interval b*ln(1/alpha);
it has none of OpenDP's guarantees (floating-point-safe noise, exact discrete noise for counts, checked
privacy maps), which is what the extra time buys.

Run: .venv/bin/python bench/bench_privacy.py [--rows N] [--reps R] [--epsilon E]

Ours runs twice: on an in-memory polars DataFrame (OpenDP copies the rows across its FFI) and on a lazy
Parquet scan, which is how a project view is read in a workspace.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table

from tre_lib.privacy import dp_count, dp_mean

ALPHA = 0.05
BOUNDS = (0.0, 100.0)


@dataclass
class Run:
    seconds: list[float]
    errors: list[float]
    stated: float

    @property
    def median_ms(self) -> float:
        return statistics.median(self.seconds) * 1000

    @property
    def p95_error(self) -> float:
        return float(np.quantile(np.abs(self.errors), 0.95))

    @property
    def coverage(self) -> float:
        return float(np.mean(np.abs(self.errors) <= self.stated))


def _repeat(reps: int, release: Callable[[], tuple[float, float]], truth: float) -> Run:
    seconds, errors, stated = [], [], math.nan
    for _ in range(reps):
        start = time.perf_counter()
        value, stated = release()
        seconds.append(time.perf_counter() - start)
        errors.append(value - truth)
    return Run(seconds, errors, stated)


def naive_count(values: np.ndarray, epsilon: float, rng: np.random.Generator) -> tuple[float, float]:
    """Peer: n + Laplace(1/ε) with the textbook 95% half-width b*ln(1/alpha)."""
    scale = 1.0 / epsilon
    return len(values) + rng.laplace(0.0, scale), scale * math.log(1 / ALPHA)


def naive_mean(values: np.ndarray, epsilon: float, rng: np.random.Generator) -> tuple[float, float]:
    """Peer: clamp, noisy sum and noisy count with ε/2 each, ratio; half-width from the same box as ours."""
    lo, hi = BOUNDS
    present = values[~np.isnan(values)]
    clipped = np.clip(present, lo, hi)
    sum_scale = max(abs(lo), abs(hi)) / (epsilon / 2)
    count_scale = 1.0 / (epsilon / 2)
    s = clipped.sum() + rng.laplace(0.0, sum_scale)
    n = len(clipped) + rng.laplace(0.0, count_scale)
    mean = min(max(s / n, lo), hi)
    # Both parts at alpha/2, worst ratio over the box (as tre_lib.privacy states it).
    a_s, a_n = sum_scale * math.log(2 / ALPHA), count_scale * math.log(2 / ALPHA)
    corners = [(s + ds) / (n + dn) for ds in (-a_s, a_s) for dn in (-a_n, a_n)]
    return mean, max(max(corners) - mean, mean - min(corners))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    values = rng.normal(50, 15, args.rows)
    values[rng.choice(args.rows, size=args.rows // 100, replace=False)] = np.nan
    frame = pl.DataFrame({"value": values})
    eps = args.epsilon
    true_count = float(args.rows)
    true_mean = float(np.clip(values[~np.isnan(values)], *BOUNDS).mean())

    with tempfile.TemporaryDirectory() as tmp:
        # A project view is Parquet; a lazy scan reaches OpenDP as a plan instead of rows copied over its FFI.
        path = Path(tmp) / "view.parquet"
        frame.write_parquet(path)
        scan = pl.scan_parquet(path)

        def ours(data: pl.DataFrame | pl.LazyFrame, statistic: str) -> Callable[[], tuple[float, float]]:
            def release() -> tuple[float, float]:
                r = dp_count(data, eps) if statistic == "count" else dp_mean(data, "value", BOUNDS, eps)
                return float(r.value), r.accuracy

            return release

        results = {}
        for statistic, truth, naive in (("count", true_count, naive_count), ("mean", true_mean, naive_mean)):
            results[statistic] = (
                _repeat(args.reps, ours(frame, statistic), truth),
                _repeat(args.reps, ours(scan, statistic), truth),
                _repeat(args.reps, lambda naive=naive: naive(values, eps, rng), truth),  # type: ignore[misc]
            )

    table = Table(
        title=f"DP releases on {args.rows:,} rows, ε={eps:g}, {args.reps} repetitions\n"
        "ours: tre_lib.privacy on OpenDP 0.16 (polars DataFrame | Parquet scan); peer: naive numpy Laplace"
    )
    for column in ("statistic", "metric", "ours (frame)", "ours (scan)", "peer", "frame/peer", "scan/peer"):
        table.add_column(column, justify="left" if column in ("statistic", "metric") else "right")
    for name, (on_frame, on_scan, peer) in results.items():
        rows = [
            ("median ms / query", [r.median_ms for r in (on_frame, on_scan, peer)]),
            ("empirical p95 |error|", [r.p95_error for r in (on_frame, on_scan, peer)]),
            ("stated 95% half-width", [r.stated for r in (on_frame, on_scan, peer)]),
            ("p95 |error| / stated", [r.p95_error / r.stated for r in (on_frame, on_scan, peer)]),
            ("coverage of stated CI", [r.coverage for r in (on_frame, on_scan, peer)]),
        ]
        for i, (metric, (a, b, c)) in enumerate(rows):
            table.add_row(
                name if i == 0 else "",
                metric,
                f"{a:.4g}",
                f"{b:.4g}",
                f"{c:.4g}",
                f"{a / c:.3g}" if c else "n/a",
                f"{b / c:.3g}" if c else "n/a",
            )
        table.add_section()
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
