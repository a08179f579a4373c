"""Organisations: data owners, research bodies, or both."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import Date, Enum, String
from sqlalchemy.orm import Mapped, mapped_column

from tre_platform.db.base import Base, new_id, utcnow


class OrganisationKind(enum.StrEnum):
    data_owner = "data_owner"
    research_body = "research_body"
    both = "both"


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[OrganisationKind] = mapped_column(Enum(OrganisationKind, native_enum=False, length=20))
    #: Organisation-level accreditation (e.g. DEA accredited processor / research organisation).
    accredited_until: Mapped[dt.date | None] = mapped_column(Date, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    def is_accredited(self, today: dt.date) -> bool:
        return self.accredited_until is not None and self.accredited_until >= today

    @property
    def owns_data(self) -> bool:
        return self.kind in (OrganisationKind.data_owner, OrganisationKind.both)
