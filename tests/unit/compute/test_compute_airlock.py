"""Workspace.airlock() and dp_query(): the control plane found from the workspace's environment alone,
and every refusal a sentence that says what to do (WorkspaceError), never a stack trace."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from compute_views import make_view
from sqlalchemy import select
from sqlalchemy.orm import Session
from workspace_processes import ControlPlane, free_port

import tre_lib
from tre_lib.compute import WorkspaceError
from tre_lib.privacy import dp_count


def _env(project: str, views: Path, **extra: str) -> dict[str, str]:
    return {"TRE_PROJECT": project, "TRE_VIEWS_DIR": str(views), **extra}


def test_without_the_control_plane_settings_the_airlock_says_so(views: Path) -> None:
    with pytest.raises(WorkspaceError, match="TRE_API_URL and TRE_API_TOKEN are not set"):
        tre_lib.session(environ=_env("P-1", views)).airlock()


def test_a_project_id_given_by_the_hub_is_used_as_it_is(views: Path) -> None:
    env = _env("P-1", views, TRE_API_URL="http://127.0.0.1:9", TRE_API_TOKEN="t", TRE_PROJECT_ID="abc123")
    assert tre_lib.session(environ=env).airlock().project_id == "abc123"


def test_an_unreachable_control_plane_is_a_sentence(views: Path) -> None:
    env = _env("P-1", views, TRE_API_URL=f"http://127.0.0.1:{free_port()}", TRE_API_TOKEN="t")
    with pytest.raises(WorkspaceError, match="cannot reach the control plane"):
        tre_lib.session(environ=env).airlock()


@pytest.mark.slow
def test_the_airlock_is_found_by_the_projects_code_and_refusals_are_sentences(
    control_plane: ControlPlane, session: Session, tmp_path: Path
) -> None:
    from tre_platform.actor import Actor
    from tre_platform.api.users import service as users
    from tre_platform.api.users.models import User
    from tre_platform.api.users.schemas import TokenCreate

    views = tmp_path / "views"
    make_view(
        views,
        "hospital_episodes",
        pd.DataFrame({"demographic_id": [f"{i:064x}" for i in range(40)], "sex": ["F", "M"] * 20}),
        project=control_plane.project_code,
    )
    env = _env(
        control_plane.project_code, views, TRE_API_URL=control_plane.url, TRE_API_TOKEN=control_plane.token
    )
    ws = tre_lib.session(environ=env)
    airlock = ws.airlock()
    assert airlock.project_id == control_plane.project_id
    assert airlock.rules()["threshold"] >= 10
    budget = {s["dataset_name"]: s for s in ws.privacy_budget() if s["scope_kind"] == "dataset"}
    assert budget["hospital_episodes"]["epsilon_remaining"] == pytest.approx(3.0)
    # A dataset the project has no view of is refused before anything is charged.
    with pytest.raises(WorkspaceError, match="no view called 'gp_registrations'"):
        ws.dp_query(dp_count, "gp_registrations", epsilon=0.1)

    # Someone outside the project (dan) does not see it; a revoked token is refused.
    dan = session.scalars(select(User).where(User.username == "dan")).one()
    row, dans = users.create_api_token(session, Actor.of(dan), TokenCreate(name="dan", scopes=["api"]))
    session.commit()
    with pytest.raises(WorkspaceError, match=f"shows no project {control_plane.project_code} to you"):
        tre_lib.session(environ={**env, "TRE_API_TOKEN": dans}).airlock()
    users.revoke_api_token(session, Actor.of(dan), row.id)
    session.commit()
    with pytest.raises(WorkspaceError, match="refused this workspace's token"):
        tre_lib.session(environ={**env, "TRE_API_TOKEN": dans}).airlock()
    # Nothing was charged by any of it.
    after = {s["dataset_name"]: s for s in ws.privacy_budget() if s["scope_kind"] == "dataset"}
    assert after["hospital_episodes"]["epsilon_spent"] == 0
