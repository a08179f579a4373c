"""Single sign-on in a real browser: the demo world's control plane with a real OpenID Connect provider
(node-oidc-provider on loopback); a researcher signs in at the provider, then gives their TOTP code."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import shot, totp_code
from oidc_support import needs_provider, run_provider
from playwright.sync_api import Page, expect
from sqlalchemy import create_engine, text

from tre_platform.hub.local import serve_control_plane

pytestmark = needs_provider


@pytest.fixture(scope="module")
def sso_url(demo_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second control plane on the demo world's data, with single sign-on through the provider."""
    logs = tmp_path_factory.mktemp("sso")
    with run_provider({}, logs / "oidc.log") as provider:
        env = {**os.environ, **demo_server.env, **provider.env()}
        with serve_control_plane(env, logs / "server.log") as (url, _):
            yield url


def email_of(server: Any, username: str) -> str:
    engine = create_engine(server.env["TRE_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            email = conn.execute(
                text("SELECT email FROM users WHERE username = :u"), {"u": username}
            ).scalar()
    finally:
        engine.dispose()
    assert isinstance(email, str)
    return email


@pytest.fixture
def sso_page(browser: object, sso_url: str) -> Iterator[Page]:
    context = browser.new_context(base_url=sso_url, viewport={"width": 1366, "height": 800})  # type: ignore[attr-defined]
    # The provider's development pages link a web font; the test never leaves this machine.
    context.route("**/fonts.googleapis.com/**", lambda route: route.abort())
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    yield tab
    context.close()


def at_provider(page: Page, login: str) -> None:
    """Sign in at the provider's development page as ``login`` and allow tre's request."""
    page.get_by_placeholder("Enter any login").fill(login)
    page.get_by_placeholder("and password").fill("any password")
    page.get_by_role("button", name="Sign-in").click()
    page.get_by_role("button", name="Continue").click()


def test_a_researcher_signs_in_through_the_provider_then_their_code(
    sso_page: Page, demo_server: Any, shots: Path, db_url: str
) -> None:
    sso_page.goto("/login")
    sso_page.get_by_role("link", name="Sign in with your organisation").click()
    at_provider(sso_page, email_of(demo_server, "alice"))
    expect(sso_page.get_by_role("heading", name="Enter your authenticator code")).to_be_visible()
    shot(sso_page, shots, "sso-totp-step")
    sso_page.get_by_label("6-digit code").fill(totp_code(demo_server, "alice"))
    sso_page.get_by_role("button", name="Continue").click()
    expect(sso_page.get_by_role("heading", level=1)).to_contain_text("Welcome")


def test_an_unknown_person_is_told_to_ask_an_administrator(
    sso_page: Page, demo_server: Any, db_url: str
) -> None:
    sso_page.goto("/login")
    sso_page.get_by_role("link", name="Sign in with your organisation").click()
    at_provider(sso_page, "mallory@elsewhere.example")
    expect(sso_page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(sso_page.get_by_text("there is no tre account for mallory@elsewhere.example")).to_be_visible()
