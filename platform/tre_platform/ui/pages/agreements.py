"""Data owners grant, edit (before they start) and revoke data-sharing agreements, and see every use of
their data: the projects that asked for it, the policy decisions about it, the releases from those
projects and the differential-privacy budget each project has spent.

The agreements service shows an agreement only to administrators and the owner organisation's data
owners; everything on the usage page is read through the services too, then narrowed to the viewer's
own datasets.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from tre_platform.api.agreements import service as agreements
from tre_platform.api.agreements.schemas import AgreementCreate, AgreementRevoke, AgreementUpdate
from tre_platform.api.audit import service as audit
from tre_platform.api.datasets import service as datasets
from tre_platform.api.deps import Auth, DbSession, PathId
from tre_platform.api.orgs import service as orgs
from tre_platform.api.projects import service as projects
from tre_platform.api.projects.models import ProjectState
from tre_platform.api.releases import budget
from tre_platform.api.releases import service as releases
from tre_platform.api.users.models import Role
from tre_platform.errors import Forbidden
from tre_platform.ui.pages.home import owned_org_ids
from tre_platform.ui.pages.projects import GATEWAYS, PURPOSES, TIERS
from tre_platform.ui.web import (
    FORM_ERRORS,
    CheckedForm,
    PageAuth,
    form_failure,
    given,
    many,
    redirect,
    render,
    settings_of,
    values,
)

router = APIRouter()

TERMS = (
    "reference",
    "title",
    "owner_org_id",
    "max_tier",
    "dc_profile",
    "dp_epsilon",
    "dp_delta",
    "conditions",
    "valid_from",
    "valid_to",
)
#: Form fields whose errors the page shows, including the scope and recipient choices.
FIELDS = (*TERMS, "dataset_ids", "recipient_org_ids", "purposes", "legal_gateways")
#: The scope flags' messages name the flag first; show them beside the list the user fills in.
MOVED = {"all_datasets": "dataset_ids", "any_accredited": "recipient_org_ids"}


def _check_may_manage(auth: Auth) -> list[str]:
    """The organisations whose agreements the viewer manages (all data-owning ones for an admin)."""
    if not (auth.user.has_role(Role.admin) or auth.user.has_role(Role.data_owner)):
        raise Forbidden("only data owners and administrators manage data-sharing agreements")
    return owned_org_ids(auth.user)


def _form_context(request: Request, session: Session, auth: Auth) -> dict[str, Any]:
    owned = owned_org_ids(auth.user)
    every = orgs.list_orgs(session, auth.actor, limit=500)
    owners = [o for o in every if o.owns_data and (auth.actor.is_admin or o.id in owned)]
    catalogue = [
        d
        for d in datasets.list_datasets(session, auth.actor, limit=500)
        if d.owner_org_id in {o.id for o in owners}
    ]
    folder = settings_of(request).policies_dir / "disclosure" / "profiles"
    profiles = sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else ["default"]
    return {
        "owners": [(o.id, o.name) for o in owners],
        "recipients": [(o.id, o.name) for o in every],
        "catalogue": catalogue,
        "purposes": PURPOSES,
        "gateways": GATEWAYS,
        "tiers": TIERS,
        "profiles": [(name, name) for name in profiles],
    }


def _read_terms(form: FormData) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what the page shows again, the payload for the schema) from an agreement form."""
    shown: dict[str, Any] = values(form, *TERMS, "scope", "audience")
    shown["dataset_ids"] = many(form, "dataset_ids")
    shown["recipient_org_ids"] = many(form, "recipient_org_ids")
    shown["purposes"] = many(form, "purposes")
    shown["legal_gateways"] = many(form, "legal_gateways")
    payload = given({k: shown[k] for k in TERMS})
    payload["all_datasets"] = shown["scope"] == "all"
    payload["dataset_ids"] = shown["dataset_ids"] if shown["scope"] != "all" else []
    payload["any_accredited"] = shown["audience"] == "any"
    payload["recipient_org_ids"] = shown["recipient_org_ids"] if shown["audience"] != "any" else []
    payload["purposes"] = shown["purposes"]
    payload["legal_gateways"] = shown["legal_gateways"]
    return shown, payload


def _failed(session: Session, exc: Exception) -> dict[str, str]:
    errors = form_failure(session, exc, [*FIELDS, *MOVED])
    for flag, field in MOVED.items():
        if flag in errors:
            errors.setdefault(field, errors.pop(flag))
    return errors


@router.get("/agreements")
def agreement_list(request: Request, session: DbSession, auth: PageAuth) -> Response:
    _check_may_manage(auth)
    found = agreements.list_agreements(session, auth.actor, limit=500)
    return render(
        request,
        "agreements/list.html",
        {"agreements": found, "status": agreements.status, "org_names": _org_names(session, auth)},
    )


def _org_names(session: Session, auth: Auth) -> dict[str, str]:
    return {o.id: o.name for o in orgs.list_orgs(session, auth.actor, limit=500)}


def _new_page(
    request: Request,
    session: Session,
    auth: Auth,
    shown: dict[str, Any],
    errors: dict[str, str] | None = None,
) -> Response:
    return render(
        request,
        "agreements/new.html",
        {**_form_context(request, session, auth), "values": shown, "errors": errors or {}},
        status_code=422 if errors else 200,
    )


@router.get("/agreements/new")
def agreement_new(request: Request, session: DbSession, auth: PageAuth) -> Response:
    owned = _check_may_manage(auth)
    shown = {
        "owner_org_id": owned[0] if owned else "",
        "scope": "all",
        "audience": "any",
        "max_tier": "3",
        "dc_profile": "default",
        "purposes": [],
        "legal_gateways": [],
        "dataset_ids": [],
        "recipient_org_ids": [],
    }
    return _new_page(request, session, auth, shown)


@router.post("/agreements")
def agreement_grant(request: Request, session: DbSession, auth: PageAuth, form: CheckedForm) -> Response:
    _check_may_manage(auth)
    shown, payload = _read_terms(form)
    try:
        agreement = agreements.grant_agreement(session, auth.actor, AgreementCreate.model_validate(payload))
    except FORM_ERRORS as exc:
        return _new_page(request, session, auth, shown, _failed(session, exc))
    return redirect(request, f"/agreements/{agreement.id}", f"Agreement {agreement.reference} granted.")


def _shown(agreement: Any) -> dict[str, Any]:
    return {
        "reference": agreement.reference,
        "title": agreement.title,
        "owner_org_id": agreement.owner_org_id,
        "scope": "all" if agreement.all_datasets else "listed",
        "dataset_ids": agreement.dataset_ids,
        "audience": "any" if agreement.any_accredited else "listed",
        "recipient_org_ids": agreement.recipient_ids,
        "purposes": list(agreement.purposes),
        "legal_gateways": list(agreement.legal_gateways),
        "max_tier": str(agreement.max_tier),
        "dc_profile": agreement.dc_profile,
        "dp_epsilon": "" if agreement.dp_epsilon is None else agreement.dp_epsilon,
        "dp_delta": "" if agreement.dp_delta is None else agreement.dp_delta,
        "conditions": agreement.conditions,
        "valid_from": agreement.valid_from.isoformat(),
        "valid_to": agreement.valid_to.isoformat(),
    }


def _detail_page(
    request: Request,
    session: Session,
    auth: Auth,
    agreement_id: str,
    *,
    form: str = "",
    errors: dict[str, str] | None = None,
    shown: dict[str, Any] | None = None,
) -> Response:
    agreement = agreements.get_agreement(session, auth.actor, agreement_id)
    names = {d.id: d for d in datasets.list_datasets(session, auth.actor, limit=500)}
    return render(
        request,
        "agreements/detail.html",
        {
            **_form_context(request, session, auth),
            "agreement": agreement,
            "state": agreements.status(agreement),
            "dataset_names": names,
            "org_names": _org_names(session, auth),
            "form": form,
            "errors": errors or {},
            "values": shown if shown is not None else _shown(agreement),
        },
        status_code=422 if errors else 200,
    )


@router.get("/agreements/{agreement_id}")
def agreement_detail(request: Request, agreement_id: PathId, session: DbSession, auth: PageAuth) -> Response:
    return _detail_page(request, session, auth, agreement_id)


@router.post("/agreements/{agreement_id}/edit")
def agreement_edit(
    request: Request, agreement_id: PathId, session: DbSession, auth: PageAuth, form: CheckedForm
) -> Response:
    shown, payload = _read_terms(form)
    payload.pop("reference", None)
    payload.pop("owner_org_id", None)
    # The form always shows every term, so "not given" means "cleared" for the optional numbers.
    payload.setdefault("conditions", "")
    try:
        agreements.update_agreement(
            session, auth.actor, agreement_id, AgreementUpdate.model_validate(payload)
        )
    except FORM_ERRORS as exc:
        errors = _failed(session, exc)
        return _detail_page(request, session, auth, agreement_id, form="edit", errors=errors, shown=shown)
    return redirect(request, f"/agreements/{agreement_id}", "Agreement changed.")


@router.post("/agreements/{agreement_id}/revoke")
def agreement_revoke(
    request: Request, agreement_id: PathId, session: DbSession, auth: PageAuth, form: CheckedForm
) -> Response:
    data = values(form, "reason")
    try:
        agreement = agreements.revoke_agreement(
            session, auth.actor, agreement_id, AgreementRevoke.model_validate(data)
        )
    except FORM_ERRORS as exc:
        errors = form_failure(session, exc, ["reason"])
        return _detail_page(request, session, auth, agreement_id, form="revoke", errors=errors)
    return redirect(
        request,
        f"/agreements/{agreement.id}",
        f"Agreement {agreement.reference} revoked; access it supported ends at the next decision.",
    )


# Usage --------------------------------------------------------------------------------------------

#: How many recent policy decisions about the owner's datasets the usage page lists.
DECISIONS_SHOWN = 100


@router.get("/usage")
def usage(request: Request, session: DbSession, auth: PageAuth) -> Response:
    """Every project, decision and release that touched the viewer's organisation's data."""
    owned = _check_may_manage(auth)
    actor = auth.actor
    if actor.is_admin and not owned:
        owned = [o.id for o in orgs.list_orgs(session, actor, limit=500) if o.owns_data]
    mine = {
        d.id: d for org in owned for d in datasets.list_datasets(session, actor, owner_org_id=org, limit=500)
    }
    using = [
        p
        for p in projects.list_projects(session, actor, limit=500)
        if p.state is not ProjectState.draft and any(link.dataset_id in mine for link in p.datasets)
    ]
    project_ids = {p.id for p in using}
    requests = [r for r in releases.list_requests(session, actor, limit=500) if r.project_id in project_ids]
    budgets = {p.id: budget.budget_status(session, actor, p.id) for p in using}
    decisions = []
    for dataset_id in mine:
        # Policy decisions name the dataset as their target (read_dataset, build_view, ingest_dataset).
        events, _ = audit.list_events(session, action="policy.", target_id=dataset_id, limit=DECISIONS_SHOWN)
        decisions.extend(events)
    decisions.sort(key=lambda e: e.seq, reverse=True)
    return render(
        request,
        "agreements/usage.html",
        {
            "datasets": mine,
            "projects": using,
            "requests": requests,
            "budgets": budgets,
            "decisions": decisions[:DECISIONS_SHOWN],
        },
    )
