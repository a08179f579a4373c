"""/api/v1/datasets: the catalogue; registration by data owners; deliveries (ingest over the API)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, status
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from tre_platform.api.datasets import catalogue, lifecycle, service
from tre_platform.api.datasets.schemas import (
    CatalogueEntry,
    DatasetCreate,
    DatasetOut,
    DatasetVersionOut,
    LifecycleStepOut,
    SchemaRevision,
    SchemaVersionOut,
    SweepOut,
    VersionArchive,
    VersionDestroy,
    VersionLifecycleOut,
)
from tre_platform.api.deps import CurrentActor, DbSession, Paging, PathId, VersionNumber
from tre_platform.pipelines import (
    ENGINES,
    DeliveryError,
    DeliveryInvalid,
    DeliveryTooLarge,
    DeliveryUpload,
    MultipartUpload,
    StoredDelivery,
    check_can_ingest,
    ingest_upload,
)
from tre_platform.pipelines.ingest import audit_refused_upload

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


@router.post(
    "/{dataset_id}/schema",
    response_model=DatasetOut,
    summary="Revise the schema: a new schema version (owner organisation's data owners)",
)
def revise_schema(
    dataset_id: PathId, body: SchemaRevision, session: DbSession, actor: CurrentActor
) -> DatasetOut:
    return DatasetOut.model_validate(service.revise_schema(session, actor, dataset_id, body))


@router.get(
    "/{dataset_id}/schemas",
    response_model=list[SchemaVersionOut],
    summary="Every schema version, with the published versions ingested under each",
)
def schema_versions(dataset_id: PathId, session: DbSession, actor: CurrentActor) -> list[SchemaVersionOut]:
    return service.schema_versions(session, actor, dataset_id)


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
    version: VersionNumber,
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
    version: VersionNumber,
    body: VersionDestroy,
    session: DbSession,
    actor: CurrentActor,
) -> LifecycleStepOut:
    return lifecycle.destroy_version(session, actor, dataset_id, version, reason=body.reason)


_DELIVERY_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": (
            "The delivery (CSV with a header row in UTF-8, or Parquet) as the raw body, or as the file field "
            "`file` of a multipart/form-data body. Limited to TRE_MAX_UPLOAD_BYTES; streamed to the landing "
            "zone, never held in memory."
        ),
        "content": {
            "text/csv": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
        },
    }
}


#: Bytes of an upload gathered before a worker thread writes them to the landing zone.
_WRITE_BYTES = 1_048_576


async def _receive_delivery(request: Request, filename: str | None) -> StoredDelivery:
    """Stream the request body into the landing zone (raw or multipart), enforcing the upload limit."""
    settings = request.app.state.settings
    limit = settings.max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise DeliveryTooLarge(limit, int(declared))  # refused before a byte is read
    content_type = request.headers.get("content-type", "")
    upload: DeliveryUpload | MultipartUpload
    if content_type.lower().startswith("multipart/"):
        upload = MultipartUpload(content_type, max_bytes=limit, settings=settings)
    else:
        upload = DeliveryUpload(filename=filename or "delivery", max_bytes=limit, settings=settings)
    # Chunks are gathered up to _WRITE_BYTES and written by a worker thread, never on the event loop
    # (a slow or full disk would stop every other request); memory stays at one batch.
    with upload:
        batch = bytearray()
        async for chunk in request.stream():
            batch += chunk
            if len(batch) >= _WRITE_BYTES:
                await run_in_threadpool(upload.write, bytes(batch))
                batch.clear()
        if batch:
            await run_in_threadpool(upload.write, bytes(batch))
        return await run_in_threadpool(upload.finish)


@router.post(
    "/{dataset_id}/deliveries",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetVersionOut,
    summary="Ingest a delivery (owner organisation's data owners): validate, link, publish the next version",
    openapi_extra=_DELIVERY_BODY,
    responses={
        403: {"description": "the policy engine denied ingest_dataset (reasons included)"},
        409: {"description": "byte-identical to a published version (see allow_duplicate)"},
        413: {"description": "larger than TRE_MAX_UPLOAD_BYTES (the message names the limit)"},
        422: {"description": "the delivery breaks the schema: `report` lists every problem, row and column"},
    },
)
async def ingest_delivery(
    dataset_id: Annotated[str, Path(min_length=1, max_length=200, description="dataset name or id")],
    request: Request,
    session: DbSession,
    actor: CurrentActor,
    filename: Annotated[
        str | None, Query(max_length=300, description="name recorded for a raw-body delivery")
    ] = None,
    engine: Annotated[str, Query(pattern="^(" + "|".join(ENGINES) + ")$")] = "auto",
    allow_duplicate: Annotated[bool, Query(description="publish a byte-identical delivery again")] = False,
) -> Any:
    # Policy and dataset first, so a refused caller never gets to send gigabytes.
    await run_in_threadpool(check_can_ingest, session, actor, dataset_id)
    try:
        stored = await _receive_delivery(request, filename)
    except DeliveryError as exc:
        await run_in_threadpool(audit_refused_upload, session, actor, dataset_id, exc)
        raise

    def run() -> DatasetVersionOut:
        version = ingest_upload(
            session, actor, dataset_id, stored, engine=engine, allow_duplicate=allow_duplicate
        )
        return DatasetVersionOut.model_validate(version)

    try:
        return await run_in_threadpool(run)
    except DeliveryInvalid as exc:
        return JSONResponse(
            {"error": exc.code, "message": exc.message, "field": exc.field, "report": exc.report.to_dict()},
            status_code=exc.status_code,
        )
