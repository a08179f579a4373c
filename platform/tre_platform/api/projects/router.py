"""/api/v1/projects: applications, members, requested datasets and the approval state machine."""

from __future__ import annotations

from fastapi import APIRouter, status

from tre_platform.api.deps import CurrentActor, DbSession, Paging, PathId
from tre_platform.api.projects import service
from tre_platform.api.projects.models import ProjectState
from tre_platform.api.projects.schemas import (
    DatasetRequest,
    DecisionOut,
    MemberAdd,
    ProjectCreate,
    ProjectOut,
    ProjectUpdate,
    TransitionRequest,
)

router = APIRouter(prefix="/projects", tags=["projects"])


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=ProjectOut, summary="Start a project application"
)
def create_project(body: ProjectCreate, session: DbSession, actor: CurrentActor) -> ProjectOut:
    return ProjectOut.model_validate(service.create_project(session, actor, body))


@router.get("", response_model=list[ProjectOut], summary="List the projects you can see")
def list_projects(
    session: DbSession, actor: CurrentActor, page: Paging, state: ProjectState | None = None
) -> list[ProjectOut]:
    found = service.list_projects(session, actor, state=state, limit=page.limit, offset=page.offset)
    return [ProjectOut.model_validate(p) for p in found]


@router.get("/{project_id}", response_model=ProjectOut, summary="Get a project")
def get_project(project_id: PathId, session: DbSession, actor: CurrentActor) -> ProjectOut:
    return ProjectOut.model_validate(service.get_project(session, actor, project_id))


@router.patch("/{project_id}", response_model=ProjectOut, summary="Change a draft")
def update_project(
    project_id: PathId, body: ProjectUpdate, session: DbSession, actor: CurrentActor
) -> ProjectOut:
    return ProjectOut.model_validate(service.update_project(session, actor, project_id, body))


@router.post(
    "/{project_id}/members",
    status_code=status.HTTP_201_CREATED,
    response_model=ProjectOut,
    summary="Add a researcher to a draft",
)
def add_member(project_id: PathId, body: MemberAdd, session: DbSession, actor: CurrentActor) -> ProjectOut:
    return ProjectOut.model_validate(service.add_member(session, actor, project_id, body))


@router.delete(
    "/{project_id}/members/{user_id}",
    response_model=ProjectOut,
    summary="Remove a member (a draft, or an approved/active project: their access ends)",
)
def remove_member(project_id: PathId, user_id: PathId, session: DbSession, actor: CurrentActor) -> ProjectOut:
    return ProjectOut.model_validate(service.remove_member(session, actor, project_id, user_id))


@router.post(
    "/{project_id}/datasets",
    status_code=status.HTTP_201_CREATED,
    response_model=ProjectOut,
    summary="Request a dataset and its research columns",
)
def request_dataset(
    project_id: PathId, body: DatasetRequest, session: DbSession, actor: CurrentActor
) -> ProjectOut:
    return ProjectOut.model_validate(service.request_dataset(session, actor, project_id, body))


@router.delete(
    "/{project_id}/datasets/{dataset_id}", response_model=ProjectOut, summary="Withdraw a dataset request"
)
def remove_dataset(
    project_id: PathId, dataset_id: PathId, session: DbSession, actor: CurrentActor
) -> ProjectOut:
    return ProjectOut.model_validate(service.remove_dataset(session, actor, project_id, dataset_id))


@router.post(
    "/{project_id}/transitions",
    response_model=ProjectOut,
    summary="Submit, approve, reject, return, revise, activate or close a project",
)
def transition(
    project_id: PathId, body: TransitionRequest, session: DbSession, actor: CurrentActor
) -> ProjectOut:
    return ProjectOut.model_validate(
        service.transition(session, actor, project_id, body.action, body.comment)
    )


@router.get(
    "/{project_id}/decisions", response_model=list[DecisionOut], summary="The project's decision trail"
)
def decisions(project_id: PathId, session: DbSession, actor: CurrentActor) -> list[DecisionOut]:
    project = service.get_project(session, actor, project_id)
    return [DecisionOut.model_validate(d) for d in project.decisions]
