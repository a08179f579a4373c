"""Projects: researchers apply and follow their applications, approvers decide, administrators activate.

One page per project shows what the viewer may do in its current state (the state machine's own
``VALID_TRANSITIONS`` decides which buttons appear; the service decides whether the click is allowed), and
for every requested dataset which agreement covers it, or why none does (:mod:`tre_platform.ui.coverage`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import ImmutableMultiDict

from tre_platform.api.datasets import service as datasets
from tre_platform.api.datasets.models import Dataset
from tre_platform.api.deps import Auth, DbSession, PathId
from tre_platform.api.projects import service as projects
from tre_platform.api.projects.models import (
    STATE_OWNER,
    LegalGateway,
    ProjectAction,
    ProjectState,
    PurposeCategory,
)
from tre_platform.api.projects.schemas import DatasetRequest, MemberAdd, ProjectCreate, ProjectUpdate
from tre_platform.api.users.models import Role, User, UserRole
from tre_platform.clock import clock
from tre_platform.errors import InvalidInput
from tre_platform.ui.coverage import project_coverage, proposed_coverage
from tre_platform.ui.web import (
    FORM_ERRORS,
    CheckedForm,
    PageAuth,
    form_failure,
    given,
    many,
    redirect,
    render,
    values,
)

router = APIRouter(prefix="/projects")

PURPOSES = [
    (PurposeCategory.policy_evidence.value, "Evidence for public policy decisions"),
    (PurposeCategory.service_delivery.value, "Evidence for public service delivery"),
    (PurposeCategory.economic_social_benefit.value, "Decisions that benefit the economy or society"),
    (PurposeCategory.replicate_validate.value, "Replicate, validate or challenge research"),
    (PurposeCategory.extend_understanding.value, "Extend understanding of social or economic trends"),
    (PurposeCategory.improve_statistics.value, "Improve official statistics or research quality"),
]
GATEWAYS = [
    (LegalGateway.dea.value, "Digital Economy Act 2017 (research)"),
    (LegalGateway.srsa.value, "Statistics and Registration Service Act 2007"),
    (LegalGateway.consent.value, "Informed consent of the data subjects"),
    (LegalGateway.section_251.value, "NHS Act 2006 s.251 / COPI"),
    (LegalGateway.public_task.value, "UK GDPR Art. 6(1)(e), statutory function"),
]
TIERS = [(str(t), f"Tier {t}") for t in range(5)]
APPLICATION_FIELDS = (
    "title",
    "lay_summary",
    "purpose",
    "legal_gateway",
    "start_date",
    "end_date",
    "max_tier",
)
#: The decisions an approver takes on a submitted application, with the words on their buttons.
DECISIONS = [("approve", "Approve"), ("return", "Return for changes"), ("reject", "Reject")]


# Reading an application form ----------------------------------------------------------------------


def _requested(form: ImmutableMultiDict[str, Any], catalogue: list[Dataset]) -> dict[str, list[str]]:
    """Dataset id -> the columns ticked for it (``columns-<id>`` fields); datasets with none are left out.

    ``form`` is the posted form or, for the live check, the query string: both are multi-dicts.
    """
    out: dict[str, list[str]] = {}
    for dataset in catalogue:
        raw = form.getlist(f"columns-{dataset.id}")
        chosen = [c for c in raw if isinstance(c, str) and c in dataset.research_columns]
        if chosen:
            out[dataset.id] = chosen
    return out


def researchers_named(session: Session, text: str, *, field: str = "members") -> list[User]:
    """The active researchers with these usernames (comma or space separated), else InvalidInput."""
    names = [n for n in text.replace(",", " ").split() if n]
    if not names:
        return []
    found = {
        u.username: u
        for u in session.scalars(
            select(User).where(
                User.username.in_(names),
                User.is_active,
                User.id.in_(select(UserRole.user_id).where(UserRole.role == Role.researcher)),
            )
        )
    }
    missing = [n for n in names if n not in found]
    if missing:
        raise InvalidInput(
            f"no active researcher with username {', '.join(missing)}; check the spelling", field=field
        )
    return [found[n] for n in dict.fromkeys(names)]


def _new_page(
    request: Request,
    session: Session,
    auth: Auth,
    data: Mapping[str, Any],
    requested: Mapping[str, list[str]],
    errors: dict[str, str] | None = None,
) -> Response:
    catalogue = datasets.list_datasets(session, auth.actor, limit=500)
    return render(
        request,
        "projects/new.html",
        {
            "catalogue": catalogue,
            "requested": requested,
            "purposes": PURPOSES,
            "gateways": GATEWAYS,
            "tiers": TIERS,
            "values": data,
            "errors": errors or {},
            "coverage": _live_coverage(session, auth, data, requested),
        },
        status_code=422 if errors else 200,
    )


def _live_coverage(
    session: Session, auth: Auth, data: Mapping[str, Any], requested: Mapping[str, list[str]]
) -> list[Any] | None:
    """The agreement check for the form as filled in so far; None until purpose and gateway are chosen."""
    try:
        purpose = PurposeCategory(data.get("purpose", ""))
        gateway = LegalGateway(data.get("legal_gateway", ""))
        tier = int(data.get("max_tier") or 3)
    except ValueError:
        return None
    try:
        end = dt.date.fromisoformat(str(data.get("end_date", "")))
    except ValueError:
        end = None
    if not requested:
        return []
    return proposed_coverage(
        session,
        auth.user,
        purpose=purpose,
        legal_gateway=gateway,
        max_tier=max(0, min(tier, 4)),
        end_date=end,
        requested=requested,
    )


@router.get("")
def project_list(request: Request, session: DbSession, auth: PageAuth, state: str | None = None) -> Response:
    chosen = ProjectState(state) if state and state in ProjectState.__members__ else None
    found = projects.list_projects(session, auth.actor, state=chosen, limit=500)
    return render(
        request,
        "projects/list.html",
        {
            "projects": found,
            "states": [(s.value, s.value) for s in ProjectState],
            "values": {"state": chosen.value if chosen else ""},
            "owner": STATE_OWNER,
        },
    )


@router.get("/new")
def project_new(request: Request, session: DbSession, auth: PageAuth) -> Response:
    today = clock.today()
    data = {
        "start_date": today.isoformat(),
        "end_date": (today + dt.timedelta(days=365)).isoformat(),
        "max_tier": "3",
    }
    return _new_page(request, session, auth, data, {})


@router.get("/check")
def project_check(request: Request, session: DbSession, auth: PageAuth) -> Response:
    """The live agreement check of the application form (an htmx fragment)."""
    catalogue = datasets.list_datasets(session, auth.actor, limit=500)
    params = request.query_params
    requested = _requested(params, catalogue)
    data = {k: params.get(k, "") for k in ("purpose", "legal_gateway", "max_tier", "end_date")}
    return render(
        request,
        "projects/_coverage.html",
        {"coverage": _live_coverage(session, auth, data, requested), "live": True},
    )


@router.post("")
def project_create(request: Request, session: DbSession, auth: PageAuth, form: CheckedForm) -> Response:
    catalogue = datasets.list_datasets(session, auth.actor, limit=500)
    data: dict[str, Any] = values(form, *APPLICATION_FIELDS, "members", "intent")
    requested = _requested(form, catalogue)
    justifications = values(form, *(f"why-{d}" for d in requested))
    data.update(justifications)
    fields = [*APPLICATION_FIELDS, "members", "datasets"]
    try:
        project = projects.create_project(
            session, auth.actor, ProjectCreate.model_validate(given({k: data[k] for k in APPLICATION_FIELDS}))
        )
        for member in researchers_named(session, data["members"]):
            if not project.is_member(member.id):
                projects.add_member(session, auth.actor, project.id, MemberAdd(user_id=member.id))
        if not requested:
            raise InvalidInput(
                "choose at least one column of one dataset from the catalogue", field="datasets"
            )
        for dataset_id, columns in requested.items():
            try:
                request_ = DatasetRequest(
                    dataset_id=dataset_id, columns=columns, justification=justifications[f"why-{dataset_id}"]
                )
            except ValidationError as exc:
                raise InvalidInput(exc.errors()[0]["msg"], field="datasets") from None
            projects.request_dataset(session, auth.actor, project.id, request_)
        if data["intent"] == "submit":
            projects.transition(
                session, auth.actor, project.id, ProjectAction.submit, "Submitted from the web."
            )
    except FORM_ERRORS as exc:
        errors = form_failure(session, exc, fields)
        if "columns" in errors or "dataset_id" in errors:
            errors["datasets"] = errors.pop("columns", "") or errors.pop("dataset_id", "")
        return _new_page(request, session, auth, data, requested, errors)
    done = "submitted for approval" if data["intent"] == "submit" else "saved as a draft"
    return redirect(request, f"/projects/{project.id}", f"Application {project.code} {done}.")


# One project --------------------------------------------------------------------------------------


def _people(session: Session, ids: set[str]) -> dict[str, User]:
    if not ids:
        return {}
    return {u.id: u for u in session.scalars(select(User).where(User.id.in_(ids)))}


def project_page(
    request: Request,
    session: Session,
    auth: Auth,
    project_id: str,
    *,
    form: str = "",
    errors: dict[str, str] | None = None,
    data: Mapping[str, Any] | None = None,
) -> Response:
    actor = auth.actor
    project = projects.get_project(session, actor, project_id)
    people = _people(
        session,
        {project.lead_id, project.created_by_id}
        | {m.user_id for m in project.members}
        | {d.actor_id for d in project.decisions if d.actor_id},
    )
    names = {
        d.id: d
        for d in session.scalars(
            select(Dataset).where(Dataset.id.in_([x.dataset_id for x in project.datasets]))
        )
    }
    applicant = projects.is_applicant(actor, project)
    actions = projects.allowed_actions(project.state)
    can_decide = (
        project.state is ProjectState.submitted and auth.user.has_role(Role.approver) and not applicant
    )
    editing = projects.can_edit(actor, project)
    details = {
        "title": project.title,
        "lay_summary": project.lay_summary,
        "purpose": project.purpose.value,
        "legal_gateway": project.legal_gateway.value,
        "start_date": project.start_date.isoformat(),
        "end_date": project.end_date.isoformat(),
        "max_tier": str(project.max_tier),
    }
    return render(
        request,
        "projects/detail.html",
        {
            "project": project,
            "people": people,
            "dataset_names": names,
            "coverage": project_coverage(session, project),
            "applicant": applicant,
            "can_decide": can_decide,
            "decisions": DECISIONS,
            "can_submit": applicant and "submit" in actions,
            "can_revise": applicant and "revise" in actions,
            "can_activate": auth.user.has_role(Role.admin) and "activate" in actions,
            "can_close": auth.user.has_role(Role.admin) and "close" in actions,
            "editing": editing,
            "catalogue": datasets.list_datasets(session, actor, limit=500) if editing else [],
            "purposes": PURPOSES,
            "gateways": GATEWAYS,
            "tiers": TIERS,
            "form": form,
            "errors": errors or {},
            "values": data or {},
            "details": dict(data) if form == "edit" and data else details,
            "owner": STATE_OWNER,
            "workspace": project.state.value in ("approved", "active") and (applicant or actor.is_admin),
        },
        status_code=422 if errors else 200,
    )


@router.get("/{project_id}")
def project_detail(request: Request, project_id: PathId, session: DbSession, auth: PageAuth) -> Response:
    return project_page(request, session, auth, project_id)


@router.post("/{project_id}/transition")
def project_transition(
    request: Request, project_id: PathId, session: DbSession, auth: PageAuth, form: CheckedForm
) -> Response:
    data = values(form, "action", "comment")
    try:
        if data["action"] in ("reject", "return") and not data["comment"]:
            raise InvalidInput(
                f"say why you {data['action']} the application, so the applicants can act on it",
                field="comment",
            )
        project = projects.transition(session, auth.actor, project_id, data["action"], data["comment"])
    except FORM_ERRORS as exc:
        errors = form_failure(session, exc, ["action", "comment"])
        return project_page(request, session, auth, project_id, form="decision", errors=errors, data=data)
    return redirect(
        request, f"/projects/{project.id}", f"Project {project.code} is now {project.state.value}."
    )


@router.post("/{project_id}/edit")
def project_edit(
    request: Request, project_id: PathId, session: DbSession, auth: PageAuth, form: CheckedForm
) -> Response:
    data = values(form, *APPLICATION_FIELDS)
    try:
        projects.update_project(session, auth.actor, project_id, ProjectUpdate.model_validate(given(data)))
    except FORM_ERRORS as exc:
        errors = form_failure(session, exc, APPLICATION_FIELDS)
        return project_page(request, session, auth, project_id, form="edit", errors=errors, data=data)
    return redirect(request, f"/projects/{project_id}", "Application saved.")


@router.post("/{project_id}/members")
def member_add(
    request: Request, project_id: PathId, session: DbSession, auth: PageAuth, form: CheckedForm
) -> Response:
    data = values(form, "username")
    try:
        people = researchers_named(session, data["username"], field="username")
        if not people:
            raise InvalidInput("enter the username of a researcher", field="username")
        for person in people:
            projects.add_member(session, auth.actor, project_id, MemberAdd(user_id=person.id))
    except FORM_ERRORS as exc:
        errors = form_failure(session, exc, ["username", "user_id"])
        if "user_id" in errors:
            errors["username"] = errors.pop("user_id")
        return project_page(request, session, auth, project_id, form="member", errors=errors, data=data)
    return redirect(request, f"/projects/{project_id}", "Member added.")


@router.post("/{project_id}/members/{user_id}/remove")
def member_remove(
    request: Request,
    project_id: PathId,
    user_id: PathId,
    session: DbSession,
    auth: PageAuth,
    form: CheckedForm,
) -> Response:
    try:
        projects.remove_member(session, auth.actor, project_id, user_id)
    except FORM_ERRORS as exc:
        errors = form_failure(session, exc)
        return project_page(request, session, auth, project_id, form="members", errors=errors)
    return redirect(request, f"/projects/{project_id}", "Member removed.")


@router.post("/{project_id}/datasets")
def dataset_request(
    request: Request, project_id: PathId, session: DbSession, auth: PageAuth, form: CheckedForm
) -> Response:
    data: dict[str, Any] = values(form, "dataset_id", "justification")
    data["columns"] = many(form, "columns")
    try:
        projects.request_dataset(session, auth.actor, project_id, DatasetRequest.model_validate(given(data)))
    except FORM_ERRORS as exc:
        errors = form_failure(session, exc, ["dataset_id", "columns", "justification"])
        return project_page(request, session, auth, project_id, form="dataset", errors=errors, data=data)
    return redirect(request, f"/projects/{project_id}", "Dataset request saved.")


@router.post("/{project_id}/datasets/{dataset_id}/remove")
def dataset_remove(
    request: Request,
    project_id: PathId,
    dataset_id: PathId,
    session: DbSession,
    auth: PageAuth,
    form: CheckedForm,
) -> Response:
    try:
        projects.remove_dataset(session, auth.actor, project_id, dataset_id)
    except FORM_ERRORS as exc:
        errors = form_failure(session, exc)
        return project_page(request, session, auth, project_id, form="datasets", errors=errors)
    return redirect(request, f"/projects/{project_id}", "Dataset request withdrawn.")
