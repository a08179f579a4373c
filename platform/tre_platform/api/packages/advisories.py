"""OSV vulnerability records: read an export an administrator loads, and match a version against them.

An export is what https://osv.dev publishes (``PyPI/all.zip``: one JSON record per file), or a JSON file
holding one record or a list of them. Only ``PyPI`` entries are kept. A version is affected when an
entry lists it, or one of its ``ECOSYSTEM``/``SEMVER`` ranges contains it (the OSV schema's event
algorithm, with PEP 440 ordering from ``packaging``).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from tre_platform.errors import InvalidInput

#: Bounds on an export, so a hostile archive cannot exhaust memory (osv.dev's PyPI export is ~20k records).
MAX_RECORDS = 200_000
MAX_RECORD_BYTES = 2_000_000
MAX_TOTAL_BYTES = 2_000_000_000


@dataclass(frozen=True)
class AdvisoryEntry:
    """One record's entry for one PyPI package."""

    osv_id: str
    package: str
    summary: str
    aliases: list[str]
    affected: list[dict[str, Any]]
    modified: str


def _records_from_json(raw: bytes, source: str) -> list[Any]:
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidInput(f"{source} is not a JSON OSV record: {error}") from None
    return data if isinstance(data, list) else [data]


def read_records(data: bytes, filename: str) -> Iterator[Mapping[str, Any]]:
    """The OSV records in an export (zip of JSON files, or JSON), bounded in number and size."""
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [m for m in archive.infolist() if not m.is_dir() and m.filename.endswith(".json")]
            if len(members) > MAX_RECORDS:
                raise InvalidInput(f"{filename} holds more than {MAX_RECORDS} records")
            if sum(m.file_size for m in members) > MAX_TOTAL_BYTES:
                raise InvalidInput(f"{filename} unpacks to more than {MAX_TOTAL_BYTES} bytes")
            for member in members:
                if member.file_size > MAX_RECORD_BYTES:
                    raise InvalidInput(f"{member.filename} in {filename} is larger than any OSV record")
                for record in _records_from_json(archive.read(member), member.filename):
                    if isinstance(record, Mapping):
                        yield record
        return
    records = _records_from_json(data, filename)
    if len(records) > MAX_RECORDS:
        raise InvalidInput(f"{filename} holds more than {MAX_RECORDS} records")
    for record in records:
        if isinstance(record, Mapping):
            yield record


def pypi_entries(record: Mapping[str, Any]) -> list[AdvisoryEntry]:
    """The record's entries for PyPI packages (others are ignored); a record without an id is refused."""
    osv_id = record.get("id")
    if not isinstance(osv_id, str) or not osv_id.strip() or len(osv_id) > 100:
        raise InvalidInput("an OSV record has no valid 'id'; is this an OSV export?")
    by_package: dict[str, list[dict[str, Any]]] = {}
    for affected in record.get("affected") or []:
        if not isinstance(affected, Mapping):
            continue
        package = affected.get("package") or {}
        if not isinstance(package, Mapping) or package.get("ecosystem") != "PyPI":
            continue
        name = package.get("name")
        if not isinstance(name, str) or not name:
            continue
        by_package.setdefault(canonicalize_name(name)[:100], []).append(
            {
                "versions": [str(v) for v in affected.get("versions") or []],
                "ranges": [r for r in affected.get("ranges") or [] if isinstance(r, Mapping)],
            }
        )
    aliases = [str(a) for a in record.get("aliases") or []]
    summary = str(record.get("summary") or record.get("details") or "")[:500]
    return [
        AdvisoryEntry(osv_id, name, summary, aliases, entries, str(record.get("modified") or "")[:40])
        for name, entries in by_package.items()
    ]


def _version(text: Any) -> Version | None:
    try:
        return Version(str(text))
    except InvalidVersion:
        return None


def _in_range(version: Version, events: list[Mapping[str, Any]]) -> bool:
    """OSV's evaluation: walk the events in version order; introduced opens, fixed/last_affected close."""
    keyed: list[tuple[Version, int, str]] = []
    for event in events:
        for kind, order in (("introduced", 0), ("fixed", 1), ("last_affected", 2)):
            if kind in event:
                at = (
                    Version("0")
                    if kind == "introduced" and str(event[kind]) == "0"
                    else _version(event[kind])
                )
                if at is not None:
                    keyed.append((at, order, kind))
    affected = False
    for at, _order, kind in sorted(keyed):
        if kind == "introduced" and version >= at:
            affected = True
        elif (kind == "fixed" and version >= at) or (kind == "last_affected" and version > at):
            affected = False
    return affected


def affects(affected: list[dict[str, Any]], version: str) -> bool:
    """Whether a stored advisory's ``affected`` entries cover ``version``."""
    parsed = _version(version)
    if parsed is None:
        return False
    for entry in affected:
        if any(_version(v) == parsed for v in entry.get("versions", [])):
            return True
        for range_ in entry.get("ranges", []):
            if range_.get("type") in ("ECOSYSTEM", "SEMVER") and _in_range(
                parsed, list(range_.get("events") or [])
            ):
                return True
    return False
