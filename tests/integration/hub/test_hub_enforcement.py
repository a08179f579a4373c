"""The live bug, against a real JupyterHub: a data owner revoking an unrelated agreement through the REST
API leaves a running workspace running and its views untouched; revoking the agreement the workspace
relies on stops it and removes only that dataset's view.

Needs root, the workspace environment and configurable-http-proxy (see test_hub_workspace.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from factories import PASSWORD, SYSTEM, make_agreement, make_token, make_user
from fastapi.testclient import TestClient
from hub_fixtures import enrol, needs_hub
from sqlalchemy.orm import Session
from workspace_world import WorkspaceWorld

from tre_platform.api.app import create_app
from tre_platform.hub.local import HubResearcher, LocalDeployment, wait_for
from tre_platform.settings import get_settings
from tre_platform.views import build_views


def _builds(views: Path) -> dict[str, str]:
    return {p.name: os.readlink(p) for p in views.iterdir() if p.is_symlink()}


@pytest.mark.slow
@needs_hub
def test_an_unrelated_revocation_leaves_a_running_workspace_alone_and_a_related_one_stops_it(
    session: Session,
    wworld: WorkspaceWorld,
    data_dir: Path,
    hub: LocalDeployment,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    build_views(session, SYSTEM, wworld.p1.code)
    build_views(session, SYSTEM, wworld.p2.code)
    owner = make_user(session, roles=["data_owner"], organisation_id=wworld.lfs.owner_org_id)
    spare = make_agreement(session, owner=wworld.lfs.owner)  # just granted; nothing relies on it alone
    headers = {"Authorization": f"Bearer {make_token(session, owner)}"}
    login = enrol(session, wworld.alice, PASSWORD)  # every researcher signs in with a second factor
    session.commit()
    alice = HubResearcher(hub, wworld.alice.username)
    alice.sign_in(PASSWORD, otp=login.otp())
    alice.start_workspace(wworld.p1.code)
    alice.wait_until_lab_ready()
    views = get_settings().resolved_data_dir / "projects" / wworld.p1.code / "views"
    before = _builds(views)
    monkeypatch.setenv("TRE_ENFORCE_ON_CHANGE", "true")
    get_settings.cache_clear()

    with TestClient(create_app(), raise_server_exceptions=False) as api:
        response = api.post(
            f"/api/v1/agreements/{spare.id}/revoke", json={"reason": "granted by mistake"}, headers=headers
        )
        assert response.status_code == 200, response.text
        assert alice.server() is not None  # still running
        assert _builds(views) == before  # same views, same builds

        response = api.post(
            f"/api/v1/agreements/{wworld.lfs_agreement.id}/revoke",
            json={"reason": "withdrawn"},
            headers=headers,
        )
        assert response.status_code == 200, response.text
    wait_for("the server to stop", lambda: alice.server() is None, alive=hub.dead)
    assert _builds(views) == {wworld.hes.name: before[wworld.hes.name]}
    alice.close()
