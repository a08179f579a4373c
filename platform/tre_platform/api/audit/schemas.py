"""Response bodies for the audit log."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tre_platform.api.common import OutputSchema


class AuditEventOut(OutputSchema):
    seq: int
    at: dt.datetime
    actor: str
    action: str
    target_type: str
    target_id: str
    decision: str | None
    reasons: list[str]
    details: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPage(OutputSchema):
    total: int
    limit: int
    offset: int
    events: list[AuditEventOut]


class VerifyOut(OutputSchema):
    ok: bool
    checked: int
    head_seq: int | None
    head_hash: str | None
    broken_seq: int | None
    problem: str | None
    message: str
