"""Benchmark: materialising a project view (keep approved columns, re-key the index IDs).

Peer: the obvious pandas code (read the whole file, ``hmac.new`` per row with ``Series.map``, write).
Ours: the view builder's engines - pyarrow streaming in batches (default) and the Spark job.

    .venv/bin/python bench/bench_views.py [--rows N] [--no-spark]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import secrets
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from tre_platform.views.builder import _materialise_arrow, _materialise_spark

KEEP = ["demographic_id", "age", "region"]


def write_source(directory: Path, rows: int) -> list[Path]:
    rng = np.random.default_rng(0)
    ids = np.array([secrets.token_hex(8) for _ in range(min(rows, 200_000))])
    frame = pd.DataFrame(
        {
            "demographic_id": rng.choice(ids, rows),
            "age": rng.integers(0, 100, rows),
            "region": rng.choice(["north", "south", "east", "west"], rows),
            "secret": rng.random(rows),
        }
    )
    paths = []
    for i, chunk in enumerate(np.array_split(np.arange(rows), 4)):
        path = directory / f"part-{i:05d}.parquet"
        pq.write_table(pa.Table.from_pandas(frame.iloc[chunk], preserve_index=False), path)
        paths.append(path)
    return paths


def peer(files: list[Path], out: Path, key: bytes) -> None:
    frame = pd.concat([pd.read_parquet(f, columns=KEEP) for f in files], ignore_index=True)
    frame["demographic_id"] = frame["demographic_id"].map(
        lambda v: hmac.new(key, v.encode(), hashlib.sha256).hexdigest()
    )
    frame.to_parquet(out / "part-00000.parquet", index=False)


def timed(fn, *args) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--no-spark", action="store_true", help="skip the Spark engine")
    args = parser.parse_args()
    key = secrets.token_bytes(32)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "src").mkdir()
        files = write_source(root / "src", args.rows)
        results: list[tuple[str, float]] = []
        (root / "peer").mkdir()
        results.append(("peer: pandas + hmac per row", timed(peer, files, root / "peer", key)))
        (root / "arrow").mkdir()
        results.append(
            (
                "ours: arrow streaming",
                timed(_materialise_arrow, files, root / "arrow", KEEP, ["demographic_id"], key),
            )
        )
        if not args.no_spark:
            from pyspark.sql import SparkSession

            spark = (
                SparkSession.builder.master("local[2]")
                .config("spark.ui.enabled", "false")
                .config("spark.sql.shuffle.partitions", "2")
                .getOrCreate()
            )
            (root / "warm").mkdir()
            _materialise_spark(files[:1], root / "warm", KEEP, ["demographic_id"], key, spark)  # JVM warm-up
            (root / "spark").mkdir()
            results.append(
                (
                    "ours: spark job (local[2])",
                    timed(_materialise_spark, files, root / "spark", KEEP, ["demographic_id"], key, spark),
                )
            )
            spark.stop()
        ours = pq.read_table(root / "arrow").sort_by("age").column("demographic_id").to_pylist()[:5]
        assert ours, "the arrow engine wrote nothing"
    base = results[0][1]
    table = Table(title=f"view build, {args.rows:,} rows, 1 ID column re-keyed")
    for column in ("implementation", "seconds", "rows/s", "speed-up vs peer"):
        table.add_column(column)
    for name, seconds in results:
        table.add_row(name, f"{seconds:.2f}", f"{args.rows / seconds:,.0f}", f"{base / seconds:.2f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
