"""JupyterHub sign-in with a second factor by default, and through a real OpenID Connect provider
(node-oidc-provider on loopback): a researcher reaches a spawnable session only after the provider *and*
their TOTP code; strangers, tampered answers and researchers without a second factor are refused."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from factories import PASSWORD, SYSTEM
from hub_fixtures import enrol, needs_hub
from oidc_support import OidcProvider, needs_provider, provider_sign_in, run_provider, with_query
from sqlalchemy.orm import Session
from workspace_world import WorkspaceWorld

from tre_platform.hub.local import HubResearcher, LocalDeployment
from tre_platform.views import build_views

pytestmark = [pytest.mark.slow, needs_hub, needs_provider]
_XSRF = re.compile(r'name="_xsrf" value="([^"]+)"')


@pytest.fixture
def sso(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[OidcProvider]:
    """The provider, and the deployment's settings pointing at it (ask for it before ``hub``)."""
    with run_provider({}, tmp_path / "oidc.log") as provider:
        for name, value in provider.env().items():
            monkeypatch.setenv(name, value)
        yield provider


def to_provider(researcher: HubResearcher) -> str:
    """Press the hub's 'Sign in with your organisation'; returns where the hub sends the browser."""
    response = researcher.browser.get("/hub/oauth_login", follow_redirects=False)
    assert response.status_code == 302, response.text[:500]
    return response.headers["location"]


def back_to_hub(
    researcher: HubResearcher, hub: LocalDeployment, authorize: str, login: str
) -> httpx.Response:
    callback = provider_sign_in(authorize, login, stop_at=f"{hub.hub_url}/hub/oauth_callback")
    return researcher.browser.get(callback)


def test_a_researcher_signs_in_through_the_provider_and_their_code_and_gets_a_server(
    sso: OidcProvider, hub: LocalDeployment, session: Session, wworld: WorkspaceWorld
) -> None:
    build_views(session, SYSTEM, wworld.p1.code)
    login = enrol(session, wworld.alice, PASSWORD)
    session.commit()
    alice = HubResearcher(hub, wworld.alice.username)
    arrived = back_to_hub(alice, hub, to_provider(alice), wworld.alice.email)
    # The provider did not vouch for a second factor: the hub asks for the TOTP code before anything.
    assert arrived.url.path == "/hub/sso-totp" and "Enter your authenticator code" in arrived.text
    assert "/hub/login" in str(alice.browser.get("/hub/spawn").url)
    xsrf = _XSRF.search(arrived.text)
    assert xsrf
    wrong = alice.browser.post("/hub/sso-totp", data={"otp": "000000", "_xsrf": xsrf.group(1)})
    assert wrong.status_code == 403 and "authenticator code is missing or wrong" in wrong.text
    done = alice.browser.post("/hub/sso-totp", data={"otp": login.otp(), "_xsrf": xsrf.group(1)})
    assert done.status_code == 200, done.text[:500]
    assert alice.projects_offered() == [wworld.p1.code]
    alice.start_workspace(wworld.p1.code)
    server = alice.wait_until_lab_ready()
    assert server["ready"]
    alice.close()


def test_an_unknown_person_is_refused_at_the_hub_and_gets_no_user(
    sso: OidcProvider, hub: LocalDeployment, wworld: WorkspaceWorld
) -> None:
    mallory = HubResearcher(hub, "mallory")
    refused = back_to_hub(mallory, hub, to_provider(mallory), "mallory@elsewhere.example")
    assert (
        refused.status_code == 403 and "there is no tre account for mallory@elsewhere.example" in refused.text
    )
    with hub.hub_api() as api:
        assert [u["name"] for u in api.get("/users").json()] == []
    mallory.close()


def test_a_tampered_state_is_refused_at_the_hub(
    sso: OidcProvider, hub: LocalDeployment, session: Session, wworld: WorkspaceWorld
) -> None:
    enrol(session, wworld.alice, PASSWORD)
    session.commit()
    alice = HubResearcher(hub, wworld.alice.username)
    callback = provider_sign_in(
        to_provider(alice), wworld.alice.email, stop_at=f"{hub.hub_url}/hub/oauth_callback"
    )
    refused = alice.browser.get(with_query(callback, state="eyJzdGF0ZV9pZCI6ICJ4In0="))
    assert refused.status_code == 400 and "state mismatch" in refused.text
    assert "/hub/login" in str(alice.browser.get("/hub/spawn").url)
    alice.close()


def test_a_tampered_nonce_is_refused_at_the_hub(
    sso: OidcProvider, hub: LocalDeployment, session: Session, wworld: WorkspaceWorld
) -> None:
    enrol(session, wworld.alice, PASSWORD)
    session.commit()
    alice = HubResearcher(hub, wworld.alice.username)
    authorize = with_query(to_provider(alice), nonce="an-attackers-nonce")
    refused = back_to_hub(alice, hub, authorize, wworld.alice.email)
    assert refused.status_code == 403 and "ID token failed a check" in refused.text
    alice.close()


def test_a_researcher_without_a_second_factor_is_refused_after_single_sign_on(
    sso: OidcProvider, hub: LocalDeployment, wworld: WorkspaceWorld
) -> None:
    alice = HubResearcher(hub, wworld.alice.username)
    refused = back_to_hub(alice, hub, to_provider(alice), wworld.alice.email)
    assert refused.status_code == 403
    assert "needs a second factor" in refused.text and f"{hub.control_plane_url}/login" in refused.text
    alice.close()


def test_a_researcher_without_a_second_factor_is_refused_at_the_hubs_password_form(
    hub: LocalDeployment, wworld: WorkspaceWorld
) -> None:
    alice = HubResearcher(hub, wworld.alice.username)
    alice.browser.get("/hub/login")
    xsrf = alice.browser.cookies.get("_xsrf", path="/hub/") or ""
    refused = alice.browser.post(
        "/hub/login", data={"username": alice.username, "password": PASSWORD, "otp": "", "_xsrf": xsrf}
    )
    assert refused.status_code == 403
    assert "needs a second factor" in refused.text and f"{hub.control_plane_url}/login" in refused.text
    assert "/hub/login" in str(alice.browser.get("/hub/spawn").url)
    alice.close()
