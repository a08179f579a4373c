"""Signing in on the web: password, the TOTP step (and first enrolment), cookies, signing out."""

from __future__ import annotations

import datetime as dt
import re
from http.cookies import SimpleCookie

from factories import PASSWORD, World, enrol_totp, fresh
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tre_platform.api.audit.models import AuditEvent
from tre_platform.api.deps import SESSION_COOKIE
from tre_platform.api.users import security
from tre_platform.api.users.models import User, WebSession
from tre_platform.clock import clock


def form_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has a form with a CSRF token"
    return found.group(1)


def set_cookie_headers(response: object) -> dict[str, str]:
    headers = response.headers.get_list("set-cookie")  # type: ignore[attr-defined]
    return {h.split("=", 1)[0]: h for h in headers}


def sign_in(client: TestClient, username: str, password: str = PASSWORD, next_url: str = "/") -> object:
    token = form_token(client.get("/login").text)
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token, "next": next_url},
        follow_redirects=False,
    )


def test_a_researcher_signs_in_with_a_password_then_a_code_and_gets_safe_cookies(
    client: TestClient, world: World, db: Session
) -> None:
    secret = enrol_totp(db, world.ids["researcher"])
    response = sign_in(client, "researcher", next_url="/projects")
    assert response.status_code == 303 and response.headers["location"] == "/login/totp?next=%2Fprojects"
    cookie = set_cookie_headers(response)[SESSION_COOKIE].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    # Password alone reaches nothing: researchers pass a second factor too, by default.
    assert client.get("/projects", follow_redirects=False).headers["location"] == "/login/totp"
    token = form_token(client.get("/login/totp?next=/projects").text)
    done = client.post(
        "/login/totp",
        data={"code": security.totp_now(secret), "csrf_token": token, "next": "/projects"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == "/projects"
    home = client.get("/")
    assert home.status_code == 200 and "Your projects" in home.text
    # The same session works for the API: one sign-in for both.
    assert client.get("/api/v1/auth/whoami").json()["user"]["username"] == "researcher"


def test_session_cookie_is_secure_when_the_settings_say_so(client: TestClient, world: World) -> None:
    app = client.app
    app.state.settings = app.state.settings.model_copy(update={"cookie_secure": True})  # type: ignore[attr-defined]
    # Secure cookies come back only over HTTPS.
    with TestClient(app, base_url="https://testserver") as secure:
        response = sign_in(secure, "researcher")
        assert response.status_code == 303
        assert secure.get("/").status_code == 200
    cookie = SimpleCookie(set_cookie_headers(response)[SESSION_COOKIE])
    assert cookie[SESSION_COOKIE]["secure"] is True
    assert cookie[SESSION_COOKIE]["httponly"] is True


def test_a_wrong_password_is_refused_next_to_the_form_and_audited(
    client: TestClient, world: World, db: Session
) -> None:
    response = sign_in(client, "researcher", password="not the password at all")
    assert response.status_code == 401
    assert "wrong username or password" in response.text
    assert SESSION_COOKIE not in set_cookie_headers(response)
    denied = fresh(db).scalars(select(AuditEvent).where(AuditEvent.action == "auth.login")).all()
    assert any(e.decision == "deny" and e.actor == "researcher" for e in denied)


def test_empty_fields_get_a_message_each(client: TestClient, world: World) -> None:
    token = form_token(client.get("/login").text)
    response = client.post("/login", data={"username": "", "password": "", "csrf_token": token})
    assert response.status_code == 401
    assert 'id="username-error"' in response.text and 'id="password-error"' in response.text


def test_the_sign_in_form_needs_its_token(client: TestClient, world: World) -> None:
    client.get("/login")
    response = client.post("/login", data={"username": "researcher", "password": PASSWORD})
    assert response.status_code == 403


def test_sign_in_never_redirects_to_another_site(client: TestClient, world: World) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        response = sign_in(client, "researcher", next_url=target)
        assert response.headers["location"] == "/login/enrol?next=%2F"


def test_a_researcher_without_a_second_factor_is_sent_to_enrol_by_default(
    client: TestClient, world: World
) -> None:
    response = sign_in(client, "researcher", next_url="/projects")
    assert response.headers["location"] == "/login/enrol?next=%2Fprojects"
    for page in ("/", "/projects", "/account"):
        assert client.get(page, follow_redirects=False).headers["location"] == "/login/enrol"
    assert "Set up" in client.get("/login/enrol").text or "authenticator" in client.get("/login/enrol").text


def test_an_admin_enrols_totp_at_first_sign_in_then_needs_a_code(
    client: TestClient, world: World, db: Session
) -> None:
    response = sign_in(client, "admin")
    assert response.headers["location"].startswith("/login/enrol")
    # Until the second step is done, no page is reachable.
    assert client.get("/admin/users", follow_redirects=False).headers["location"] == "/login/enrol"
    enrol = client.get("/login/enrol")
    secret = re.search(r'class="secret">([A-Z2-7]+)<', enrol.text)
    assert secret, "the enrolment page shows the key"
    token = form_token(enrol.text)
    wrong = client.post(
        "/login/enrol", data={"code": "000000", "csrf_token": token, "secret": secret.group(1)}
    )
    assert wrong.status_code == 422 and 'id="code-error"' in wrong.text
    clock.freeze(clock.now())
    code = security.totp_now(secret.group(1))
    done = client.post("/login/enrol", data={"code": code, "csrf_token": token}, follow_redirects=False)
    assert done.status_code == 303
    assert client.get("/admin/users").status_code == 200

    client.post("/logout", data={"csrf_token": token})
    assert client.get("/", follow_redirects=False).headers["location"].startswith("/login")
    assert fresh(db).scalar(select(WebSession).where(WebSession.csrf_token == token)) is None

    response = sign_in(client, "admin", next_url="/admin/audit")
    assert response.headers["location"].startswith("/login/totp")
    page = client.get(response.headers["location"])
    token = form_token(page.text)
    bad = client.post("/login/totp", data={"code": "123456", "csrf_token": token, "next": "/admin/audit"})
    assert bad.status_code == 401 and 'id="code-error"' in bad.text
    # The enrolment's code was used once; it is refused now (replay), the next one is accepted.
    reused = client.post("/login/totp", data={"code": code, "csrf_token": token, "next": "/admin/audit"})
    assert reused.status_code == 401 and "already used" in reused.text
    clock.advance(dt.timedelta(seconds=30))
    good = client.post(
        "/login/totp",
        data={"code": security.totp_now(secret.group(1)), "csrf_token": token, "next": "/admin/audit"},
        follow_redirects=False,
    )
    assert good.headers["location"] == "/admin/audit"
    assert "Audit log" in client.get("/admin/audit").text


def test_signing_out_ends_the_session_on_the_server(client: TestClient, world: World, db: Session) -> None:
    sign_in(client, "researcher")
    raw = client.cookies.get(SESSION_COOKIE)
    token = form_token(client.get("/").text)
    client.post("/logout", data={"csrf_token": token})
    # Even a copied cookie is worthless now.
    client.cookies.set(SESSION_COOKIE, raw or "")
    assert client.get("/", follow_redirects=False).status_code == 303
    user = fresh(db).scalar(select(User).where(User.username == "researcher"))
    assert user is not None
    assert fresh(db).scalars(select(WebSession).where(WebSession.user_id == user.id)).all() == []
