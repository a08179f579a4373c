"""People, their roles, accreditations, training, API tokens and browser sessions."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import BigInteger, Boolean, Date, Enum, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tre_platform.api.orgs.models import Organisation
from tre_platform.db.base import Base, new_id, utcnow


class Role(enum.StrEnum):
    admin = "admin"
    data_owner = "data_owner"
    approver = "approver"
    researcher = "researcher"
    output_checker = "output_checker"


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254), unique=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    #: Base32 TOTP secret, encrypted with the deployment's secret key (see users.security).
    totp_secret_enc: Mapped[str | None] = mapped_column(Text, default=None)
    totp_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The 30-second time step of the last TOTP code accepted: a code of that step or an earlier one is
    #: refused, so a code seen over a shoulder or in a proxy log cannot be replayed within its window.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, default=None)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Unix account the single-user server runs as (set when the workspace account is provisioned).
    unix_username: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    organisation: Mapped[Organisation] = relationship(lazy="joined")
    roles: Mapped[list[UserRole]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="selectin"
    )
    accreditations: Mapped[list[Accreditation]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="selectin"
    )
    training: Mapped[list[TrainingRecord]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="selectin"
    )

    def has_role(self, role: Role, organisation_id: str | None = None) -> bool:
        return any(
            r.role == role and (organisation_id is None or r.organisation_id == organisation_id)
            for r in self.roles
        )

    @property
    def role_names(self) -> list[str]:
        return sorted({r.role.value for r in self.roles})

    def valid_accreditation(self, today: dt.date) -> Accreditation | None:
        for accreditation in self.accreditations:
            if accreditation.is_valid(today):
                return accreditation
        return None


class UserRole(Base):
    __tablename__ = "user_roles"
    __table_args__ = (UniqueConstraint("user_id", "role", "organisation_id", name="uq_user_roles_grant"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    role: Mapped[Role] = mapped_column(Enum(Role, native_enum=False, length=20))
    #: For ``data_owner``: the organisation whose data the user manages.
    organisation_id: Mapped[str | None] = mapped_column(ForeignKey("organisations.id"), default=None)

    user: Mapped[User] = relationship(back_populates="roles")


class Accreditation(Base):
    __tablename__ = "accreditations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    scheme: Mapped[str] = mapped_column(String(200))
    reference: Mapped[str | None] = mapped_column(String(100), default=None)
    granted_on: Mapped[dt.date] = mapped_column(Date)
    expires_on: Mapped[dt.date] = mapped_column(Date)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    revoked_reason: Mapped[str | None] = mapped_column(Text, default=None)

    user: Mapped[User] = relationship(back_populates="accreditations")

    def is_valid(self, today: dt.date) -> bool:
        return self.revoked_at is None and self.granted_on <= today <= self.expires_on


class TrainingRecord(Base):
    __tablename__ = "training_records"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    course: Mapped[str] = mapped_column(String(200))
    completed_on: Mapped[dt.date] = mapped_column(Date)
    expires_on: Mapped[dt.date | None] = mapped_column(Date, default=None)

    user: Mapped[User] = relationship(back_populates="training")


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    #: The first characters of the token, shown so a user can tell tokens apart.
    prefix: Mapped[str] = mapped_column(String(16))
    #: SHA-256 of the token: tokens carry 256 bits of entropy, so a fast hash is enough.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: Empty means all of the user's permissions; otherwise a list such as ["hub"].
    scopes: Mapped[list[str]] = mapped_column(default=list)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    #: The token this one was minted with (None: from a browser session, or by the system). A token
    #: never outlives or outranks its parent, and revoking the parent revokes it.
    parent_id: Mapped[str | None] = mapped_column(
        ForeignKey("api_tokens.id", ondelete="CASCADE"), default=None, index=True
    )
    #: The project whose access justified the token (a workspace's token, and every token minted from
    #: it): it is revoked when its user may no longer use that project.
    project_id: Mapped[str | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), default=None, index=True
    )

    user: Mapped[User] = relationship(lazy="joined")


class WebSession(Base):
    """A browser session, server-side so that logging out or disabling a user ends it at once."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    #: False until the TOTP second factor is passed (or when none is required).
    mfa_passed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()

    user: Mapped[User] = relationship(lazy="joined")


class LoginAttempt(Base):
    """One failed sign-in step (password or TOTP code), kept to lock out guessing.

    Rows are counted per account (``username``, as typed: an unknown name is throttled too) and per
    client (``client``, the peer address) over a sliding window; see ``users.service.check_login_allowed``.
    """

    __tablename__ = "login_attempts"
    __table_args__ = (
        Index("ix_login_attempts_username_at", "username", "at"),
        Index("ix_login_attempts_client_at", "client", "at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(String(64))
    client: Mapped[str] = mapped_column(String(64))
    #: "password" or "totp": which step failed.
    step: Mapped[str] = mapped_column(String(16))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
