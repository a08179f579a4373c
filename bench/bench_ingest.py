"""Ingest benchmark: a naive pandas ingest (the peer) vs our pipeline on pandas and on Spark, same delivery.

Then the intake of an upload (what POST /api/v1/datasets/{name}/deliveries does before the pipeline): a
multipart body streamed into the landing zone with its SHA-256 by ``MultipartUpload``, against the usual
FastAPI way (Starlette's form parser spools the file to a temporary file, then it is copied and hashed),
same body, same run: MB/s and peak Python memory (tracemalloc) of each.

The peer is what a quick script does: read the CSV, hash the identifiers of each row with ``hashlib``, drop
them and write Parquet. It validates nothing, links nothing (a salted hash is not an index id: two
deliveries with a typo never join) and publishes non-atomically. Ours validates every value against the
schema, matches to the demographic reference index (deterministic + Splink), computes five quality
dimensions and publishes atomically with an audit event. The ratio shows what that costs.

    .venv/bin/python bench/bench_ingest.py [--rows 200000] [--persons 50000] [--no-spark] [--upload-mb 512]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import BinaryIO

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


_BOUNDARY = "tre-bench-boundary"


def _multipart_body(mb: int) -> tuple[bytes, bytes, bytes, int]:
    """(head, repeated block, tail, number of blocks) of a multipart body holding one ``mb`` MB CSV."""
    block = b"9434765919,Ada,Lovelace,1815-12-10,W1A 1AA,2020-01-01,3\n" * 1100  # ~60 KB, a receive()'s worth
    head = (
        f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="d.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    tail = f"\r\n--{_BOUNDARY}--\r\n".encode()
    return head, block, tail, mb * 1_000_000 // len(block)


def _chunks(mb: int) -> Iterator[bytes]:
    head, block, tail, n = _multipart_body(mb)
    yield head
    for _ in range(n):
        yield block
    yield tail


def _measure(run: Callable[[], str]) -> tuple[float, float, str]:
    """(seconds, peak Python MiB, digest): timed without tracemalloc (it slows allocation), then again
    under it for the peak."""
    start = time.perf_counter()
    digest = run()
    seconds = time.perf_counter() - start
    tracemalloc.start()
    again = run()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    assert again == digest
    return seconds, peak, digest


def bench_upload(mb: int, data_dir: Path, console: Console) -> None:
    """Our streamed intake vs the usual FastAPI intakes, on the same bodies (raw and multipart)."""
    from starlette.datastructures import Headers
    from starlette.formparsers import MultiPartParser

    from tre_platform.pipelines import DeliveryUpload, MultipartUpload
    from tre_platform.settings import get_settings

    settings = get_settings()
    content_type = f"multipart/form-data; boundary={_BOUNDARY}"
    _head, block, _tail, n = _multipart_body(mb)

    def raw_chunks() -> Iterator[bytes]:
        return (block for _ in range(n))

    def write_and_hash(chunks: Iterator[bytes]) -> str:
        digest = hashlib.sha256()
        with (data_dir / "peer-upload.csv").open("wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
        return digest.hexdigest()

    def peer_raw() -> str:
        # `body = await request.body()`: the whole body in memory, then written and hashed.
        body = b"".join(raw_chunks())
        return write_and_hash(iter([body]))

    def ours_raw() -> str:
        with DeliveryUpload(filename="d.csv", max_bytes=10 * 1024**3, settings=settings) as upload:
            for chunk in raw_chunks():
                upload.write(chunk)
            stored = upload.finish()
        shutil.rmtree(stored.path.parent)
        return stored.sha256

    def peer_multipart() -> str:
        # `file: UploadFile`: Starlette spools the part to a temporary file, then the route copies it.
        async def stream() -> AsyncIterator[bytes]:
            for chunk in _chunks(mb):
                yield chunk

        async def parse() -> str:
            form = await MultiPartParser(Headers({"content-type": content_type}), stream()).parse()
            upload = form["file"]
            assert not isinstance(upload, str)
            digest = write_and_hash(_file_chunks(upload.file))
            await upload.close()
            return digest

        return asyncio.run(parse())

    def ours_multipart() -> str:
        with MultipartUpload(content_type, max_bytes=10 * 1024**3, settings=settings) as upload:
            for chunk in _chunks(mb):
                upload.write(chunk)
            stored = upload.finish()
        shutil.rmtree(stored.path.parent)
        return stored.sha256

    table = Table(title=f"upload intake: a {mb} MB delivery into the landing zone, with its SHA-256")
    for column in ("body", "intake", "seconds", "MB/s", "x peer speed", "peak Python MiB", "x peer memory"):
        table.add_column(column, justify="left" if column in ("body", "intake") else "right")
    for body, (peer_name, peer), (our_name, ours) in (
        ("raw", ("request.body() + write (peer)", peer_raw), ("tre DeliveryUpload", ours_raw)),
        (
            "multipart",
            ("Starlette UploadFile + copy (peer)", peer_multipart),
            ("tre MultipartUpload", ours_multipart),
        ),
    ):
        p_seconds, p_peak, p_digest = _measure(peer)
        o_seconds, o_peak, o_digest = _measure(ours)
        if p_digest != o_digest:
            raise SystemExit(f"the two {body} intakes stored different bytes")
        for name, seconds, peak in ((peer_name, p_seconds, p_peak), (our_name, o_seconds, o_peak)):
            table.add_row(
                body,
                name,
                f"{seconds:.2f}",
                f"{mb / seconds:,.0f}",
                f"{p_seconds / seconds:.2f}",
                f"{peak:.1f}",
                f"{peak / p_peak:.4f}",
            )
    console.print(table)


def _file_chunks(handle: BinaryIO) -> Iterator[bytes]:
    """A spooled upload's bytes in 4 MiB chunks."""
    handle.seek(0)
    while chunk := handle.read(4 * 1024 * 1024):
        yield chunk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="delivery rows")
    parser.add_argument("--persons", type=int, default=50_000, help="people in the world and the index")
    parser.add_argument("--no-spark", action="store_true", help="skip the Spark run")
    parser.add_argument("--upload-mb", type=int, default=512, help="size of the upload-intake comparison")
    parser.add_argument("--upload-only", action="store_true", help="run only the upload-intake comparison")
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

    console = Console(width=None if sys.stdout.isatty() else 160)
    bench_upload(args.upload_mb, data_dir, console)
    if args.upload_only:
        return
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
