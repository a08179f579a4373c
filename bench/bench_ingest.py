"""Ingest benchmark: a naive pandas ingest (the peer) vs our pipeline on pandas and on Spark, same delivery.

The peer is what a quick script does: read the CSV, hash the identifiers of each row with ``hashlib``, drop
them and write Parquet. It validates nothing, links nothing (a salted hash is not an index id: two
deliveries with a typo never join) and publishes non-atomically. Ours validates every value against the
schema, matches to the demographic reference index (deterministic + Splink), computes five quality
dimensions and publishes atomically with an audit event. The ratio shows what that costs.

    .venv/bin/python bench/bench_ingest.py [--rows 200000] [--persons 50000] [--no-spark]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

IDENTIFIERS = ["nhs_number", "given_name", "family_name", "date_of_birth", "postcode"]


def naive_ingest(path: Path, out: Path) -> int:
    """The peer: read, hash each row's identifiers with hashlib, drop them, write Parquet."""
    frame = pd.read_csv(path, dtype=str)
    joined = frame[IDENTIFIERS].fillna("").agg("|".join, axis=1)
    frame["person_hash"] = joined.apply(lambda v: hashlib.sha256(b"salt" + v.encode()).hexdigest())
    frame.drop(columns=IDENTIFIERS).to_parquet(out, index=False)
    return len(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="delivery rows")
    parser.add_argument("--persons", type=int, default=50_000, help="people in the world and the index")
    parser.add_argument("--no-spark", action="store_true", help="skip the Spark run")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="tre-bench-ingest-"))
    os.environ.update({"TRE_DATA_DIR": str(data_dir), "TRE_ENV": "dev"})
    os.environ.pop("TRE_DATABASE_URL", None)

    from tre_lib.synth import generate_world
    from tre_platform.db.migrate import upgrade
    from tre_platform.db.session import session_scope
    from tre_platform.demo.deliveries import _owner, build_indexes, write_delivery
    from tre_platform.demo.seed import seed
    from tre_platform.pipelines import ingest
    from tre_platform.pipelines.ingest import find_dataset

    console = Console()
    upgrade()
    with session_scope() as session:
        seed(session)
    world = generate_world(args.persons, seed=5)
    truths = build_indexes(world, data_dir)
    csv_path, truth_path = write_delivery(
        world, "hospital_episodes", data_dir, args.rows, seed=3, index_truths=truths
    )
    size_mb = csv_path.stat().st_size / 1e6
    console.print(f"delivery: {args.rows} rows, {size_mb:.1f} MB; index: {args.persons} people")

    results: list[tuple[str, float, str]] = []
    start = time.perf_counter()
    naive_ingest(csv_path, data_dir / "naive.parquet")
    results.append(
        ("naive pandas + hashlib (peer)", time.perf_counter() - start, "no validation, no linkage")
    )

    runs = [("pandas", {})]
    if not args.no_spark:
        runs.append(("spark", {}))
    for engine, extra in runs:
        with session_scope() as session:
            actor = _owner(session, find_dataset(session, "hospital_episodes"))
            start = time.perf_counter()
            version = ingest(
                session,
                actor,
                "hospital_episodes",
                csv_path,
                engine=engine,
                truth=truth_path,
                allow_duplicate=True,
                **extra,
            )
            elapsed = time.perf_counter() - start
            report = version.match_report["demographic"]
            accuracy = report.get("accuracy") or {}
            matching = sum(sum(r["seconds"].values()) for r in version.match_report.values())
            note = (
                f"match rate {report['rates']['deterministic'] + report['rates']['probabilistic']:.1%}, "
                f"precision {accuracy.get('precision', float('nan')):.4f}, "
                f"recall {accuracy.get('recall', float('nan')):.4f}; Splink {report['backend']}; "
                f"matching {matching:.1f} s, the rest {elapsed - matching:.1f} s"
            )
            results.append((f"tre ingest ({engine})", elapsed, note))

    peer = results[0][1]
    table = Table(title=f"ingest {args.rows} rows ({size_mb:.1f} MB CSV)")
    for column in ("pipeline", "seconds", "rows/s", "x peer time", "notes"):
        table.add_column(
            column, justify="right" if column in ("seconds", "rows/s", "x peer time") else "left"
        )
    for name, seconds, note in results:
        table.add_row(name, f"{seconds:.2f}", f"{args.rows / seconds:,.0f}", f"{seconds / peer:.1f}", note)
    console.print(table)
    console.print(f"[dim]data directory: {data_dir}[/]")


if __name__ == "__main__":
    sys.exit(main())
