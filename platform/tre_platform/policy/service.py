"""Explaining decisions: what the CLI (`tre policy explain`) and the API (`/decisions/explain`) share.

``explain`` makes real, audited decisions - the same call an enforcement point makes - so what it
shows is exactly what would happen.
"""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from tre_platform.api.datasets.models import Dataset
from tre_platform.api.projects.models import Project, ProjectMember
from tre_platform.api.users.models import Role, User
from tre_platform.db.base import Base
from tre_platform.errors import Forbidden, InvalidInput, NotFound
from tre_platform.policy.engine import Decision, PolicyEngine, get_engine
from tre_platform.policy.facts import ACTIONS

ModelT = TypeVar("ModelT", bound=Base)

#: Actions explain can show from a user, a project and optionally a dataset.
EXPLAINABLE = tuple(action for action, kind in ACTIONS.items() if kind in ("project", "dataset"))


def _find(session: Session, model: type[ModelT], ref: str, name_column: object, what: str) -> ModelT:
    found = (
        session.execute(
            select(model).where(or_(model.id == ref, name_column == ref))  # type: ignore[attr-defined, arg-type]
        )
        .unique()
        .scalar_one_or_none()
    )
    if found is None:
        raise NotFound(f"no {what} {ref!r}; give its name or id")
    return found


def find_user(session: Session, ref: str) -> User:
    """A user by username or id."""
    return _find(session, User, ref, User.username, "user")


def find_project(session: Session, ref: str) -> Project:
    """A project by code or id."""
    return _find(session, Project, ref, Project.code, "project")


def find_dataset(session: Session, ref: str) -> Dataset:
    """A dataset by name or id."""
    return _find(session, Dataset, ref, Dataset.name, "dataset")


def check_can_explain(caller: User, subject: User) -> None:
    """Admins may explain anyone's decisions; everyone else only their own."""
    if caller.id != subject.id and not caller.has_role(Role.admin):
        raise Forbidden("you may explain only your own access decisions; ask an administrator about others'")


def _unseen(ref: str) -> NotFound:
    # One message whether the project is missing or merely not the caller's to know about: the answer
    # must not tell a guessed project code that exists from one that does not.
    return NotFound(f"no project {ref!r} that you may see; give the code or id of a project you belong to")


def resolve_for(
    session: Session,
    caller: User,
    *,
    project: str,
    user: str | None = None,
    dataset: str | None = None,
) -> tuple[User, Project, Dataset | None]:
    """The subject, project and dataset of an explain request, as ``caller`` may see them.

    An admin sees everything. Anyone else explains only themselves, and only in a project they lead
    or belong to: any other project, existing or not, is "not found" alike - so explain never
    confirms a project code the caller guessed. (Datasets are in the catalogue every user can read;
    why a dataset is not approved for one's own project is exactly what explain is for.)
    """
    if caller.has_role(Role.admin):
        subject = find_user(session, user) if user else caller
        target_dataset = find_dataset(session, dataset) if dataset else None
        return subject, find_project(session, project), target_dataset
    if user and user not in (caller.id, caller.username):
        raise Forbidden("you may explain only your own access decisions; ask an administrator about others'")
    try:
        target_project = find_project(session, project)
    except NotFound:
        raise _unseen(project) from None
    member = session.execute(
        select(ProjectMember.id).where(
            ProjectMember.project_id == target_project.id, ProjectMember.user_id == caller.id
        )
    ).first()
    if target_project.lead_id != caller.id and member is None:
        raise _unseen(project)
    target_dataset = find_dataset(session, dataset) if dataset else None
    return caller, target_project, target_dataset


def explain(
    session: Session,
    user: User,
    project: Project,
    *,
    dataset: Dataset | None = None,
    action: str | None = None,
    engine: PolicyEngine | None = None,
) -> list[Decision]:
    """The decisions that say what ``user`` may do in ``project``, and why.

    With ``action``, that one decision. Without, whether the user may start a workspace, and read each
    dataset (the one given, or every dataset the project's approval lists).
    """
    engine = engine or get_engine()
    if action is not None:
        if action not in EXPLAINABLE:
            raise InvalidInput(
                f"explain shows {', '.join(EXPLAINABLE)}; {action!r} needs objects explain does not take",
                field="action",
            )
        needs_dataset = ACTIONS[action] == "dataset"
        if needs_dataset and dataset is None:
            raise InvalidInput(f"{action} is about a dataset: give --dataset", field="dataset")
        return [
            engine.decide(session, user, action, project=project, dataset=dataset if needs_dataset else None)
        ]
    decisions = [engine.decide(session, user, "spawn_workspace", project=project)]
    targets = [dataset] if dataset is not None else _listed_datasets(session, project)
    decisions.extend(
        engine.decide(session, user, "read_dataset", project=project, dataset=target) for target in targets
    )
    return decisions


def _listed_datasets(session: Session, project: Project) -> list[Dataset]:
    ids = [link.dataset_id for link in project.datasets]
    if not ids:
        return []
    return list(
        session.execute(select(Dataset).where(Dataset.id.in_(ids)).order_by(Dataset.name)).unique().scalars()
    )
