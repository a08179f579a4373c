"""A real JupyterHub on loopback: sign in through the login form, spawn a real JupyterLab server as the
researcher's Unix user, check it sees only its project's views, then revoke and watch it being stopped.

Needs root (the hub starts servers as other users), the workspace environment
(deploy/local/build-workspace-venv.sh) and configurable-http-proxy (npm install).
"""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from factories import PASSWORD, SYSTEM, make_user
from sqlalchemy.orm import Session
from workspace_world import WorkspaceWorld

from tre_platform.api.agreements import service as agreements
from tre_platform.api.agreements.schemas import AgreementRevoke
from tre_platform.errors import PolicyDenied
from tre_platform.hub import workspace
from tre_platform.hub.client import HubClient
from tre_platform.hub.config import CONFIG_FILE, control_plane_token, hub_dir, proxy_command
from tre_platform.settings import get_settings
from tre_platform.views import build_views
from tre_platform.views.enforce import enforce_access
from tre_platform.views.settings import get_workspace_settings
from tre_platform.views.storage import unix_username

VENV = Path(os.environ.get("TRE_WORKSPACE_VENV", "/opt/tre/workspace-venv"))
needs_hub = pytest.mark.skipif(
    os.geteuid() != 0
    or not (VENV / "bin" / "jupyterhub-singleuser").exists()
    or not Path(proxy_command()[0]).exists(),
    reason="needs root, the workspace environment and configurable-http-proxy (make setup)",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(what: str, check: Any, proc: subprocess.Popen[bytes], log: Path, pause: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy; fail at once if the hub process died."""
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the hub exited while waiting for {what}:\n{log.read_text()[-4000:]}")
        result = check()
        if result:
            return result
        time.sleep(pause)


@pytest.fixture
def hub(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path, db_url: str, tmp_path: Path
) -> Iterator[dict[str, Any]]:
    port, api_port, proxy_port = _free_port(), _free_port(), _free_port()
    monkeypatch.setenv("TRE_HUB_BIND_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("TRE_HUB_API_PORT", str(api_port))
    monkeypatch.setenv("TRE_PROXY_API_PORT", str(proxy_port))
    monkeypatch.setenv("TRE_WORKSPACE_VENV", str(VENV))
    get_workspace_settings.cache_clear()
    token = control_plane_token()
    log = tmp_path / "hub.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(CONFIG_FILE)],
            cwd=hub_dir(),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{base}/hub/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        _wait("the hub to start", healthy, proc, log)
        yield {"base": base, "token": token, "proc": proc, "log": log}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        get_workspace_settings.cache_clear()


def _login(base: str, username: str) -> httpx.Client:
    browser = httpx.Client(base_url=base, follow_redirects=True, timeout=60, trust_env=False)
    browser.get("/hub/login")
    xsrf = browser.cookies.get("_xsrf", "")
    response = browser.post(
        "/hub/login", data={"username": username, "password": PASSWORD, "otp": "", "_xsrf": xsrf}
    )
    assert response.status_code == 200, response.text[-2000:]
    return browser


@pytest.mark.slow
@needs_hub
def test_a_researcher_signs_in_picks_a_project_and_gets_a_server_on_only_its_views(
    session: Session, wworld: WorkspaceWorld, data_dir: Path, hub: dict[str, Any]
) -> None:
    build_views(session, SYSTEM, wworld.p1.code)
    build_views(session, SYSTEM, wworld.p2.code)
    session.commit()
    alice = wworld.alice.username
    browser = _login(hub["base"], alice)

    form = browser.get("/hub/spawn")
    assert wworld.p1.code in form.text  # the project alice belongs to ...
    assert wworld.p2.code not in form.text  # ... and no other
    xsrf = browser.cookies.get("_xsrf", "")
    browser.post(f"/hub/spawn/{alice}", data={"project": wworld.p1.code, "_xsrf": xsrf})

    service = HubClient(f"{hub['base']}/hub/api", hub["token"])

    def ready() -> dict[str, Any] | None:
        server = (service.user(alice).get("servers") or {}).get("")
        if server is None:
            pytest.fail(f"the spawn failed:\n{hub['log'].read_text()[-4000:]}")
        return server if server.get("ready") else None

    server = _wait("the single-user server", ready, hub["proc"], hub["log"], pause=1)
    pid = int(server["state"]["pid"])
    environ = dict(
        item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item
    )
    expected = get_settings().resolved_data_dir / "projects" / wworld.p1.code / "views"
    assert environ["TRE_VIEWS_DIR"] == str(expected)
    assert environ["TRE_PROJECT"] == wworld.p1.code
    assert environ["TRE_API_TOKEN"] and environ["TRE_API_URL"]
    assert Path(f"/proc/{pid}").stat().st_uid == pwd.getpwnam(unix_username(alice)).pw_uid
    # The server answers through the proxy (JupyterLab's REST API).
    status = httpx.get(
        f"{hub['base']}/user/{alice}/api/status",
        headers={"Authorization": f"token {hub['token']}"},
        timeout=30,
    )
    assert status.status_code == 200, status.text

    # The owner revokes an agreement: the view goes and the running server is stopped.
    agreements.revoke_agreement(session, SYSTEM, wworld.lfs_agreement.id, AgreementRevoke(reason="withdrawn"))
    session.commit()
    report = enforce_access(session, hub=service)
    session.commit()
    assert [(s.username, s.project) for s in report.stopped] == [(alice, wworld.p1.code)]
    assert any("revoked" in reason for reason in report.stopped[0].reasons)
    assert not (expected / wworld.lfs.name).exists()
    _wait(
        "the server to stop", lambda: not (service.user(alice).get("servers") or {}), hub["proc"], hub["log"]
    )
    service.close()
    browser.close()


def test_the_pre_spawn_check_refuses_a_project_one_is_not_a_member_of(
    session: Session, wworld: WorkspaceWorld, data_dir: Path
) -> None:
    with pytest.raises(PolicyDenied, match="not a member"):
        workspace.plan_workspace(wworld.alice.username, wworld.p2.code)


def test_the_pre_spawn_check_refuses_after_the_accreditation_is_revoked(
    session: Session, wworld: WorkspaceWorld, data_dir: Path
) -> None:
    from tre_platform.api.users import service as users
    from tre_platform.api.users.schemas import RevokeRequest

    accreditation = wworld.alice.accreditations[0]
    users.revoke_accreditation(
        session, SYSTEM, wworld.alice.id, accreditation.id, RevokeRequest(reason="lapsed")
    )
    session.commit()
    with pytest.raises(PolicyDenied, match="revoked"):
        workspace.plan_workspace(wworld.alice.username, wworld.p1.code)
    assert workspace.allowed_projects(wworld.alice.username) == []


def test_the_projects_offered_are_those_the_policy_allows(
    session: Session, wworld: WorkspaceWorld, data_dir: Path
) -> None:
    stranger = make_user(session, roles=["researcher"])
    session.commit()
    assert [c.code for c in workspace.allowed_projects(wworld.alice.username)] == [wworld.p1.code]
    assert [c.code for c in workspace.allowed_projects(wworld.bob.username)] == [wworld.p2.code]
    assert workspace.allowed_projects(stranger.username) == []


def test_the_pre_spawn_check_prepares_the_account_views_and_a_scoped_token(
    session: Session, wworld: WorkspaceWorld, data_dir: Path
) -> None:
    from tre_platform.api.users.models import ApiToken

    plan = workspace.plan_workspace(wworld.bob.username, wworld.p2.code, api_url="http://127.0.0.1:9")
    assert plan.unix_user == unix_username(wworld.bob.username)
    assert plan.env["TRE_VIEWS_DIR"] == str(data_dir / "projects" / wworld.p2.code / "views")
    assert sorted(
        p.name for p in Path(plan.env["TRE_VIEWS_DIR"]).iterdir() if not p.name.startswith(".")
    ) == sorted([wworld.hes.name, wworld.lfs.name])
    session.expire_all()
    token = session.get(ApiToken, plan.token_id)
    assert token is not None and token.scopes == ["api", "workspace"] and token.expires_at is not None
    workspace.revoke_workspace_token(wworld.bob.username, plan.token_id)
    session.expire_all()
    assert session.get(ApiToken, plan.token_id).revoked_at is not None  # type: ignore[union-attr]
