"""Single sign-on on the web through a real OpenID Connect provider (node-oidc-provider on loopback): the
happy path still ends at the user's TOTP step, and every move that tampers with the flow is refused."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from factories import World, enrol_totp, fresh
from fastapi.testclient import TestClient
from oidc_support import OidcProvider, needs_provider, provider_sign_in, run_provider, with_query
from sqlalchemy import select
from sqlalchemy.orm import Session

from tre_platform.api.audit.models import AuditEvent
from tre_platform.api.deps import SESSION_COOKIE
from tre_platform.api.users import oidc, security
from tre_platform.api.users.models import User
from tre_platform.settings import Settings

pytestmark = needs_provider
#: Where the provider sends the browser back to (the test client is the app itself, not a port).
PUBLIC_URL = "http://127.0.0.1:1"
CALLBACK = f"{PUBLIC_URL}/login/oidc/callback"


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[OidcProvider]:
    accounts = {"unverified": {"email": "placeholder", "email_verified": False}}
    with run_provider(accounts, tmp_path / "oidc.log") as running:
        yield running


@pytest.fixture
def sso(client: TestClient, provider: OidcProvider) -> OidcProvider:
    """The app under test uses the provider."""
    app = client.app
    app.state.settings = app.state.settings.model_copy(  # type: ignore[attr-defined]
        update={
            "public_url": PUBLIC_URL,
            "oidc_issuer": provider.issuer,
            "oidc_client_id": provider.client_id,
            "oidc_client_secret": Settings(oidc_client_secret=provider.client_secret).oidc_client_secret,
        }
    )
    return provider


def email_of(db: Session, world: World, role: str) -> str:
    user = db.get(User, world.ids[role])
    assert user is not None
    return user.email


def start(client: TestClient, next_url: str = "/projects") -> str:
    """Press 'Sign in with your organisation'; returns where the app sends the browser."""
    response = client.get(f"/login/oidc?next={urllib.parse.quote(next_url)}", follow_redirects=False)
    assert response.status_code == 303
    return response.headers["location"]


def back(client: TestClient, callback_url: str) -> object:
    """The browser arrives back at the app with the provider's answer."""
    parts = urllib.parse.urlsplit(callback_url)
    return client.get(f"{parts.path}?{parts.query}", follow_redirects=False)


def test_the_login_page_offers_single_sign_on_only_when_configured(client: TestClient, world: World) -> None:
    assert "Sign in with your organisation" not in client.get("/login").text
    refused = client.get("/login/oidc", follow_redirects=False)
    assert refused.status_code == 404 and "single sign-on is not configured" in refused.text


def test_a_researcher_signs_in_through_the_provider_then_gives_their_code(
    client: TestClient, world: World, db: Session, sso: OidcProvider
) -> None:
    assert "Sign in with your organisation" in client.get("/login").text
    secret = enrol_totp(db, world.ids["researcher"])
    authorize = start(client)
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(authorize).query))
    assert authorize.startswith(sso.issuer)
    assert query["code_challenge_method"] == "S256" and query["state"] and query["nonce"]
    callback = provider_sign_in(authorize, email_of(db, world, "researcher"), stop_at=CALLBACK)
    arrived = back(client, callback)
    # The provider did not vouch for a second factor, so the researcher's TOTP still applies.
    assert arrived.headers["location"] == "/login/totp?next=%2Fprojects"  # type: ignore[attr-defined]
    assert client.get("/projects", follow_redirects=False).headers["location"] == "/login/totp"
    token = client.get("/login/totp").text.split('name="csrf_token" value="')[1].split('"')[0]
    done = client.post(
        "/login/totp",
        data={"code": security.totp_now(secret), "csrf_token": token, "next": "/projects"},
        follow_redirects=False,
    )
    assert done.headers["location"] == "/projects"
    assert client.get("/api/v1/auth/whoami").json()["user"]["username"] == "researcher"
    events = fresh(db).scalars(select(AuditEvent).where(AuditEvent.action == "auth.sso")).all()
    assert [(e.decision, e.details["second_factor"]) for e in events] == [("allow", "totp")]


def test_a_researcher_without_a_second_factor_is_sent_to_enrol_after_single_sign_on(
    client: TestClient, world: World, db: Session, sso: OidcProvider
) -> None:
    callback = provider_sign_in(start(client), email_of(db, world, "researcher"), stop_at=CALLBACK)
    assert back(client, callback).headers["location"].startswith("/login/enrol")  # type: ignore[attr-defined]
    assert client.get("/projects", follow_redirects=False).headers["location"] == "/login/enrol"


def test_an_unknown_person_is_refused_with_a_clear_message_and_no_account_is_made(
    client: TestClient, world: World, db: Session, sso: OidcProvider
) -> None:
    before = fresh(db).scalars(select(User.username)).all()
    callback = provider_sign_in(start(client), "mallory@elsewhere.example", stop_at=CALLBACK)
    refused = back(client, callback)
    assert refused.status_code == 401  # type: ignore[attr-defined]
    assert "there is no tre account for mallory@elsewhere.example" in refused.text  # type: ignore[attr-defined]
    assert SESSION_COOKIE not in refused.headers.get("set-cookie", "")  # type: ignore[attr-defined]
    assert fresh(db).scalars(select(User.username)).all() == before
    denied = db.scalars(select(AuditEvent).where(AuditEvent.action == "auth.sso")).all()
    assert [e.decision for e in denied] == ["deny"]


def test_an_email_the_provider_has_not_verified_is_refused(
    client: TestClient, world: World, sso: OidcProvider
) -> None:
    callback = provider_sign_in(start(client), "unverified", stop_at=CALLBACK)
    refused = back(client, callback)
    assert refused.status_code == 401 and "not verified your email" in refused.text  # type: ignore[attr-defined]


def test_a_tampered_state_is_refused(
    client: TestClient, world: World, db: Session, sso: OidcProvider
) -> None:
    callback = provider_sign_in(start(client), email_of(db, world, "researcher"), stop_at=CALLBACK)
    refused = back(client, with_query(callback, state="an-attackers-state"))
    assert refused.status_code == 401 and "does not belong to your browser" in refused.text  # type: ignore[attr-defined]
    assert client.get("/", follow_redirects=False).headers["location"].startswith("/login")


def test_a_tampered_nonce_is_refused(
    client: TestClient, world: World, db: Session, sso: OidcProvider
) -> None:
    # The attacker swaps the nonce on the way to the provider: the ID token then carries the wrong one.
    authorize = with_query(start(client), nonce="an-attackers-nonce")
    callback = provider_sign_in(authorize, email_of(db, world, "researcher"), stop_at=CALLBACK)
    refused = back(client, callback)
    assert refused.status_code == 401 and "ID token failed a check" in refused.text  # type: ignore[attr-defined]


def test_a_code_brought_to_another_browser_is_refused(
    client: TestClient, world: World, db: Session, sso: OidcProvider
) -> None:
    # Login CSRF: the victim's browser never started this sign-in, so it holds no sealed state for it.
    callback = provider_sign_in(start(client), email_of(db, world, "researcher"), stop_at=CALLBACK)
    client.cookies.clear()
    refused = back(client, callback)
    assert refused.status_code == 401 and "not started here" in refused.text  # type: ignore[attr-defined]


def test_a_forged_sealed_state_cookie_is_refused(
    client: TestClient, world: World, db: Session, sso: OidcProvider
) -> None:
    callback = provider_sign_in(start(client), email_of(db, world, "researcher"), stop_at=CALLBACK)
    state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback).query))["state"]
    forged = {"state": state, "nonce": "n", "verifier": "v" * 43, "next": "/"}
    client.cookies.clear()
    client.cookies.set("tre_oidc", security.seal(forged, "another-purpose"))
    refused = back(client, callback)
    assert refused.status_code == 401 and "not started here" in refused.text  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("claims", "accepted"),
    [
        ({"amr": ["pwd", "otp"]}, True),
        ({"amr": ["pwd"]}, False),
        ({"acr": "urn:mace:incommon:iap:silver"}, True),
        ({"acr": "0"}, False),
        ({}, False),
    ],
)
def test_the_providers_amr_or_acr_counts_as_the_second_factor_only_where_configured(
    claims: dict[str, object], accepted: bool
) -> None:
    configured = Settings(oidc_mfa_amr="otp,hwk", oidc_mfa_acr="urn:mace:incommon:iap:silver")
    assert oidc.second_factor_from_provider(claims, configured) is accepted
    assert oidc.second_factor_from_provider(claims, Settings()) is False
