"""What every page shares: templates, the signed-in user, CSRF checks, forms and their errors.

Pages use the API's browser session (the same ``tre_session`` cookie and server-side ``WebSession`` row),
so signing in on the web signs in to the API and the other way round. Every page needs a signed-in user
who has passed the TOTP step where their roles require it; anyone else is sent to ``/login``. Every form
that changes something carries the session's CSRF token in a hidden ``csrf_token`` field (htmx requests
send it as ``X-CSRF-Token``), checked on the server before the route runs.

A form that fails changes nothing: the route rolls the transaction back and shows the form again with a
message next to each field at fault (pydantic's errors and the services' ``TreError.field``).
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import Depends, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.templating import Jinja2Templates

from tre_platform.api.deps import CSRF_HEADER, SESSION_COOKIE, Auth, DbSession
from tre_platform.api.users import security
from tre_platform.api.users import service as users
from tre_platform.api.users.models import Role
from tre_platform.clock import clock
from tre_platform.errors import Forbidden, NotFound, PolicyDenied, TreError, Unauthenticated
from tre_platform.settings import Settings

UI_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = UI_DIR / "templates"
STATIC_DIR = UI_DIR / "static"
FLASH_COOKIE = "tre_flash"
#: Form-wide errors (not about one field) are filed under this key.
GENERAL = "__all__"
#: Days ahead within which an expiry is worth a warning on the home pages.
EXPIRY_WARNING_DAYS = 60

#: Autoescaping on: every value a user typed is escaped in every page.
templates = Jinja2Templates(
    env=jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True, auto_reload=False)
)


def _date(value: dt.date | dt.datetime | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return value.isoformat()


def _days_left(value: dt.date | None) -> int | None:
    return None if value is None else (value - clock.today()).days


def _label(value: object) -> str:
    """``policy_evidence`` -> ``policy evidence``: enum values as words."""
    text = getattr(value, "value", value)
    return str(text).replace("_", " ")


def _number(value: float | int) -> str:
    """12.0 -> 12, 0.123456 -> 0.1235: published statistics without noise digits."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return f"{value:.4g}" if isinstance(value, float) else str(value)


templates.env.filters["date"] = _date
templates.env.filters["number"] = _number
templates.env.filters["days_left"] = _days_left
templates.env.filters["label"] = _label
templates.env.globals["EXPIRY_WARNING_DAYS"] = EXPIRY_WARNING_DAYS
templates.env.globals["today"] = lambda: clock.today()


# Signing in ---------------------------------------------------------------------------------------


class LoginRequired(Exception):
    """The page needs a signed-in user (or the TOTP step): the handler redirects to ``to``."""

    def __init__(self, to: str) -> None:
        super().__init__(to)
        self.to = to


class CsrfRejected(Forbidden):
    """A form came without the session's CSRF token (audited as a refusal, like any Forbidden)."""

    def __init__(self) -> None:
        super().__init__(
            "this form has expired or did not come from this site; go back, reload the page and try again"
        )


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _login_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET" or target == "/":
        return "/login"
    return "/login?" + urllib.parse.urlencode({"next": target})


def current_auth(request: Request, session: DbSession) -> Auth:
    """The signed-in user of this page, or :class:`LoginRequired` (to /login, or to the TOTP step)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise LoginRequired(_login_url(request))
    try:
        web_session = users.resolve_web_session(session, cookie)
    except Unauthenticated:
        raise LoginRequired(_login_url(request)) from None
    request.state.actor_label = web_session.user.username
    required = users.totp_required(web_session.user, settings_of(request))
    if required and not web_session.mfa_passed:
        raise LoginRequired("/login/totp" if web_session.user.totp_enabled else "/login/enrol")
    auth = Auth(user=web_session.user, via="session", web_session=web_session, mfa_required=required)
    request.state.viewer = Viewer.of(auth)
    return auth


PageAuth = Annotated[Auth, Depends(current_auth)]


def csrf_ok(sent: object, expected: str) -> bool:
    return isinstance(sent, str) and bool(sent) and security.tokens_equal(sent, expected)


async def checked_form(request: Request, auth: PageAuth) -> FormData:
    """The submitted form, after checking its CSRF token against the session's (else 403, audited)."""
    form = await request.form()
    sent = form.get("csrf_token") or request.headers.get(CSRF_HEADER, "")
    expected = auth.web_session.csrf_token if auth.web_session is not None else ""
    if not csrf_ok(sent, expected):
        raise CsrfRejected()
    return form


CheckedForm = Annotated[FormData, Depends(checked_form)]


# Rendering ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Viewer:
    """What the layout shows of the signed-in user, copied out of the database session.

    A snapshot, because an error page is rendered after the request's transaction was rolled back,
    when the ORM objects can no longer be read.
    """

    id: str
    username: str
    full_name: str
    organisation_name: str
    role_names: tuple[str, ...]
    csrf_token: str

    @classmethod
    def of(cls, auth: Auth) -> Viewer:
        user = auth.user
        return cls(
            id=user.id,
            username=user.username,
            full_name=user.full_name,
            organisation_name=user.organisation.name,
            role_names=tuple(user.role_names),
            csrf_token=auth.web_session.csrf_token if auth.web_session is not None else "",
        )

    def has_role(self, role: Role | str) -> bool:
        return str(getattr(role, "value", role)) in self.role_names


@dataclass(frozen=True)
class NavItem:
    href: str
    label: str


def navigation(user: Viewer | None) -> list[NavItem]:
    """The header links a user's roles make useful."""
    if user is None:
        return []
    items = [NavItem("/", "Home"), NavItem("/projects", "Projects")]
    if user.has_role(Role.admin):
        items += [
            NavItem("/admin/orgs", "Organisations"),
            NavItem("/admin/users", "Users"),
            NavItem("/admin/accreditations", "Accreditations"),
            NavItem("/admin/audit", "Audit log"),
        ]
    items.append(NavItem("/datasets", "Datasets"))
    if user.has_role(Role.admin) or user.has_role(Role.data_owner):
        items += [NavItem("/agreements", "Agreements"), NavItem("/usage", "Usage")]
    if any(user.has_role(r) for r in (Role.admin, Role.researcher, Role.output_checker, Role.data_owner)):
        items.append(NavItem("/releases", "Releases"))
    if user.has_role(Role.admin) or user.has_role(Role.researcher):
        items.append(NavItem("/packages", "Packages"))
    return items


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> Response:
    """Render ``template`` with the layout's context (user, CSRF token, navigation, flash message)."""
    viewer: Viewer | None = getattr(request.state, "viewer", None)
    flash = request.cookies.get(FLASH_COOKIE)
    full: dict[str, Any] = {
        "user": viewer,
        "csrf_token": viewer.csrf_token if viewer else "",
        "nav": navigation(viewer),
        "path": request.url.path,
        "flash": urllib.parse.unquote(flash) if flash else None,
        "errors": {},
        "values": {},
        "hub_url": settings_of(request).hub_url,
        **(context or {}),
    }
    response = templates.TemplateResponse(request, template, full, status_code=status_code)
    if flash:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def redirect(request: Request, to: str, flash: str | None = None) -> Response:
    """303 to ``to`` (after a successful form), with a one-time message for the next page."""
    response: Response = RedirectResponse(to, status_code=303)
    if request.headers.get("HX-Request"):
        response = Response(status_code=204, headers={"HX-Redirect": to})
    if flash:
        response.set_cookie(
            FLASH_COOKIE,
            urllib.parse.quote(flash[:300]),
            max_age=60,
            httponly=True,
            samesite="lax",
            secure=settings_of(request).cookie_secure,
            path="/",
        )
    return response


# Forms --------------------------------------------------------------------------------------------


def values(form: FormData, *names: str) -> dict[str, str]:
    """The named single-valued fields, trimmed; absent fields are empty strings."""
    out: dict[str, str] = {}
    for name in names:
        raw = form.get(name)
        out[name] = raw.strip() if isinstance(raw, str) else ""
    return out


def given(data: Mapping[str, Any]) -> dict[str, Any]:
    """Drop empty fields, so a schema applies its defaults (or says the field is required)."""
    return {k: v for k, v in data.items() if v not in ("", None, [])}


def many(form: FormData, name: str) -> list[str]:
    """Every value of a multi-valued field (checkboxes, multiple select), without empties."""
    return [v.strip() for v in form.getlist(name) if isinstance(v, str) and v.strip()]


def checked(form: FormData, name: str) -> bool:
    return form.get(name) in ("on", "true", "1", "yes")


def field_of(message: str, fields: Iterable[str]) -> str | None:
    """The form field a model-wide message is about: the first field name it mentions."""
    best: tuple[int, str] | None = None
    for name in fields:
        found = re.search(rf"\b{re.escape(name)}\b", message)
        if found and (best is None or found.start() < best[0]):
            best = (found.start(), name)
    return best[1] if best else None


def validation_messages(exc: ValidationError, fields: Iterable[str] = ()) -> dict[str, str]:
    """pydantic's errors as ``{field: message}``; model-wide ones go to the field they name."""
    fields = list(fields)
    out: dict[str, str] = {}
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        message = str(error.get("msg", "is not valid")).removeprefix("Value error, ")
        kind = error.get("type", "")
        if kind == "missing" or (kind == "string_too_short" and error.get("ctx", {}).get("min_length") == 1):
            message = "this field is required"
        name = loc[0] if loc else (field_of(message, fields) or GENERAL)
        name = name.removesuffix("_") if name == "schema_" else name
        out.setdefault(name, message)
    return out


def form_failure(session: Session, exc: Exception, fields: Iterable[str] = ()) -> dict[str, str]:
    """Undo everything the failed attempt did, and say what went wrong, per field where possible.

    A refusal that is not about the form's content (forbidden, not found) is raised again so the page
    shows it and the refusal is audited; a policy denial is shown on the form with its reasons.
    """
    session.rollback()
    if isinstance(exc, ValidationError):
        return validation_messages(exc, fields)
    if not isinstance(exc, TreError):
        raise exc
    if isinstance(exc, PolicyDenied):
        return {GENERAL: "; ".join([exc.message, *exc.reasons])}
    if isinstance(exc, (Forbidden, NotFound)) and exc.field is None:
        raise exc
    fields = list(fields)
    if exc.field and (not fields or exc.field in fields):
        return {exc.field: exc.message}
    return {GENERAL: exc.message}


FORM_ERRORS = (ValidationError, TreError)
