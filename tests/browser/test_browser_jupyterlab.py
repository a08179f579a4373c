"""The researcher's way in, in a real browser: sign in to JupyterHub (password and TOTP), choose the
project on the spawn form, and JupyterLab opens on a server running as the researcher's Unix user.

Runs against the demo deployment of tests/integration/hub (control plane and hub on loopback, the demo
world ingested); needs root, the workspace environment and configurable-http-proxy (make setup).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "hub"))

from hub_fixtures import DemoDeployment, demo_deployment, needs_hub

from tre_platform.hub.local import HubResearcher

__all__ = ["demo_deployment"]

pytestmark = [pytest.mark.browser, pytest.mark.slow, needs_hub]


@pytest.fixture
def hub_page(browser: object, demo_deployment: DemoDeployment) -> Iterator[Page]:
    """A fresh browser context on the hub; alice's server is stopped afterwards."""
    context = browser.new_context(  # type: ignore[attr-defined]
        base_url=demo_deployment.deployment.hub_url, viewport={"width": 1366, "height": 800}
    )
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    yield tab
    context.close()
    with HubResearcher(demo_deployment.deployment, "alice") as alice:
        if alice.server() is not None:
            alice.stop_workspace()


def test_a_researcher_signs_in_chooses_a_project_and_jupyterlab_opens(
    hub_page: Page, demo_deployment: DemoDeployment, shots: Path
) -> None:
    page = hub_page
    login = demo_deployment.logins["alice"]
    assert login.totp_secret, "the demo researcher has enrolled a second factor"
    page.goto("/hub/login")
    page.locator("#username_input").fill("alice")
    page.locator("#password_input").fill(login.password)
    page.locator("#otp_input").fill(login.otp())
    shot_login = shots / "hub-login.png"
    page.screenshot(path=str(shot_login))
    page.locator("#login_submit").click()

    page.goto("/hub/spawn")
    project = page.get_by_label("Project")
    offered = project.locator("option").evaluate_all("options => options.map(o => o.value)")
    assert demo_deployment.health_project in offered
    project.select_option(demo_deployment.health_project)
    page.screenshot(path=str(shots / "hub-spawn-form.png"))
    page.get_by_role("button", name="Start").click()

    # JupyterLab is ready when its main area and launcher are drawn (the server may take a while to start).
    expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=240_000)
    expect(page.locator(".jp-Launcher").first).to_be_visible(timeout=120_000)
    assert "/user/alice/lab" in page.url
    page.screenshot(path=str(shots / "researcher-jupyterlab.png"))
    assert (shots / "researcher-jupyterlab.png").stat().st_size > 0
