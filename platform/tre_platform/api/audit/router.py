"""/api/v1/audit: read and verify the hash-chained audit log (administrators)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query

from tre_platform.api.audit import service
from tre_platform.api.audit.schemas import AuditEventOut, AuditPage, VerifyOut
from tre_platform.api.common import check_admin
from tre_platform.api.deps import CurrentActor, DbSession, Paging

router = APIRouter(prefix="/audit", tags=["audit"])

Filter = Annotated[str | None, Query(max_length=64)]


@router.get("/events", response_model=AuditPage, summary="Audit events, newest first (admin)")
def list_events(
    session: DbSession,
    actor: CurrentActor,
    page: Paging,
    actor_name: Annotated[str | None, Query(alias="actor", max_length=64)] = None,
    action: Filter = None,
    target_type: Filter = None,
    target_id: Filter = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> AuditPage:
    check_admin(actor, "read the audit log")
    events, total = service.list_events(
        session,
        actor=actor_name,
        action=action,
        target_type=target_type,
        target_id=target_id,
        since=since,
        until=until,
        limit=page.limit,
        offset=page.offset,
    )
    return AuditPage(
        total=total,
        limit=page.limit,
        offset=page.offset,
        events=[AuditEventOut.model_validate(e) for e in events],
    )


@router.get(
    "/verify",
    response_model=VerifyOut,
    summary="Walk the hash chain and report the first broken link (admin)",
)
def verify(session: DbSession, actor: CurrentActor) -> VerifyOut:
    check_admin(actor, "verify the audit log")
    result = service.verify(session)
    return VerifyOut(
        ok=result.ok,
        checked=result.checked,
        head_seq=result.head_seq,
        head_hash=result.head_hash,
        broken_seq=result.broken_seq,
        problem=result.problem,
        message=result.message(),
    )
