"""What the hub asks the control plane at spawn and stop: allowed projects, the pre-spawn check, tokens.

Plain functions over the database (no JupyterHub import), so the enforcer and tests share them with the
spawner.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from sqlalchemy import select

from tre_platform.actor import Actor
from tre_platform.api.common import audit
from tre_platform.api.packages.mirror import index_url
from tre_platform.api.projects.models import USABLE_STATES, Project
from tre_platform.api.users import service as users
from tre_platform.api.users.models import ApiToken, User
from tre_platform.api.users.schemas import TokenCreate
from tre_platform.db.session import session_scope
from tre_platform.errors import NotFound, PolicyDenied
from tre_platform.policy import authorize
from tre_platform.settings import get_settings
from tre_platform.views import storage
from tre_platform.views.builder import build_views, find_project, views_dir
from tre_platform.views.settings import WorkspaceSettings, get_workspace_settings
from tre_platform.views.storage import StorageMode

#: Scopes of the control-plane token a workspace gets: the REST API, marked as a workspace's.
WORKSPACE_TOKEN_SCOPES = ["api", "workspace"]


@dataclass(frozen=True)
class ProjectChoice:
    code: str
    title: str


@dataclass(frozen=True)
class WorkspacePlan:
    """Everything the spawner needs to start one user's server for one project."""

    username: str
    unix_user: str
    project: str
    views_dir: str
    env: dict[str, str] = field(default_factory=dict)
    token_id: str = ""
    reasons: tuple[str, ...] = ()


def allowed_projects(username: str) -> list[ProjectChoice]:
    """The projects the policy engine lets ``username`` start a workspace for now (a preview, not audited)."""
    with session_scope() as session:
        user = session.scalar(select(User).where(User.username == username))
        if user is None:
            return []
        candidates = session.scalars(
            select(Project).where(Project.state.in_(list(USABLE_STATES))).order_by(Project.code)
        ).unique()
        return [
            ProjectChoice(p.code, p.title)
            for p in candidates
            if p.is_member(user.id)
            and authorize(session, user, "spawn_workspace", project=p, audit=False).allowed
        ]


def plan_workspace(username: str, project_code: str, *, api_url: str | None = None) -> WorkspacePlan:
    """The pre-spawn check: ask the policy engine again (audited) and prepare the server's environment.

    Makes sure the researcher's Unix user exists and is in the project's group, that the project's views
    exist (building them if this is the first workspace), and creates a scoped, short-lived
    control-plane token for the workspace.

    Raises:
        PolicyDenied: the engine refuses ``spawn_workspace`` (the reasons are in the message).
        NotFound: no such user or project.
    """
    settings = get_settings()
    ws = get_workspace_settings()
    with session_scope() as session:
        user = session.scalar(select(User).where(User.username == username))
        if user is None:
            raise NotFound(f"no tre user {username!r}")
        project = find_project(session, project_code)
        decision = authorize(session, user, "spawn_workspace", project=project)
        if not decision.allowed:
            session.commit()
            raise PolicyDenied(decision.message(), reasons=decision.reasons)
        unix_user = _unix_account(user, project, ws)
        target = views_dir(project.code, settings)
        if not target.is_dir() or not any(p for p in target.iterdir() if not p.name.startswith(".")):
            build_views(session, Actor.system("hub"), project.code, mode=ws.storage_mode, sync_members=False)
        token, raw = users.create_api_token(
            session,
            Actor.of(user),
            TokenCreate(
                name=f"workspace {project.code}"[:100], scopes=WORKSPACE_TOKEN_SCOPES, expires_in_days=1
            ),
            project_id=project.id,
        )
        audit(session, Actor.of(user), "workspace.spawn", project, decision="allow", reasons=decision.reasons)
        env = workspace_env(
            project.code, str(target), ws, api_url=api_url or _api_url(), token=raw, project_id=project.id
        )
        return WorkspacePlan(
            username=user.username,
            unix_user=unix_user,
            project=project.code,
            views_dir=str(target),
            env=env,
            token_id=token.id,
            reasons=tuple(decision.reasons),
        )


def _unix_account(user: User, project: Project, ws: WorkspaceSettings) -> str:
    if ws.storage_mode is StorageMode.insecure_single_user:
        import getpass

        return getpass.getuser()
    name = storage.unix_username(user.username, user.unix_username)
    storage.ensure_user(name, comment=f"tre researcher {user.username}")
    group = storage.project_group(project.code)
    storage.ensure_group(group)
    if name not in storage.group_members(group):
        storage.set_group_members(group, storage.group_members(group) | {name})
    return name


def _api_url() -> str:
    settings = get_settings()
    return settings.public_url or f"http://{settings.host}:{settings.port}"


def workspace_env(
    project: str,
    views: str,
    ws: WorkspaceSettings,
    *,
    api_url: str,
    token: str,
    project_id: str | None = None,
) -> dict[str, str]:
    """The environment ``tre_lib.session()`` reads (see :mod:`tre_lib.compute.session`)."""
    cores = max(1, math.floor(ws.workspace_cpu_limit))
    env = {
        "TRE_PROJECT": project,
        "TRE_VIEWS_DIR": views,
        "TRE_API_URL": api_url,
        "TRE_API_TOKEN": token,
        "TRE_SPARK_MASTER": ws.workspace_spark_master or f"local[{cores}]",
        "TRE_DASK_WORKERS": "1",
        "TRE_DASK_THREADS": str(cores),
        # pip (and any virtualenv made in the workspace) installs only from the vetted mirror, and reads
        # no pip configuration of the host (which may name other indexes or wheel folders).
        "PIP_INDEX_URL": index_url(),
        "PIP_CONFIG_FILE": os.devnull,
    }
    if project_id:
        # tre_lib.outputs.Airlock.from_env() addresses the project by its control-plane id.
        env["TRE_PROJECT_ID"] = project_id
    if ws.spark_conf_json:
        env["TRE_SPARK_CONF"] = ws.spark_conf_json
    if ws.workspace_dask_scheduler:
        env["TRE_DASK_SCHEDULER"] = ws.workspace_dask_scheduler
    return env


def revoke_workspace_token(username: str, token_id: str) -> None:
    """Revoke the workspace's control-plane token when its server stops (idempotent)."""
    if not token_id:
        return
    with session_scope() as session:
        token = session.get(ApiToken, token_id)
        if token is None or token.revoked_at is not None or token.user.username != username:
            return
        users.revoke_api_token(session, Actor.of(token.user), token_id)
