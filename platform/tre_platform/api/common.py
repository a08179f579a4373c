"""Pieces every domain service and router shares: schema bases, authorisation checks, audit, paging.

Authorisation lives in the service functions (not the routers) so the CLI, the REST API and the UI are
protected by the same code. Checks come in pairs after OpenSAFELY airlock: ``can_x()`` answers,
``check_x()`` raises a typed error whose message says what to do next.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.orm import Session

from tre_platform.actor import Actor
from tre_platform.api.audit.service import record, record_kept
from tre_platform.api.users.models import Role
from tre_platform.db.base import Base
from tre_platform.errors import Forbidden, NotFound, Unauthenticated

ModelT = TypeVar("ModelT", bound=Base)

# Input types ---------------------------------------------------------------------------------------

#: A short human-readable text: trimmed, non-empty, bounded.
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
#: A title (the models allow 300 characters).
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
#: Free text such as a lay summary, a comment or a reason.
LongText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=10_000)]
#: A reason that must be given (revocations).
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=2_000)]
#: A machine name: lower case letters, digits, '-' and '_' (slugs, usernames, dataset names).
Slug = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z0-9][a-z0-9_-]{1,63}$")]
#: A row identifier (``new_id()``: 32 hex characters).
RowId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]


class InputSchema(BaseModel):
    """Base of every request body: unknown fields are an error, never silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class OutputSchema(BaseModel):
    """Base of every response body, read from ORM objects."""

    model_config = ConfigDict(from_attributes=True)


#: The most items a list endpoint returns at once, and the furthest it skips (far past any real list,
#: far below the 64-bit integers the databases take).
MAX_PAGE = 500
MAX_OFFSET = 1_000_000_000


class Page(InputSchema):
    """Paging for list endpoints."""

    limit: int = Field(100, ge=1, le=MAX_PAGE)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)


# Authorisation ------------------------------------------------------------------------------------


def check_user(actor: Actor) -> None:
    """Raise unless the actor is a signed-in user or the operator."""
    if actor.is_system:
        return
    if actor.user is None or not actor.user.is_active:
        raise Unauthenticated("sign in first (your account may have been deactivated)")


def check_admin(actor: Actor, doing: str) -> None:
    """Raise Forbidden unless the actor is an administrator (or the operator)."""
    check_user(actor)
    if not actor.is_admin:
        raise Forbidden(f"only an administrator may {doing}; ask an administrator to do it for you")


def can_manage_org_data(actor: Actor, organisation_id: str) -> bool:
    """Admins, and data owners of that organisation, manage its datasets and agreements."""
    return actor.is_admin or actor.has_role(Role.data_owner, organisation_id)


def check_role(actor: Actor, role: Role, doing: str) -> None:
    check_user(actor)
    if not (actor.is_admin or actor.has_role(role)):
        raise Forbidden(f"only a user with the {role.value} role may {doing}")


def get_or_404(session: Session, model: type[ModelT], row_id: str, what: str) -> ModelT:
    """Load a row by primary key or raise NotFound naming what was looked for."""
    obj = session.get(model, row_id)
    if obj is None:
        raise NotFound(f"no {what} with id {row_id!r}; list them to find the right id")
    return obj


def audit(
    session: Session,
    actor: Actor,
    action: str,
    target: Base | None = None,
    *,
    target_type: str | None = None,
    decision: str | None = None,
    reasons: list[str] | None = None,
    kept: bool = False,
    **details: Any,
) -> None:
    """Record ``action`` by ``actor`` on ``target`` in the current transaction.

    ``kept=True`` for what cannot be undone by a rollback (files deleted, a view removed, a server
    stopped): the event then survives whatever becomes of the transaction or its savepoint, because
    the effect it records does (see :func:`record_kept`).
    """
    target_id = str(getattr(target, "id", "") or "") if target is not None else ""
    (record_kept if kept else record)(
        session,
        actor=actor.label[:64],
        action=action,
        target_type=target_type or (target.__tablename__ if target is not None else ""),
        target_id=target_id,
        decision=decision,
        reasons=reasons or [],
        details=details,
    )
