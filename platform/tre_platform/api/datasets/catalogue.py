"""The catalogue ("data library"): search datasets by text, owner, topic, column and tier.

Every accredited user (and administrators, data owners and approvers, who need it for their work) can
search it. Entries carry metadata only: owner, description, tier, the schema with column descriptions,
live and archived versions with their quality dimensions, and the active agreements that cover each
dataset. Never a file path, a linkage report or a row of data.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from tre_platform.actor import Actor
from tre_platform.api.agreements.models import DataSharingAgreement
from tre_platform.api.common import check_user
from tre_platform.api.datasets.lifecycle import VersionState, covering_agreements, lifecycle_of
from tre_platform.api.datasets.models import Dataset
from tre_platform.api.datasets.schemas import (
    CatalogueAgreement,
    CatalogueColumn,
    CatalogueEntry,
    CatalogueOwner,
    CatalogueVersion,
)
from tre_platform.api.users.models import Role
from tre_platform.clock import clock
from tre_platform.errors import Forbidden

#: Roles that use the catalogue as part of their job without a researcher accreditation.
STAFF_ROLES = (Role.admin, Role.data_owner, Role.approver)


def can_search(actor: Actor) -> bool:
    """The operator, admins, data owners, approvers and users with a valid accreditation."""
    if actor.is_system:
        return True
    user = actor.user
    if user is None or not user.is_active:
        return False
    if any(user.has_role(role) for role in STAFF_ROLES):
        return True
    return user.valid_accreditation(clock.today()) is not None


def check_can_search(actor: Actor) -> None:
    """Raise Forbidden (with what to do) unless the actor may search the catalogue."""
    check_user(actor)
    if can_search(actor):
        return
    user = actor.user
    assert user is not None  # check_user let only users and the operator through
    today = clock.today()
    past = sorted((a for a in user.accreditations if a.expires_on < today), key=lambda a: a.expires_on)
    detail = (
        f"your accreditation ({past[-1].scheme}) expired on {past[-1].expires_on.isoformat()}"
        if past
        else "you hold no valid researcher accreditation"
    )
    raise Forbidden(
        f"the data library is open to accredited researchers only: {detail}; "
        "ask an administrator to record your current accreditation"
    )


def _contains(needle: str, haystacks: Iterable[str]) -> bool:
    return any(needle in h.lower() for h in haystacks)


def _matches(
    dataset: Dataset,
    *,
    terms: list[str],
    owner: str | None,
    topic: str | None,
    column: str | None,
    tier: int | None,
) -> bool:
    if tier is not None and dataset.tier != tier:
        return False
    if owner is not None and not (
        owner == dataset.owner_org_id.lower() or _contains(owner, (dataset.owner.slug, dataset.owner.name))
    ):
        return False
    if topic is not None and topic not in {t.lower() for t in dataset.topics}:
        return False
    if column is not None and not any(
        _contains(column, (str(c.get("name", "")), str(c.get("description", "")))) for c in dataset.schema
    ):
        return False
    text = (dataset.name, dataset.title, dataset.description)
    return all(_contains(term, text) for term in terms)


def search_datasets(
    session: Session,
    actor: Actor,
    q: str | None = None,
    owner: str | None = None,
    topic: str | None = None,
    column: str | None = None,
    tier: int | None = None,
) -> list[CatalogueEntry]:
    """Search the catalogue; every filter given must match (case-insensitive).

    Args:
        session: database session.
        actor: who searches (see :func:`can_search`).
        q: words that must each occur in the name, title or description.
        owner: owner organisation's id, or part of its slug or name.
        topic: a topic the dataset is tagged with (exact).
        column: part of a column's name or description.
        tier: the sensitivity tier (0-4).

    Returns:
        Matching datasets by name, with metadata only.

    Raises:
        Forbidden: a researcher without a valid accreditation.

    Example:
        >>> [e.name for e in search_datasets(session, actor, "hospital", column="age")]  # doctest: +SKIP
        ['hes']
    """
    check_can_search(actor)
    terms = [t.lower() for t in (q or "").split() if t]
    # Filtering in Python: the catalogue holds hundreds of datasets, and matching inside the JSON schema
    # column would need different SQL on SQLite and PostgreSQL for no measurable gain.
    datasets = [
        d
        for d in session.scalars(select(Dataset).order_by(Dataset.name)).unique()
        if _matches(
            d,
            terms=terms,
            owner=owner.strip().lower() if owner else None,
            topic=topic.strip().lower() if topic else None,
            column=column.strip().lower() if column else None,
            tier=tier,
        )
    ]
    return [_entry(session, actor, d) for d in datasets]


def _entry(session: Session, actor: Actor, dataset: Dataset) -> CatalogueEntry:
    today = clock.today()
    versions = []
    for version in dataset.versions:
        state = lifecycle_of(session, version)
        if state.state is VersionState.destroyed:
            continue
        versions.append(
            CatalogueVersion(
                version=version.version,
                row_count=version.row_count,
                created_at=version.created_at,
                state=state.state.value,
                retention_until=state.retention_until,
                quality=version.quality,
            )
        )
    agreements = [
        _agreement(session, actor, a)
        for a in covering_agreements(session, dataset)
        if a.status(today) == "active"
    ]
    return CatalogueEntry(
        id=dataset.id,
        name=dataset.name,
        title=dataset.title,
        description=dataset.description,
        owner=CatalogueOwner(id=dataset.owner.id, slug=dataset.owner.slug, name=dataset.owner.name),
        tier=dataset.tier,
        topics=list(dataset.topics),
        columns=[
            CatalogueColumn(
                name=str(c["name"]),
                type=str(c.get("type", "")),
                description=str(c.get("description", "")),
                required=bool(c.get("required", True)),
                identifier=bool(c.get("identifier", False)),
                index_id_column=f"{c['index']}_id" if c.get("identifier") and c.get("index") else None,
            )
            for c in dataset.schema
        ],
        versions=versions,
        agreements=agreements,
    )


def _agreement(session: Session, actor: Actor, agreement: DataSharingAgreement) -> CatalogueAgreement:
    org_id = actor.user.organisation_id if actor.user is not None else None
    covers = org_id is not None and (
        org_id in agreement.recipient_ids or (agreement.any_accredited and _org_accredited(session, org_id))
    )
    return CatalogueAgreement(
        reference=agreement.reference,
        title=agreement.title,
        purposes=list(agreement.purposes),
        legal_gateways=list(agreement.legal_gateways),
        max_tier=agreement.max_tier,
        valid_from=agreement.valid_from,
        valid_to=agreement.valid_to,
        any_accredited=agreement.any_accredited,
        covers_your_organisation=covers,
    )


def _org_accredited(session: Session, org_id: str) -> bool:
    from tre_platform.api.orgs.models import Organisation

    org = session.get(Organisation, org_id)
    return org is not None and org.is_accredited(clock.today())
