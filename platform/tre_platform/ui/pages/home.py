"""The home page: for each of the user's roles, what needs their attention now."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from tre_platform.actor import Actor
from tre_platform.api.agreements import service as agreements
from tre_platform.api.audit import service as audit
from tre_platform.api.datasets import service as datasets
from tre_platform.api.deps import DbSession
from tre_platform.api.projects import service as projects
from tre_platform.api.projects.models import ProjectState
from tre_platform.api.releases import service as releases
from tre_platform.api.releases.models import ReleaseRequest, ReleaseState
from tre_platform.api.users import service as users
from tre_platform.api.users.models import Accreditation, Role, User
from tre_platform.clock import clock
from tre_platform.ui.web import EXPIRY_WARNING_DAYS, PageAuth, render

router = APIRouter()


@dataclass(frozen=True)
class ExpiringAccreditation:
    user: User
    accreditation: Accreditation

    @property
    def days_left(self) -> int:
        return (self.accreditation.expires_on - clock.today()).days


def expiring_accreditations(
    session: Session, actor: Actor, within_days: int = EXPIRY_WARNING_DAYS
) -> list[ExpiringAccreditation]:
    """Unrevoked accreditations that expire within ``within_days`` or have expired (admin only)."""
    horizon = clock.today() + dt.timedelta(days=within_days)
    found = [
        ExpiringAccreditation(user, acc)
        for user in users.list_users(session, actor, limit=500)
        for acc in user.accreditations
        if acc.revoked_at is None and acc.expires_on <= horizon
    ]
    return sorted(found, key=lambda e: e.accreditation.expires_on)


def owned_org_ids(user: User) -> list[str]:
    return sorted({r.organisation_id for r in user.roles if r.role is Role.data_owner and r.organisation_id})


def checker_queue(session: Session, actor: Actor) -> list[ReleaseRequest]:
    """Requests in review that this checker may still review (not theirs, not reviewed this round)."""
    queue = releases.list_requests(session, actor, state=ReleaseState.in_review, limit=500)
    return [
        r
        for r in queue
        if r.requester_id != actor.user_id
        and actor.user_id not in r.checker_ids
        and not releases.is_member(actor, r)
    ]


def _admin(session: Session, actor: Actor) -> dict[str, Any]:
    return {
        "expiring": expiring_accreditations(session, actor),
        "to_activate": projects.list_projects(session, actor, state=ProjectState.approved),
        "chain": audit.verify(session),
    }


def _owner(session: Session, actor: Actor, user: User) -> dict[str, Any]:
    org_ids = owned_org_ids(user)
    owned = [d for org in org_ids for d in datasets.list_datasets(session, actor, owner_org_id=org)]
    owned_ids = {d.id for d in owned}
    mine = [a for a in agreements.list_agreements(session, actor, limit=500) if a.owner_org_id in org_ids]
    horizon = clock.today() + dt.timedelta(days=EXPIRY_WARNING_DAYS)
    using = [
        p
        for p in projects.list_projects(session, actor, limit=500)
        if p.state is not ProjectState.draft and any(link.dataset_id in owned_ids for link in p.datasets)
    ]
    return {
        "datasets": owned,
        "agreements": mine,
        "expiring_agreements": [
            a for a in mine if agreements.status(a) == "active" and a.valid_to <= horizon
        ],
        "projects": using,
    }


def _approver(session: Session, actor: Actor) -> dict[str, Any]:
    submitted = projects.list_projects(session, actor, state=ProjectState.submitted, limit=500)
    return {"submitted": [p for p in submitted if not projects.is_applicant(actor, p)]}


def _researcher(session: Session, actor: Actor, user: User) -> dict[str, Any]:
    unrevoked = [a for a in user.accreditations if a.revoked_at is None]
    mine = [p for p in projects.list_projects(session, actor, limit=500) if projects.is_applicant(actor, p)]
    requests = [r for r in releases.list_requests(session, actor, limit=500) if releases.is_member(actor, r)]
    return {
        "accreditation": user.valid_accreditation(clock.today()),
        "last_accreditation": max(unrevoked, key=lambda a: a.expires_on, default=None),
        "projects": mine,
        "returned": [p for p in mine if p.state is ProjectState.returned],
        "releases": requests,
        "release_actions": [
            r
            for r in requests
            if r.state in (ReleaseState.returned, ReleaseState.approved, ReleaseState.draft)
        ],
    }


@router.get("/")
def home(request: Request, session: DbSession, auth: PageAuth) -> Response:
    actor, user = auth.actor, auth.user
    context: dict[str, Any] = {}
    if user.has_role(Role.admin):
        context["admin"] = _admin(session, actor)
    if user.has_role(Role.data_owner):
        context["owner"] = _owner(session, actor, user)
    if user.has_role(Role.approver):
        context["approver"] = _approver(session, actor)
    if user.has_role(Role.researcher):
        context["researcher"] = _researcher(session, actor, user)
    if user.has_role(Role.output_checker):
        context["checker"] = {"queue": checker_queue(session, actor)}
    return render(request, "home.html", context)
