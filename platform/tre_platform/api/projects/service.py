"""Projects: applications, members, requested data, and the approval state machine.

The state machine is data (``VALID_TRANSITIONS`` in ``models.py``); :func:`transition` is the only code that
changes a project's state, and every change leaves a :class:`ProjectDecision` and an audit event.

Visibility: administrators see every project; applicants (lead, creator, members) see their own;
approvers see submitted projects and the ones they decided; data owners see applications (past draft) that
request their organisation's data. Anyone else gets 'not found', never 'forbidden', because the existence of
a project is itself sensitive.
"""

from __future__ import annotations

import secrets

from sqlalchemy import ColumnElement, Select, false, or_, select, true
from sqlalchemy.orm import Session

from tre_platform.actor import Actor
from tre_platform.api.common import audit, check_user
from tre_platform.api.datasets.models import Dataset
from tre_platform.api.projects.models import (
    USABLE_STATES,
    VALID_TRANSITIONS,
    Project,
    ProjectAction,
    ProjectDataset,
    ProjectDecision,
    ProjectMember,
    ProjectState,
)
from tre_platform.api.projects.schemas import DatasetRequest, MemberAdd, ProjectCreate, ProjectUpdate
from tre_platform.api.users.models import Role, User, UserRole
from tre_platform.clock import clock
from tre_platform.enforcement import access_changed
from tre_platform.errors import Conflict, Forbidden, InvalidInput, InvalidTransition, NotFound

#: States in which the application can still be edited.
EDITABLE_STATES = frozenset({ProjectState.draft})

# Visibility ----------------------------------------------------------------------------------------


def _visible_clause(actor: Actor) -> ColumnElement[bool]:
    """SQL condition selecting the projects ``actor`` may see (see the module docstring)."""
    if actor.is_admin:
        return true()
    user = actor.user
    if user is None:
        return false()
    conditions: list[ColumnElement[bool]] = [
        Project.lead_id == user.id,
        Project.created_by_id == user.id,
        Project.id.in_(select(ProjectMember.project_id).where(ProjectMember.user_id == user.id)),
    ]
    if user.has_role(Role.approver):
        conditions.append(Project.state == ProjectState.submitted)
        conditions.append(
            Project.id.in_(select(ProjectDecision.project_id).where(ProjectDecision.actor_id == user.id))
        )
    using_their_data = projects_using_owned_data(user)
    if using_their_data is not None:
        conditions.append((Project.state != ProjectState.draft) & Project.id.in_(using_their_data))
    return or_(*conditions)


def projects_using_owned_data(user: User) -> Select[str] | None:
    """Ids of the projects that requested data of an organisation ``user`` is a data owner for."""
    owned = [r.organisation_id for r in user.roles if r.role is Role.data_owner and r.organisation_id]
    if not owned:
        return None
    return (
        select(ProjectDataset.project_id)
        .join(Dataset, Dataset.id == ProjectDataset.dataset_id)
        .where(Dataset.owner_org_id.in_(owned))
    )


def get_project(session: Session, actor: Actor, project_id: str) -> Project:
    """One project the actor may see, else NotFound."""
    check_user(actor)
    project = session.scalar(select(Project).where(Project.id == project_id, _visible_clause(actor)))
    if project is None:
        raise NotFound(f"no project with id {project_id!r} that you can see")
    return project


def list_projects(
    session: Session, actor: Actor, *, state: ProjectState | None = None, limit: int = 100, offset: int = 0
) -> list[Project]:
    """The projects the actor may see, newest first, optionally in one state."""
    check_user(actor)
    query = select(Project).where(_visible_clause(actor))
    if state is not None:
        query = query.where(Project.state == state)
    return list(
        session.scalars(query.order_by(Project.created_at.desc(), Project.id).limit(limit).offset(offset))
    )


def is_applicant(actor: Actor, project: Project) -> bool:
    """The lead, the creator or a member of the project."""
    return actor.user_id is not None and (
        project.is_member(actor.user_id) or project.created_by_id == actor.user_id
    )


def can_edit(actor: Actor, project: Project) -> bool:
    return project.state in EDITABLE_STATES and (actor.is_admin or is_applicant(actor, project))


def check_edit(actor: Actor, project: Project) -> None:
    if project.state not in EDITABLE_STATES:
        hint = " (use the 'revise' action to reopen it)" if project.state is ProjectState.returned else ""
        raise Conflict(f"project {project.code} is {project.state.value}; only a draft can be changed{hint}")
    if not can_edit(actor, project):
        raise Forbidden(f"only the applicants of project {project.code} or an administrator may change it")


def check_manage_members(actor: Actor, project: Project) -> None:
    check_edit(actor, project)
    if not (actor.is_admin or actor.user_id in (project.lead_id, project.created_by_id)):
        raise Forbidden(f"only the lead of project {project.code} or an administrator may change its members")


# Applications --------------------------------------------------------------------------------------


def _new_code(session: Session) -> str:
    while True:
        code = f"P-{clock.today().year}-{secrets.token_hex(3).upper()}"
        if session.scalar(select(Project.id).where(Project.code == code)) is None:
            return code


def _researcher(session: Session, user_id: str, field: str) -> User:
    user = session.get(User, user_id)
    if user is None or not user.is_active:
        raise InvalidInput(f"no active user with id {user_id!r}", field=field)
    if not user.has_role(Role.researcher):
        raise InvalidInput(
            f"{user.username} is not a researcher; an administrator can grant the role", field=field
        )
    return user


def create_project(session: Session, actor: Actor, data: ProjectCreate) -> Project:
    """Start a draft application. Researchers apply for themselves; administrators may name the lead.

    Example:
        >>> create_project(session, Actor.of(alice), ProjectCreate(title="Fuel poverty", lay_summary="...",
        ...     purpose="policy_evidence", legal_gateway="dea", start_date=..., end_date=...))
    """
    check_user(actor)
    if not (actor.is_admin or actor.has_role(Role.researcher)):
        raise Forbidden("only researchers (or administrators onboarding a project) may apply for a project")
    lead_id = data.lead_id or actor.user_id
    if lead_id is None:
        raise InvalidInput("the operator must name the project's lead (lead_id)", field="lead_id")
    if lead_id != actor.user_id and not actor.is_admin:
        raise Forbidden("only an administrator may apply on someone else's behalf; leave lead_id empty")
    lead = _researcher(session, lead_id, "lead_id")
    if data.end_date < clock.today():
        raise InvalidInput("end_date is in the past; choose a date from today on", field="end_date")
    project = Project(
        code=_new_code(session),
        title=data.title,
        lay_summary=data.lay_summary,
        purpose=data.purpose,
        legal_gateway=data.legal_gateway,
        organisation_id=lead.organisation_id,
        lead_id=lead.id,
        created_by_id=actor.user_id or lead.id,
        max_tier=data.max_tier,
        start_date=data.start_date,
        end_date=data.end_date,
        state=ProjectState.draft,
    )
    session.add(project)
    session.flush()
    audit(session, actor, "project.create", project, code=project.code, title=project.title, lead_id=lead.id)
    return project


def update_project(session: Session, actor: Actor, project_id: str, data: ProjectUpdate) -> Project:
    """Change a draft application."""
    project = get_project(session, actor, project_id)
    check_edit(actor, project)
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    start = changes.get("start_date", project.start_date)
    end = changes.get("end_date", project.end_date)
    if end < start:
        raise InvalidInput("end_date must not be before start_date", field="end_date")
    for name, value in changes.items():
        setattr(project, name, value)
    session.flush()
    audit(session, actor, "project.update", project, changes=changes)
    return project


def add_member(session: Session, actor: Actor, project_id: str, data: MemberAdd) -> Project:
    """Add a researcher to a draft project (lead or administrator)."""
    project = get_project(session, actor, project_id)
    check_manage_members(actor, project)
    user = _researcher(session, data.user_id, "user_id")
    if project.is_member(user.id):
        raise Conflict(f"{user.username} is already on project {project.code}", field="user_id")
    project.members.append(ProjectMember(user_id=user.id))
    session.flush()
    audit(session, actor, "project.member.add", project, user_id=user.id)
    return project


def remove_member(session: Session, actor: Actor, project_id: str, user_id: str) -> Project:
    """Remove a member (lead or administrator). The lead cannot be removed.

    A draft's members change freely. From an approved or active project a member can be removed too
    (never added: that needs a new approval); their access ends now - workspaces stopped, tokens that
    the membership justified revoked - and nobody else's is touched.
    """
    project = get_project(session, actor, project_id)
    leaving_live = project.state in USABLE_STATES
    if leaving_live:
        if not (actor.is_admin or actor.user_id in (project.lead_id, project.created_by_id)):
            raise Forbidden(
                f"only the lead of project {project.code} or an administrator may change its members"
            )
    else:
        check_manage_members(actor, project)
    if user_id == project.lead_id:
        raise Conflict("the lead cannot be removed from their own project")
    member = next((m for m in project.members if m.user_id == user_id), None)
    if member is None:
        raise NotFound(f"user {user_id!r} is not a member of project {project.code}")
    project.members.remove(member)
    session.flush()
    audit(session, actor, "project.member.remove", project, user_id=user_id)
    if leaving_live:
        access_changed(session, actor, [project.id])
    return project


def request_dataset(session: Session, actor: Actor, project_id: str, data: DatasetRequest) -> Project:
    """Ask for a dataset and research columns (replaces an earlier request for the same dataset).

    Direct identifiers never reach the research zone, so only ``Dataset.research_columns`` may be asked for.
    """
    project = get_project(session, actor, project_id)
    check_edit(actor, project)
    dataset = session.get(Dataset, data.dataset_id)
    if dataset is None:
        raise InvalidInput(f"no dataset with id {data.dataset_id!r}; see the catalogue", field="dataset_id")
    allowed = set(dataset.research_columns)
    for column in data.columns:
        if column not in allowed:
            raise InvalidInput(
                f"dataset {dataset.name!r} has no research column {column!r}; "
                f"choose from: {', '.join(dataset.research_columns)}",
                field="columns",
            )
    columns = list(dict.fromkeys(data.columns))
    existing = next((d for d in project.datasets if d.dataset_id == dataset.id), None)
    if existing is None:
        project.datasets.append(
            ProjectDataset(dataset_id=dataset.id, columns=columns, justification=data.justification)
        )
    else:
        existing.columns = columns
        existing.justification = data.justification
    session.flush()
    audit(session, actor, "project.dataset.request", project, dataset_id=dataset.id, columns=columns)
    return project


def remove_dataset(session: Session, actor: Actor, project_id: str, dataset_id: str) -> Project:
    """Withdraw a dataset request from a draft."""
    project = get_project(session, actor, project_id)
    check_edit(actor, project)
    link = next((d for d in project.datasets if d.dataset_id == dataset_id), None)
    if link is None:
        raise NotFound(f"project {project.code} has not requested dataset {dataset_id!r}")
    project.datasets.remove(link)
    session.flush()
    audit(session, actor, "project.dataset.remove", project, dataset_id=dataset_id)
    return project


# The state machine ---------------------------------------------------------------------------------


def allowed_actions(state: ProjectState) -> list[str]:
    return [action.value for (from_state, action) in VALID_TRANSITIONS if from_state == state]


def _check_may_act(actor: Actor, project: Project, owner: str, action: ProjectAction) -> None:
    if owner == "lead":
        if not (actor.is_admin or is_applicant(actor, project)):
            raise Forbidden(f"only the applicants of project {project.code} may {action.value} it")
    elif owner == Role.approver.value:
        if not actor.has_role(Role.approver):
            raise Forbidden(f"only an approver may {action.value} a project")
        if is_applicant(actor, project):
            # Separation of duties: the policy engine will check this too; it is enforced here regardless.
            raise Forbidden(
                f"you applied for or belong to project {project.code}, so another approver must decide on it"
            )
    elif owner == Role.admin.value:
        if not actor.is_admin:
            raise Forbidden(f"only an administrator may {action.value} a project")
    elif owner == "system":
        if not actor.is_system:
            raise Forbidden(f"projects {action.value} automatically at their end date; close it instead")
    else:  # pragma: no cover - VALID_TRANSITIONS names only the owners above
        raise Forbidden(f"nobody may {action.value} a project")


def _check_ready(session: Session, project: Project, action: ProjectAction) -> None:
    if action is ProjectAction.submit:
        if not project.datasets:
            raise InvalidInput("request at least one dataset before submitting", field="datasets")
        if project.end_date < clock.today():
            raise InvalidInput("the project's end_date has passed; revise the dates first", field="end_date")
    if action in (ProjectAction.approve, ProjectAction.activate) and project.end_date < clock.today():
        raise Conflict(f"project {project.code} ended on {project.end_date}; it cannot be {action.value}d")


def transition(
    session: Session, actor: Actor, project_id: str, action: ProjectAction | str, comment: str = ""
) -> Project:
    """Apply ``action`` to the project if ``VALID_TRANSITIONS`` allows it and ``actor`` may take it.

    Raises NotFound (project invisible to the actor), InvalidInput (unknown action), InvalidTransition (409:
    not allowed from the current state; the message lists what is), Forbidden (wrong role, or an approver
    who applied for or belongs to the project).
    """
    project = get_project(session, actor, project_id)
    try:
        action = ProjectAction(action)
    except ValueError:
        raise InvalidInput(
            f"unknown action {action!r}; use one of {', '.join(a.value for a in ProjectAction)}",
            field="action",
        ) from None
    key = (project.state, action)
    if key not in VALID_TRANSITIONS:
        allowed = ", ".join(allowed_actions(project.state)) or "none (the project is finished)"
        raise InvalidTransition(
            f"project {project.code} is {project.state.value}: '{action.value}' is not allowed; "
            f"allowed: {allowed}",
            field="action",
        )
    to_state, owner = VALID_TRANSITIONS[key]
    _check_may_act(actor, project, owner, action)
    _check_ready(session, project, action)
    from_state = project.state
    project.state = to_state
    project.decisions.append(
        ProjectDecision(
            actor_id=actor.user_id,
            action=action.value,
            from_state=from_state.value,
            to_state=to_state.value,
            comment=comment,
            at=clock.now(),
        )
    )
    session.flush()
    decision = {"approve": "approve", "reject": "reject", "return": "return"}.get(action.value)
    audit(
        session,
        actor,
        f"project.{action.value}",
        project,
        decision=decision,
        reasons=[comment] if comment else [],
        from_state=from_state.value,
        to_state=to_state.value,
    )
    if to_state in USABLE_STATES or from_state in USABLE_STATES:
        # Approval builds the views; closing or expiry removes them and stops the workspaces.
        access_changed(session, actor, [project.id])
    return project


def expire_due(session: Session, actor: Actor | None = None) -> list[Project]:
    """Expire every approved or active project whose end_date has passed; returns the projects expired.

    Run by the system (``tre up`` and a periodic check); decisions also compare dates themselves, so a late
    run never grants access past the end date.
    """
    actor = actor or Actor.system("expiry")
    if not actor.is_system:
        raise Forbidden("projects are expired by the system only")
    due = session.scalars(
        select(Project).where(
            Project.state.in_([ProjectState.approved, ProjectState.active]), Project.end_date < clock.today()
        )
    ).all()
    return [
        transition(session, actor, project.id, ProjectAction.expire, "end date passed") for project in due
    ]


def approvers_for(session: Session, project: Project) -> list[User]:
    """Approvers who may decide on ``project`` (not its applicants)."""
    approvers = session.scalars(
        select(User).where(
            User.is_active, User.id.in_(select(UserRole.user_id).where(UserRole.role == Role.approver))
        )
    ).all()
    return [u for u in approvers if not (project.is_member(u.id) or project.created_by_id == u.id)]
