"""/api/v1/releases (the airlock) and /api/v1/projects/{id}/privacy-budget (the DP ledger).

``router`` carries both, so the application includes it with one line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Request, Response, UploadFile, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from fastapi.routing import APIRoute

from tre_platform.api.body_limit import capped_receive
from tre_platform.api.deps import CurrentActor, DbSession, Paging, PathId, QueryId
from tre_platform.api.releases import budget, dp, service
from tre_platform.api.releases import bundle as bundles
from tre_platform.api.releases.files import FilePolicy
from tre_platform.api.releases.models import FileKind, ReleaseRequest, ReleaseState
from tre_platform.api.releases.schemas import (
    ChargeCreate,
    ChargeOut,
    DPAttach,
    DPQueryCreate,
    DPQueryOut,
    ExceptionCreate,
    FileOut,
    LedgerEntryOut,
    ReleaseCreate,
    ReleaseOut,
    ReviewCreate,
    RulesOut,
    ScopeBudgetOut,
    SigningKeyOut,
)
from tre_platform.errors import InvalidInput
from tre_platform.settings import get_settings

#: The most a JSON form field (spec, client_check) may hold.
_JSON_FORM_BYTES = 1_000_000
#: Room for the form's other fields and the multipart framing around the two files.
_FORM_OVERHEAD = 1_048_576


def upload_limit(policy: FilePolicy) -> int:
    """The most bytes a staging request may carry: the largest output, its data, and the form around them."""
    return max(k.max_bytes for k in policy.kinds.values()) + policy.max_data_bytes + _FORM_OVERHEAD


class CappedUploadRoute(APIRoute):
    """A route that refuses a request body larger than the airlock's upload limit *while it streams in*.

    Starlette's multipart parser would otherwise spool a whole upload (say 1 GB) to a temporary file before
    the handler could look at its size. Here a declared ``Content-Length`` over the limit is refused at
    once, and a chunked body is counted as it is received and refused with 413 as soon as it passes the
    limit, so the server never holds or writes more than the limit. (FastAPI's own ``max_body_size`` is
    fixed when the route is declared and answers in plain text; this limit comes from the deployment's
    file policy at request time and answers with the API's JSON error. The application-wide
    ``TRE_MAX_BODY_BYTES`` limit exempts this route, see ``tre_platform.api.app.UPLOAD_PATHS``.)
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def capped_handler(request: Request) -> Response:
            limit = upload_limit(FilePolicy.load(get_settings()))
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise HTTPException(413, _too_large(limit))
            counting = capped_receive(request.receive, limit, lambda: HTTPException(413, _too_large(limit)))
            return await handler(Request(request.scope, counting))

        return capped_handler


def _too_large(limit: int) -> str:
    return (
        f"the upload is larger than the airlock's limit of {limit} bytes; stage only the aggregate output "
        "and the columns and rows it was computed from"
    )


releases = APIRouter(prefix="/releases", tags=["releases"])
uploads = APIRouter(prefix="/releases", tags=["releases"], route_class=CappedUploadRoute)
budgets = APIRouter(prefix="/projects", tags=["privacy budget"])


def _out(request: ReleaseRequest) -> ReleaseOut:
    out = ReleaseOut.model_validate(request)
    out.allowed_actions = service.allowed_actions(request.state)
    return out


def _json_field(raw: str | None, field: str) -> dict[str, Any] | None:
    if raw is None or raw == "":
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise InvalidInput(f"{field} must be a JSON object", field=field) from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{field} must be a JSON object", field=field)
    return value


async def _read_capped(upload: UploadFile, limit: int, field: str) -> bytes:
    content = await upload.read(limit + 1)
    if len(content) > limit:
        raise InvalidInput(f"{field} is larger than the {limit}-byte limit", field=field)
    return content


@releases.get(
    "/signing-key", response_model=SigningKeyOut, summary="The public key release bundles are signed with"
)
def signing_key() -> SigningKeyOut:
    key = bundles.signing_key(get_settings())
    return SigningKeyOut(public_key_pem=bundles.public_key_pem(key), fingerprint=bundles.fingerprint(key))


@releases.post(
    "", status_code=status.HTTP_201_CREATED, response_model=ReleaseOut, summary="Start a release request"
)
def create_request(body: ReleaseCreate, session: DbSession, actor: CurrentActor) -> ReleaseOut:
    return _out(service.create_request(session, actor, body))


@releases.get("", response_model=list[ReleaseOut], summary="List the release requests you can see")
def list_requests(
    session: DbSession,
    actor: CurrentActor,
    page: Paging,
    state: ReleaseState | None = None,
    project_id: QueryId | None = None,
) -> list[ReleaseOut]:
    found = service.list_requests(
        session, actor, state=state, project_id=project_id, limit=page.limit, offset=page.offset
    )
    return [_out(r) for r in found]


@releases.get("/{request_id}", response_model=ReleaseOut, summary="Get a release request with its findings")
def get_request(request_id: PathId, session: DbSession, actor: CurrentActor) -> ReleaseOut:
    return _out(service.get_request(session, actor, request_id))


@uploads.post(
    "/{request_id}/files",
    status_code=status.HTTP_201_CREATED,
    response_model=FileOut,
    summary="Stage an output (multipart: content, and for tables/regressions spec + data)",
)
async def add_file(
    request_id: PathId,
    session: DbSession,
    actor: CurrentActor,
    name: Annotated[str, Form(max_length=100)],
    kind: Annotated[FileKind, Form()],
    content: Annotated[UploadFile, File(description="the output itself")],
    spec: Annotated[
        str | None, Form(max_length=_JSON_FORM_BYTES, description="the declared computation, JSON")
    ] = None,
    client_check: Annotated[
        str | None, Form(max_length=_JSON_FORM_BYTES, description="the workspace's own pre-check, JSON")
    ] = None,
    description: Annotated[str, Form(max_length=2000)] = "",
    data: Annotated[UploadFile | None, File(description="the data the output was computed from")] = None,
) -> FileOut:
    policy = FilePolicy.load(get_settings())
    body = await _read_capped(content, policy.kind(kind).max_bytes, "content")
    data_bytes = await _read_capped(data, policy.max_data_bytes, "data") if data is not None else None
    # The checks and the database write run in a worker thread: on the event loop a wait for the
    # database's write lock would stop every other request, /healthz included.
    stored = await run_in_threadpool(
        service.add_file,
        session,
        actor,
        request_id,
        name=name,
        kind=kind,
        content=body,
        spec=_json_field(spec, "spec"),
        data=data_bytes,
        data_name=data.filename if data is not None else None,
        client_check=_json_field(client_check, "client_check"),
        description=description,
    )
    return FileOut.model_validate(stored)


@releases.delete("/{request_id}/files/{file_id}", response_model=ReleaseOut, summary="Unstage an output")
def remove_file(request_id: PathId, file_id: PathId, session: DbSession, actor: CurrentActor) -> ReleaseOut:
    return _out(service.remove_file(session, actor, request_id, file_id))


@releases.get("/{request_id}/files/{file_id}/content", summary="Read a staged output (members and checkers)")
def file_content(
    request_id: PathId, file_id: PathId, session: DbSession, actor: CurrentActor, data: bool = False
) -> Response:
    found, content = service.file_content(session, actor, request_id, file_id, data=data)
    media = "application/octet-stream" if data else found.media_type
    name = found.data_name if data and found.data_name else found.name
    return Response(
        content, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


@releases.post(
    "/{request_id}/submit", response_model=ReleaseOut, summary="Submit: the server re-runs every check"
)
def submit(request_id: PathId, session: DbSession, actor: CurrentActor) -> ReleaseOut:
    return _out(service.submit(session, actor, request_id))


@releases.post(
    "/{request_id}/revise", response_model=ReleaseOut, summary="Reopen a returned request as a draft"
)
def revise(request_id: PathId, session: DbSession, actor: CurrentActor) -> ReleaseOut:
    return _out(service.revise(session, actor, request_id))


@releases.post(
    "/{request_id}/reviews", response_model=ReleaseOut, summary="Approve, reject or return (checkers)"
)
def review(request_id: PathId, body: ReviewCreate, session: DbSession, actor: CurrentActor) -> ReleaseOut:
    return _out(service.review(session, actor, request_id, body.decision, body.comment))


@releases.post(
    "/{request_id}/release", response_model=ReleaseOut, summary="Release an approved request (signed bundle)"
)
def release(request_id: PathId, session: DbSession, actor: CurrentActor) -> ReleaseOut:
    return _out(service.release(session, actor, request_id))


@releases.get("/{request_id}/bundle", summary="Download the signed bundle (project members, after release)")
def download(request_id: PathId, session: DbSession, actor: CurrentActor) -> FileResponse:
    path = service.bundle_file(session, actor, request_id)
    return FileResponse(path, media_type="application/zip", filename=path.name)


@budgets.get(
    "/{project_id}/privacy-budget",
    response_model=list[ScopeBudgetOut],
    summary="Differential-privacy budget of a project: limit, spent and remaining per scope",
)
def privacy_budget(project_id: PathId, session: DbSession, actor: CurrentActor) -> list[ScopeBudgetOut]:
    return [_scope_out(s) for s in budget.budget_status(session, actor, project_id)]


def _scope_out(s: budget.ScopeBudget) -> ScopeBudgetOut:
    return ScopeBudgetOut(
        scope_kind=s.scope_kind,
        scope_id=s.scope_id,
        dataset_id=s.dataset_id,
        dataset_name=s.dataset_name,
        epsilon_limit=s.epsilon_limit,
        delta_limit=s.delta_limit,
        epsilon_spent=s.epsilon_spent,
        delta_spent=s.delta_spent,
        epsilon_remaining=s.epsilon_remaining,
        delta_remaining=s.delta_remaining,
    )


@budgets.post(
    "/{project_id}/privacy-budget/charges",
    status_code=status.HTTP_201_CREATED,
    response_model=ChargeOut,
    summary="Charge a DP query to the budget BEFORE computing it (refused when over budget)",
)
def charge(project_id: PathId, body: ChargeCreate, session: DbSession, actor: CurrentActor) -> ChargeOut:
    entries = budget.charge_dp(
        session, actor, project_id, body.dataset_ids, body.epsilon, body.delta, body.description
    )
    return ChargeOut(
        entries=[
            LedgerEntryOut(
                entry_id=e.entry_id,
                charge_id=e.charge_id,
                scope=str(e.scope),
                epsilon=e.epsilon,
                delta=e.delta,
                query_description=e.query_description,
                actor=e.actor,
                recorded_at=e.recorded_at,
            )
            for e in entries
        ],
        budgets=[_scope_out(s) for s in budget.budget_status(session, actor, project_id)],
    )


@budgets.post(
    "/{project_id}/dp-queries",
    status_code=status.HTTP_201_CREATED,
    response_model=DPQueryOut,
    summary="Differentially private query answered by the server on a project view (charges the budget)",
)
def dp_query(project_id: PathId, body: DPQueryCreate, session: DbSession, actor: CurrentActor) -> DPQueryOut:
    return DPQueryOut.model_validate(dp.run_query(session, actor, project_id, body))


@budgets.get(
    "/{project_id}/dp-queries/{result_id}",
    response_model=DPQueryOut,
    summary="A stored differentially private result",
)
def dp_result(project_id: PathId, result_id: PathId, session: DbSession, actor: CurrentActor) -> DPQueryOut:
    return DPQueryOut.model_validate(dp.get_result(session, actor, project_id, result_id))


@releases.post(
    "/{request_id}/dp-results",
    status_code=status.HTTP_201_CREATED,
    response_model=FileOut,
    summary="Attach a stored DP result to a draft request (by reference)",
)
def attach_dp(request_id: PathId, body: DPAttach, session: DbSession, actor: CurrentActor) -> FileOut:
    return FileOut.model_validate(
        service.attach_dp_result(session, actor, request_id, body.dp_result_id, body.name)
    )


@releases.post(
    "/{request_id}/files/{file_id}/exception",
    response_model=FileOut,
    summary="Ask for an exception to a failed finding, with a justification (needs both checkers)",
)
def request_exception(
    request_id: PathId, file_id: PathId, body: ExceptionCreate, session: DbSession, actor: CurrentActor
) -> FileOut:
    return FileOut.model_validate(
        service.request_exception(session, actor, request_id, file_id, body.justification)
    )


@budgets.get(
    "/{project_id}/disclosure-rules",
    response_model=RulesOut,
    summary="The disclosure-control rules the airlock applies to this project's outputs",
)
def disclosure_rules(project_id: PathId, session: DbSession, actor: CurrentActor) -> RulesOut:
    return RulesOut(rules=service.disclosure_rules(session, actor, project_id))


router = APIRouter()
router.include_router(releases)
router.include_router(uploads)
router.include_router(budgets)
