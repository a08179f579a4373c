"""Reference indexes of the linkage zone: random, stable surrogate ids over normalised matching attributes.

An index lives in a directory the caller chooses. Each save writes a complete new version into a temporary
directory and renames it into place, then atomically repoints ``CURRENT`` at it, so a reader sees either the
old or the new index and never a half-written one::

    <directory>/CURRENT          "v000002"
    <directory>/v000002/entries.parquet
    <directory>/v000002/manifest.json

Surrogate ids are 16 hex characters from :mod:`secrets`: they carry no information about the identifiers
(no hash, no counter), so a released id can never be reversed into an NHS number, and they are stored, not
recomputed, so they stay the same across reloads and across versions.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import pandas as pd

from tre_lib.indexing import normalise as nz
from tre_lib.indexing.identifiers import load_declaration

IndexKind = Literal["demographic", "business", "address", "geography", "classification"]
INDEX_KINDS: tuple[str, ...] = get_args(IndexKind)
SURROGATE_ID = "surrogate_id"
_CURRENT = "CURRENT"
_ENTRIES = "entries.parquet"
_MANIFEST = "manifest.json"
_BOOKKEEPING = ("source", "added_at")


class ReferenceIndexError(Exception):
    """Base class for reference-index errors."""


class IndexNotFoundError(ReferenceIndexError):
    """No index in the directory given."""


class IndexConflictError(ReferenceIndexError):
    """Another writer saved a new version first; reload and retry."""


def _normalise_demographic(df: pd.DataFrame) -> pd.DataFrame:
    # The person index's identifiers are declared as data (policies/indexes/demographic.toml).
    return load_declaration("demographic").normalise(df)


def _normalise_business(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "business_name": nz.normalise_business_name(df["business_name"]),
            "company_number": nz.normalise_company_number(df["company_number"]),
            "postcode": nz.normalise_postcode(df["postcode"]),
            "sic_code": nz.normalise_code(df["sic_code"]),
        },
        index=df.index,
    )


def _normalise_address(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "uprn": nz.normalise_code(df["uprn"]),
            "house_number": nz.normalise_code(df["house_number"]),
            "street": nz.normalise_name(df["street"]),
            "town": nz.normalise_name(df["town"]),
            "postcode": nz.normalise_postcode(df["postcode"]),
        },
        index=df.index,
    )


def _normalise_geography(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "postcode": nz.normalise_postcode(df["postcode"]),
            "lsoa_code": nz.normalise_code(df["lsoa_code"]),
            "la_code": nz.normalise_code(df["la_code"]),
            "region_code": nz.normalise_code(df["region_code"]),
        },
        index=df.index,
    )


def _normalise_classification(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "code": nz.normalise_code(df["code"]),
            "description": nz.normalise_name(df["description"]),
            "level": nz.normalise_code(df["level"]),
            "parent_code": nz.normalise_code(df["parent_code"]),
        },
        index=df.index,
    )


@dataclass(frozen=True)
class KindSchema:
    """The raw input columns an index kind reads, and how it normalises them into matching attributes."""

    inputs: tuple[str, ...]
    normalise: Callable[[pd.DataFrame], pd.DataFrame]

    @property
    def attributes(self) -> tuple[str, ...]:
        """Names of the normalised attributes (one more than ``inputs`` for the demographic kind)."""
        empty = pd.DataFrame({c: pd.Series([], dtype=object) for c in self.inputs})
        return tuple(self.normalise(empty).columns)


KIND_SCHEMAS: dict[str, KindSchema] = {
    "demographic": KindSchema(load_declaration("demographic").inputs, _normalise_demographic),
    "business": KindSchema(("business_name", "company_number", "postcode", "sic_code"), _normalise_business),
    "address": KindSchema(("uprn", "house_number", "street", "town", "postcode"), _normalise_address),
    "geography": KindSchema(("postcode", "lsoa_code", "la_code", "region_code"), _normalise_geography),
    "classification": KindSchema(("code", "description", "level", "parent_code"), _normalise_classification),
}


def normalise_records(kind: str, records: pd.DataFrame) -> pd.DataFrame:
    """Normalise raw records (columns named as the kind's inputs; absent columns count as missing).

    Args:
        kind: Index kind.
        records: Raw records.

    Returns:
        A frame of the kind's normalised attributes, same index as ``records``.
    """
    schema = _schema(kind)
    filled = records.reindex(columns=list(schema.inputs)).astype(object)
    return schema.normalise(filled)


def _schema(kind: str) -> KindSchema:
    if kind not in KIND_SCHEMAS:
        raise ValueError(f"Unknown index kind {kind!r}; choose one of {list(INDEX_KINDS)}.")
    return KIND_SCHEMAS[kind]


def new_surrogate_ids(n: int, taken: set[str] | frozenset[str] = frozenset()) -> np.ndarray:
    """Draw ``n`` distinct random surrogate ids (16 hex characters) not in ``taken``.

    One ``secrets.token_hex`` call for the whole batch keeps this fast for millions of entries.

    Args:
        n: How many ids.
        taken: Ids already in use.

    Returns:
        Array of ``n`` unique strings.
    """
    out = np.empty(0, dtype="U16")
    while len(out) < n:
        need = n - len(out)
        fresh = np.frombuffer(secrets.token_hex(8 * need).encode("ascii"), dtype="S16").astype("U16")
        out = np.unique(np.concatenate([out, fresh]))  # unique drops the (astronomically rare) repeats
        if taken:
            out = out[~np.isin(out, list(taken))]
    # np.unique sorted them; shuffle back so ids carry no order either.
    return np.random.default_rng(secrets.randbits(64)).permutation(out[:n]).astype(object)


@dataclass
class ReferenceIndex:
    """A reference index: one row per entity with its surrogate id and normalised matching attributes.

    Use :meth:`create` to build one, :meth:`load` to open one, :meth:`add` to grow it.

    Attributes:
        kind: demographic | business | address | geography | classification.
        directory: Where the versions are stored.
        entries: ``surrogate_id``, the kind's attributes, ``source`` and ``added_at``.
        version: Version number of the loaded/saved state (0 before the first save).
    """

    kind: str
    directory: Path
    entries: pd.DataFrame
    version: int = 0
    _created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def attributes(self) -> tuple[str, ...]:
        """The normalised matching attributes of this kind."""
        return _schema(self.kind).attributes

    def __len__(self) -> int:
        return len(self.entries)

    @classmethod
    def create(
        cls,
        kind: IndexKind,
        directory: str | os.PathLike[str],
        records: pd.DataFrame,
        source: str = "initial",
    ) -> tuple[ReferenceIndex, pd.Series]:
        """Build and save a new index from raw records.

        Args:
            kind: Index kind.
            directory: Empty or non-existent directory to hold the index.
            records: Raw records with the kind's input columns (see ``KIND_SCHEMAS``).
            source: Label stored with each entry (e.g. the authoritative source's name).

        Returns:
            The index and the surrogate ids given to ``records`` (aligned with its index), which callers
            may need to keep a truth mapping aside; the index itself never stores the input row ids.

        Raises:
            FileExistsError: If ``directory`` already holds an index; use :meth:`load` then :meth:`add`.
        """
        path = Path(directory)
        if (path / _CURRENT).exists():
            raise FileExistsError(f"{path} already holds an index; open it with ReferenceIndex.load().")
        attrs = normalise_records(kind, records)
        index = cls(kind=kind, directory=path, entries=_empty_entries(kind))
        ids = index._append(attrs, source)
        index.save()
        return index, pd.Series(ids, index=records.index, name=SURROGATE_ID)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> ReferenceIndex:
        """Open the current version of an index.

        Raises:
            IndexNotFoundError: If the directory holds no index.
        """
        path = Path(directory)
        try:
            version_dir = path / (path / _CURRENT).read_text(encoding="utf-8").strip()
        except FileNotFoundError as exc:
            raise IndexNotFoundError(
                f"No reference index in {path}; build one with ReferenceIndex.create()."
            ) from exc
        manifest = json.loads((version_dir / _MANIFEST).read_text(encoding="utf-8"))
        entries = pd.read_parquet(version_dir / _ENTRIES)
        entries = entries.astype(object).where(entries.notna(), None)
        return cls(
            kind=manifest["kind"],
            directory=path,
            entries=entries,
            version=int(manifest["version"]),
            _created_at=manifest["created_at"],
        )

    def _append(self, attrs: pd.DataFrame, source: str) -> np.ndarray:
        ids = new_surrogate_ids(len(attrs), frozenset(self.entries[SURROGATE_ID].tolist()))
        new = attrs.reset_index(drop=True).copy()
        new.insert(0, SURROGATE_ID, ids)
        new["source"] = source
        new["added_at"] = datetime.now(UTC).isoformat()
        self.entries = pd.concat([self.entries, new], ignore_index=True) if len(self.entries) else new
        return ids

    def add(self, records: pd.DataFrame, source: str, *, normalised: bool = False) -> pd.Series:
        """Add new entities and save a new version.

        Args:
            records: Raw records (or already-normalised attributes if ``normalised``).
            source: Label stored with the new entries (e.g. ``"delivery:hospital_episodes:v3"``).
            normalised: Whether ``records`` already holds normalised attributes.

        Returns:
            The new surrogate ids, aligned with ``records``.
        """
        attrs = (
            records.reindex(columns=list(self.attributes))
            if normalised
            else normalise_records(self.kind, records)
        )
        ids = self._append(attrs, source)
        self.save()
        return pd.Series(ids, index=records.index, name=SURROGATE_ID)

    def save(self, keep_versions: int = 3) -> None:
        """Write the entries as a new version (temporary directory, rename, then repoint ``CURRENT``).

        Args:
            keep_versions: Older versions beyond this many are deleted.

        Raises:
            IndexConflictError: If another writer created the same version first.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        current = _current_version(self.directory)
        if current != self.version:
            raise IndexConflictError(
                f"{self.directory} is at version {current} but this copy was loaded at {self.version}; "
                "reload the index and apply the change again."
            )
        version = self.version + 1
        name = f"v{version:06d}"
        tmp = self.directory / f".tmp-{name}-{secrets.token_hex(4)}"
        tmp.mkdir()
        try:
            self.entries.to_parquet(tmp / _ENTRIES, index=False)
            manifest = {
                "kind": self.kind,
                "version": version,
                "created_at": self._created_at,
                "saved_at": datetime.now(UTC).isoformat(),
                "n_entries": len(self.entries),
                "attributes": list(self.attributes),
            }
            (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
            try:
                tmp.rename(self.directory / name)
            except OSError as exc:
                raise IndexConflictError(
                    f"Version {name} of {self.directory} was written by someone else; reload and retry."
                ) from exc
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        pointer = self.directory / f".{_CURRENT}.{secrets.token_hex(4)}"
        pointer.write_text(name, encoding="utf-8")
        os.replace(pointer, self.directory / _CURRENT)
        self.version = version
        for old in sorted(self.directory.glob("v[0-9]*"))[:-keep_versions]:
            shutil.rmtree(old)

    def matching_frame(self) -> pd.DataFrame:
        """The surrogate id and normalised attributes (no bookkeeping columns), for matching."""
        # An index saved before an identifier was declared has no column for it: missing, not an error.
        return self.entries.reindex(columns=[SURROGATE_ID, *self.attributes])


def _empty_entries(kind: str) -> pd.DataFrame:
    cols = [SURROGATE_ID, *_schema(kind).attributes, *_BOOKKEEPING]
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in cols})


def _current_version(directory: Path) -> int:
    try:
        return int((directory / _CURRENT).read_text(encoding="utf-8").strip()[1:])
    except FileNotFoundError:
        return 0
