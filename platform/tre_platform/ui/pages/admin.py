"""Administration: organisations, users and their roles, accreditations and training, the audit log.

Every page checks the administrator role up front (so a non-admin gets a 403 page, audited); the
services check it again on every change.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from tre_platform.actor import Actor
from tre_platform.api.audit import service as audit
from tre_platform.api.common import check_admin
from tre_platform.api.deps import DbSession, PathId
from tre_platform.api.orgs import service as orgs
from tre_platform.api.orgs.models import OrganisationKind
from tre_platform.api.orgs.schemas import OrgCreate, OrgUpdate
from tre_platform.api.users import service as users
from tre_platform.api.users.models import Role
from tre_platform.api.users.schemas import (
    AccreditationCreate,
    RevokeRequest,
    RoleGrant,
    TrainingCreate,
    UserCreate,
    UserUpdate,
)
from tre_platform.errors import InvalidInput
from tre_platform.ui.pages.home import expiring_accreditations
from tre_platform.ui.web import (
    FORM_ERRORS,
    CheckedForm,
    PageAuth,
    checked,
    form_failure,
    given,
    many,
    redirect,
    render,
    values,
)

router = APIRouter(prefix="/admin")

ORG_KINDS = [(k.value, k.value.replace("_", " ")) for k in OrganisationKind]
ROLES = [(r.value, r.value.replace("_", " ")) for r in Role]
AUDIT_PAGE = 50


# Organisations ------------------------------------------------------------------------------------


def _orgs_page(
    request: Request, session: Session, actor: Actor, errors: dict[str, str] | None = None, data: Any = None
) -> Response:
    return render(
        request,
        "admin/orgs.html",
        {
            "orgs": orgs.list_orgs(session, actor, limit=500),
            "kinds": ORG_KINDS,
            "errors": errors or {},
            "values": data or {},
        },
        status_code=422 if errors else 200,
    )


@router.get("/orgs")
def org_list(request: Request, session: DbSession, auth: PageAuth) -> Response:
    check_admin(auth.actor, "manage organisations")
    return _orgs_page(request, session, auth.actor)


@router.post("/orgs")
def org_create(request: Request, session: DbSession, auth: PageAuth, form: CheckedForm) -> Response:
    data = values(form, "slug", "name", "kind", "accredited_until")
    try:
        org = orgs.create_org(session, auth.actor, OrgCreate.model_validate(given(data)))
    except FORM_ERRORS as exc:
        return _orgs_page(request, session, auth.actor, form_failure(session, exc, data), data)
    return redirect(request, "/admin/orgs", f"Organisation {org.slug} added.")


@router.get("/orgs/{org_id}")
def org_detail(request: Request, org_id: PathId, session: DbSession, auth: PageAuth) -> Response:
    check_admin(auth.actor, "manage organisations")
    org = orgs.get_org(session, auth.actor, org_id)
    data = {"name": org.name, "kind": org.kind.value, "accredited_until": org.accredited_until or ""}
    members = users.list_users(session, auth.actor, organisation_id=org.id, limit=500)
    return render(
        request, "admin/org.html", {"org": org, "values": data, "kinds": ORG_KINDS, "members": members}
    )


@router.post("/orgs/{org_id}")
def org_update(
    request: Request, org_id: PathId, session: DbSession, auth: PageAuth, form: CheckedForm
) -> Response:
    data = values(form, "name", "kind", "accredited_until")
    payload: dict[str, Any] = given(data)
    # An emptied date means "no longer accredited": send it as None rather than leaving it out.
    payload.setdefault("accredited_until", None)
    try:
        org = orgs.update_org(session, auth.actor, org_id, OrgUpdate.model_validate(payload))
    except FORM_ERRORS as exc:
        errors = form_failure(session, exc, data)
        org = orgs.get_org(session, auth.actor, org_id)
        members = users.list_users(session, auth.actor, organisation_id=org.id, limit=500)
        return render(
            request,
            "admin/org.html",
            {"org": org, "values": data, "kinds": ORG_KINDS, "errors": errors, "members": members},
            status_code=422,
        )
    return redirect(request, f"/admin/orgs/{org.id}", "Organisation saved.")


# Users --------------------------------------------------------------------------------------------


@router.get("/users")
def user_list(
    request: Request,
    session: DbSession,
    auth: PageAuth,
    organisation_id: str | None = None,
    role: str | None = None,
) -> Response:
    check_admin(auth.actor, "manage users")
    role_filter = Role(role) if role and role in Role.__members__ else None
    found = users.list_users(
        session, auth.actor, organisation_id=organisation_id or None, role=role_filter, limit=500
    )
    return render(
        request,
        "admin/users.html",
        {
            "users": found,
            "orgs": orgs.list_orgs(session, auth.actor, limit=500),
            "roles": ROLES,
            "values": {"organisation_id": organisation_id or "", "role": role or ""},
        },
    )


def _new_user_page(
    request: Request,
    session: Session,
    actor: Actor,
    data: dict[str, Any],
    errors: dict[str, str] | None = None,
) -> Response:
    return render(
        request,
        "admin/user_new.html",
        {
            "orgs": orgs.list_orgs(session, actor, limit=500),
            "roles": ROLES,
            "values": data,
            "errors": errors or {},
        },
        status_code=422 if errors else 200,
    )


@router.get("/users/new")
def user_new(request: Request, session: DbSession, auth: PageAuth) -> Response:
    check_admin(auth.actor, "create users")
    return _new_user_page(request, session, auth.actor, {"roles": []})


@router.post("/users")
def user_create(request: Request, session: DbSession, auth: PageAuth, form: CheckedForm) -> Response:
    data: dict[str, Any] = values(form, "username", "full_name", "email", "organisation_id", "password")
    data["roles"] = many(form, "roles")
    # A data owner manages their own organisation's data; a different organisation is set on the user page.
    grants = [
        {"role": r, "organisation_id": data["organisation_id"] if r == Role.data_owner.value else None}
        for r in data["roles"]
    ]
    try:
        user = users.create_user(
            session, auth.actor, UserCreate.model_validate(given({**data, "roles": grants}))
        )
    except FORM_ERRORS as exc:
        errors = form_failure(session, exc, [*data, "roles"])
        if (
            "organisation_id" in errors
            and "data_owner" in data["roles"]
            and "kind" in errors["organisation_id"]
        ):
            errors["roles"] = errors.pop("organisation_id")
        data.pop("password", None)
        return _new_user_page(request, session, auth.actor, data, errors)
    return redirect(request, f"/admin/users/{user.id}", f"User {user.username} created.")


def _user_page(
    request: Request,
    session: Session,
    actor: Actor,
    user_id: str,
    *,
    form: str = "",
    errors: dict[str, str] | None = None,
    data: dict[str, Any] | None = None,
) -> Response:
    user = users.get_user(session, actor, user_id)
    details = {
        "full_name": user.full_name,
        "email": user.email,
        "unix_username": user.unix_username or "",
        "is_active": user.is_active,
    }
    return render(
        request,
        "admin/user.html",
        {
            "subject": user,
            "orgs": orgs.list_orgs(session, actor, limit=500),
            "org_names": {o.id: o.name for o in orgs.list_orgs(session, actor, limit=500)},
            "roles": ROLES,
            "form": form,
            "errors": errors or {},
            "values": data if data is not None else details,
            "details": details if form != "details" else (data or details),
        },
        status_code=422 if errors else 200,
    )


@router.get("/users/{user_id}")
def user_detail(request: Request, user_id: PathId, session: DbSession, auth: PageAuth) -> Response:
    check_admin(auth.actor, "manage users")
    return _user_page(request, session, auth.actor, user_id)


@router.post("/users/{user_id}")
def user_update(
    request: Request, user_id: PathId, session: DbSession, auth: PageAuth, form: CheckedForm
) -> Response:
    data: dict[str, Any] = values(form, "full_name", "email", "unix_username")
    data["is_active"] = checked(form, "is_active")
    try:
        users.update_user(
            session,
            auth.actor,
            user_id,
            UserUpdate.model_validate(given(data) | {"is_active": data["is_active"]}),
        )
    except FORM_ERRORS as exc:
        errors = form_failure(session, exc, data)
        return _user_page(request, session, auth.actor, user_id, form="details", errors=errors, data=data)
    return redirect(request, f"/admin/users/{user_id}", "Details saved.")


@router.post("/users/{user_id}/roles")
def role_grant(
    request: Request, user_id: PathId, session: DbSession, auth: PageAuth, form: CheckedForm
) -> Response:
    data = values(form, "role", "organisation_id")
    try:
        users.grant_role(session, auth.actor, user_id, RoleGrant.model_validate(given(data)))
    except FORM_ERRORS as exc:
        errors = form_failure(session, exc, data)
        return _user_page(request, session, auth.actor, user_id, form="role", errors=errors, data=data)
    return redirect(request, f"/admin/users/{user_id}", f"Role {data['role'].replace('_', ' ')} granted.")


@router.post("/users/{user_id}/roles/revoke")
def role_revoke(
    request: Request, user_id: PathId, session: DbSession, auth: PageAuth, form: CheckedForm
) -> Response:
    data = values(form, "role", "organisation_id")
    try:
        role = Role(data["role"]) if data["role"] in Role.__members__ else None
        if role is None:
            raise InvalidInput("choose one of the user's roles to remove", field="role")
        users.revoke_role(session, auth.actor, user_id, role, data["organisation_id"] or None)
    except FORM_ERRORS as exc:
        errors = form_failure(session, exc, data)
        return _user_page(request, session, auth.actor, user_id, form="roles", errors=errors)
    return redirect(request, f"/admin/users/{user_id}", f"Role {role.value.replace('_', ' ')} removed.")


@router.post("/users/{user_id}/accreditations")
def accreditation_add(
    request: Request, user_id: PathId, session: DbSession, auth: PageAuth, form: CheckedForm
) -> Response:
    data = values(form, "scheme", "reference", "granted_on", "expires_on")
    try:
        users.add_accreditation(session, auth.actor, user_id, AccreditationCreate.model_validate(given(data)))
    except FORM_ERRORS as exc:
        errors = form_failure(session, exc, data)
        return _user_page(
            request, session, auth.actor, user_id, form="accreditation", errors=errors, data=data
        )
    return redirect(request, f"/admin/users/{user_id}", "Accreditation recorded.")


@router.post("/users/{user_id}/accreditations/{accreditation_id}/revoke")
def accreditation_revoke(
    request: Request,
    user_id: PathId,
    accreditation_id: PathId,
    session: DbSession,
    auth: PageAuth,
    form: CheckedForm,
) -> Response:
    data = values(form, "reason")
    try:
        users.revoke_accreditation(
            session, auth.actor, user_id, accreditation_id, RevokeRequest.model_validate(data)
        )
    except FORM_ERRORS as exc:
        errors = form_failure(session, exc, data)
        return _user_page(
            request, session, auth.actor, user_id, form=f"revoke-{accreditation_id}", errors=errors, data=data
        )
    return redirect(
        request, f"/admin/users/{user_id}", "Accreditation revoked; access ends at the next decision."
    )


@router.post("/users/{user_id}/training")
def training_add(
    request: Request, user_id: PathId, session: DbSession, auth: PageAuth, form: CheckedForm
) -> Response:
    data = values(form, "course", "completed_on", "expires_on")
    try:
        users.add_training(session, auth.actor, user_id, TrainingCreate.model_validate(given(data)))
    except FORM_ERRORS as exc:
        errors = form_failure(session, exc, data)
        return _user_page(request, session, auth.actor, user_id, form="training", errors=errors, data=data)
    return redirect(request, f"/admin/users/{user_id}", "Training recorded.")


@router.post("/users/{user_id}/password")
def password_set(
    request: Request, user_id: PathId, session: DbSession, auth: PageAuth, form: CheckedForm
) -> Response:
    raw = form.get("new_password")
    password = raw if isinstance(raw, str) else ""
    try:
        if not password:
            raise InvalidInput("enter the new password", field="new_password")
        users.set_password(session, auth.actor, user_id, password)
    except FORM_ERRORS as exc:
        errors = form_failure(session, exc, ["new_password"])
        return _user_page(request, session, auth.actor, user_id, form="password", errors=errors, data={})
    return redirect(request, f"/admin/users/{user_id}", "Password set; the user's sessions have ended.")


@router.post("/users/{user_id}/totp-reset")
def totp_reset(
    request: Request, user_id: PathId, session: DbSession, auth: PageAuth, form: CheckedForm
) -> Response:
    users.reset_totp(session, auth.actor, user_id)
    return redirect(
        request, f"/admin/users/{user_id}", "Second factor removed; the user sets up a new one at sign-in."
    )


# Accreditations -----------------------------------------------------------------------------------


@router.get("/accreditations")
def accreditation_list(request: Request, session: DbSession, auth: PageAuth) -> Response:
    check_admin(auth.actor, "review accreditations")
    everyone = users.list_users(session, auth.actor, limit=500)
    rows = sorted(((u, a) for u in everyone for a in u.accreditations), key=lambda pair: pair[1].expires_on)
    return render(
        request,
        "admin/accreditations.html",
        {"rows": rows, "expiring": expiring_accreditations(session, auth.actor)},
    )


# Audit log ----------------------------------------------------------------------------------------


def _day(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        return None


@router.get("/audit")
def audit_log(
    request: Request,
    session: DbSession,
    auth: PageAuth,
    actor: str | None = None,
    action: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    since: str | None = None,
    until: str | None = None,
    page: int = 1,
) -> Response:
    check_admin(auth.actor, "read the audit log")
    filters = {
        "actor": (actor or "").strip()[:64],
        "action": (action or "").strip()[:64],
        "target_type": (target_type or "").strip()[:64],
        "target_id": (target_id or "").strip()[:64],
        "since": since or "",
        "until": until or "",
    }
    errors = {
        name: "use a date such as 2026-01-31"
        for name in ("since", "until")
        if filters[name] and _day(filters[name]) is None
    }
    until_at = _day(filters["until"])
    if until_at is not None and len(filters["until"]) == 10:
        until_at += dt.timedelta(days=1)  # a whole day: events *on* the until date are included
    page = max(1, min(page, 10_000))
    events, total = audit.list_events(
        session,
        actor=filters["actor"] or None,
        action=filters["action"] or None,
        target_type=filters["target_type"] or None,
        target_id=filters["target_id"] or None,
        since=_day(filters["since"]),
        until=until_at,
        limit=AUDIT_PAGE,
        offset=(page - 1) * AUDIT_PAGE,
    )
    query = urllib.parse.urlencode({k: v for k, v in filters.items() if v})
    return render(
        request,
        "admin/audit.html",
        {
            "events": events,
            "total": total,
            "page": page,
            "pages": max(1, -(-total // AUDIT_PAGE)),
            "values": filters,
            "errors": errors,
            "query": query,
            "chain": audit.verify(session),
        },
    )
