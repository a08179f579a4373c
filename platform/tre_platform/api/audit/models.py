"""The append-only, hash-chained audit log."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tre_platform.db.base import Base, utcnow

GENESIS_HASH = "0" * 64


class AuditEvent(Base):
    """One event. ``hash`` = SHA-256 of the event's canonical form, which includes ``prev_hash``.

    The table is append-only: database triggers (see the first migration) refuse UPDATE and DELETE,
    ``prev_hash`` is unique so the chain can never fork, and ``tre audit verify`` recomputes the chain.
    """

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str] = mapped_column(String(32), default="")
    target_id: Mapped[str] = mapped_column(String(64), default="", index=True)
    decision: Mapped[str | None] = mapped_column(String(8), default=None)
    reasons: Mapped[list[str]] = mapped_column(default=list)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: HMAC of ``hash`` under the deployment secret: recomputing the chain after an edit needs the key.
    signature: Mapped[str] = mapped_column(Text)
