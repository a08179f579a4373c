"""Receiving a delivery into the landing zone: size check, format sniffing, hash, copy, header.

An upload (API, web page) is first streamed in by :func:`store_upload` (size limit and SHA-256 while it
arrives), then handed to the pipeline, which moves it into place rather than copying it.

One streamed pass over the file copies it into ``landing/<dataset>/<delivery id>/``, computes its SHA-256
(for duplicate detection and the version record) and checks that a CSV is UTF-8 text without NUL bytes, so
a 2 GB delivery never has to fit in memory and a binary file is refused before any parser sees it.
"""

from __future__ import annotations

import codecs
import csv
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal

import pyarrow.parquet as pq

from tre_platform.pipelines.errors import DeliveryEmpty, DeliveryError, DeliveryInvalid, DeliveryTooLarge
from tre_platform.pipelines.publish import claim, lock_held, release_staging
from tre_platform.pipelines.validation import ColumnRule, Problem, ValidationReport, file_problem

if TYPE_CHECKING:
    from tre_platform.settings import Settings

Format = Literal["csv", "parquet"]
_CHUNK = 4 * 1024 * 1024
_PARQUET_MAGIC = b"PAR1"
#: Byte-order marks of the encodings a spreadsheet may save instead of UTF-8 (longest first).
_FOREIGN_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)
#: Delimiters other than the comma that exported files use.
_OTHER_DELIMITERS = {";": "semicolons", "\t": "tabs", "|": "vertical bars"}


def _wide_encoding(head: bytes) -> str | None:
    """ "UTF-16"/"UTF-32" when ``head`` (the first bytes) is text in one of them, else None.

    By its byte-order mark, or without one by the NUL bytes that plain text in them has in every other
    (or three of four) positions: a file like that is text in the wrong encoding, not binary data.
    """
    for bom, name in _FOREIGN_BOMS:
        if head.startswith(bom):
            return name
    sample = head[: len(head) // 2 * 2]
    if len(sample) >= 8 and (all(b == 0 for b in sample[1::2]) or all(b == 0 for b in sample[0::2])):
        return "UTF-16"
    return None


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


class _Scan:
    """One streamed pass's checks: SHA-256 of every byte and, for a CSV, UTF-8 text without NUL bytes."""

    def __init__(self, fmt: Format) -> None:
        self.fmt = fmt
        self.digest = hashlib.sha256()
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.problem: tuple[str, str] | None = None
        self.offset = 0

    def update(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        if self.fmt == "csv" and self.problem is None:
            nul = chunk.find(b"\x00")
            if nul >= 0:
                self.problem = ("not_tabular", f"NUL byte at byte {self.offset + nul}: binary data")
            else:
                try:
                    self.decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    self.problem = (
                        "not_utf8",
                        f"invalid byte at byte {self.offset + exc.start}: save it as UTF-8",
                    )
        self.offset += len(chunk)

    def finish(self) -> None:
        if self.fmt == "csv" and self.problem is None:
            try:
                self.decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                self.problem = ("not_utf8", "the file ends in the middle of a character")


def receive(
    source: Path,
    landing_root: Path,
    dataset: str,
    *,
    max_bytes: int,
    rules: list[ColumnRule],
    source_name: str | None = None,
    move: bool = False,
) -> Delivery:
    """Bring ``source`` into the landing zone and check what can be checked without parsing rows.

    With ``move`` the file (already in the landing zone, e.g. a :func:`store_upload`) is renamed into
    place and read once; otherwise it is copied, and checked in the same pass.

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
        head = handle.read(256)
    fmt: Format = "parquet" if head.startswith(_PARQUET_MAGIC) else "csv"
    wide = _wide_encoding(head) if fmt == "csv" else None
    if wide is not None:
        raise DeliveryInvalid(
            file_problem(name, "not_utf8", f"the file is {wide} text: save it as UTF-8 (CSV UTF-8)", rules)
        )

    # Claimed until the ingest ends (the caller releases it): a crashed ingest's copy is then told from
    # a finished one's, and removed (tre_platform.pipelines.ingest.sweep_ingest_leftovers).
    delivery_dir = claim(_secure_dir(landing_root / dataset) / secrets.token_hex(8))
    try:
        return _land(source, _secure_dir(delivery_dir), name, fmt, size, move=move, rules=rules)
    except BaseException:
        release_staging(delivery_dir)
        raise


def _land(
    source: Path,
    delivery_dir: Path,
    name: str,
    fmt: Format,
    size: int,
    *,
    move: bool,
    rules: list[ColumnRule],
) -> Delivery:
    target = delivery_dir / _safe_name(name, f"delivery.{fmt}")
    scan = _Scan(fmt)
    if move:
        os.rename(source, target)
        with target.open("rb") as src:
            while chunk := src.read(_CHUNK):
                scan.update(chunk)
    else:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with source.open("rb") as src, os.fdopen(fd, "wb") as dst:
            while chunk := src.read(_CHUNK):
                scan.update(chunk)
                dst.write(chunk)
    scan.finish()
    if scan.problem is not None:
        raise DeliveryInvalid(file_problem(name, scan.problem[0], scan.problem[1], rules))

    header = read_header(target, fmt, name, rules)
    return Delivery(name, target, fmt, size, scan.digest.hexdigest(), header)


@dataclass(frozen=True)
class StoredDelivery:
    """An uploaded delivery, complete, in the landing zone (not yet checked against any schema).

    Pass it to :func:`tre_platform.pipelines.ingest_upload` (or as ``path`` to ``ingest``).
    """

    path: Path
    sha256: str
    size: int
    filename: str


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe_name(filename: str, default: str = "delivery") -> str:
    # The name comes from a browser, an API client or a command line: keep only a plain base name, never a
    # path ("..", "/etc/x", "a\\b"), hidden file or control character.
    base = _UNSAFE.sub("_", Path(filename.replace("\\", "/")).name).strip("._")
    return base[:200] or default


_PART_PREFIX = ".part-"
#: A complete upload that no ingest took within this long was abandoned (its request died).
STALE_UPLOAD_SECONDS = 24 * 3600


def sweep_uploads(root: Path) -> list[Path]:
    """Remove uploads that died: a part file no living process holds, or a complete upload a day old.

    Returns the removed upload directories.
    """
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    now = time.time()
    for directory in root.iterdir():
        if not directory.is_dir():
            continue
        parts = [p for p in directory.iterdir() if p.name.startswith(_PART_PREFIX)]
        if parts:
            # Young part files are spared: one may be between its creation and its lock.
            dead = not any(lock_held(part) or now - part.stat().st_mtime < 60 for part in parts)
        else:
            dead = now - directory.stat().st_mtime > STALE_UPLOAD_SECONDS
        if dead:
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
    return removed


class DeliveryUpload:
    """Stream an upload into ``landing/uploads/<random>/`` with a size limit, hashing as it arrives.

    The bytes go to a hidden part file that is renamed to its final name only when complete, so a crash
    or a refused upload never leaves something that looks like a delivery. Use it directly when the
    chunks arrive asynchronously (an ASGI body); otherwise call :func:`store_upload`.

    Example:
        >>> with DeliveryUpload(filename="episodes.csv", max_bytes=10**9, settings=settings) as upload:
        ...     async for chunk in request.stream():
        ...         upload.write(chunk)
        ...     stored = upload.finish()
    """

    def __init__(self, *, filename: str, max_bytes: int, settings: Settings) -> None:
        self.filename = filename or "delivery"
        self.max_bytes = max_bytes
        root = settings.resolved_data_dir / "landing" / "uploads"
        sweep_uploads(root)
        self.directory = _secure_dir(root / secrets.token_hex(8))
        self.final = self.directory / _safe_name(self.filename)
        self._part = self.directory / f"{_PART_PREFIX}{self.final.name}"
        fd = os.open(self._part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        # Held while the upload is in progress; the kernel drops it if the process dies (see sweep_uploads).
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._handle: BinaryIO | None = os.fdopen(fd, "wb")
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        """Append a chunk.

        Raises:
            DeliveryTooLarge: The upload passed ``max_bytes``; what was received is removed.
        """
        if self._handle is None:
            raise RuntimeError("this upload is finished or aborted")
        if not chunk:
            return
        if self.size + len(chunk) > self.max_bytes:
            self.abort()
            raise DeliveryTooLarge(self.max_bytes)
        self._handle.write(chunk)
        self._digest.update(chunk)
        self.size += len(chunk)

    def finish(self) -> StoredDelivery:
        """Close and publish the upload in the landing zone.

        Raises:
            DeliveryEmpty: Nothing was received.
        """
        if self._handle is None:
            raise RuntimeError("this upload is finished or aborted")
        if self.size == 0:
            self.abort()
            raise DeliveryEmpty(self.filename)
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        self._handle = None
        os.rename(self._part, self.final)
        return StoredDelivery(self.final, self._digest.hexdigest(), self.size, self.filename)

    def abort(self) -> None:
        """Drop what was received (safe to call more than once)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> DeliveryUpload:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self._handle is not None:  # not finished: an error, or the caller never called finish()
            self.abort()


def store_upload(
    chunks: Iterable[bytes], *, filename: str, max_bytes: int, settings: Settings
) -> StoredDelivery:
    """Stream ``chunks`` into the landing zone; returns the stored file with its SHA-256 and size.

    Memory stays at one chunk whatever the size; the content hash is computed on the way in.

    Raises:
        DeliveryTooLarge: More than ``max_bytes`` arrived (HTTP 413); nothing is kept.
        DeliveryEmpty: No bytes arrived; nothing is kept.

    Example:
        >>> stored = store_upload(iter([b"a,b\\n", b"1,2\\n"]), filename="d.csv",
        ...                       max_bytes=settings.max_upload_bytes, settings=settings)
        >>> version = ingest_upload(session, actor, "hospital_episodes", stored)
    """
    with DeliveryUpload(filename=filename, max_bytes=max_bytes, settings=settings) as upload:
        for chunk in chunks:
            upload.write(chunk)
        return upload.finish()


class MultipartUpload:
    """Stream a ``multipart/form-data`` body; its file part named ``field`` goes to a :class:`DeliveryUpload`.

    Parsing is python-multipart's streaming parser (the one Starlette uses), fed chunk by chunk, so a
    large file is never spooled or held in memory; other parts are ignored.

    Example:
        >>> with MultipartUpload(request.headers["content-type"], max_bytes=limit, settings=s) as upload:
        ...     async for chunk in request.stream():
        ...         upload.write(chunk)
        ...     stored = upload.finish()
    """

    def __init__(self, content_type: str, *, max_bytes: int, settings: Settings, field: str = "file") -> None:
        from python_multipart.multipart import MultipartParser, parse_options_header

        self._parse_options = parse_options_header
        kind, options = parse_options_header(content_type)
        boundary = options.get(b"boundary")
        if kind != b"multipart/form-data" or not boundary:
            raise DeliveryError(
                "send the delivery as multipart/form-data with a boundary, or as the raw body"
            )
        self.field = field.encode()
        self.max_bytes = max_bytes
        self.settings = settings
        self.upload: DeliveryUpload | None = None
        self.stored: StoredDelivery | None = None
        self._headers: dict[bytes, bytes] = {}
        self._name = b""
        self._value = b""
        self._in_file = False
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
            },
        )

    def _part_begin(self) -> None:
        self._headers = {}
        self._in_file = False

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._name.lower()] = self._value
        self._name = self._value = b""

    def _headers_finished(self) -> None:
        _, options = self._parse_options(self._headers.get(b"content-disposition"))
        if options.get(b"name") == self.field and self.upload is None and self.stored is None:
            filename = options.get(b"filename", b"delivery").decode("utf-8", "replace")
            self.upload = DeliveryUpload(filename=filename, max_bytes=self.max_bytes, settings=self.settings)
            self._in_file = True

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file and self.upload is not None:
            self.upload.write(data[start:end])

    def _part_end(self) -> None:
        if self._in_file and self.upload is not None:
            self._in_file = False
            self.stored = self.upload.finish()
            self.upload = None

    def write(self, chunk: bytes) -> None:
        """Feed a chunk of the body.

        Raises:
            DeliveryTooLarge: The file passed ``max_bytes``.
            DeliveryError: The body is not valid multipart.
        """
        from python_multipart.exceptions import MultipartParseError

        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise DeliveryError(f"the multipart body is malformed ({exc}); resend the file") from None

    def finish(self) -> StoredDelivery:
        """The stored file part.

        Raises:
            DeliveryError: The body had no complete file part named ``field``.
            DeliveryEmpty: The file part was empty.
        """
        self._parser.finalize()
        if self.stored is None:
            raise DeliveryError(
                f"the form has no complete file field named {self.field.decode()!r}; "
                "attach the delivery there"
            )
        return self.stored

    def abort(self) -> None:
        """Drop what was received, including a completed file part."""
        if self.upload is not None:
            self.upload.abort()
            self.upload = None
        if self.stored is not None:
            discard_upload(self.stored)

    def __enter__(self) -> MultipartUpload:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.abort()


def discard_upload(stored: StoredDelivery) -> None:
    """Remove a stored upload that did not become a delivery (its directory under landing/uploads)."""
    shutil.rmtree(stored.path.parent, ignore_errors=True)


def read_header(path: Path, fmt: Format, name: str, rules: list[ColumnRule]) -> list[str]:
    """Column names of a delivery (the first CSV record, or the Parquet schema)."""
    if fmt == "parquet":
        try:
            return list(pq.read_schema(path).names)
        except Exception as exc:  # pyarrow raises several types for a corrupt footer
            reason = str(exc).rstrip(". ")
            raise DeliveryInvalid(
                file_problem(name, "not_tabular", f"unreadable Parquet file: {reason}", rules)
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
    if len(header) == 1 and len(rules) > 1:
        for delimiter, called in _OTHER_DELIMITERS.items():
            if delimiter in header[0]:
                raise DeliveryInvalid(
                    file_problem(
                        name,
                        "not_tabular",
                        f"the columns are separated by {called}; deliveries are comma-separated: save it "
                        "as CSV with commas",
                        rules,
                    )
                )
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
