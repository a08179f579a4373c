"""Signing in (password or single sign-on, then a TOTP code: every role needs one by default) and out.

The session is the API's: the same ``WebSession`` row and ``tre_session`` cookie (HttpOnly, SameSite=Lax,
Secure per ``settings.cookie_secure``). Before a session exists the sign-in forms are protected from
cross-site posting by a double-submit token: a random value in an HttpOnly cookie that the form must echo.
"""

from __future__ import annotations

import secrets
import urllib.parse
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from tre_platform.actor import Actor
from tre_platform.api.auth.router import _set_cookies as set_session_cookies
from tre_platform.api.auth.router import client_address
from tre_platform.api.deps import CSRF_COOKIE, SESSION_COOKIE, DbSession
from tre_platform.api.users import oidc, security
from tre_platform.api.users import service as users
from tre_platform.api.users.models import User, WebSession
from tre_platform.errors import Conflict, InvalidInput, Unauthenticated
from tre_platform.ui.pages.account import qr_svg
from tre_platform.ui.web import (
    GENERAL,
    CsrfRejected,
    LoginRequired,
    csrf_ok,
    redirect,
    render,
    settings_of,
    values,
)

router = APIRouter()
LOGIN_CSRF_COOKIE = "tre_login_csrf"
OIDC_COOKIE = "tre_oidc"
OIDC_MAX_AGE = 600  # seconds a single sign-on may take at the provider


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect to another host."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parsed = urllib.parse.urlsplit(target)
    return "/" if parsed.scheme or parsed.netloc else target


def _login_token(request: Request) -> tuple[str, bool]:
    """The pre-session form token: the cookie's, or a new one (True: the cookie must be set)."""
    existing = request.cookies.get(LOGIN_CSRF_COOKIE)
    if existing:
        return existing, False
    return secrets.token_urlsafe(32), True


def _with_login_token(request: Request, response: Response, token: str, new: bool) -> Response:
    if new:
        response.set_cookie(
            LOGIN_CSRF_COOKIE,
            token,
            httponly=True,
            samesite="lax",
            secure=settings_of(request).cookie_secure,
            path="/login",
        )
    return response


async def login_form(request: Request) -> FormData:
    """The sign-in form, after checking its double-submit token."""
    form = await request.form()
    if not csrf_ok(form.get("csrf_token"), request.cookies.get(LOGIN_CSRF_COOKIE, "")):
        raise CsrfRejected()
    return form


LoginForm = Annotated[FormData, Depends(login_form)]


def _pending(request: Request, session: DbSession) -> WebSession:
    """The browser session that has passed the password step (TOTP pending), else back to /login."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise LoginRequired("/login")
    try:
        web_session = users.resolve_web_session(session, cookie)
    except Unauthenticated:
        raise LoginRequired("/login") from None
    request.state.actor_label = web_session.user.username
    return web_session


Pending = Annotated[WebSession, Depends(_pending)]


async def pending_form(request: Request, web_session: Pending) -> FormData:
    form = await request.form()
    if not csrf_ok(form.get("csrf_token"), web_session.csrf_token):
        raise CsrfRejected()
    return form


PendingForm = Annotated[FormData, Depends(pending_form)]


def _login_page(
    request: Request,
    *,
    errors: dict[str, str] | None = None,
    username: str = "",
    next_url: str = "/",
    status_code: int = 401,
) -> Response:
    token, new = _login_token(request)
    response = render(
        request,
        "login.html",
        {
            "login_token": token,
            "errors": errors or {},
            "values": {"username": username},
            "next": next_url,
            "sso": oidc.enabled(settings_of(request)),
        },
        status_code=status_code if errors else 200,
    )
    return _with_login_token(request, response, token, new)


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    return _login_page(request, next_url=_safe_next(next))


@router.post("/login")
def login(request: Request, session: DbSession, form: LoginForm) -> Response:
    data = values(form, "username", "password", "next")
    next_url = _safe_next(data["next"])
    errors: dict[str, str] = {}
    if not data["username"]:
        errors["username"] = "enter your username"
    if not form.get("password"):
        errors["password"] = "enter your password"  # noqa: S105 - a message, not a password
    if errors:
        return _login_page(request, errors=errors, username=data["username"], next_url=next_url)
    password = form.get("password")
    try:
        # Failures are counted towards the lockout and audited by the service (in their own transaction).
        user = users.sign_in_with_password(
            session,
            data["username"][:64],
            password if isinstance(password, str) else "",
            client_address(request),
            settings_of(request),
        )
    except (Unauthenticated, users.TooManyAttempts) as exc:
        return _login_page(
            request,
            errors={GENERAL: exc.message},
            username=data["username"],
            next_url=next_url,
            status_code=exc.status_code,
        )
    return _signed_in(request, session, user, users.totp_required(user, settings_of(request)), next_url)


def _signed_in(
    request: Request, session: DbSession, user: User, mfa_required: bool, next_url: str
) -> Response:
    """Start the browser session of a user past their first step; on to the TOTP (or enrolment) step
    when ``mfa_required``, else to ``next_url``."""
    settings = settings_of(request)
    web_session, raw = users.start_web_session(session, user, mfa_passed=not mfa_required)
    if mfa_required:
        step = "/login/totp" if user.totp_enabled else "/login/enrol"
        target = f"{step}?{urllib.parse.urlencode({'next': next_url})}"
    else:
        target = next_url
    response = redirect(request, target)
    set_session_cookies(response, settings, raw, web_session.csrf_token)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


# Single sign-on (OpenID Connect) -------------------------------------------------------------------


def _oidc_redirect_uri(request: Request) -> str:
    base = settings_of(request).public_url or str(request.base_url)
    return base.rstrip("/") + "/login/oidc/callback"


@router.get("/login/oidc")
def oidc_start(request: Request, next: str | None = None) -> Response:
    """Send the browser to the OpenID Connect provider, keeping the sign-in's secrets sealed in a cookie."""
    next_url = _safe_next(next)
    try:
        url, pending = oidc.begin(_oidc_redirect_uri(request), next_url, settings_of(request))
    except (oidc.SsoNotConfigured, oidc.SsoRefused) as exc:
        return _login_page(
            request, errors={GENERAL: exc.message}, next_url=next_url, status_code=exc.status_code
        )
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        OIDC_COOKIE,
        security.seal(pending.as_dict(), "oidc"),
        max_age=OIDC_MAX_AGE,
        httponly=True,
        samesite="lax",
        secure=settings_of(request).cookie_secure,
        path="/login/oidc",
    )
    return response


@router.get("/login/oidc/callback")
def oidc_callback(
    request: Request, session: DbSession, state: str = "", code: str = "", error: str = ""
) -> Response:
    """The provider's answer: check it belongs to this browser's sign-in, verify the ID token, find the
    tre user it names, then the second factor as for a password sign-in (unless the provider's counts)."""
    sealed = request.cookies.get(OIDC_COOKIE, "")
    data = security.unseal(sealed, "oidc", OIDC_MAX_AGE) if sealed else None
    try:
        if data is None:
            raise oidc.SsoRefused("this single sign-on has expired or was not started here; start again")
        pending = oidc.PendingSignIn.from_dict(data)
        if error:
            raise oidc.SsoRefused(f"the sign-in provider refused: {error[:100]}")
        claims = oidc.complete(pending, state, code, _oidc_redirect_uri(request), settings_of(request))
        user, mfa_required = oidc.sign_in(session, claims, settings_of(request))
    except (oidc.SsoNotConfigured, oidc.SsoRefused) as exc:
        response = _login_page(request, errors={GENERAL: exc.message}, status_code=exc.status_code)
        response.delete_cookie(OIDC_COOKIE, path="/login/oidc")
        return response
    response = _signed_in(request, session, user, mfa_required, pending.next_url)
    response.delete_cookie(OIDC_COOKIE, path="/login/oidc")
    return response


def _totp_page(
    request: Request,
    csrf_token: str,
    next_url: str,
    errors: dict[str, str] | None = None,
    status_code: int = 401,
) -> Response:
    return render(
        request,
        "totp.html",
        {"csrf_token": csrf_token, "errors": errors or {}, "next": next_url},
        status_code=status_code if errors else 200,
    )


@router.get("/login/totp")
def totp_page(request: Request, web_session: Pending, next: str | None = None) -> Response:
    if web_session.mfa_passed:
        return redirect(request, _safe_next(next))
    if not web_session.user.totp_enabled:
        return redirect(request, "/login/enrol")
    return _totp_page(request, web_session.csrf_token, _safe_next(next))


@router.post("/login/totp")
def totp(request: Request, session: DbSession, web_session: Pending, form: PendingForm) -> Response:
    data = values(form, "code", "next")
    next_url = _safe_next(data["next"])
    csrf_token = web_session.csrf_token
    try:
        users.sign_in_with_totp(
            session, web_session, data["code"].replace(" ", ""), client_address(request), settings_of(request)
        )
    except (Unauthenticated, Conflict, users.TooManyAttempts) as exc:
        session.rollback()
        return _totp_page(request, csrf_token, next_url, {"code": exc.message}, exc.status_code)
    return redirect(request, next_url)


@router.get("/login/enrol")
def enrol_page(request: Request, session: DbSession, web_session: Pending) -> Response:
    """A user who must use TOTP but has no factor yet sets one up (their password got them this far)."""
    if web_session.user.totp_enabled:
        return redirect(request, "/login/totp" if not web_session.mfa_passed else "/")
    _, secret, uri = users.start_totp_enrolment(session, Actor.of(web_session.user))
    return render(
        request,
        "enrol.html",
        {"csrf_token": web_session.csrf_token, "secret": secret, "uri": uri, "qr": qr_svg(uri)},
    )


@router.post("/login/enrol")
def enrol(request: Request, session: DbSession, web_session: Pending, form: PendingForm) -> Response:
    data = values(form, "code", "secret", "uri")
    try:
        users.confirm_totp(session, Actor.of(web_session.user), data["code"].replace(" ", ""))
    except (InvalidInput, Conflict) as exc:
        session.rollback()
        return render(
            request,
            "enrol.html",
            {
                "csrf_token": web_session.csrf_token,
                "secret": data["secret"],
                "uri": data["uri"],
                "qr": qr_svg(data["uri"]) if data["uri"].startswith("otpauth://") else None,
                "errors": {"code": exc.message},
            },
            status_code=422,
        )
    # Proving possession of the new factor completes this sign-in too (as in the API).
    web_session.mfa_passed = True
    return redirect(request, "/", "Your authenticator app is set up.")


@router.post("/logout")
def logout(request: Request, session: DbSession, web_session: Pending, form: PendingForm) -> Response:
    users.end_web_session(session, web_session)
    response = redirect(request, "/login", "You have signed out.")
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
    return response
