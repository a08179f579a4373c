"""/api/v1/auth: sign in (password, then TOTP where a role requires it), sign out, API tokens, whoami.

The browser session lives server-side (``web_sessions``); the cookie holds only a random token, HttpOnly,
SameSite=Lax and Secure per ``settings.cookie_secure``. The CSRF token is returned in the sign-in response
and in a readable ``tre_csrf`` cookie; state-changing cookie requests must echo it in ``X-CSRF-Token``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from tre_platform.actor import Actor
from tre_platform.api.auth.schemas import LoginOut
from tre_platform.api.deps import CSRF_COOKIE, SESSION_COOKIE, AuthPending, CurrentAuth, DbSession, PathId
from tre_platform.api.users import service as users
from tre_platform.api.users.schemas import (
    LoginRequest,
    PasswordChange,
    TokenCreate,
    TokenCreated,
    TokenOut,
    TotpEnrolment,
    TotpRequest,
    UserOut,
    WhoAmI,
)
from tre_platform.errors import Conflict
from tre_platform.settings import Settings

router = APIRouter(prefix="/auth", tags=["sign-in"])


def client_address(request: Request) -> str:
    """The peer's address, for per-client lockout (behind a proxy, run uvicorn with --proxy-headers)."""
    return request.client.host if request.client is not None else "unknown"


def _set_cookies(response: Response, settings: Settings, raw: str, csrf: str) -> None:
    max_age = settings.session_ttl_minutes * 60
    common = {"max_age": max_age, "secure": settings.cookie_secure, "samesite": "lax", "path": "/"}
    response.set_cookie(SESSION_COOKIE, raw, httponly=True, **common)  # type: ignore[arg-type]
    # Readable by the page's script so it can send X-CSRF-Token; useless to another site (same-origin policy).
    response.set_cookie(CSRF_COOKIE, csrf, httponly=False, **common)  # type: ignore[arg-type]


@router.post(
    "/login", response_model=LoginOut, summary="Sign in with a password (then /auth/totp if required)"
)
def login(body: LoginRequest, request: Request, response: Response, session: DbSession) -> LoginOut:
    settings: Settings = request.app.state.settings
    # Failures are counted (lockout per account and per client) and audited by the service.
    user = users.sign_in_with_password(
        session, body.username, body.password, client_address(request), settings
    )
    mfa_required = users.totp_required(user, settings)
    web_session, raw = users.start_web_session(session, user, mfa_passed=not mfa_required)
    _set_cookies(response, settings, raw, web_session.csrf_token)
    return LoginOut(
        user=UserOut.model_validate(user),
        mfa_required=mfa_required,
        mfa_enrolled=user.totp_enabled,
        csrf_token=web_session.csrf_token,
    )


def _whoami(auth: CurrentAuth | AuthPending) -> WhoAmI:
    return WhoAmI(
        user=UserOut.model_validate(auth.user),
        auth=auth.via,
        mfa_required=auth.mfa_required,
        mfa_passed=auth.mfa_passed,
        csrf_token=auth.web_session.csrf_token if auth.web_session else None,
    )


@router.post("/totp", response_model=WhoAmI, summary="Second sign-in step: a TOTP code")
def totp(body: TotpRequest, request: Request, session: DbSession, auth: AuthPending) -> WhoAmI:
    if auth.web_session is None:
        raise Conflict("the TOTP step completes a browser sign-in; API tokens need none")
    users.sign_in_with_totp(
        session, auth.web_session, body.code, client_address(request), request.app.state.settings
    )
    return _whoami(auth)


@router.post(
    "/totp/enrol", response_model=TotpEnrolment, summary="Start TOTP enrolment (returns the secret once)"
)
def totp_enrol(session: DbSession, auth: AuthPending) -> TotpEnrolment:
    _, secret, uri = users.start_totp_enrolment(session, auth.actor)
    return TotpEnrolment(secret=secret, uri=uri)


@router.post("/totp/confirm", response_model=WhoAmI, summary="Finish TOTP enrolment with a code from the app")
def totp_confirm(body: TotpRequest, session: DbSession, auth: AuthPending) -> WhoAmI:
    users.confirm_totp(session, auth.actor, body.code)
    if auth.web_session is not None:
        # Proving possession of the new factor completes this sign-in too.
        auth.web_session.mfa_passed = True
    return _whoami(auth)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, summary="Sign out (ends the browser session)")
def logout(session: DbSession, auth: AuthPending) -> Response:
    if auth.web_session is None:
        raise Conflict(
            "signing out ends a browser session; to stop a token, revoke it at /api/v1/auth/tokens"
        )
    users.end_web_session(session, auth.web_session)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
    return response


@router.get("/whoami", response_model=WhoAmI, summary="Who you are signed in as")
def whoami(auth: AuthPending) -> WhoAmI:
    return _whoami(auth)


@router.post(
    "/password", status_code=status.HTTP_204_NO_CONTENT, summary="Change your password (signs you out)"
)
def change_password(body: PasswordChange, session: DbSession, auth: CurrentAuth) -> Response:
    users.set_password(
        session, auth.actor, auth.user.id, body.new_password, current_password=body.current_password
    )
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post(
    "/tokens",
    status_code=status.HTTP_201_CREATED,
    response_model=TokenCreated,
    summary="Create an API token (shown once)",
)
def create_token(body: TokenCreate, session: DbSession, auth: CurrentAuth) -> TokenCreated:
    # A token mints only narrower, shorter-lived tokens (a workspace's none); a browser session any.
    token, raw = users.create_api_token(session, auth.actor, body, parent=auth.token)
    return TokenCreated.model_validate({**TokenOut.model_validate(token).model_dump(), "token": raw})


@router.get("/tokens", response_model=list[TokenOut], summary="Your API tokens")
def list_tokens(session: DbSession, auth: CurrentAuth) -> list[TokenOut]:
    return [TokenOut.model_validate(t) for t in users.list_api_tokens(session, auth.actor)]


@router.delete("/tokens/{token_id}", response_model=TokenOut, summary="Revoke an API token")
def revoke_token(token_id: PathId, session: DbSession, auth: CurrentAuth) -> TokenOut:
    actor: Actor = auth.actor
    return TokenOut.model_validate(users.revoke_api_token(session, actor, token_id))
