"""FastAPI dependencies: one database transaction per request, and who is calling.

A request is authenticated by ``Authorization: Bearer <token>`` (an API token) or by the browser-session
cookie. Cookie-authenticated requests that change state must carry ``X-CSRF-Token`` equal to the session's
CSRF token; bearer requests need not (a browser never attaches a bearer token by itself). A session whose
user must pass TOTP is only good for the sign-in routes until the TOTP step is done.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from sqlalchemy.orm import Session

from tre_platform.actor import Actor
from tre_platform.api.audit.service import record
from tre_platform.api.common import MAX_OFFSET, MAX_PAGE, Page
from tre_platform.api.users import security
from tre_platform.api.users import service as users
from tre_platform.api.users.models import ApiToken, User, WebSession
from tre_platform.errors import Forbidden, Unauthenticated

SESSION_COOKIE = "tre_session"
CSRF_COOKIE = "tre_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: The scope a token needs for the REST API (an empty scope list means all of the user's permissions).
API_SCOPE = "api"


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request: committed when the route returns, rolled back if it raises.

    A refusal (Forbidden) changes nothing but is itself audited, in a transaction of its own.
    """
    session: Session = request.app.state.session_factory()
    try:
        yield session
        session.commit()
    except Forbidden as exc:
        session.rollback()
        label = getattr(request.state, "actor_label", None)
        if label is not None:
            record(
                session,
                actor=label[:64],
                action="access.denied",
                target_type="route",
                target_id=f"{request.method} {request.url.path}"[:64],
                decision="deny",
                reasons=[exc.message],
            )
            session.commit()
        raise
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


DbSession = Annotated[Session, Depends(get_session, scope="function")]


@dataclass(frozen=True)
class Auth:
    """The authenticated caller of a request."""

    user: User
    via: str  # "token" or "session"
    web_session: WebSession | None = None
    mfa_required: bool = False
    #: The API token the request was authenticated with (tokens it mints may not outgrow it).
    token: ApiToken | None = None

    @property
    def actor(self) -> Actor:
        return Actor.of(self.user)

    @property
    def mfa_passed(self) -> bool:
        return not self.mfa_required or (self.web_session is not None and self.web_session.mfa_passed)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
    return value.strip()


def get_auth_pending(request: Request, session: DbSession) -> Auth:
    """The caller, even if their browser session has not passed the TOTP step yet (sign-in routes)."""
    raw = _bearer(request)
    if raw is not None:
        token = users.resolve_api_token(session, raw)
        if token.scopes and API_SCOPE not in token.scopes:
            raise Unauthenticated(
                f"this token is limited to {', '.join(token.scopes)}; create one for the API"
            )
        request.state.actor_label = token.user.username
        return Auth(user=token.user, via="token", token=token)
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise Unauthenticated("sign in first: send 'Authorization: Bearer <token>' or a session cookie")
    web_session = users.resolve_web_session(session, cookie)
    request.state.actor_label = web_session.user.username
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not sent or not security.tokens_equal(sent, web_session.csrf_token):
            raise Forbidden(f"missing or wrong {CSRF_HEADER} header; send the csrf_token you got at sign-in")
    return Auth(
        user=web_session.user,
        via="session",
        web_session=web_session,
        mfa_required=users.totp_required(web_session.user, request.app.state.settings),
    )


AuthPending = Annotated[Auth, Depends(get_auth_pending)]


def get_auth(auth: AuthPending) -> Auth:
    """The fully signed-in caller (TOTP passed where required)."""
    if not auth.mfa_passed:
        raise Unauthenticated("complete sign-in with your TOTP code first (POST /api/v1/auth/totp)")
    return auth


def get_actor(auth: Annotated[Auth, Depends(get_auth)]) -> Actor:
    return auth.actor


CurrentAuth = Annotated[Auth, Depends(get_auth)]
CurrentActor = Annotated[Actor, Depends(get_actor)]


def get_page(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="at most this many items")] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="skip this many items")] = 0,
) -> Page:
    return Page(limit=limit, offset=offset)


Paging = Annotated[Page, Depends(get_page)]
#: A path parameter holding a row id (anything else simply matches nothing: 404).
PathId = Annotated[str, Path(min_length=1, max_length=64)]
#: A row id given as a query filter.
QueryId = Annotated[str, Query(min_length=1, max_length=64)]
#: A dataset version number (the database stores a 32-bit integer).
VersionNumber = Annotated[int, Path(ge=1, le=2_147_483_647)]
