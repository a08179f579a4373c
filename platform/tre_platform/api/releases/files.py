"""Which files may leave through the airlock, and where their bytes are kept.

The file policy is data in ``<policies dir>/airlock/release_files.toml`` (``TRE_POLICIES_DIR``; the
repository's ``policies/`` by default), like every other policy: there is no copy in code to fall back on,
so a deployment that lacks the file is told so instead of silently getting other limits. Bytes are stored
content-addressed under
``<data dir>/releases/<request id>/blobs/<sha256>``, so a rolled-back transaction leaves at most an
unreferenced blob and never a file whose content differs from its recorded hash.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tre_platform.api.releases.models import FileKind
from tre_platform.errors import InvalidInput
from tre_platform.settings import Settings

#: Where the file policy lives, relative to the policies directory.
POLICY_FILE = Path("airlock") / "release_files.toml"
#: A file name: letters, digits, '.', '-', '_'; no directories, no leading dot.
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MEDIA_TYPES = {
    ".csv": "text/csv",
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".pdf": "application/pdf",
    ".parquet": "application/vnd.apache.parquet",
}


class FilePolicyError(RuntimeError):
    """The airlock file policy is missing or invalid: a deployment problem, not a user's."""


@dataclass(frozen=True)
class KindPolicy:
    extensions: tuple[str, ...]
    max_bytes: int
    needs_spec: bool


@dataclass(frozen=True)
class FilePolicy:
    """Limits on the files of a release request (see ``policies/airlock/release_files.toml``)."""

    kinds: dict[FileKind, KindPolicy]
    max_files: int
    max_total_bytes: int
    max_data_bytes: int
    data_formats: tuple[str, ...]
    max_table_cells: int
    source: str

    @classmethod
    def load(cls, settings: Settings) -> FilePolicy:
        """The deployment's policy, ``<policies dir>/airlock/release_files.toml``.

        Raises:
            FilePolicyError: the file is missing or not valid; the message says which file to fix.
        """
        path = settings.policies_dir / POLICY_FILE
        if not path.is_file():
            raise FilePolicyError(
                f"the airlock file policy {path} is missing: copy policies/{POLICY_FILE.as_posix()} from the "
                "tre repository there, or point TRE_POLICIES_DIR at a policies directory that has it"
            )
        try:
            doc: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
            kinds = {
                FileKind(name): KindPolicy(
                    extensions=tuple(str(e).lower() for e in spec["extensions"]),
                    max_bytes=int(spec["max_bytes"]),
                    needs_spec=bool(spec.get("needs_spec", False)),
                )
                for name, spec in doc["kinds"].items()
            }
            return cls(
                kinds=kinds,
                max_files=int(doc["max_files"]),
                max_total_bytes=int(doc["max_total_bytes"]),
                max_data_bytes=int(doc["max_data_bytes"]),
                data_formats=tuple(str(e).lower() for e in doc["data_formats"]),
                max_table_cells=int(doc["max_table_cells"]),
                source=str(path),
            )
        except (OSError, KeyError, ValueError, TypeError, tomllib.TOMLDecodeError) as exc:
            raise FilePolicyError(
                f"the airlock file policy {path} is not valid: {exc}; fix the file"
            ) from exc

    def kind(self, kind: FileKind) -> KindPolicy:
        found = self.kinds.get(kind)
        if found is None:
            allowed = ", ".join(k.value for k in self.kinds)
            raise InvalidInput(f"outputs of kind {kind.value!r} may not be released; allowed: {allowed}")
        return found


def extension(name: str) -> str:
    return Path(name).suffix.lower()


def check_name(name: str, field: str = "name") -> str:
    if not FILE_NAME.match(name):
        raise InvalidInput(
            f"{name!r} is not an allowed file name: use letters, digits, '.', '-' and '_' (at most 100), "
            "no folders",
            field=field,
        )
    return name


def _sniff(ext: str, content: bytes) -> str | None:
    """Why ``content`` is not what its extension says, or None. Guards against renamed binaries."""
    if ext == ".png" and not content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "is not a PNG image"
    if ext == ".pdf" and not content.startswith(b"%PDF-"):
        return "is not a PDF document"
    if ext in (".csv", ".txt", ".md", ".svg"):
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            return "is not UTF-8 text"
        if "\x00" in text:
            return "contains NUL bytes (binary data)"
        if ext == ".svg":
            lowered = text.lower()
            if "<svg" not in lowered:
                return "is not an SVG image"
            if "<script" in lowered or "javascript:" in lowered:
                return "is an SVG with script, which is not allowed"
    return None


def check_output(policy: FilePolicy, kind: FileKind, name: str, content: bytes) -> str:
    """Raise InvalidInput unless ``content`` may be staged as a ``kind`` output; returns its media type."""
    rules = policy.kind(kind)
    ext = extension(name)
    if ext not in rules.extensions:
        raise InvalidInput(
            f"a {kind.value} output must be one of {', '.join(rules.extensions)}; {name!r} is not "
            "(raw row-level and binary data files cannot be released)",
            field="content",
        )
    if len(content) == 0:
        raise InvalidInput(f"{name!r} is empty", field="content")
    if len(content) > rules.max_bytes:
        raise InvalidInput(
            f"{name!r} is {len(content)} bytes; a {kind.value} output may be at most {rules.max_bytes} bytes",
            field="content",
        )
    problem = _sniff(ext, content)
    if problem:
        raise InvalidInput(f"{name!r} {problem}", field="content")
    return MEDIA_TYPES.get(ext, "application/octet-stream")


def check_data(policy: FilePolicy, name: str, content: bytes) -> None:
    """Raise InvalidInput unless ``content`` may be kept as the data an output was computed from."""
    if extension(name) not in policy.data_formats:
        raise InvalidInput(
            f"the data file must be one of {', '.join(policy.data_formats)}, got {name!r}", field="data"
        )
    if not content:
        raise InvalidInput("the data file is empty", field="data")
    if len(content) > policy.max_data_bytes:
        raise InvalidInput(
            f"the data file is {len(content)} bytes; at most {policy.max_data_bytes} are accepted. "
            "Upload only the columns and rows the output uses.",
            field="data",
        )


# Storage ------------------------------------------------------------------------------------------


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def request_dir(settings: Settings, request_id: str) -> Path:
    return settings.resolved_data_dir / "releases" / request_id


def store_blob(settings: Settings, request_id: str, content: bytes) -> str:
    """Write ``content`` once under the request's folder; returns its SHA-256."""
    digest = sha256(content)
    folder = request_dir(settings, request_id) / "blobs"
    folder.mkdir(parents=True, exist_ok=True, mode=0o750)
    path = folder / digest
    if not path.exists():
        tmp = folder / f".{digest}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.replace(tmp, path)
    return digest


def read_blob(settings: Settings, request_id: str, digest: str) -> bytes:
    """The stored bytes, after checking they still hash to ``digest`` (a changed file is an error)."""
    path = request_dir(settings, request_id) / "blobs" / digest
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise RuntimeError(
            f"stored release file {path} is missing ({exc}); restore the data directory"
        ) from exc
    if sha256(content) != digest:
        raise RuntimeError(f"stored release file {path} was changed after upload; it cannot be trusted")
    return content
