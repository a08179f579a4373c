"""/api/v1/datasets: the catalogue; registration by data owners."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from tre_platform.api.datasets import catalogue, lifecycle, service
from tre_platform.api.datasets.schemas import (
    CatalogueEntry,
    DatasetCreate,
    DatasetOut,
    DatasetVersionOut,
    LifecycleStepOut,
    SweepOut,
    VersionArchive,
    VersionDestroy,
    VersionLifecycleOut,
)
from tre_platform.api.deps import CurrentActor, DbSession, Paging, PathId

router = APIRouter(prefix="/datasets", tags=["datasets"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetOut,
    summary="Register a dataset (data owner)",
)
def register_dataset(body: DatasetCreate, session: DbSession, actor: CurrentActor) -> DatasetOut:
    return DatasetOut.model_validate(service.register_dataset(session, actor, body))


@router.get("", response_model=list[DatasetOut], summary="The dataset catalogue")
def list_datasets(
    session: DbSession,
    actor: CurrentActor,
    page: Paging,
    owner_org_id: Annotated[str | None, Query(max_length=64)] = None,
) -> list[DatasetOut]:
    found = service.list_datasets(
        session, actor, owner_org_id=owner_org_id, limit=page.limit, offset=page.offset
    )
    return [DatasetOut.model_validate(d) for d in found]


# Declared before "/{dataset_id}" so that "search" and "sweep" are not taken for dataset ids.
@router.get(
    "/search",
    response_model=list[CatalogueEntry],
    summary="Search the data library (accredited users): metadata only, never data",
)
def search_datasets(
    session: DbSession,
    actor: CurrentActor,
    q: Annotated[str | None, Query(max_length=200, description="words in name, title or description")] = None,
    owner: Annotated[str | None, Query(max_length=200, description="owner organisation")] = None,
    topic: Annotated[str | None, Query(max_length=40)] = None,
    column: Annotated[str | None, Query(max_length=200, description="column name or description")] = None,
    tier: Annotated[int | None, Query(ge=0, le=4)] = None,
) -> list[CatalogueEntry]:
    return catalogue.search_datasets(session, actor, q=q, owner=owner, topic=topic, column=column, tier=tier)


@router.post(
    "/sweep",
    response_model=SweepOut,
    summary="Archive or destroy every version past retention (admins; data owners for their own)",
)
def sweep(session: DbSession, actor: CurrentActor) -> SweepOut:
    return lifecycle.sweep(session, actor)


@router.get("/{dataset_id}", response_model=DatasetOut, summary="Get a dataset")
def get_dataset(dataset_id: PathId, session: DbSession, actor: CurrentActor) -> DatasetOut:
    return DatasetOut.model_validate(service.get_dataset(session, actor, dataset_id))


@router.get(
    "/{dataset_id}/versions",
    response_model=list[DatasetVersionOut],
    summary="Published versions (owner organisation's data owners)",
)
def list_versions(dataset_id: PathId, session: DbSession, actor: CurrentActor) -> list[DatasetVersionOut]:
    return [DatasetVersionOut.model_validate(v) for v in service.list_versions(session, actor, dataset_id)]


@router.get(
    "/{dataset_id}/lifecycle",
    response_model=list[VersionLifecycleOut],
    summary="Each version's state and retention date (owner organisation's data owners)",
)
def version_lifecycles(
    dataset_id: PathId, session: DbSession, actor: CurrentActor
) -> list[VersionLifecycleOut]:
    return lifecycle.version_lifecycles(session, actor, dataset_id)


@router.post(
    "/{dataset_id}/versions/{version}/archive",
    response_model=LifecycleStepOut,
    summary="Archive a version: out of the research zone and every view (owner organisation's data owners)",
)
def archive_version(
    dataset_id: PathId,
    version: Annotated[int, Path(ge=1)],
    body: VersionArchive,
    session: DbSession,
    actor: CurrentActor,
) -> LifecycleStepOut:
    return lifecycle.archive_version(session, actor, dataset_id, version, reason=body.reason)


@router.post(
    "/{dataset_id}/versions/{version}/destroy",
    response_model=LifecycleStepOut,
    summary="Destroy a version: files, views and index links (owner organisation's data owners)",
)
def destroy_version(
    dataset_id: PathId,
    version: Annotated[int, Path(ge=1)],
    body: VersionDestroy,
    session: DbSession,
    actor: CurrentActor,
) -> LifecycleStepOut:
    return lifecycle.destroy_version(session, actor, dataset_id, version, reason=body.reason)
