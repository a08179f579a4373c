"""Receiving a delivery into the landing zone: size check, format sniffing, hash, copy, header.

One streamed pass over the file copies it into ``landing/<dataset>/<delivery id>/``, computes its SHA-256
(for duplicate detection and the version record) and checks that a CSV is UTF-8 text without NUL bytes, so
a 2 GB delivery never has to fit in memory and a binary file is refused before any parser sees it.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow.parquet as pq

from tre_platform.pipelines.errors import DeliveryInvalid
from tre_platform.pipelines.validation import ColumnRule, Problem, ValidationReport, file_problem

Format = Literal["csv", "parquet"]
_CHUNK = 4 * 1024 * 1024
_PARQUET_MAGIC = b"PAR1"


@dataclass(frozen=True)
class Delivery:
    """A delivery accepted into the landing zone (not yet validated row by row)."""

    source_name: str
    path: Path
    format: Format
    size: int
    sha256: str
    header: list[str]


def _secure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def receive(
    source: Path,
    landing_root: Path,
    dataset: str,
    *,
    max_bytes: int,
    rules: list[ColumnRule],
    source_name: str | None = None,
) -> Delivery:
    """Copy ``source`` into the landing zone and check what can be checked without parsing rows.

    Raises:
        DeliveryInvalid: The file is missing, empty, too large, binary, not UTF-8, or has no usable header.
    """
    name = source_name or source.name
    if not source.is_file():
        raise DeliveryInvalid(file_problem(name, "not_tabular", f"{source} is not a file", rules))
    size = source.stat().st_size
    if size == 0:
        raise DeliveryInvalid(file_problem(name, "empty_file", rules=rules))
    if size > max_bytes:
        raise DeliveryInvalid(
            file_problem(
                name,
                "too_large",
                f"{size} bytes; the limit is {max_bytes} bytes (TRE_MAX_UPLOAD_BYTES): split the delivery",
                rules,
            )
        )
    with source.open("rb") as handle:
        head = handle.read(len(_PARQUET_MAGIC))
    fmt: Format = "parquet" if head == _PARQUET_MAGIC else "csv"

    delivery_dir = _secure_dir(landing_root / dataset / f"{secrets.token_hex(8)}")
    target = delivery_dir / (Path(name).name or f"delivery.{fmt}")
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    problem: tuple[str, str] | None = None
    offset = 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with source.open("rb") as src, os.fdopen(fd, "wb") as dst:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            dst.write(chunk)
            if fmt == "csv" and problem is None:
                nul = chunk.find(b"\x00")
                if nul >= 0:
                    problem = ("not_tabular", f"NUL byte at byte {offset + nul}: binary data")
                else:
                    try:
                        decoder.decode(chunk)
                    except UnicodeDecodeError as exc:
                        problem = ("not_utf8", f"invalid byte at byte {offset + exc.start}: save it as UTF-8")
            offset += len(chunk)
        if fmt == "csv" and problem is None:
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                problem = ("not_utf8", "the file ends in the middle of a character")
    if problem is not None:
        raise DeliveryInvalid(file_problem(name, problem[0], problem[1], rules))

    header = read_header(target, fmt, name, rules)
    return Delivery(name, target, fmt, size, digest.hexdigest(), header)


def read_header(path: Path, fmt: Format, name: str, rules: list[ColumnRule]) -> list[str]:
    """Column names of a delivery (the first CSV record, or the Parquet schema)."""
    if fmt == "parquet":
        try:
            return list(pq.read_schema(path).names)
        except Exception as exc:  # pyarrow raises several types for a corrupt footer
            raise DeliveryInvalid(
                file_problem(name, "not_tabular", f"unreadable Parquet file: {exc}", rules)
            ) from None
    with path.open(encoding="utf-8-sig", newline="") as handle:
        try:
            first = next(csv.reader(handle))
        except (StopIteration, csv.Error) as exc:
            raise DeliveryInvalid(
                file_problem(name, "not_tabular", str(exc) or "no header row", rules)
            ) from None
    header = [column.strip() for column in first]
    if not any(header):
        raise DeliveryInvalid(file_problem(name, "not_tabular", "the header row is blank", rules))
    return header


def scan_row_shapes(path: Path, n_fields: int, source: str) -> list[Problem]:
    """Rows whose field count differs from the header's, found with the csv module (all of them).

    Used when a CSV parser refuses the file, so the report still lists every malformed row.
    """
    rows: list[int] = []
    count = 0
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        for number, record in enumerate(reader, start=1):
            if record and len(record) != n_fields:
                count += 1
                if len(rows) < 20:
                    rows.append(number)
    if not count:
        return []
    return [
        Problem(
            "malformed_row",
            None,
            count,
            rows,
            [None] * len(rows),
            f"expected {n_fields} fields; check quoting and delimiters",
        )
    ]


def discard(delivery_dir: Path) -> None:
    """Remove a landing directory (used only for files that never became a delivery)."""
    shutil.rmtree(delivery_dir, ignore_errors=True)


def report_for(
    source: str, problems: list[Problem], rules: list[ColumnRule], n_rows: int
) -> ValidationReport:
    """A report from problems found by an engine."""
    report = ValidationReport(source, n_rows=n_rows, rules={r.name: r for r in rules})
    report.merge(problems)
    report.sort()
    return report
