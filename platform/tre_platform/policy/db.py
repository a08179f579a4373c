"""Reading the facts of a request from the database.

Only what the request touches is loaded: the user, the project and its organisation, the dataset and
the agreements of the dataset's owner whose scope names it (the candidates), the release request.
Nothing here judges validity - expiry, revocation and coverage are left to the policies.

:func:`load_request` reads those facts with a few targeted column queries (about a dozen for a
``read_dataset``, whatever the size of the database) instead of loading ORM objects: the models load
their relationships eagerly (a project brings its lead's and every member's user, roles,
accreditations and training; a dataset all its versions), which made one decision cost tens of
milliseconds. The ``*_facts(model)`` functions stay for callers that already hold the objects.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

from sqlalchemy import bindparam, inspect, or_, select
from sqlalchemy.orm import Session

from tre_platform.actor import Actor
from tre_platform.api.agreements.models import AgreementDataset, AgreementRecipient, DataSharingAgreement
from tre_platform.api.datasets.models import Dataset
from tre_platform.api.orgs.models import Organisation
from tre_platform.api.projects.models import Project, ProjectDataset, ProjectMember
from tre_platform.api.users.models import Accreditation, Role, User, UserRole
from tre_platform.db.base import Base
from tre_platform.errors import InvalidInput, NotFound
from tre_platform.policy.facts import (
    ACTIONS,
    DATASET_ACTIONS,
    AccreditationFacts,
    AgreementFacts,
    DatasetFacts,
    OrgFacts,
    PackageFacts,
    PolicyRequest,
    ProjectFacts,
    ReleaseFacts,
    UserFacts,
    candidate_agreements,
    enforcer_user,
    system_user,
)

ModelT = TypeVar("ModelT", bound=Base)


class PackageLike(Protocol):
    """What the engine needs of a package request (the package domain's model satisfies this)."""

    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def requested_by_id(self) -> str: ...


class ReleaseLike(Protocol):
    """What the engine needs of a release request (the airlock's model will satisfy this)."""

    @property
    def id(self) -> str: ...

    @property
    def requester_id(self) -> str: ...

    @property
    def project_id(self) -> str: ...

    @property
    def checker_ids(self) -> Iterable[str]: ...


def org_facts(org: Organisation) -> OrgFacts:
    return OrgFacts(id=org.id, slug=org.slug, name=org.name, accredited_until=org.accredited_until)


def user_facts(session: Session, user: User) -> UserFacts:
    owner_org_ids = sorted(
        {r.organisation_id for r in user.roles if r.role == Role.data_owner and r.organisation_id}
    )
    owner_orgs = [org_facts(o) for o in _get_many(session, Organisation, owner_org_ids)]
    return UserFacts(
        id=user.id,
        username=user.username,
        organisation=org_facts(user.organisation),
        roles=frozenset(r.role.value for r in user.roles),
        active=user.is_active,
        data_owner_for=tuple(owner_orgs),
        accreditations=tuple(
            AccreditationFacts(
                id=a.id,
                reference=a.reference or a.scheme,
                scheme=a.scheme,
                holder_id=a.user_id,
                granted_on=a.granted_on,
                expires_on=a.expires_on,
                revoked=a.revoked_at is not None,
            )
            for a in sorted(user.accreditations, key=lambda a: (a.expires_on, a.id), reverse=True)
        ),
    )


def project_facts(project: Project) -> ProjectFacts:
    return ProjectFacts(
        id=project.id,
        code=project.code,
        state=project.state.value,
        purpose=project.purpose.value,
        legal_gateway=project.legal_gateway.value,
        organisation=org_facts(project.organisation),
        lead_id=project.lead_id,
        created_by_id=project.created_by_id,
        member_ids=frozenset([project.lead_id, *(m.user_id for m in project.members)]),
        datasets={link.dataset_id: tuple(link.columns) for link in project.datasets},
        max_tier=project.max_tier,
        start_date=project.start_date,
        end_date=project.end_date,
    )


def dataset_facts(dataset: Dataset) -> DatasetFacts:
    return DatasetFacts(
        id=dataset.id,
        name=dataset.name,
        owner=org_facts(dataset.owner),
        tier=dataset.tier,
        columns=tuple(dataset.research_columns),
    )


def agreement_facts(session: Session, agreement: DataSharingAgreement) -> AgreementFacts:
    dataset_ids = sorted({link.dataset_id for link in agreement.dataset_links})
    owners: dict[str, str] = {}
    if dataset_ids:
        rows = session.execute(
            select(Dataset.owner_org_id, Organisation.name)
            .join(Organisation, Organisation.id == Dataset.owner_org_id)
            .where(Dataset.id.in_(dataset_ids))
        ).all()
        owners = {org_id: name for org_id, name in rows}
    owner = (
        agreement.owner if agreement.owner is not None else session.get(Organisation, agreement.owner_org_id)
    )
    if owner is None:
        raise NotFound(
            f"organisation {agreement.owner_org_id} of agreement {agreement.reference} does not exist"
        )
    return AgreementFacts(
        id=agreement.id or f"new:{agreement.reference}",
        reference=agreement.reference,
        owner=org_facts(owner),
        all_datasets=bool(agreement.all_datasets),
        dataset_ids=frozenset(dataset_ids),
        dataset_owners=owners,
        any_accredited=bool(agreement.any_accredited),
        recipient_ids=frozenset(link.organisation_id for link in agreement.recipient_links),
        purposes=frozenset(agreement.purposes or []),
        legal_gateways=frozenset(agreement.legal_gateways or []),
        max_tier=agreement.max_tier if agreement.max_tier is not None else 3,
        valid_from=agreement.valid_from,
        valid_to=agreement.valid_to,
        revoked=agreement.revoked_at is not None,
    )


def scoped_agreements(session: Session, dataset: Dataset) -> list[DataSharingAgreement]:
    """The agreements of ``dataset``'s owner that list it or all the owner's datasets.

    Revoked and expired ones too: the policies judge those (and say so).
    """
    listed = select(AgreementDataset.agreement_id).where(AgreementDataset.dataset_id == dataset.id)
    return list(
        session.execute(
            select(DataSharingAgreement)
            .where(
                DataSharingAgreement.owner_org_id == dataset.owner_org_id,
                or_(DataSharingAgreement.all_datasets.is_(True), DataSharingAgreement.id.in_(listed)),
            )
            .order_by(DataSharingAgreement.reference)
        )
        .unique()
        .scalars()
    )


def _get_many(session: Session, model: type[ModelT], ids: Sequence[str]) -> list[ModelT]:
    if not ids:
        return []
    return list(session.execute(select(model).where(model.id.in_(ids))).unique().scalars())  # type: ignore[attr-defined]


# Targeted queries: columns only, one query per kind of row --------------------------------------

_ORG = (Organisation.id, Organisation.slug, Organisation.name, Organisation.accredited_until)


def _org(row: Any, prefix: str = "org_") -> OrgFacts:
    return OrgFacts(
        id=getattr(row, f"{prefix}id"),
        slug=getattr(row, f"{prefix}slug"),
        name=getattr(row, f"{prefix}name"),
        accredited_until=getattr(row, f"{prefix}accredited_until"),
    )


def _org_columns(prefix: str = "org_", table: Any = Organisation) -> tuple[Any, ...]:
    return tuple(getattr(table, c.key).label(f"{prefix}{c.key}") for c in _ORG)


def _persistent_id(value: object) -> str | None:
    """The id of a model already in the database (read it by id), or None for a model not saved yet."""
    state = inspect(value, raiseerr=False)
    if state is not None and not state.persistent:
        return None
    return str(value.id)  # type: ignore[attr-defined]


def _run(session: Session, statement: Any, params: dict[str, Any]) -> Any:
    """Execute a prepared statement on ``session``'s connection, after flushing pending changes.

    The statements below are built once, with bound parameters: building a ``select()`` and running
    it through the ORM layer cost more than the query itself. Flushing first keeps what the ORM's own
    ``session.execute`` promises - the query sees the caller's pending changes.
    """
    if session.autoflush:
        session.flush()
    return session.connection().execute(statement, params)


_LEAD = User.__table__.alias("lead")
_A = DataSharingAgreement
_USER = (
    select(User.id, User.username, User.is_active, *_org_columns())
    .join(Organisation, Organisation.id == User.organisation_id)
    .where(User.id == bindparam("id"))
)
_USER_ROLES = (
    select(UserRole.role, *_org_columns())
    .outerjoin(Organisation, Organisation.id == UserRole.organisation_id)
    .where(UserRole.user_id == bindparam("id"))
)
_ACCREDITATIONS = select(
    Accreditation.id,
    Accreditation.reference,
    Accreditation.scheme,
    Accreditation.user_id,
    Accreditation.granted_on,
    Accreditation.expires_on,
    Accreditation.revoked_at,
).where(Accreditation.user_id == bindparam("id"))
_PROJECT = (
    select(
        Project.id,
        Project.code,
        Project.state,
        Project.purpose,
        Project.legal_gateway,
        Project.lead_id,
        Project.created_by_id,
        Project.max_tier,
        Project.start_date,
        Project.end_date,
        _LEAD.c.username.label("lead_username"),
        *_org_columns(),
    )
    .join(Organisation, Organisation.id == Project.organisation_id)
    .join(_LEAD, _LEAD.c.id == Project.lead_id)
    .where(Project.id == bindparam("id"))
)
_MEMBERS = select(ProjectMember.user_id).where(ProjectMember.project_id == bindparam("id"))
_PROJECT_DATASETS = select(ProjectDataset.dataset_id, ProjectDataset.columns).where(
    ProjectDataset.project_id == bindparam("id")
)
_DATASET = (
    select(Dataset.id, Dataset.name, Dataset.tier, Dataset.schema, *_org_columns())
    .join(Organisation, Organisation.id == Dataset.owner_org_id)
    .where(Dataset.id == bindparam("id"))
)
_CANDIDATES = (
    select(
        _A.id,
        _A.reference,
        _A.all_datasets,
        _A.any_accredited,
        _A.purposes,
        _A.legal_gateways,
        _A.max_tier,
        _A.valid_from,
        _A.valid_to,
        _A.revoked_at,
        *_org_columns(),
    )
    .join(Organisation, Organisation.id == _A.owner_org_id)
    .where(
        _A.owner_org_id == bindparam("owner"),
        or_(
            _A.all_datasets.is_(True),
            _A.id.in_(
                select(AgreementDataset.agreement_id).where(
                    AgreementDataset.dataset_id == bindparam("dataset")
                )
            ),
        ),
    )
)
_AGREEMENT_DATASETS = (
    select(AgreementDataset.agreement_id, AgreementDataset.dataset_id, Organisation.id, Organisation.name)
    .join(Dataset, Dataset.id == AgreementDataset.dataset_id)
    .join(Organisation, Organisation.id == Dataset.owner_org_id)
    .where(AgreementDataset.agreement_id.in_(bindparam("ids", expanding=True)))
)
_AGREEMENT_RECIPIENTS = select(AgreementRecipient.agreement_id, AgreementRecipient.organisation_id).where(
    AgreementRecipient.agreement_id.in_(bindparam("ids", expanding=True))
)
_USERNAME = select(User.username).where(User.id == bindparam("id"))


def load_user(session: Session, user_id: str) -> UserFacts:
    """The facts of one user: three queries (the user, their roles, their accreditations)."""
    row = _run(session, _USER, {"id": user_id}).one_or_none()
    if row is None:
        raise NotFound(f"user {user_id!r} does not exist")
    roles = _run(session, _USER_ROLES, {"id": user_id}).all()
    owner_orgs = {r.org_id: _org(r) for r in roles if r.role == Role.data_owner and r.org_id is not None}
    accreditations = _run(session, _ACCREDITATIONS, {"id": user_id}).all()
    return UserFacts(
        id=row.id,
        username=row.username,
        organisation=_org(row),
        roles=frozenset(Role(r.role).value for r in roles),
        active=bool(row.is_active),
        data_owner_for=tuple(owner_orgs[k] for k in sorted(owner_orgs)),
        accreditations=tuple(
            AccreditationFacts(
                id=a.id,
                reference=a.reference or a.scheme,
                scheme=a.scheme,
                holder_id=a.user_id,
                granted_on=a.granted_on,
                expires_on=a.expires_on,
                revoked=a.revoked_at is not None,
            )
            for a in sorted(accreditations, key=lambda a: (a.expires_on, a.id), reverse=True)
        ),
    )


def load_project(session: Session, project_id: str) -> tuple[ProjectFacts, str]:
    """The facts of one project and its lead's username: three queries (project, members, datasets)."""
    row = _run(session, _PROJECT, {"id": project_id}).one_or_none()
    if row is None:
        raise NotFound(f"project {project_id!r} does not exist")
    members = _run(session, _MEMBERS, {"id": project_id}).scalars()
    datasets = _run(session, _PROJECT_DATASETS, {"id": project_id}).all()
    facts = ProjectFacts(
        id=row.id,
        code=row.code,
        state=row.state.value,
        purpose=row.purpose.value,
        legal_gateway=row.legal_gateway.value,
        organisation=_org(row),
        lead_id=row.lead_id,
        created_by_id=row.created_by_id,
        member_ids=frozenset([row.lead_id, *members]),
        datasets={d.dataset_id: tuple(d.columns) for d in datasets},
        max_tier=row.max_tier,
        start_date=row.start_date,
        end_date=row.end_date,
    )
    return facts, row.lead_username


#: The one definition of a dataset's research columns (the model's), applied to a bare ``schema`` row.
_research_columns: Callable[[Any], list[str]] = Dataset.research_columns.fget  # type: ignore[attr-defined]


def load_dataset(session: Session, dataset_id: str) -> DatasetFacts:
    """The facts of one dataset and its owner: one query (not the dataset's versions)."""
    row = _run(session, _DATASET, {"id": dataset_id}).one_or_none()
    if row is None:
        raise NotFound(f"dataset {dataset_id!r} does not exist")
    return DatasetFacts(
        id=row.id, name=row.name, owner=_org(row), tier=row.tier, columns=tuple(_research_columns(row))
    )


def load_candidates(session: Session, dataset: DatasetFacts) -> tuple[AgreementFacts, ...]:
    """The agreements of ``dataset``'s owner whose scope names it: three queries, however many there are.

    Revoked and expired ones too: the policies judge those (and say so).
    """
    rows = _run(session, _CANDIDATES, {"owner": dataset.owner.id, "dataset": dataset.id}).all()
    if not rows:
        return ()
    ids = [r.id for r in rows]
    scope: dict[str, set[str]] = {i: set() for i in ids}
    owners: dict[str, dict[str, str]] = {i: {} for i in ids}
    for agreement_id, dataset_id, org_id, org_name in _run(session, _AGREEMENT_DATASETS, {"ids": ids}):
        scope[agreement_id].add(dataset_id)
        owners[agreement_id][org_id] = org_name
    recipients: dict[str, set[str]] = {i: set() for i in ids}
    for agreement_id, organisation_id in _run(session, _AGREEMENT_RECIPIENTS, {"ids": ids}):
        recipients[agreement_id].add(organisation_id)
    loaded = (
        AgreementFacts(
            id=r.id,
            reference=r.reference,
            owner=_org(r),
            all_datasets=bool(r.all_datasets),
            dataset_ids=frozenset(scope[r.id]),
            dataset_owners=owners[r.id],
            any_accredited=bool(r.any_accredited),
            recipient_ids=frozenset(recipients[r.id]),
            purposes=frozenset(r.purposes or []),
            legal_gateways=frozenset(r.legal_gateways or []),
            max_tier=r.max_tier if r.max_tier is not None else 3,
            valid_from=r.valid_from,
            valid_to=r.valid_to,
            revoked=r.revoked_at is not None,
        )
        for r in rows
    )
    return candidate_agreements(dataset, loaded)


def _ref(value: Base | str | None) -> tuple[str | None, Base | None]:
    """(id to read, model not yet saved): a saved model or an id is read by id; a new model as it is."""
    if value is None or isinstance(value, str):
        return value, None
    model_id = _persistent_id(value)
    return (model_id, None) if model_id is not None else (None, value)


def load_request(
    session: Session,
    user: User | Actor | None,
    action: str,
    *,
    project: Project | str | None = None,
    dataset: Dataset | str | None = None,
    columns: Sequence[str] | None = None,
    release: ReleaseLike | None = None,
    agreement: DataSharingAgreement | None = None,
    package: PackageLike | None = None,
    today: dt.date,
) -> PolicyRequest:
    """The :class:`PolicyRequest` for ``user`` doing ``action`` on the given objects, from the database.

    Saved models (and ids) are read afresh by id with targeted queries (pending changes in ``session``
    are flushed first, as for any query); a model not saved yet is taken as it is.
    """
    if action not in ACTIONS:
        raise InvalidInput(f"unknown action {action!r}; use one of: {', '.join(ACTIONS)}", field="action")
    enforcing = isinstance(user, Actor) and user.is_enforcer
    if isinstance(user, Actor):
        user = user.user
    principal: UserFacts
    if enforcing:
        principal = enforcer_user()
    elif user is None:
        principal = system_user()
    else:
        user_id, new_user = _ref(user)
        principal = load_user(session, user_id) if user_id is not None else user_facts(session, user)
        assert new_user is None or new_user is user

    usernames: dict[str, str] = {principal.id: principal.username}
    project_fact: ProjectFacts | None = None
    project_id, new_project = _ref(project)
    if project_id is not None:
        project_fact, usernames_lead = load_project(session, project_id)
        usernames[project_fact.lead_id] = usernames_lead
    elif isinstance(new_project, Project):
        project_fact = project_facts(new_project)
        usernames[new_project.lead_id] = new_project.lead.username

    release_facts: ReleaseFacts | None = None
    if release is not None:
        release_project, lead_name = load_project(session, release.project_id)
        if project_fact is None:
            project_fact = release_project
            usernames[release_project.lead_id] = lead_name
        requester = _run(session, _USERNAME, {"id": release.requester_id}).scalar()
        release_facts = ReleaseFacts(
            id=release.id,
            requester_id=release.requester_id,
            requester_name=requester or release.requester_id,
            project=release_project,
            checker_ids=frozenset(release.checker_ids),
        )

    dataset_fact: DatasetFacts | None = None
    dataset_id, new_dataset = _ref(dataset)
    if dataset_id is not None:
        dataset_fact = load_dataset(session, dataset_id)
    elif isinstance(new_dataset, Dataset):
        dataset_fact = dataset_facts(new_dataset)
    candidates: tuple[AgreementFacts, ...] = ()
    if dataset_fact is not None and action in DATASET_ACTIONS:
        candidates = load_candidates(session, dataset_fact)

    package_facts: PackageFacts | None = None
    if package is not None:
        requester_name = (
            usernames.get(package.requested_by_id)
            or _run(session, _USERNAME, {"id": package.requested_by_id}).scalar()
        )
        package_facts = PackageFacts(
            id=package.id or "new",
            name=package.name,
            version=package.version,
            requester_id=package.requested_by_id,
            requester_name=requester_name or package.requested_by_id,
        )

    return PolicyRequest(
        action=action,
        user=principal,
        today=today,
        package=package_facts,
        project=project_fact,
        dataset=dataset_fact,
        columns=tuple(columns) if columns is not None else None,
        release=release_facts,
        agreement=agreement_facts(session, agreement) if agreement is not None else None,
        candidate_agreements=candidates,
        usernames=usernames,
    )
