"""Sign-in and credentials: passwords, the TOTP step, sessions and CSRF, API tokens, storage at rest,
and that no traceback ever reaches a client."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

import pytest
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError
from factories import PASSWORD, World, enrol_totp, fresh, row_counts
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from tre_platform.api.app import create_app
from tre_platform.api.audit.models import AuditEvent
from tre_platform.api.deps import CSRF_HEADER, SESSION_COOKIE
from tre_platform.api.users import security
from tre_platform.api.users.models import ApiToken, User
from tre_platform.clock import clock
from tre_platform.db.models import Base

API = "/api/v1"


def login(client: TestClient, username: str, password: str = PASSWORD) -> Any:
    return client.post(f"{API}/auth/login", json={"username": username, "password": password})


def dump_database(db: Session) -> str:
    """Every value in every table, as one string (to search for secrets that must not be there)."""
    fresh(db)
    parts = []
    for name in Base.metadata.tables:
        for row in db.execute(text(f"SELECT * FROM {name}")):
            parts.append(json.dumps([str(value) for value in row]))
    return "\n".join(parts)


# Passwords -----------------------------------------------------------------------------------------


def test_wrong_password_is_401_and_the_attempt_is_audited(
    client: TestClient, world: World, db: Session
) -> None:
    before = row_counts(db)
    response = login(client, "researcher", "not the password at all")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthenticated"
    assert SESSION_COOKIE not in response.cookies
    assert login(client, "nobody-at-all").status_code == 401
    after = row_counts(db)
    assert after.pop("audit_events") == before.pop("audit_events") + 2
    # Each failure is kept towards the lockout (per account and per client).
    assert after.pop("login_attempts") == before.pop("login_attempts") + 2
    assert after == before  # no session was created
    denied = db.scalars(
        select(AuditEvent).where(AuditEvent.action == "auth.login", AuditEvent.decision == "deny")
    )
    assert {e.actor for e in denied} == {"researcher", "nobody-at-all"}


def test_password_hashes_are_argon2id(world: World, db: Session) -> None:
    hashes = [u.password_hash for u in db.scalars(select(User))]
    assert hashes and all(h is not None and h.startswith("$argon2id$") for h in hashes)
    assert PASSWORD not in dump_database(db)
    # Production uses argon2-cffi's defaults: argon2id with RFC 9106 parameters, not the test's cheap ones.
    default = PasswordHasher()
    assert default.type is Type.ID and default.memory_cost >= 19 * 1024


def test_verify_password_rejects_garbage_hashes() -> None:
    assert security.verify_password("not-a-hash", "anything") is False
    assert security.verify_password(None, "anything") is False
    with pytest.raises(InvalidHashError):
        PasswordHasher().verify("not-a-hash", "anything")


def test_password_change_needs_the_current_password(client: TestClient, world: World) -> None:
    headers = world.headers("researcher")
    wrong = client.post(
        f"{API}/auth/password",
        json={"current_password": "guess guess guess", "new_password": "another long passphrase"},
        headers=headers,
    )
    assert wrong.status_code == 403 and wrong.json()["field"] == "current_password"
    short = client.post(
        f"{API}/auth/password", json={"current_password": PASSWORD, "new_password": "short"}, headers=headers
    )
    assert short.status_code == 422 and "at least 12 characters" in short.json()["message"]
    ok = client.post(
        f"{API}/auth/password",
        json={"current_password": PASSWORD, "new_password": "another long passphrase"},
        headers=headers,
    )
    assert ok.status_code == 204
    assert login(client, "researcher").status_code == 401
    assert login(client, "researcher", "another long passphrase").status_code == 200


# Browser sessions, TOTP and CSRF -------------------------------------------------------------------


def test_researcher_session_cookie_is_httponly_samesite_and_needs_csrf(
    client: TestClient, world: World, db: Session
) -> None:
    secret = enrol_totp(db, world.ids["researcher"])
    response = login(client, "researcher")
    assert response.status_code == 200
    # Researchers pass a second factor too, by default: the password alone opens nothing.
    assert response.json()["mfa_required"] is True
    set_cookie = "; ".join(
        v for k, v in response.headers.multi_items() if k == "set-cookie" and SESSION_COOKIE in v
    )
    assert "HttpOnly" in set_cookie and "SameSite=lax" in set_cookie and "Secure" not in set_cookie
    csrf = response.json()["csrf_token"]
    assert client.get(f"{API}/orgs").status_code == 401
    code = {"code": security.totp_now(secret)}
    assert client.post(f"{API}/auth/totp", json=code, headers={CSRF_HEADER: csrf}).status_code == 200
    assert client.get(f"{API}/orgs").status_code == 200
    payload = {
        "title": "Cookie project",
        "lay_summary": "A project created from the browser.",
        "purpose": "policy_evidence",
        "legal_gateway": "dea",
        "start_date": clock.today().isoformat(),
        "end_date": (clock.today() + dt.timedelta(days=10)).isoformat(),
    }
    missing = client.post(f"{API}/projects", json=payload)
    assert missing.status_code == 403 and CSRF_HEADER in missing.json()["message"]
    wrong = client.post(f"{API}/projects", json=payload, headers={CSRF_HEADER: "forged"})
    assert wrong.status_code == 403
    ok = client.post(f"{API}/projects", json=payload, headers={CSRF_HEADER: csrf})
    assert ok.status_code == 201
    assert client.post(f"{API}/auth/logout", headers={CSRF_HEADER: csrf}).status_code == 204
    assert client.get(f"{API}/orgs").status_code == 401


def test_secure_cookie_when_configured(
    world_sessions: tuple[World, sessionmaker[Session]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tre_platform.settings import get_settings

    monkeypatch.setenv("TRE_COOKIE_SECURE", "true")
    get_settings.cache_clear()
    app = create_app()
    app.state.session_factory = world_sessions[1]  # stay inside the test's database transaction
    with TestClient(app) as secure_client:
        response = login(secure_client, "researcher")
    cookies = [v for k, v in response.headers.multi_items() if k == "set-cookie"]
    assert cookies and all("Secure" in c for c in cookies)


def test_admin_must_enrol_and_pass_totp_before_using_the_api(
    client: TestClient, world: World, db: Session
) -> None:
    response = login(client, "admin")
    assert response.status_code == 200
    assert response.json()["mfa_required"] is True and response.json()["mfa_enrolled"] is False
    csrf = {CSRF_HEADER: response.json()["csrf_token"]}
    # The password alone opens nothing but the sign-in routes.
    assert client.get(f"{API}/orgs").status_code == 401
    assert "TOTP" in client.get(f"{API}/orgs").json()["message"]
    assert client.get(f"{API}/auth/whoami").json()["mfa_passed"] is False
    enrolment = client.post(f"{API}/auth/totp/enrol", headers=csrf)
    assert enrolment.status_code == 200
    secret = enrolment.json()["secret"]
    assert enrolment.json()["uri"].startswith("otpauth://totp/")
    assert secret not in dump_database(db), "the TOTP secret is stored encrypted"
    bad = client.post(f"{API}/auth/totp/confirm", json={"code": "000000"}, headers=csrf)
    if security.totp_now(secret) != "000000":
        assert bad.status_code == 422
    confirmed = client.post(
        f"{API}/auth/totp/confirm", json={"code": security.totp_now(secret)}, headers=csrf
    )
    assert confirmed.status_code == 200 and confirmed.json()["mfa_passed"] is True
    assert client.get(f"{API}/orgs").status_code == 200
    # A second enrolment from a password-only session would bypass TOTP: refused.
    assert client.post(f"{API}/auth/logout", headers=csrf).status_code == 204

    second = login(client, "admin")
    csrf = {CSRF_HEADER: second.json()["csrf_token"]}
    assert second.json()["mfa_enrolled"] is True
    assert client.post(f"{API}/auth/totp/enrol", headers=csrf).status_code == 409
    assert client.post(f"{API}/auth/totp", json={"code": "12345"}, headers=csrf).status_code == 422
    wrong_code = f"{(int(security.totp_now(secret)) + 500_000) % 1_000_000:06d}"
    assert client.post(f"{API}/auth/totp", json={"code": wrong_code}, headers=csrf).status_code == 401
    assert client.get(f"{API}/orgs").status_code == 401
    # Without the CSRF header even the TOTP step is refused.
    assert client.post(f"{API}/auth/totp", json={"code": security.totp_now(secret)}).status_code == 403
    # The code that confirmed the enrolment was accepted once and is refused from then on (replay):
    # the next one works.
    clock.freeze(clock.now() + dt.timedelta(seconds=30))
    passed = client.post(f"{API}/auth/totp", json={"code": security.totp_now(secret)}, headers=csrf)
    assert passed.status_code == 200
    assert client.get(f"{API}/orgs").status_code == 200


def test_an_expired_session_is_refused(client: TestClient, world: World) -> None:
    assert login(client, "researcher").status_code == 200
    clock.freeze(clock.now() + dt.timedelta(days=2))
    response = client.get(f"{API}/orgs")
    assert response.status_code == 401 and "sign in again" in response.json()["message"]


def test_deactivating_a_user_ends_their_access(client: TestClient, world: World) -> None:
    response = client.patch(
        f"{API}/users/{world.ids['researcher']}", json={"is_active": False}, headers=world.headers("admin")
    )
    assert response.status_code == 200
    assert client.get(f"{API}/orgs", headers=world.headers("researcher")).status_code == 401
    assert login(client, "researcher").status_code == 401


# API tokens ----------------------------------------------------------------------------------------


def test_tokens_are_stored_only_as_sha256_and_shown_once(
    client: TestClient, world: World, db: Session
) -> None:
    response = client.post(f"{API}/auth/tokens", json={"name": "laptop"}, headers=world.headers("researcher"))
    assert response.status_code == 201
    raw = response.json()["token"]
    assert raw.startswith("tre_") and len(raw) > 40
    everything = dump_database(db)
    assert raw not in everything
    for token in world.tokens.values():
        assert token not in everything
    stored = db.scalar(select(ApiToken).where(ApiToken.id == response.json()["id"]))
    assert stored is not None and stored.token_hash == hashlib.sha256(raw.encode()).hexdigest()
    listed = client.get(f"{API}/auth/tokens", headers=world.headers("researcher")).json()
    assert all("token" not in t and "token_hash" not in t for t in listed)
    assert client.get(f"{API}/auth/whoami", headers={"Authorization": f"Bearer {raw}"}).status_code == 200


def test_token_use_is_recorded(client: TestClient, world: World, db: Session) -> None:
    client.get(f"{API}/auth/whoami", headers=world.headers("approver"))
    fresh(db)
    prefix = world.tokens["approver"][:12]
    token = db.scalar(select(ApiToken).where(ApiToken.prefix == prefix))
    assert token is not None and token.last_used_at is not None


def test_revoked_token_is_refused(client: TestClient, world: World) -> None:
    created = client.post(
        f"{API}/auth/tokens", json={"name": "temp"}, headers=world.headers("researcher")
    ).json()
    bearer = {"Authorization": f"Bearer {created['token']}"}
    assert client.get(f"{API}/auth/whoami", headers=bearer).status_code == 200
    revoked = client.delete(f"{API}/auth/tokens/{created['id']}", headers=world.headers("researcher"))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    response = client.get(f"{API}/auth/whoami", headers=bearer)
    assert response.status_code == 401 and "revoked" in response.json()["message"]
    assert response.headers["www-authenticate"] == "Bearer"


def test_expired_token_is_refused(client: TestClient, world: World) -> None:
    created = client.post(
        f"{API}/auth/tokens",
        json={"name": "short", "expires_in_days": 1},
        headers=world.headers("researcher"),
    ).json()
    clock.freeze(clock.now() + dt.timedelta(days=1, seconds=1))
    response = client.get(f"{API}/auth/whoami", headers={"Authorization": f"Bearer {created['token']}"})
    assert response.status_code == 401 and "expired" in response.json()["message"]


def test_another_users_token_cannot_be_revoked(client: TestClient, world: World) -> None:
    response = client.delete(
        f"{API}/auth/tokens/{world.spare_token_ids['admin']}", headers=world.headers("researcher")
    )
    assert response.status_code == 404


@pytest.mark.parametrize("header", ["Bearer", "Basic dXNlcjpwYXNz", "Bearer not-a-token", "tre_abc"])
def test_malformed_or_unknown_credentials_are_401(client: TestClient, world: World, header: str) -> None:
    response = client.get(f"{API}/orgs", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["error"] == "unauthenticated"


def test_a_token_limited_to_another_scope_cannot_use_the_api(client: TestClient, world: World) -> None:
    created = client.post(
        f"{API}/auth/tokens",
        json={"name": "hub only", "scopes": ["hub"]},
        headers=world.headers("researcher"),
    ).json()
    response = client.get(f"{API}/orgs", headers={"Authorization": f"Bearer {created['token']}"})
    assert response.status_code == 401 and "limited to hub" in response.json()["message"]


# Errors --------------------------------------------------------------------------------------------


def test_an_unexpected_exception_is_a_generic_500_without_traceback(world: World) -> None:
    app: FastAPI = create_app()

    @app.get("/api/v1/boom")
    def boom() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    with TestClient(app, raise_server_exceptions=False) as test_client:
        response = test_client.get("/api/v1/boom")
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "internal" and body["message"].startswith("internal error; reference ")
    assert (
        "hunter2" not in response.text
        and "Traceback" not in response.text
        and "RuntimeError" not in response.text
    )


def test_the_catch_all_means_even_a_strict_test_client_sees_the_500(world: World) -> None:
    app: FastAPI = create_app()

    @app.post("/api/v1/boom")
    def boom() -> None:
        raise KeyError("internal")

    with TestClient(app) as strict:  # raise_server_exceptions=True: nothing escapes the app
        response = strict.post("/api/v1/boom")
    assert response.status_code == 500 and response.json()["error"] == "internal"


def test_unknown_route_and_method_are_json(client: TestClient, world: World) -> None:
    missing = client.get(f"{API}/nothing-here", headers=world.headers("admin"))
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    wrong_method = client.put(f"{API}/orgs", headers=world.headers("admin"))
    assert wrong_method.status_code == 405 and wrong_method.json()["error"] == "method_not_allowed"


def test_a_denied_request_is_audited(client: TestClient, world: World, db: Session) -> None:
    client.post(
        f"{API}/orgs", json={"slug": "nope", "name": "N", "kind": "both"}, headers=world.headers("researcher")
    )
    fresh(db)
    event = db.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
    assert event is not None
    assert (event.action, event.decision, event.actor) == ("access.denied", "deny", "researcher")
    assert "administrator" in event.reasons[0]
