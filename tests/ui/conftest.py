"""Fixtures for the web-page tests: the API tests' seeded world and client (tests/factories.py), and
``signed_in``, which gives a client a browser session for any user of the world without the TOTP dance
(the sign-in pages themselves are tested separately, TOTP included)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from factories import (
    _cheap_argon2,
    _postgres_template,
    _shared_app,
    _sqlite_template,
    client,
    db,
    db_url,
    fresh,
    session,
    world,
    world_sessions,
)
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tre_platform.api.deps import SESSION_COOKIE
from tre_platform.api.users import service as users
from tre_platform.api.users.models import User

__all__ = [
    "_cheap_argon2",
    "_postgres_template",
    "_shared_app",
    "_sqlite_template",
    "client",
    "db",
    "db_url",
    "session",
    "signed_in",
    "world",
    "world_sessions",
]

SignIn = Callable[[str], str]


@pytest.fixture
def signed_in(client: TestClient, db: Session, world: object) -> SignIn:
    """``signed_in(role)`` puts a fresh session for that world user (or a user id) in the client; returns
    the session's CSRF token."""

    def sign_in(role: str) -> str:
        user = db.get(User, world.ids.get(role, role))  # type: ignore[attr-defined]
        assert user is not None
        web_session, raw = users.start_web_session(db, user, mfa_passed=True)
        token = web_session.csrf_token
        fresh(db)
        client.cookies.clear()
        client.cookies.set(SESSION_COOKIE, raw)
        return token

    return sign_in
