"""Datasets registered by data owners, and their immutable versions."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import CheckConstraint, Date, Enum, ForeignKey, Integer, String, Text, UniqueConstraint, event
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tre_platform.api.orgs.models import Organisation
from tre_platform.db.base import Base, new_id, utcnow


class IndexKind(enum.StrEnum):
    """Reference indexes a direct identifier can be matched against (linkage zone)."""

    demographic = "demographic"
    business = "business"
    address = "address"
    geography = "geography"
    classification = "classification"


#: Five years, the usual retention of a data-sharing agreement's deliveries.
DEFAULT_RETENTION_DAYS = 1826
DEFAULT_ARCHIVE_DAYS = 365


class OnUnmatched(enum.StrEnum):
    add = "add"  # unmatched records get a new index entry
    report = "report"  # unmatched records are reported and get no index id


class Dataset(Base):
    __tablename__ = "datasets"
    __table_args__ = (CheckConstraint("tier >= 0 AND tier <= 4", name="tier_range"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    owner_org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    #: Sensitivity tier 0 (open) .. 4 (most sensitive).
    tier: Mapped[int] = mapped_column(Integer)
    #: Column specifications: name, type, required, description, allowed, min, max,
    #: identifier (true for direct identifiers), index (IndexKind the identifier maps to).
    schema: Mapped[list[dict[str, Any]]] = mapped_column(default=list)
    on_unmatched: Mapped[OnUnmatched] = mapped_column(
        Enum(OnUnmatched, native_enum=False, length=10), default=OnUnmatched.report
    )
    #: Splink match probability above which a probabilistic link is accepted.
    match_threshold: Mapped[float] = mapped_column(default=0.9)
    #: Subject tags for the catalogue ("health", "labour-market" ...), lower case.
    topics: Mapped[list[str]] = mapped_column(default=list)
    #: Days a version stays in the research zone after publication (unless an agreement runs longer).
    retention_days: Mapped[int] = mapped_column(Integer, default=DEFAULT_RETENTION_DAYS)
    #: Days an archived version is kept after its retention date before the sweep destroys it
    #: (0: the sweep destroys it at the retention date, without archiving).
    archive_days: Mapped[int] = mapped_column(Integer, default=DEFAULT_ARCHIVE_DAYS)
    #: The number of the current schema (``schema``); earlier ones stay in ``dataset_schema_versions``.
    schema_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    owner: Mapped[Organisation] = relationship(lazy="joined")
    versions: Mapped[list[DatasetVersion]] = relationship(
        back_populates="dataset", lazy="selectin", order_by="DatasetVersion.version"
    )

    @property
    def column_names(self) -> list[str]:
        return [column["name"] for column in self.schema]

    @property
    def identifier_columns(self) -> dict[str, str]:
        """Direct identifier column -> the reference index it maps to."""
        return {c["name"]: c.get("index", "") for c in self.schema if c.get("identifier")}

    @property
    def research_columns(self) -> list[str]:
        """Columns a project may be approved for: direct identifiers never reach the research zone."""
        return [c["name"] for c in self.schema if not c.get("identifier")]


class DatasetVersion(Base):
    """One published delivery. Immutable: an update raises, a correction is a new version."""

    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "version", name="uq_dataset_versions_number"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"))
    version: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    row_count: Mapped[int] = mapped_column(Integer)
    content_sha256: Mapped[str] = mapped_column(String(64))
    quality: Mapped[dict[str, Any]] = mapped_column(default=dict)
    match_report: Mapped[dict[str, Any]] = mapped_column(default=dict)
    source_name: Mapped[str] = mapped_column(String(300), default="")
    created_by_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    dataset: Mapped[Dataset] = relationship(back_populates="versions")


class DatasetSchemaVersion(Base):
    """One version of a dataset's schema. A revision adds a row; rows are never changed.

    A published version was ingested under the newest schema version created before it.
    """

    __tablename__ = "dataset_schema_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "version", name="uq_dataset_schema_versions_number"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    schema: Mapped[list[dict[str, Any]]] = mapped_column(default=list)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_by_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class LifecycleAction(enum.StrEnum):
    """What happened to a published version after publication."""

    archive = "archive"  # moved from research/ to archive/: kept, but no longer used for views
    destroy = "destroy"  # files deleted everywhere; the version row stays as a tombstone


class DatasetVersionEvent(Base):
    """One lifecycle step of a version (append-only: the database refuses UPDATE and DELETE).

    The version row itself is immutable, so a version's state is the set of its events: none means
    live, ``archive`` archived, ``destroy`` destroyed. Each action happens at most once per version,
    which also makes two concurrent archives of one version fail instead of both moving files.
    """

    __tablename__ = "dataset_version_events"
    __table_args__ = (UniqueConstraint("version_id", "action", name="uq_dataset_version_events_step"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    version_id: Mapped[str] = mapped_column(ForeignKey("dataset_versions.id"), index=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"))
    action: Mapped[LifecycleAction] = mapped_column(Enum(LifecycleAction, native_enum=False, length=10))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    actor_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), default=None)
    reason: Mapped[str] = mapped_column(Text, default="")
    #: The retention date the decision was made against.
    retention_until: Mapped[dt.date | None] = mapped_column(Date, default=None)
    #: Where the files are after this step (the archive directory; empty once destroyed).
    location: Mapped[str] = mapped_column(Text, default="")
    #: What was moved or removed (files, views, index entries).
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ImmutableVersionError(RuntimeError):
    """A published dataset version was about to be changed."""


@event.listens_for(DatasetVersion, "before_update")
def _refuse_version_update(_mapper: Any, _connection: Any, target: DatasetVersion) -> None:
    raise ImmutableVersionError(
        f"dataset version {target.version} is immutable; ingest a new delivery to publish a correction"
    )
