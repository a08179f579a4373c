"""The ``_manifest.json`` of a project view: what the view builder writes and ``session()`` reads.

One definition serves both sides, so the catalogue a researcher sees is exactly what was built.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_NAME = "_manifest.json"
MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class ColumnInfo:
    """One column of a view: its name, Arrow type, and what it means."""

    name: str
    type: str
    description: str = ""
    #: True for an index-ID column re-keyed for the project (joins only inside the project).
    project_id_column: bool = False


@dataclass(frozen=True)
class FileInfo:
    name: str
    sha256: str
    rows: int


@dataclass(frozen=True)
class ViewManifest:
    """Everything a workspace needs to know about one view, and what the builder needs to skip a rebuild."""

    dataset: str
    title: str
    description: str
    project: str
    columns: tuple[ColumnInfo, ...]
    row_count: int
    files: tuple[FileInfo, ...]
    source_version: int
    source_version_id: str
    key_version: int
    master_key_version: int
    built_at: str
    engine: str
    format: int = MANIFEST_FORMAT
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def id_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.project_id_column]

    def to_json(self) -> str:
        data = asdict(self)
        data["extra"] = dict(self.extra)
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ViewManifest:
        return cls(
            dataset=str(data["dataset"]),
            title=str(data.get("title", "")),
            description=str(data.get("description", "")),
            project=str(data.get("project", "")),
            columns=tuple(ColumnInfo(**c) for c in data.get("columns", ())),
            row_count=int(data.get("row_count", 0)),
            files=tuple(FileInfo(**f) for f in data.get("files", ())),
            source_version=int(data.get("source_version", 0)),
            source_version_id=str(data.get("source_version_id", "")),
            key_version=int(data.get("key_version", 0)),
            master_key_version=int(data.get("master_key_version", 0)),
            built_at=str(data.get("built_at", "")),
            engine=str(data.get("engine", "")),
            format=int(data.get("format", MANIFEST_FORMAT)),
            extra=dict(data.get("extra", {})),
        )


def read_manifest(view_dir: str | os.PathLike[str]) -> ViewManifest:
    """Read ``<view_dir>/_manifest.json``.

    Raises:
        FileNotFoundError: the directory holds no manifest (not a finished view).
        ValueError: the manifest is not valid JSON or lacks the dataset name.
    """
    path = Path(view_dir) / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc.msg}); rebuild the view") from exc
    if not isinstance(data, dict) or "dataset" not in data:
        raise ValueError(f"{path} does not describe a view; rebuild the view")
    return ViewManifest.from_dict(data)


def write_manifest(view_dir: str | os.PathLike[str], manifest: ViewManifest) -> Path:
    """Write the manifest into ``view_dir`` (before the directory is published)."""
    path = Path(view_dir) / MANIFEST_NAME
    path.write_text(manifest.to_json(), encoding="utf-8")
    return path


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def parquet_parts(directory: str | os.PathLike[str]) -> Sequence[Path]:
    """The Parquet part files of a dataset directory, in name order (hidden and marker files excluded)."""
    return sorted(
        p for p in Path(directory).glob("*.parquet") if not p.name.startswith((".", "_")) and p.is_file()
    )
