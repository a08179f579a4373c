"""Account security: TOTP replay protection, lockout after failed sign-ins, and the account page
(password change, authenticator set-up with a QR code, personal API tokens)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from factories import PASSWORD, World, enrol_totp, fresh, row_counts
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tre_platform.actor import Actor
from tre_platform.api.audit.models import AuditEvent
from tre_platform.api.users import security
from tre_platform.api.users import service as users
from tre_platform.api.users.models import ApiToken, User
from tre_platform.clock import clock
from tre_platform.errors import Unauthenticated

NEW_PASSWORD = "a different long passphrase"


def form_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has a form with a CSRF token"
    return found.group(1)


def field_error(html: str, field: str) -> str:
    found = re.search(
        rf'id="{re.escape(field)}-error"><span class="visually-hidden">Error: </span>([^<]+)<', html
    )
    assert found, f"no error message next to {field!r}"
    return found.group(1)


def sign_in(client: TestClient, username: str, password: str = PASSWORD) -> object:
    client.cookies.clear()
    token = form_token(client.get("/login").text)
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token, "next": "/"},
        follow_redirects=False,
    )


def enrolled(db: Session, world: World, role: str) -> str:
    """Give the world's ``role`` user a confirmed TOTP factor (the clock frozen); returns the secret."""
    return enrol_totp(db, world.ids[role])


def limits(client: TestClient, **update: int) -> None:
    app = client.app
    app.state.settings = app.state.settings.model_copy(update=update)  # type: ignore[attr-defined]


def audited(db: Session, action: str) -> list[AuditEvent]:
    return list(fresh(db).scalars(select(AuditEvent).where(AuditEvent.action == action)))


# TOTP replay ---------------------------------------------------------------------------------------


def test_a_totp_code_is_accepted_once_and_older_codes_never(db: Session, world: World) -> None:
    user = db.get(User, world.ids["approver"])
    assert user is not None
    clock.freeze(dt.datetime(2026, 11, 22, 12, 0, 5, tzinfo=dt.UTC))
    _, secret, _ = users.start_totp_enrolment(db, Actor.of(user))
    first = security.totp_now(secret)
    users.confirm_totp(db, Actor.of(user), first)
    web_session, _ = users.start_web_session(db, user, mfa_passed=False)
    # Still inside the code's 30 seconds (and its drift window): the same code is refused.
    clock.advance(dt.timedelta(seconds=10))
    with pytest.raises(Unauthenticated, match="already used"):
        users.pass_mfa(db, web_session, first)
    clock.advance(dt.timedelta(seconds=30))
    current = security.totp_now(secret)
    assert users.pass_mfa(db, web_session, current).mfa_passed
    # The previous step's code is within the drift window, but older than the last accepted: refused.
    assert security.totp_step(secret, first) is not None
    assert users.verify_totp(user, first) is False
    assert users.verify_totp(user, current) is False
    assert security.totp_step(secret, "12345") is None and security.totp_step(secret, "abcdef") is None


# Lockout -------------------------------------------------------------------------------------------


def test_repeated_wrong_passwords_lock_the_account_even_for_the_right_one(
    client: TestClient, world: World, db: Session
) -> None:
    limits(client, login_max_failures=3, login_failure_window_minutes=15)
    clock.freeze(clock.now())
    for _ in range(3):
        assert sign_in(client, "researcher", "not the password at all").status_code == 401  # type: ignore[attr-defined]
    locked = sign_in(client, "researcher")
    assert locked.status_code == 429  # type: ignore[attr-defined]
    assert "too many failed sign-in attempts for this account" in locked.text  # type: ignore[attr-defined]
    assert "wait 15 minutes" in locked.text  # type: ignore[attr-defined]
    # Another account from the same client is not affected by this account's lock.
    assert sign_in(client, "colleague").status_code == 303  # type: ignore[attr-defined]
    lockouts = audited(db, "auth.lockout")
    assert [e.actor for e in lockouts] == ["researcher"]
    refused = [e for e in audited(db, "auth.login") if e.decision == "deny" and e.actor == "researcher"]
    assert len(refused) == 4 and "too many failed" in refused[-1].reasons[0]
    # The lock lifts when the window since the last failure has passed.
    clock.advance(dt.timedelta(minutes=16))
    assert sign_in(client, "researcher").status_code == 303  # type: ignore[attr-defined]


def test_failures_across_accounts_lock_the_client(client: TestClient, world: World, db: Session) -> None:
    limits(client, login_max_failures=5, login_max_failures_per_client=3)
    for name in ("nobody-1", "nobody-2", "researcher"):
        assert sign_in(client, name, "password spraying attempt").status_code == 401  # type: ignore[attr-defined]
    locked = sign_in(client, "colleague")
    assert locked.status_code == 429  # type: ignore[attr-defined]
    assert "your network address" in locked.text  # type: ignore[attr-defined]
    lockout = audited(db, "auth.lockout")
    assert lockout and lockout[0].details["client_failures"] == 3


def test_wrong_totp_codes_count_towards_the_lockout(client: TestClient, world: World, db: Session) -> None:
    limits(client, login_max_failures=3)
    secret = enrolled(db, world, "approver")
    response = sign_in(client, "approver")
    assert response.headers["location"].startswith("/login/totp")  # type: ignore[attr-defined]
    token = form_token(client.get("/login/totp").text)
    wrong = f"{(int(security.totp_now(secret)) + 500_000) % 1_000_000:06d}"
    for _ in range(3):
        bad = client.post("/login/totp", data={"code": wrong, "csrf_token": token})
        assert bad.status_code == 401 and field_error(bad.text, "code")
    right = client.post("/login/totp", data={"code": security.totp_now(secret), "csrf_token": token})
    assert right.status_code == 429 and "too many failed" in field_error(right.text, "code")
    assert client.get("/", follow_redirects=False).headers["location"] == "/login/totp"
    assert [e.details["step"] for e in audited(db, "auth.lockout")] == ["totp"]


def test_a_completed_sign_in_forgets_earlier_failures(client: TestClient, world: World, db: Session) -> None:
    limits(client, login_max_failures=3)
    secret = enrolled(db, world, "researcher")
    for _ in range(2):
        for _ in range(2):
            sign_in(client, "researcher", "not the password at all")
        assert sign_in(client, "researcher").status_code == 303  # type: ignore[attr-defined]
        # Only the second step completes the sign-in (every role has a second factor by default).
        token = form_token(client.get("/login/totp").text)
        done = client.post("/login/totp", data={"code": security.totp_now(secret), "csrf_token": token})
        assert done.status_code == 200 and "Your projects" in done.text
        clock.advance(dt.timedelta(seconds=30))


def test_the_api_sign_in_shares_the_lockout(client: TestClient, world: World) -> None:
    limits(client, login_max_failures=2)
    for _ in range(2):
        wrong = client.post("/api/v1/auth/login", json={"username": "researcher", "password": "x" * 12})
        assert wrong.status_code == 401
    locked = client.post("/api/v1/auth/login", json={"username": "researcher", "password": PASSWORD})
    assert locked.status_code == 429 and locked.json()["error"] == "too_many_attempts"


# The account page -----------------------------------------------------------------------------------


def test_password_change_needs_the_current_password_and_signs_out(
    client: TestClient, world: World, db: Session, signed_in
) -> None:
    token = signed_in("researcher")
    page = client.get("/account")
    assert page.status_code == 200 and "Change your password" in page.text
    before = row_counts(db)
    cases = [
        ({"current_password": "wrong password here"}, "current_password", "current password is wrong"),
        ({"confirm_password": "something else entirely"}, "confirm_password", "differ"),
        ({"new_password": "short", "confirm_password": "short"}, "new_password", "at least 12"),
    ]
    for change, field, message in cases:
        form = {
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
            "csrf_token": token,
        } | change
        response = client.post("/account/password", data=form)
        assert response.status_code == 422
        assert message in field_error(response.text, field)
        assert row_counts(db) == before
    done = client.post(
        "/account/password",
        data={
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
            "csrf_token": token,
        },
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == "/login"
    assert client.get("/account", follow_redirects=False).status_code == 303, "the old session ended"
    assert sign_in(client, "researcher").status_code == 401  # type: ignore[attr-defined]
    assert sign_in(client, "researcher", NEW_PASSWORD).status_code == 303  # type: ignore[attr-defined]
    assert any(e.actor == "researcher" for e in audited(db, "user.password.set"))


def test_a_personal_token_is_shown_once_works_and_can_be_revoked(
    client: TestClient, world: World, db: Session, signed_in
) -> None:
    token = signed_in("researcher")
    before = row_counts(db)
    empty = client.post(
        "/account/tokens", data={"name": "", "scope": "api", "expires_in_days": "30", "csrf_token": token}
    )
    assert empty.status_code == 422 and field_error(empty.text, "name") == "this field is required"
    odd = client.post(
        "/account/tokens",
        data={"name": "x", "scope": "admin", "expires_in_days": "9999", "csrf_token": token},
    )
    assert odd.status_code == 422
    assert field_error(odd.text, "scope") and field_error(odd.text, "expires_in_days")
    assert row_counts(db) == before

    created = client.post(
        "/account/tokens",
        data={"name": "laptop scripts", "scope": "api", "expires_in_days": "30", "csrf_token": token},
    )
    assert created.status_code == 201
    found = re.search(r'id="new-token">(tre_[A-Za-z0-9_-]+)<', created.text)
    assert found, "the new token is shown"
    raw = found.group(1)
    row = fresh(db).scalar(select(ApiToken).where(ApiToken.name == "laptop scripts"))
    assert row is not None and row.scopes == ["api"] and raw not in str(row.token_hash)
    assert row.expires_at is not None
    assert (row.expires_at - clock.now()).days in (29, 30)
    listing = client.get("/account").text
    assert raw not in listing and row.prefix in listing, "shown once; afterwards only its prefix"

    bearer = {"Authorization": f"Bearer {raw}"}
    client.cookies.clear()
    assert client.get("/api/v1/auth/whoami", headers=bearer).json()["user"]["username"] == "researcher"
    token = signed_in("researcher")
    revoked = client.post(f"/account/tokens/{row.id}/revoke", data={"csrf_token": token})
    assert revoked.status_code == 200 and "is revoked" in revoked.text
    client.cookies.clear()
    assert client.get("/api/v1/auth/whoami", headers=bearer).status_code == 401


def test_nobody_revokes_another_users_token(client: TestClient, world: World, db: Session, signed_in) -> None:
    token = signed_in("colleague")
    other = world.spare_token_ids["researcher"]
    assert client.post(f"/account/tokens/{other}/revoke", data={"csrf_token": token}).status_code == 404
    assert other not in client.get("/account").text
    assert fresh(db).get(ApiToken, other).revoked_at is None  # type: ignore[union-attr]


def test_a_researcher_sets_up_an_authenticator_with_a_qr_code(
    client: TestClient, world: World, db: Session, signed_in
) -> None:
    token = signed_in("researcher")
    clock.freeze(clock.now())
    page = client.get("/account/totp")
    assert page.status_code == 200
    assert '<figure class="qr"' in page.text and "<svg" in page.text and "<path" in page.text
    secret = re.search(r'class="secret">([A-Z2-7]+)<', page.text)
    assert secret
    wrong = client.post(
        "/account/totp",
        data={
            "code": "000000" if security.totp_now(secret.group(1)) != "000000" else "111111",
            "csrf_token": token,
        },
    )
    assert wrong.status_code == 422 and "not valid" in field_error(wrong.text, "code")
    assert fresh(db).get(User, world.ids["researcher"]).totp_enabled is False  # type: ignore[union-attr]
    done = client.post(
        "/account/totp", data={"code": security.totp_now(secret.group(1)), "csrf_token": token}
    )
    assert done.status_code == 200 and "set up" in done.text
    assert fresh(db).get(User, world.ids["researcher"]).totp_enabled is True  # type: ignore[union-attr]
    # A factor set up by choice is asked for at every sign-in from now on.
    clock.advance(dt.timedelta(seconds=30))
    assert sign_in(client, "researcher").headers["location"].startswith("/login/totp")  # type: ignore[attr-defined]
    assert client.get("/account/totp", follow_redirects=False).headers["location"] == "/login/totp"


def test_first_sign_in_enrolment_shows_a_qr_code(client: TestClient, world: World) -> None:
    response = sign_in(client, "approver")
    assert response.headers["location"].startswith("/login/enrol")  # type: ignore[attr-defined]
    enrol = client.get("/login/enrol")
    assert '<figure class="qr"' in enrol.text and "<svg" in enrol.text
