"""Re-decide access after a change: stop workspaces that lost it, rebuild or remove views.

The control plane calls :func:`enforce_access` after an agreement is revoked, an accreditation is
revoked, a project changes state or its members change (and a periodic job calls it for expiries, which
need no event). Decisions compare dates themselves, so a late run never grants access past an end
date; this function makes the *running* state - servers and files - catch up with the decisions.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from tre_platform.actor import Actor
from tre_platform.api.common import audit
from tre_platform.api.projects.models import Project
from tre_platform.api.users.models import User
from tre_platform.errors import TreError
from tre_platform.hub.client import HubClient, HubUnavailable
from tre_platform.policy import authorize
from tre_platform.settings import get_settings
from tre_platform.views.builder import ViewBuildResult, build_views, find_project

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoppedWorkspace:
    username: str
    project: str
    server_name: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class EnforcementReport:
    stopped: tuple[StoppedWorkspace, ...] = ()
    kept: tuple[tuple[str, str], ...] = ()
    views: tuple[ViewBuildResult, ...] = ()
    problems: tuple[str, ...] = field(default_factory=tuple)


def enforce_access(
    session: Session,
    actor: Actor | None = None,
    *,
    project_ids: Sequence[str] | None = None,
    hub: HubClient | None = None,
    rebuild_views: bool = True,
) -> EnforcementReport:
    """Rebuild or remove views, then stop every running workspace that lost access.

    A server is stopped when the policy engine no longer allows ``spawn_workspace`` for its user and
    project (accreditation, membership, project state or dates), or when one of its project's views was
    just removed (agreement revoked, dataset or column no longer approved).

    Args:
        session: database session (audit events are added; the caller commits).
        actor: who triggers it (default the system actor ``enforcer``).
        project_ids: limit to these projects (ids or codes); default every project.
        hub: a :class:`tre_platform.hub.client.HubClient`; default one from the settings. When the hub
            is not running, only the views are enforced and the report says so.
        rebuild_views: also run :func:`build_views` (and the group sync) for each project.

    Example:
        >>> revoke_agreement(session, actor, agreement_id, AgreementRevoke(reason="ended"))  # doctest: +SKIP
        >>> enforce_access(session, actor)                                                  # doctest: +SKIP
    """
    actor = actor or Actor.system("enforcer")
    scope = {find_project(session, ref).code for ref in project_ids} if project_ids else None
    problems: list[str] = []
    stopped: list[StoppedWorkspace] = []
    kept: list[tuple[str, str]] = []

    # Views first: a view removed because an agreement was revoked also stops the servers that had it
    # open (a process keeps files it already opened, and its cached data, until it ends).
    results: list[ViewBuildResult] = []
    lost: dict[str, list[str]] = {}
    if rebuild_views:
        projects_root = get_settings().resolved_data_dir / "projects"
        codes = scope if scope is not None else _projects_with_views(session, projects_root)
        for code in sorted(codes):
            try:
                result = build_views(session, actor, code)
            except TreError as exc:
                problems.append(f"views of {code}: {exc.message}")
                continue
            results.append(result)
            for outcome in result.outcomes:
                if outcome.action == "removed":
                    lost.setdefault(code, []).append(
                        f"view {outcome.dataset} was removed: " + "; ".join(outcome.reasons)
                    )

    client: HubClient | None = hub
    own_client = False
    if client is None:
        try:
            client = HubClient.from_settings()
            own_client = True
        except (OSError, TreError) as exc:
            problems.append(f"hub not configured: {exc}")
    try:
        servers = client.running_servers() if client is not None else []
    except HubUnavailable as exc:
        problems.append(exc.message)
        servers = []
    for server in servers:
        if scope is not None and server.project not in scope:
            continue
        user = session.scalar(select(User).where(User.username == server.username))
        project = (
            session.scalar(select(Project).where(Project.code == server.project)) if server.project else None
        )
        if user is None or project is None:
            reasons: tuple[str, ...] = (f"unknown user or project ({server.username}, {server.project!r})",)
        else:
            decision = authorize(session, user, "spawn_workspace", project=project)
            if decision.allowed and project.code not in lost:
                kept.append((server.username, server.project))
                continue
            reasons = tuple(decision.reasons) if not decision.allowed else tuple(lost[project.code])
        if client is not None:
            client.stop_server(server.username, server.server_name)
        stopped.append(StoppedWorkspace(server.username, server.project, server.server_name, reasons))
        if project is not None:
            audit(
                session,
                actor,
                "workspace.stop",
                project,
                decision="deny",
                reasons=list(reasons),
                username=server.username,
                server=server.server_name,
            )
    if own_client and client is not None:
        client.close()
    return EnforcementReport(tuple(stopped), tuple(kept), tuple(results), tuple(problems))


def _projects_with_views(session: Session, root: object) -> set[str]:
    from pathlib import Path

    codes: set[str] = set()
    path = Path(str(root))
    if path.is_dir():
        with contextlib.suppress(PermissionError):
            codes |= {p.name for p in path.iterdir() if p.is_dir()}
    known = set(session.scalars(select(Project.code)))
    return codes & known
