"""The web pages as a sub-application mounted at the site's root, beside the REST API.

A sub-application, not more routes on the API's app, because pages answer errors differently: a refusal
is an HTML page (or a redirect to sign in), never the API's JSON. The mount declines ``/api/...`` and
``/healthz``, so the API's own 404 and 405 answers are unchanged, and the API's route list (which the
permission-matrix test walks) holds no page routes. The sub-application shares the API app's ``state``
object, so both always use the same settings and database.
"""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from tre_platform.errors import Forbidden, NotFound, TreError, Unauthenticated
from tre_platform.ui.pages import (
    account,
    admin,
    agreements,
    auth,
    datasets,
    home,
    packages,
    projects,
    releases,
)
from tre_platform.ui.web import STATIC_DIR, LoginRequired, render

log = logging.getLogger("tre_platform.ui")


class PagesMount(Mount):
    """Mount the pages at ``/`` but leave the API's paths to the API."""

    def __init__(self, app: FastAPI, api_paths: tuple[str, ...]) -> None:
        super().__init__("", app=app, name="ui")
        self.api_paths = api_paths

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        path = str(scope.get("path", ""))
        if any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.api_paths):
            return Match.NONE, {}
        return super().matches(scope)


def _error_page(request: Request, status: int, title: str, message: str) -> Response:
    if request.headers.get("HX-Request"):
        # An htmx fragment: a short message in place of the fragment, not a whole page.
        return Response(f'<p class="error" role="alert">{_escape(message)}</p>', status_code=status)
    return render(request, "error.html", {"title": title, "message": message}, status_code=status)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _install_handlers(ui: FastAPI) -> None:
    @ui.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        if request.headers.get("HX-Request"):
            return Response(status_code=204, headers={"HX-Redirect": exc.to})
        return RedirectResponse(exc.to, status_code=303)

    @ui.exception_handler(TreError)
    async def tre_error(request: Request, exc: TreError) -> Response:
        if isinstance(exc, Unauthenticated):
            return RedirectResponse("/login", status_code=303)
        if isinstance(exc, NotFound):
            return _error_page(request, 404, "Not found", exc.message)
        if isinstance(exc, Forbidden):
            reasons = getattr(exc, "reasons", None) or []
            return _error_page(request, 403, "Not allowed", "; ".join([exc.message, *reasons]))
        return _error_page(request, exc.status_code, "That did not work", exc.message)

    @ui.exception_handler(RequestValidationError)
    async def bad_request(request: Request, _exc: RequestValidationError) -> Response:
        # Only path and query parameters reach here (forms are validated by the pages themselves).
        return _error_page(request, 404, "Not found", "there is no such page; use the links on the site")

    @ui.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return _error_page(request, 404, "Not found", "there is no such page; use the links on the site")
        if exc.status_code == 405:
            return _error_page(request, 405, "Not allowed", "this page cannot be used that way")
        message = exc.detail if isinstance(exc.detail, str) else "the request was refused"
        return _error_page(request, exc.status_code, "That did not work", message)

    @ui.exception_handler(Exception)
    async def unexpected(request: Request, _exc: Exception) -> Response:
        reference = uuid.uuid4().hex[:12]
        log.exception("unhandled error in a page; reference %s", reference)
        return render(
            request,
            "error.html",
            {
                "title": "Something went wrong",
                "message": f"The server could not show this page. Quote reference {reference} "
                "to your administrator.",
            },
            status_code=500,
        )


def create_ui(parent: FastAPI) -> FastAPI:
    """The pages' application, sharing ``parent``'s state (settings, database)."""
    ui = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, title="tre web pages")
    ui.state = parent.state
    for module in (auth, home, account, admin, projects, datasets, agreements, releases, packages):
        ui.include_router(module.router)
    ui.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    _install_handlers(ui)
    return ui


def mount_ui(app: FastAPI, *, api_paths: tuple[str, ...]) -> None:
    """Serve the web pages from ``app`` at ``/`` (after the API's routes, which keep ``api_paths``).

    Example:
        >>> mount_ui(app, api_paths=("/api/v1", "/healthz"))
    """
    app.router.routes.append(PagesMount(create_ui(app), api_paths))
