"""/api/v1/users: accounts, roles, accreditations and training (administrators; users see themselves)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from tre_platform.api.common import check_admin
from tre_platform.api.deps import CurrentActor, DbSession, Paging, PathId
from tre_platform.api.users import service
from tre_platform.api.users.models import Role
from tre_platform.api.users.schemas import (
    AccreditationCreate,
    AccreditationOut,
    PasswordSet,
    RevokeRequest,
    RoleGrant,
    TrainingCreate,
    TrainingOut,
    UserCreate,
    UserOut,
    UserUpdate,
)

router = APIRouter(prefix="/users", tags=["users"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=UserOut, summary="Create a user (admin)")
def create_user(body: UserCreate, session: DbSession, actor: CurrentActor) -> UserOut:
    return UserOut.model_validate(service.create_user(session, actor, body))


@router.get("", response_model=list[UserOut], summary="List users (admin)")
def list_users(
    session: DbSession,
    actor: CurrentActor,
    page: Paging,
    organisation_id: Annotated[str | None, Query(max_length=64)] = None,
    role: Role | None = None,
) -> list[UserOut]:
    found = service.list_users(
        session, actor, organisation_id=organisation_id, role=role, limit=page.limit, offset=page.offset
    )
    return [UserOut.model_validate(u) for u in found]


@router.get("/{user_id}", response_model=UserOut, summary="Get a user (admin, or yourself)")
def get_user(user_id: PathId, session: DbSession, actor: CurrentActor) -> UserOut:
    return UserOut.model_validate(service.get_user(session, actor, user_id))


@router.patch("/{user_id}", response_model=UserOut, summary="Change or deactivate a user (admin)")
def update_user(user_id: PathId, body: UserUpdate, session: DbSession, actor: CurrentActor) -> UserOut:
    return UserOut.model_validate(service.update_user(session, actor, user_id, body))


@router.post(
    "/{user_id}/roles",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    summary="Grant a role (admin)",
)
def grant_role(user_id: PathId, body: RoleGrant, session: DbSession, actor: CurrentActor) -> UserOut:
    return UserOut.model_validate(service.grant_role(session, actor, user_id, body))


@router.delete("/{user_id}/roles/{role}", response_model=UserOut, summary="Revoke a role (admin)")
def revoke_role(
    user_id: PathId,
    role: Role,
    session: DbSession,
    actor: CurrentActor,
    organisation_id: Annotated[str | None, Query(max_length=64)] = None,
) -> UserOut:
    return UserOut.model_validate(service.revoke_role(session, actor, user_id, role, organisation_id))


@router.post(
    "/{user_id}/accreditations",
    status_code=status.HTTP_201_CREATED,
    response_model=AccreditationOut,
    summary="Record an accreditation (admin)",
)
def add_accreditation(
    user_id: PathId, body: AccreditationCreate, session: DbSession, actor: CurrentActor
) -> AccreditationOut:
    return AccreditationOut.model_validate(service.add_accreditation(session, actor, user_id, body))


@router.post(
    "/{user_id}/accreditations/{accreditation_id}/revoke",
    response_model=AccreditationOut,
    summary="Revoke an accreditation (admin)",
)
def revoke_accreditation(
    user_id: PathId, accreditation_id: PathId, body: RevokeRequest, session: DbSession, actor: CurrentActor
) -> AccreditationOut:
    return AccreditationOut.model_validate(
        service.revoke_accreditation(session, actor, user_id, accreditation_id, body)
    )


@router.post(
    "/{user_id}/training",
    status_code=status.HTTP_201_CREATED,
    response_model=TrainingOut,
    summary="Record completed training (admin)",
)
def add_training(
    user_id: PathId, body: TrainingCreate, session: DbSession, actor: CurrentActor
) -> TrainingOut:
    return TrainingOut.model_validate(service.add_training(session, actor, user_id, body))


@router.post(
    "/{user_id}/password", status_code=status.HTTP_204_NO_CONTENT, summary="Set a user's password (admin)"
)
def set_password(user_id: PathId, body: PasswordSet, session: DbSession, actor: CurrentActor) -> Response:
    check_admin(actor, "set a user's password; change your own at /api/v1/auth/password")
    service.set_password(session, actor, user_id, body.new_password)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{user_id}/totp/reset", response_model=UserOut, summary="Remove a user's TOTP factor (admin)")
def reset_totp(user_id: PathId, session: DbSession, actor: CurrentActor) -> UserOut:
    return UserOut.model_validate(service.reset_totp(session, actor, user_id))
