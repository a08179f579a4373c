"""/api/v1/datasets: the catalogue; registration by data owners."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from tre_platform.api.datasets import service
from tre_platform.api.datasets.schemas import DatasetCreate, DatasetOut, DatasetVersionOut
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
