"""The control plane's FastAPI application.

``create_app()`` mounts one router per domain under ``/api/v1``, the OpenAPI document at
``/api/v1/openapi.json``, interactive docs at ``/api/v1/docs`` and ``/healthz``.

Errors are always JSON ``{"error": code, "message": ..., "field": ...}``; an unexpected exception becomes a
500 carrying only a reference id (the traceback is logged server-side, never sent).

Request bodies larger than ``settings.max_body_bytes`` (``TRE_MAX_BODY_BYTES``, default 1 MiB) are refused
with 413 before they are read: by ``Content-Length`` when given, else by counting a chunked body as it
streams in. Dataset deliveries, which are larger, have their own upload limit (``TRE_MAX_UPLOAD_BYTES``),
enforced by the routes in ``UPLOAD_PATHS`` as they stream the body to disk.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tre_platform.api.agreements.router import router as agreements_router
from tre_platform.api.audit.router import router as audit_router
from tre_platform.api.auth.router import router as auth_router
from tre_platform.api.body_limit import capped_receive
from tre_platform.api.datasets.router import router as datasets_router
from tre_platform.api.orgs.router import router as orgs_router
from tre_platform.api.packages.router import router as packages_router
from tre_platform.api.projects.router import router as projects_router
from tre_platform.api.releases.router import router as releases_router
from tre_platform.api.users.router import router as users_router
from tre_platform.db.session import get_engine, health_engine, is_busy, make_session_factory
from tre_platform.errors import TreError, Unauthenticated
from tre_platform.policy.router import router as policy_router
from tre_platform.settings import Settings, get_settings
from tre_platform.ui import mount_ui

API_PREFIX = "/api/v1"
#: Routes that stream a delivery to disk under their own limit (TRE_MAX_UPLOAD_BYTES) instead of the
#: request-body limit.
UPLOAD_PATHS = (
    re.compile(rf"^{API_PREFIX}/datasets/[^/]+/deliveries$"),
    # The web page's upload form (tre_platform.ui.pages.datasets checks its length against the same limit).
    re.compile(r"^/datasets/[^/]+/upload$"),
    # Staging an airlock output with its data: the airlock file policy's limit, enforced as the body
    # streams in by tre_platform.api.releases.router.CappedUploadRoute.
    re.compile(rf"^{API_PREFIX}/releases/[^/]+/files$"),
)
log = logging.getLogger("tre_platform.api")
#: /healthz's database check runs here, never queued behind requests in the shared worker pool.
_HEALTH_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tre-healthz")
#: How long /healthz waits for ``SELECT 1`` before answering 503.
HEALTH_TIMEOUT_SECONDS = 5.0


def error_body(code: str, message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"error": code, "message": message, "field": field, **extra}


class ErrorOut(BaseModel):
    """Every error the API answers: a code, a message saying what to do next, the field at fault.

    Some errors add detail: ``problems`` (each invalid field), ``reasons`` (a policy decision's),
    ``report`` (every problem of a delivery).
    """

    model_config = ConfigDict(extra="allow")

    error: str
    message: str
    field: str | None = None


#: What each error status means, in the OpenAPI document.
ERROR_STATUSES: dict[int, str] = {
    400: "the request is malformed (a header, or a value the server cannot read)",
    401: "not signed in: send 'Authorization: Bearer <token>' or a session cookie",
    403: "signed in but not allowed (the message, or the policy's reasons, say why)",
    404: "no such object, or one you may not know of",
    409: "conflicts with the object's state or with existing data",
    413: "the request body is larger than the limit the message names",
    422: "a value is not valid: `problems` lists every field at fault",
    503: "busy (the database is locked by other writers) or unavailable: retry after Retry-After seconds",
}
#: Methods that change state, and so may meet a conflict.
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def document_errors(app: FastAPI) -> None:
    """List in the OpenAPI document every error status each API operation can answer, with its body.

    Any operation may meet a malformed header (400), a missing or refused sign-in (401, 403), an unknown
    id (404), an oversized body (413), an invalid value (422) or a busy database (503); one that writes
    may also meet a conflict (409). A route's own description of a status is kept; the body is always
    :class:`ErrorOut` (FastAPI's default 422 body is not what the handlers send). Done once, on the
    generated document, so no route has to repeat it.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        spec = generate()
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        schemas["ErrorOut"] = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
        body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
        for path, operations in spec.get("paths", {}).items():
            if not path.startswith(API_PREFIX):
                continue
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                for status, description in ERROR_STATUSES.items():
                    if status == 409 and method.upper() not in _WRITES:
                        continue
                    entry = responses.setdefault(str(status), {"description": description})
                    entry["content"] = body
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def _internal_error() -> JSONResponse:
    reference = uuid.uuid4().hex[:12]
    log.exception("unhandled error; reference %s", reference)
    return JSONResponse(error_body("internal", f"internal error; reference {reference}"), status_code=500)


class BodySizeLimit:
    """Refuse request bodies over ``limit`` bytes with 413 before the application reads them."""

    def __init__(self, app: ASGIApp, limit: int, exempt: tuple[re.Pattern[str], ...] = ()) -> None:
        self.app = app
        self.limit = limit
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or any(p.match(scope.get("path", "")) for p in self.exempt):
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await self._refuse(send, 400, "bad_request", "the Content-Length header is not a number")
                return
            if declared > self.limit:
                await self._refuse(send, 413, "too_large", self._message())
                return
        # FastAPI re-raises HTTPExceptions from body reading, so this reaches our handler as 413.
        limited = capped_receive(
            receive, self.limit, lambda: StarletteHTTPException(status_code=413, detail=self._message())
        )
        await self.app(scope, limited, send)

    def _message(self) -> str:
        return f"request body is larger than the {self.limit}-byte limit (TRE_MAX_BODY_BYTES); send less"

    @staticmethod
    async def _refuse(send: Send, status: int, code: str, message: str) -> None:
        body = json.dumps(error_body(code, message)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class CatchAll:
    """Turn any exception that escaped the handlers into the generic 500 (no server re-raises it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if started:  # too late to send a clean error; the server closes the connection
                log.exception("error after the response started")
                return
            await _internal_error()(scope, receive, send)


#: Seconds a client should wait before retrying a request the database was too busy for.
RETRY_AFTER_SECONDS = 1


def _busy() -> JSONResponse:
    return JSONResponse(
        error_body("busy", "the database is busy with other writes; retry in a moment"),
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _describe(error: dict[str, Any]) -> tuple[str, str]:
    """(field, message in words) for one pydantic error."""
    loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path")]
    field = ".".join(loc) or str(error.get("loc", ("request",))[0])
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return field, f"unknown field {field!r}; remove it (see /api/v1/docs for the accepted fields)"
    if kind == "missing":
        return field, f"{field} is required"
    if kind == "json_invalid":
        return "body", "the body is not valid JSON"
    message = str(error.get("msg", "is not valid"))
    message = message.removeprefix("Value error, ")
    return field, f"{field}: {message}"


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(TreError)
    async def tre_error(_request: Request, exc: TreError) -> JSONResponse:
        extra: dict[str, Any] = {}
        reasons = getattr(exc, "reasons", None)
        if reasons:
            extra["reasons"] = reasons
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthenticated) else None
        return JSONResponse(
            error_body(exc.code, exc.message, exc.field, **extra),
            status_code=exc.status_code,
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"field": f, "message": m} for f, m in (_describe(e) for e in exc.errors())]
        message = "; ".join(p["message"] for p in problems) or "the request is not valid"
        field = problems[0]["field"] if problems else None
        return JSONResponse(error_body("invalid_input", message, field, problems=problems), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "too_large", 400: "bad_request"}
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404 and message == "Not Found":
            message = "no such route; see /api/v1/docs"
        return JSONResponse(
            error_body(codes.get(exc.status_code, "http_error"), message),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(OperationalError)
    async def operational_error(_request: Request, exc: OperationalError) -> JSONResponse:
        if not is_busy(exc):
            return _internal_error()
        return _busy()

    @app.exception_handler(PoolTimeout)
    async def pool_timeout(_request: Request, _exc: PoolTimeout) -> JSONResponse:
        return _busy()

    @app.exception_handler(IntegrityError)
    async def integrity_error(_request: Request, exc: IntegrityError) -> JSONResponse:
        if is_busy(exc):
            return _busy()
        # Two requests raced for the same unique name; the service checks caught the ordinary case.
        return JSONResponse(
            error_body("conflict", "this conflicts with existing data (a duplicate name?); reload and retry"),
            status_code=409,
        )

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, _exc: Exception) -> JSONResponse:
        return _internal_error()


def create_app(settings: Settings | None = None) -> FastAPI:
    """The application, configured by ``settings`` (default: :func:`get_settings`).

    Example:
        >>> app = create_app()
        >>> uvicorn.run(app, host=get_settings().host, port=get_settings().port)
    """
    settings = settings or get_settings()
    app = FastAPI(
        title="tre control plane",
        version="1",
        description=(
            "REST API of the Trusted Research Environment. Authenticate with `Authorization: Bearer <token>` "
            "(create one at POST /api/v1/auth/tokens) or the browser session from POST /api/v1/auth/login. "
            f"Request bodies are limited to {settings.max_body_bytes} bytes (TRE_MAX_BODY_BYTES); larger "
            "ones get 413."
        ),
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.settings = settings
    app.state.session_factory = make_session_factory(get_engine(settings))
    health = health_engine(settings)

    api = APIRouter(prefix=API_PREFIX)
    for router in (
        auth_router,
        orgs_router,
        users_router,
        projects_router,
        datasets_router,
        agreements_router,
        audit_router,
        releases_router,
        policy_router,
        packages_router,
    ):
        api.include_router(router)
    app.include_router(api)
    document_errors(app)

    @app.get(
        "/healthz",
        tags=["health"],
        summary="Liveness and database connectivity",
        responses={503: {"description": "the database is unreachable"}},
    )
    async def healthz(request: Request) -> JSONResponse:
        # Its own worker thread, not the shared pool: with every pool thread waiting for a database lock,
        # /healthz still answers (and says so when the database itself does not).
        def ping() -> None:
            with health.connect() as connection:
                connection.execute(text("SELECT 1"))

        try:
            await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(_HEALTH_THREAD, ping), HEALTH_TIMEOUT_SECONDS
            )
        except TimeoutError:
            return JSONResponse({"status": "error", "database": "not answering"}, status_code=503)
        except Exception:
            log.exception("health check: database unreachable")
            return JSONResponse({"status": "error", "database": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok"})

    # The web pages, at the site's root; /api/v1 and /healthz stay the API's (see tre_platform.ui).
    mount_ui(app, api_paths=(API_PREFIX, "/healthz"))
    _install_handlers(app)
    # Order: the catch-all is outermost, then the size limit, so even a 413 path cannot leak a traceback.
    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes, exempt=UPLOAD_PATHS)
    app.add_middleware(CatchAll)
    return app
