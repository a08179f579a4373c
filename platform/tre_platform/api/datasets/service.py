"""Datasets: registered by data owners (of the owning organisation) or administrators.

The catalogue (names, titles, schemas, tiers) is visible to every signed-in user so researchers can choose
what to apply for; versions (storage, quality and match reports) only to the owner organisation and admins.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from tre_platform.actor import Actor
from tre_platform.api.common import audit, can_manage_org_data, check_user, get_or_404
from tre_platform.api.datasets.models import Dataset, DatasetSchemaVersion, DatasetVersion
from tre_platform.api.datasets.schemas import DatasetCreate, SchemaRevision, SchemaVersionOut
from tre_platform.api.orgs.models import Organisation
from tre_platform.errors import Conflict, Forbidden, InvalidInput, NotFound


def register_dataset(session: Session, actor: Actor, data: DatasetCreate) -> Dataset:
    """Register a dataset for an organisation the actor manages.

    Example:
        >>> register_dataset(session, Actor.of(owner), DatasetCreate(name="hes", title="Hospital episodes",
        ...     owner_org_id=org.id, tier=3, schema=[{"name": "nhs_number", "type": "string",
        ...     "identifier": True, "index": "demographic"}, {"name": "episode_start", "type": "date"}]))
    """
    check_user(actor)
    org = session.get(Organisation, data.owner_org_id)
    if org is None:
        raise InvalidInput(f"no organisation with id {data.owner_org_id!r}", field="owner_org_id")
    if not can_manage_org_data(actor, org.id):
        raise Forbidden(f"only a data owner of {org.slug!r} or an administrator may register its datasets")
    if not org.owns_data:
        raise InvalidInput(
            f"{org.slug!r} is a {org.kind.value}; only data-owning organisations hold datasets",
            field="owner_org_id",
        )
    if session.scalar(select(Dataset.id).where(Dataset.name == data.name)) is not None:
        raise Conflict(f"a dataset named {data.name!r} already exists; choose another name", field="name")
    dataset = Dataset(
        name=data.name,
        title=data.title,
        description=data.description,
        owner_org_id=org.id,
        tier=data.tier,
        schema=[c.model_dump(mode="json", exclude_none=True) for c in data.schema_],
        on_unmatched=data.on_unmatched,
        match_threshold=data.match_threshold,
        topics=list(dict.fromkeys(data.topics)),
        retention_days=data.retention_days,
        archive_days=data.archive_days,
    )
    session.add(dataset)
    session.flush()
    session.add(
        DatasetSchemaVersion(
            dataset_id=dataset.id,
            version=1,
            schema=dataset.schema,
            reason="registered",
            created_by_id=actor.user_id,
        )
    )
    session.flush()
    audit(
        session,
        actor,
        "dataset.register",
        dataset,
        name=dataset.name,
        tier=dataset.tier,
        identifiers=dataset.identifier_columns,
    )
    return dataset


def get_dataset(session: Session, actor: Actor, dataset_id: str) -> Dataset:
    """One catalogue entry (any signed-in user)."""
    check_user(actor)
    return get_or_404(session, Dataset, dataset_id, "dataset")


def list_datasets(
    session: Session,
    actor: Actor,
    *,
    owner_org_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Dataset]:
    """The catalogue by name, optionally one organisation's datasets (any signed-in user)."""
    check_user(actor)
    query = select(Dataset).order_by(Dataset.name)
    if owner_org_id is not None:
        query = query.where(Dataset.owner_org_id == owner_org_id)
    return list(session.scalars(query.limit(limit).offset(offset)))


def list_versions(session: Session, actor: Actor, dataset_id: str) -> list[DatasetVersion]:
    """A dataset's published versions, oldest first (owner organisation's data owners and admins).

    Other users get 'not found': versions carry storage locations and linkage reports.
    """
    dataset = get_dataset(session, actor, dataset_id)
    if not can_manage_org_data(actor, dataset.owner_org_id):
        raise NotFound(f"no versions of dataset {dataset.name!r} that you can see")
    return list(
        session.scalars(
            select(DatasetVersion)
            .where(DatasetVersion.dataset_id == dataset.id)
            .order_by(DatasetVersion.version)
        )
    )


def revise_schema(session: Session, actor: Actor, dataset_id: str, data: SchemaRevision) -> Dataset:
    """Make a revised schema the dataset's current one (a new schema version); audited.

    Deliveries from now on are validated and linked against it; published versions keep the schema they
    were ingested under (:func:`schema_versions`).

    Raises:
        Forbidden: The actor is not a data owner of the owning organisation (nor an administrator).
    """
    dataset = get_dataset(session, actor, dataset_id)
    if not can_manage_org_data(actor, dataset.owner_org_id):
        raise Forbidden(
            f"only a data owner of the organisation owning {dataset.name!r} may revise its schema"
        )
    columns = [c.model_dump(mode="json", exclude_none=True) for c in data.schema_]
    if columns == dataset.schema:
        raise InvalidInput(
            "the revised schema is the same as the current one; nothing to revise", field="schema"
        )
    version = dataset.schema_version + 1
    session.add(
        DatasetSchemaVersion(
            dataset_id=dataset.id,
            version=version,
            schema=columns,
            reason=data.reason,
            created_by_id=actor.user_id,
        )
    )
    dataset.schema = columns
    dataset.schema_version = version
    session.flush()
    before = {
        c["name"]
        for c in session.scalars(
            select(DatasetSchemaVersion.schema).where(
                DatasetSchemaVersion.dataset_id == dataset.id, DatasetSchemaVersion.version == version - 1
            )
        ).one()
    }
    after = {c["name"] for c in columns}
    audit(
        session,
        actor,
        "dataset.schema.revise",
        dataset,
        name=dataset.name,
        schema_version=version,
        reason=data.reason,
        added=sorted(after - before),
        removed=sorted(before - after),
        identifiers=dataset.identifier_columns,
    )
    return dataset


def schema_versions(session: Session, actor: Actor, dataset_id: str) -> list[SchemaVersionOut]:
    """Every schema the dataset has had, oldest first, with the published versions ingested under each.

    A published version was ingested under the newest schema version created before it. Visible to the
    owner organisation's data owners and administrators (as versions are).
    """
    published = list_versions(session, actor, dataset_id)
    dataset = get_dataset(session, actor, dataset_id)
    rows = list(
        session.scalars(
            select(DatasetSchemaVersion)
            .where(DatasetSchemaVersion.dataset_id == dataset.id)
            .order_by(DatasetSchemaVersion.version)
        )
    )
    out = []
    for i, row in enumerate(rows):
        until = rows[i + 1].created_at if i + 1 < len(rows) else None
        under = [
            v.version
            for v in published
            if v.created_at >= row.created_at and (until is None or v.created_at < until)
        ]
        out.append(
            SchemaVersionOut(
                version=row.version,
                schema=row.schema,
                reason=row.reason,
                created_at=row.created_at,
                dataset_versions=under,
            )
        )
    return out
