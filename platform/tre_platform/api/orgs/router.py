"""/api/v1/orgs: organisations."""

from __future__ import annotations

from fastapi import APIRouter, status

from tre_platform.api.deps import CurrentActor, DbSession, Paging, PathId
from tre_platform.api.orgs import service
from tre_platform.api.orgs.schemas import OrgCreate, OrgOut, OrgUpdate

router = APIRouter(prefix="/orgs", tags=["organisations"])


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=OrgOut, summary="Onboard an organisation (admin)"
)
def create_org(body: OrgCreate, session: DbSession, actor: CurrentActor) -> OrgOut:
    return OrgOut.model_validate(service.create_org(session, actor, body))


@router.get("", response_model=list[OrgOut], summary="List organisations")
def list_orgs(session: DbSession, actor: CurrentActor, page: Paging) -> list[OrgOut]:
    orgs = service.list_orgs(session, actor, limit=page.limit, offset=page.offset)
    return [OrgOut.model_validate(o) for o in orgs]


@router.get("/{org_id}", response_model=OrgOut, summary="Get an organisation")
def get_org(org_id: PathId, session: DbSession, actor: CurrentActor) -> OrgOut:
    return OrgOut.model_validate(service.get_org(session, actor, org_id))


@router.patch("/{org_id}", response_model=OrgOut, summary="Change an organisation (admin)")
def update_org(org_id: PathId, body: OrgUpdate, session: DbSession, actor: CurrentActor) -> OrgOut:
    return OrgOut.model_validate(service.update_org(session, actor, org_id, body))
