"""Organisations: onboarded by administrators, visible to every signed-in user."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from tre_platform.actor import Actor
from tre_platform.api.common import audit, check_admin, check_user, get_or_404
from tre_platform.api.orgs.models import Organisation
from tre_platform.api.orgs.schemas import OrgCreate, OrgUpdate
from tre_platform.errors import Conflict


def create_org(session: Session, actor: Actor, data: OrgCreate) -> Organisation:
    """Onboard an organisation (admin only).

    Example:
        >>> create_org(session, Actor.system(), OrgCreate(slug="nhs-x", name="NHS X", kind="data_owner"))
    """
    check_admin(actor, "onboard an organisation")
    if session.scalar(select(Organisation.id).where(Organisation.slug == data.slug)) is not None:
        raise Conflict(
            f"an organisation with slug {data.slug!r} already exists; choose another", field="slug"
        )
    org = Organisation(**data.model_dump())
    session.add(org)
    session.flush()
    audit(session, actor, "org.create", org, slug=org.slug, kind=org.kind.value)
    return org


def update_org(session: Session, actor: Actor, org_id: str, data: OrgUpdate) -> Organisation:
    """Change an organisation's name, kind or accreditation (admin only)."""
    check_admin(actor, "change an organisation")
    org = get_or_404(session, Organisation, org_id, "organisation")
    changes = data.model_dump(exclude_unset=True)
    for name, value in changes.items():
        if value is None and name != "accredited_until":
            continue
        setattr(org, name, value)
    session.flush()
    audit(session, actor, "org.update", org, changes=changes)
    return org


def get_org(session: Session, actor: Actor, org_id: str) -> Organisation:
    """One organisation (any signed-in user)."""
    check_user(actor)
    return get_or_404(session, Organisation, org_id, "organisation")


def get_org_by_slug(session: Session, actor: Actor, slug: str) -> Organisation:
    """One organisation by its slug (any signed-in user)."""
    from tre_platform.errors import NotFound

    check_user(actor)
    org = session.scalar(select(Organisation).where(Organisation.slug == slug))
    if org is None:
        raise NotFound(f"no organisation with slug {slug!r}; `tre org list` shows them")
    return org


def list_orgs(session: Session, actor: Actor, *, limit: int = 100, offset: int = 0) -> list[Organisation]:
    """Organisations by slug (any signed-in user)."""
    check_user(actor)
    return list(session.scalars(select(Organisation).order_by(Organisation.slug).limit(limit).offset(offset)))
