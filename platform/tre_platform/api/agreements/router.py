"""/api/v1/agreements: enterprise-level data-sharing agreements (data owners of the owner organisation)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from tre_platform.api.agreements import service
from tre_platform.api.agreements.models import DataSharingAgreement
from tre_platform.api.agreements.schemas import (
    AgreementCreate,
    AgreementOut,
    AgreementRevoke,
    AgreementUpdate,
)
from tre_platform.api.deps import CurrentActor, DbSession, Paging, PathId

router = APIRouter(prefix="/agreements", tags=["agreements"])


def to_out(agreement: DataSharingAgreement) -> AgreementOut:
    fields = {name: getattr(agreement, name) for name in AgreementOut.model_fields if name != "status"}
    return AgreementOut.model_validate({**fields, "status": service.status(agreement)})


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=AgreementOut,
    summary="Grant an agreement (data owner)",
)
def grant(body: AgreementCreate, session: DbSession, actor: CurrentActor) -> AgreementOut:
    return to_out(service.grant_agreement(session, actor, body))


@router.get("", response_model=list[AgreementOut], summary="Agreements you manage")
def list_agreements(
    session: DbSession,
    actor: CurrentActor,
    page: Paging,
    owner_org_id: Annotated[str | None, Query(max_length=64)] = None,
) -> list[AgreementOut]:
    found = service.list_agreements(
        session, actor, owner_org_id=owner_org_id, limit=page.limit, offset=page.offset
    )
    return [to_out(a) for a in found]


@router.get("/{agreement_id}", response_model=AgreementOut, summary="Get an agreement")
def get_agreement(agreement_id: PathId, session: DbSession, actor: CurrentActor) -> AgreementOut:
    return to_out(service.get_agreement(session, actor, agreement_id))


@router.patch("/{agreement_id}", response_model=AgreementOut, summary="Change an agreement before it starts")
def update_agreement(
    agreement_id: PathId, body: AgreementUpdate, session: DbSession, actor: CurrentActor
) -> AgreementOut:
    return to_out(service.update_agreement(session, actor, agreement_id, body))


@router.post(
    "/{agreement_id}/revoke", response_model=AgreementOut, summary="Revoke an agreement, with a reason"
)
def revoke(
    agreement_id: PathId, body: AgreementRevoke, session: DbSession, actor: CurrentActor
) -> AgreementOut:
    return to_out(service.revoke_agreement(session, actor, agreement_id, body))
