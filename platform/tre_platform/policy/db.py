"""Reading the facts of a request from the database.

Only what the request touches is loaded: the user, the project and its organisation, the dataset and
the agreements of the dataset's owner whose scope names it (the candidates), the release request.
Nothing here judges validity - expiry, revocation and coverage are left to the policies.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from tre_platform.actor import Actor
from tre_platform.api.agreements.models import AgreementDataset, DataSharingAgreement
from tre_platform.api.datasets.models import Dataset
from tre_platform.api.orgs.models import Organisation
from tre_platform.api.projects.models import Project
from tre_platform.api.users.models import Role, User
from tre_platform.errors import InvalidInput, NotFound
from tre_platform.policy.facts import (
    ACTIONS,
    DATASET_ACTIONS,
    AccreditationFacts,
    AgreementFacts,
    DatasetFacts,
    OrgFacts,
    PolicyRequest,
    ProjectFacts,
    ReleaseFacts,
    UserFacts,
    candidate_agreements,
    system_user,
)

if TYPE_CHECKING:
    from tre_platform.db.base import Base

ModelT = TypeVar("ModelT", bound="Base")


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


def _resolve(session: Session, model: type[ModelT], value: ModelT | str | None, what: str) -> ModelT | None:
    if value is None or isinstance(value, model):
        return value
    found = session.get(model, value)
    if found is None:
        raise NotFound(f"{what} {value!r} does not exist")
    return found


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
    today: dt.date,
) -> PolicyRequest:
    """The :class:`PolicyRequest` for ``user`` doing ``action`` on the given objects, from the database."""
    if action not in ACTIONS:
        raise InvalidInput(f"unknown action {action!r}; use one of: {', '.join(ACTIONS)}", field="action")
    if isinstance(user, Actor):
        user = user.user
    principal = system_user() if user is None else user_facts(session, user)

    release_facts: ReleaseFacts | None = None
    project_model = _resolve(session, Project, project, "project")
    if release is not None:
        release_project = _resolve(session, Project, release.project_id, "project")
        assert release_project is not None
        if project_model is None:
            project_model = release_project
        requester = session.get(User, release.requester_id)
        release_facts = ReleaseFacts(
            id=release.id,
            requester_id=release.requester_id,
            requester_name=requester.username if requester else release.requester_id,
            project=project_facts(release_project),
            checker_ids=frozenset(release.checker_ids),
        )
    dataset_model = _resolve(session, Dataset, dataset, "dataset")
    dataset_fact = dataset_facts(dataset_model) if dataset_model is not None else None
    candidates: tuple[AgreementFacts, ...] = ()
    if dataset_model is not None and action in DATASET_ACTIONS:
        loaded = (agreement_facts(session, a) for a in scoped_agreements(session, dataset_model))
        candidates = candidate_agreements(dataset_fact, loaded) if dataset_fact is not None else ()

    project_fact = project_facts(project_model) if project_model is not None else None
    usernames: dict[str, str] = {principal.id: principal.username}
    if project_model is not None:
        usernames[project_model.lead_id] = project_model.lead.username
    return PolicyRequest(
        action=action,
        user=principal,
        today=today,
        project=project_fact,
        dataset=dataset_fact,
        columns=tuple(columns) if columns is not None else None,
        release=release_facts,
        agreement=agreement_facts(session, agreement) if agreement is not None else None,
        candidate_agreements=candidates,
        usernames=usernames,
    )
