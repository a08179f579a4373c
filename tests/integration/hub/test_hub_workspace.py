"""A real JupyterHub on loopback: sign in through the login form, spawn a real JupyterLab server as the
researcher's Unix user, check it sees only its project's views, then revoke and watch it being stopped.

Needs root (the hub starts servers as other users), the workspace environment
(deploy/local/build-workspace-venv.sh) and configurable-http-proxy (npm install).
"""

from __future__ import annotations

import json
import pwd
import re
from pathlib import Path

import pytest
from factories import PASSWORD, SYSTEM, enrol_totp, make_user
from hub_fixtures import enrol, needs_hub
from sqlalchemy.orm import Session
from workspace_world import WorkspaceWorld

from tre_platform.api.agreements import service as agreements
from tre_platform.api.agreements.schemas import AgreementRevoke
from tre_platform.api.users import security
from tre_platform.errors import PolicyDenied
from tre_platform.hub import workspace
from tre_platform.hub.client import HubClient
from tre_platform.hub.local import HubResearcher, LocalDeployment, wait_for
from tre_platform.settings import get_settings
from tre_platform.views import build_views
from tre_platform.views.enforce import enforce_access
from tre_platform.views.storage import unix_username

_CONFIG_DATA = re.compile(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', re.S)


@pytest.mark.slow
@needs_hub
def test_a_researcher_signs_in_picks_a_project_and_gets_a_server_on_only_its_views(
    session: Session, wworld: WorkspaceWorld, data_dir: Path, hub: LocalDeployment
) -> None:
    build_views(session, SYSTEM, wworld.p1.code)
    build_views(session, SYSTEM, wworld.p2.code)
    session.commit()
    login = enrol(session, wworld.alice, PASSWORD)
    session.commit()
    alice = HubResearcher(hub, wworld.alice.username)
    alice.sign_in(PASSWORD, otp=login.otp())
    assert alice.projects_offered() == [wworld.p1.code]  # the project alice belongs to, and no other
    alice.start_workspace(wworld.p1.code)
    server = alice.wait_until_lab_ready()
    environ = alice.server_environment()
    expected = get_settings().resolved_data_dir / "projects" / wworld.p1.code / "views"
    assert environ["TRE_VIEWS_DIR"] == str(expected)
    assert environ["TRE_PROJECT"] == wworld.p1.code
    assert environ["TRE_API_TOKEN"] and environ["TRE_API_URL"]
    pid = int(server["state"]["pid"])
    assert Path(f"/proc/{pid}").stat().st_uid == pwd.getpwnam(unix_username(alice.username)).pw_uid
    # JupyterLab asks the internet for nothing: its news feed is off and it checks no newer release.
    lab = alice.browser.get(f"/user/{alice.username}/lab")
    page = json.loads(_CONFIG_DATA.search(lab.text).group(1))  # type: ignore[union-attr]
    assert page["news"] == {"disabled": True}
    assert alice.browser.get(f"/user/{alice.username}/lab/api/update").json()["notification"] is None
    service = HubClient(f"{hub.hub_url}/hub/api", hub.service_token)

    # The owner revokes an agreement: the view goes and the running server is stopped.
    agreements.revoke_agreement(session, SYSTEM, wworld.lfs_agreement.id, AgreementRevoke(reason="withdrawn"))
    session.commit()
    report = enforce_access(session, hub=service)
    session.commit()
    assert [(s.username, s.project) for s in report.stopped] == [(alice.username, wworld.p1.code)]
    assert any("revoked" in reason for reason in report.stopped[0].reasons)
    assert not (expected / wworld.lfs.name).exists()
    wait_for("the server to stop", lambda: alice.server() is None, alive=hub.dead)
    service.close()
    alice.close()


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
    assert plan.env["TRE_PROJECT_ID"] == wworld.p2.id  # what tre_lib.outputs.Airlock.from_env() needs
    assert sorted(
        p.name for p in Path(plan.env["TRE_VIEWS_DIR"]).iterdir() if not p.name.startswith(".")
    ) == sorted([wworld.hes.name, wworld.lfs.name])
    session.expire_all()
    token = session.get(ApiToken, plan.token_id)
    assert token is not None and token.scopes == ["api", "workspace"] and token.expires_at is not None
    workspace.revoke_workspace_token(wworld.bob.username, plan.token_id)
    session.expire_all()
    assert session.get(ApiToken, plan.token_id).revoked_at is not None  # type: ignore[union-attr]


def test_hub_sign_in_shares_the_control_planes_lockout(
    session: Session, wworld: WorkspaceWorld, data_dir: Path
) -> None:
    from tre_platform.hub.auth import check_login

    name = wworld.alice.username
    secret = enrol_totp(session, wworld.alice.id)
    assert check_login(name, PASSWORD, security.totp_now(secret), "10.0.0.1") == (name, "signed in")
    limit = get_settings().login_max_failures
    for _ in range(limit):
        assert check_login(name, "wrong password", None, "10.0.0.1")[0] is None
    # Locked: even the right password is refused, with a message that says why and for how long.
    user, reason = check_login(name, PASSWORD, None, "10.0.0.2")
    assert user is None and "too many failed sign-in attempts" in reason and "wait" in reason


def test_hub_sign_in_refuses_a_researcher_without_a_second_factor_and_says_where_to_enrol(
    session: Session, wworld: WorkspaceWorld, data_dir: Path
) -> None:
    from tre_platform.hub.auth import check_login

    user, reason = check_login(wworld.alice.username, PASSWORD, None, "10.0.0.3")
    assert user is None
    assert "needs a second factor" in reason and f"{get_settings().public_url or ''}" in reason
    assert "/login to set up your authenticator app" in reason


def test_hub_sign_in_refuses_a_password_without_the_code(
    session: Session, wworld: WorkspaceWorld, data_dir: Path
) -> None:
    from tre_platform.hub.auth import check_login

    secret = enrol_totp(session, wworld.alice.id)
    assert check_login(wworld.alice.username, PASSWORD, None, "10.0.0.4")[0] is None
    wrong = f"{(int(security.totp_now(secret)) + 1) % 1_000_000:06d}"
    user, reason = check_login(wworld.alice.username, PASSWORD, wrong, "10.0.0.4")
    assert user is None and "authenticator code is missing or wrong" in reason
