"""Enterprise-level data-sharing agreements, granted once by a data owner."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tre_platform.api.orgs.models import Organisation
from tre_platform.db.base import Base, new_id, utcnow


class DataSharingAgreement(Base):
    __tablename__ = "agreements"
    __table_args__ = (
        CheckConstraint("valid_from <= valid_to", name="validity_order"),
        CheckConstraint("max_tier >= 0 AND max_tier <= 4", name="tier_range"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    reference: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    owner_org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    #: True: every dataset of the owner, present and future. False: only the listed datasets.
    all_datasets: Mapped[bool] = mapped_column(Boolean, default=False)
    #: True: any organisation that is accredited at decision time. False: only listed recipients.
    any_accredited: Mapped[bool] = mapped_column(Boolean, default=False)
    purposes: Mapped[list[str]] = mapped_column(default=list)
    legal_gateways: Mapped[list[str]] = mapped_column(default=list)
    #: Highest sensitivity tier this agreement shares.
    max_tier: Mapped[int] = mapped_column(Integer, default=3)
    #: Name of the disclosure-control profile in policies/disclosure/ that outputs must pass.
    dc_profile: Mapped[str] = mapped_column(String(64), default="default")
    #: Differential-privacy budget per project (None: DP not offered under this agreement).
    dp_epsilon: Mapped[float | None] = mapped_column(Float, default=None)
    dp_delta: Mapped[float | None] = mapped_column(Float, default=None)
    conditions: Mapped[str] = mapped_column(Text, default="")
    valid_from: Mapped[dt.date] = mapped_column(Date)
    valid_to: Mapped[dt.date] = mapped_column(Date)
    created_by_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    revoked_by_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), default=None)
    revoked_reason: Mapped[str | None] = mapped_column(Text, default=None)

    owner: Mapped[Organisation] = relationship(lazy="joined")
    dataset_links: Mapped[list[AgreementDataset]] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )
    recipient_links: Mapped[list[AgreementRecipient]] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )

    @property
    def dataset_ids(self) -> list[str]:
        return [link.dataset_id for link in self.dataset_links]

    @property
    def recipient_ids(self) -> list[str]:
        return [link.organisation_id for link in self.recipient_links]

    def status(self, today: dt.date) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if today < self.valid_from:
            return "pending"
        if today > self.valid_to:
            return "expired"
        return "active"


class AgreementDataset(Base):
    __tablename__ = "agreement_datasets"
    __table_args__ = (UniqueConstraint("agreement_id", "dataset_id", name="uq_agreement_datasets_pair"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    agreement_id: Mapped[str] = mapped_column(ForeignKey("agreements.id", ondelete="CASCADE"))
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)


class AgreementRecipient(Base):
    __tablename__ = "agreement_recipients"
    __table_args__ = (
        UniqueConstraint("agreement_id", "organisation_id", name="uq_agreement_recipients_pair"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    agreement_id: Mapped[str] = mapped_column(ForeignKey("agreements.id", ondelete="CASCADE"))
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
