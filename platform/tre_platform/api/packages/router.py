"""/api/v1/packages: the vetted package mirror (requests, decisions, what the mirror serves)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from tre_platform.api.deps import CurrentActor, DbSession, Paging, PathId
from tre_platform.api.packages import service
from tre_platform.api.packages.models import PackageRequestState
from tre_platform.api.packages.schemas import (
    MirrorPackageOut,
    PackageApprove,
    PackageRefuse,
    PackageRequestCreate,
    PackageRequestOut,
)

router = APIRouter(prefix="/packages", tags=["packages"])


@router.post(
    "/requests",
    status_code=status.HTTP_201_CREATED,
    response_model=PackageRequestOut,
    summary="Ask for a package in the mirror (accredited researcher)",
)
def request_package(body: PackageRequestCreate, session: DbSession, actor: CurrentActor) -> PackageRequestOut:
    return service.describe(session, service.request_package(session, actor, body))


@router.get("/requests", response_model=list[PackageRequestOut], summary="Package requests you may see")
def list_requests(
    session: DbSession,
    actor: CurrentActor,
    page: Paging,
    state: Annotated[PackageRequestState | None, Query()] = None,
) -> list[PackageRequestOut]:
    rows = service.list_requests(session, actor, state=state, limit=page.limit, offset=page.offset)
    return [service.describe(session, r) for r in rows]


@router.get(
    "/requests/{request_id}", response_model=PackageRequestOut, summary="A package request and its tree"
)
def get_request(request_id: PathId, session: DbSession, actor: CurrentActor) -> PackageRequestOut:
    return service.describe(session, service.get_request(session, actor, request_id))


@router.post(
    "/requests/{request_id}/approve",
    response_model=PackageRequestOut,
    summary="Approve: fetch the tree's wheels into the mirror (administrator)",
)
def approve(
    request_id: PathId, body: PackageApprove, session: DbSession, actor: CurrentActor
) -> PackageRequestOut:
    return service.describe(session, service.approve_request(session, actor, request_id, body))


@router.post(
    "/requests/{request_id}/refuse",
    response_model=PackageRequestOut,
    summary="Refuse, with a reason (administrator)",
)
def refuse(
    request_id: PathId, body: PackageRefuse, session: DbSession, actor: CurrentActor
) -> PackageRequestOut:
    return service.describe(session, service.refuse_request(session, actor, request_id, body))


@router.get("/mirror", response_model=list[MirrorPackageOut], summary="What the mirror serves")
def list_mirror(session: DbSession, actor: CurrentActor, page: Paging) -> list[MirrorPackageOut]:
    rows = service.list_mirror(session, actor, limit=page.limit, offset=page.offset)
    return [MirrorPackageOut.model_validate(r) for r in rows]
