"""The vetted package mirror: researchers' package requests, the wheels the mirror serves, advisories."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import Enum, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tre_platform.db.base import Base, new_id, utcnow


class PackageRequestState(enum.StrEnum):
    pending = "pending"
    approved = "approved"
    refused = "refused"


#: The decisions an administrator may take on a request in each state (a state machine as data).
VALID_TRANSITIONS: dict[PackageRequestState, frozenset[PackageRequestState]] = {
    PackageRequestState.pending: frozenset({PackageRequestState.approved, PackageRequestState.refused}),
    PackageRequestState.approved: frozenset(),
    PackageRequestState.refused: frozenset(),
}


class PackageRequest(Base):
    """A researcher's request to add one version of a package (and what it needs) to the mirror."""

    __tablename__ = "package_requests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    #: The canonical (PEP 503 normalised) project name.
    name: Mapped[str] = mapped_column(String(100), index=True)
    version: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    state: Mapped[PackageRequestState] = mapped_column(
        Enum(PackageRequestState, native_enum=False, length=20), default=PackageRequestState.pending
    )
    requested_by_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    #: The resolved dependency tree: one entry per wheel (name, version, filename, url, sha256,
    #: licence, requires), the requested package first.
    tree: Mapped[list[dict[str, Any]]] = mapped_column(default=list)
    decided_by_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), default=None)
    decided_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    decision_comment: Mapped[str | None] = mapped_column(Text, default=None)


class MirrorPackage(Base):
    """A wheel in the wheelhouse: approved with a request, or part of the base set approved at install."""

    __tablename__ = "mirror_packages"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), index=True)
    version: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(255), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    licence: Mapped[str] = mapped_column(String(300), default="")
    #: "base" (approved at install) or "request".
    source: Mapped[str] = mapped_column(String(20))
    request_id: Mapped[str | None] = mapped_column(ForeignKey("package_requests.id"), default=None)
    added_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PackageAdvisory(Base):
    """One OSV vulnerability record's entry for one PyPI package, loaded by an administrator."""

    __tablename__ = "package_advisories"
    __table_args__ = (UniqueConstraint("osv_id", "package", name="uq_package_advisories_osv_id_package"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    osv_id: Mapped[str] = mapped_column(String(100))
    #: The canonical name of the affected package.
    package: Mapped[str] = mapped_column(String(100), index=True)
    summary: Mapped[str] = mapped_column(String(500), default="")
    aliases: Mapped[list[str]] = mapped_column(default=list)
    #: OSV ``affected`` entries for this package: {"versions": [...], "ranges": [...]}.
    affected: Mapped[list[dict[str, Any]]] = mapped_column(default=list)
    modified: Mapped[str] = mapped_column(String(40), default="")
    loaded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
