"""Re-decide access after a change: remove what is no longer allowed, touch nothing else.

The domains call :func:`tre_platform.enforcement.access_changed` after an agreement is revoked, an
accreditation is revoked, a project changes state or its members change; the scheduler in ``tre up``
calls :func:`enforce_access` every minute for expiries, which need no event. Decisions compare dates
themselves, so a late run never grants access past an end date; this module makes the *running* state
- view files, workspaces and the tokens they justify - catch up with the decisions.

Every decision here is made as the system's enforcement identity (:meth:`Actor.enforcer`), never as
the person whose change triggered it (``cause``, recorded in the audit log): whether a view is still
allowed depends on the data's conditions alone. Per project and per dataset, a view no longer allowed
is removed; a view still allowed is neither removed nor rebuilt; a server is stopped only when its
user may no longer spawn in its project or one of its project's views was just removed; a token tied
to a project is revoked when its user may no longer use that project.
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
from tre_platform.api.projects.models import Project, ProjectState
from tre_platform.api.users import service as users
from tre_platform.api.users.models import ApiToken, User
from tre_platform.clock import clock
from tre_platform.enforcement import (
    WorkspaceControl,
    WorkspaceControlUnavailable,
    workspace_control,
)
from tre_platform.errors import TreError
from tre_platform.policy import authorize
from tre_platform.settings import get_settings
from tre_platform.views.builder import (
    ViewBuildResult,
    build_views,
    find_project,
    remove_version_views,
    views_dir,
)

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
    #: Ids of the API tokens revoked because the project access that justified them ended.
    tokens_revoked: tuple[str, ...] = ()


def enforce_access(
    session: Session,
    actor: Actor | None = None,
    *,
    project_ids: Sequence[str] | None = None,
    hub: WorkspaceControl | None = None,
    rebuild_views: bool = True,
) -> EnforcementReport:
    """Remove views no longer allowed, stop workspaces and revoke tokens that lost access.

    Args:
        session: database session (audit events are added; the caller commits).
        actor: who caused it (recorded as ``cause``); the decisions are the enforcement identity's.
        project_ids: limit to these projects (ids or codes); default every project.
        hub: a :class:`~tre_platform.enforcement.WorkspaceControl`; default the configured one. When it
            cannot be reached, views and tokens are still enforced and the report says so.
        rebuild_views: also re-decide the views (remove-only: nothing is built or rebuilt).

    Example:
        >>> revoke_agreement(session, owner, agreement_id, AgreementRevoke(reason="ended"))  # doctest: +SKIP
        >>> enforce_access(session, owner)  # decides as the enforcer           # doctest: +SKIP
    """
    enforcer = Actor.enforcer()
    cause = actor.label if actor is not None else "schedule"
    scope = {find_project(session, ref).code for ref in project_ids} if project_ids else None
    problems: list[str] = []
    stopped: list[StoppedWorkspace] = []
    kept: list[tuple[str, str]] = []

    # Views first: a view removed because an agreement was revoked also stops the servers that had it
    # open (a process keeps files it already opened, and its cached data, until it ends).
    results: list[ViewBuildResult] = []
    lost: dict[str, list[str]] = {}
    if rebuild_views:
        for code in sorted(_projects_with_views(session, scope)):
            try:
                result = build_views(session, enforcer, code, withdraw_only=True)
            except TreError as exc:
                problems.append(f"views of {code}: {exc.message}")
                continue
            results.append(result)
            for outcome in result.outcomes:
                if outcome.action == "removed":
                    lost.setdefault(code, []).append(
                        f"view {outcome.dataset} was removed: " + "; ".join(outcome.reasons)
                    )

    revoked = _revoke_project_tokens(session, enforcer, scope, cause)

    client: WorkspaceControl | None = hub
    own_client = False
    if client is None:
        try:
            client = workspace_control()
            own_client = True
        except WorkspaceControlUnavailable as exc:
            problems.append(exc.message)
    try:
        servers = client.running_servers() if client is not None else []
    except WorkspaceControlUnavailable as exc:
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
                enforcer,
                "workspace.stop",
                project,
                decision="deny",
                reasons=list(reasons),
                username=server.username,
                server=server.server_name,
                cause=cause,
            )
    if client is not None:
        problems += _close_project_folders(session, client, enforcer, scope, cause)
    if own_client and client is not None:
        client.close()
    return EnforcementReport(tuple(stopped), tuple(kept), tuple(results), tuple(problems), tuple(revoked))


def _close_project_folders(
    session: Session, client: WorkspaceControl, enforcer: Actor, scope: set[str] | None, cause: str
) -> list[str]:
    """Archive and remove the homes and shared folder of every closed or expired project (in ``scope``)
    once its servers are stopped; idempotent, so the scheduler's next run finds nothing to do."""
    problems: list[str] = []
    ended = select(Project).where(Project.state.in_([ProjectState.closed, ProjectState.expired]))
    for project in session.scalars(ended).all():
        if scope is not None and project.code not in scope:
            continue
        try:
            archive = client.close_project(project.code)
        except (OSError, TreError) as exc:
            problems.append(f"folders of {project.code}: {exc}")
            continue
        if archive is not None:
            audit(session, enforcer, "project.folders_archived", project, archive=archive, cause=cause)
    return problems


def _revoke_project_tokens(
    session: Session, enforcer: Actor, scope: set[str] | None, cause: str
) -> list[str]:
    """Revoke each live token tied to a project whose user may no longer spawn there (with the tokens
    minted from it): the accreditation, membership or project that justified it has ended."""
    query = select(ApiToken).where(ApiToken.project_id.is_not(None), ApiToken.revoked_at.is_(None))
    now = clock.now()
    revoked: list[str] = []
    decided: dict[tuple[str, str], tuple[bool, list[str]]] = {}
    for token in session.scalars(query).all():
        if token.expires_at is not None and token.expires_at <= now:
            continue
        project = session.get(Project, token.project_id)
        if project is not None and scope is not None and project.code not in scope:
            continue
        key = (token.user_id, token.project_id or "")
        if key not in decided:
            if project is None:
                decided[key] = (False, ["the project no longer exists"])
            else:
                decision = authorize(session, token.user, "spawn_workspace", project=project)
                decided[key] = (decision.allowed, list(decision.reasons))
        allowed, reasons = decided[key]
        if allowed:
            continue
        revoked.extend(users.revoke_token_lineage(session, enforcer, token, reasons=reasons, cause=cause))
    return revoked


def _projects_with_views(session: Session, scope: set[str] | None) -> set[str]:
    """Codes of the projects (in ``scope``, if given) that have a views directory: the only ones with
    anything to withdraw. A project never built gets no directory from enforcement."""
    root = get_settings().resolved_data_dir / "projects"
    codes: set[str] = set()
    if root.is_dir():
        with contextlib.suppress(PermissionError):
            codes = {p.name for p in root.iterdir() if p.is_dir() and views_dir(p.name).is_dir()}
    if scope is not None:
        codes &= scope
    known = set(session.scalars(select(Project.code)))
    return codes & known


class ViewEnforcer:
    """The default :class:`tre_platform.enforcement.Enforcer`: views on local storage, workspaces
    through the configured :class:`~tre_platform.enforcement.WorkspaceControl`."""

    def enforce(
        self, session: Session, cause: Actor, project_ids: Sequence[str] | None = None
    ) -> EnforcementReport:
        """:func:`enforce_access` for these projects (looked up at call time, so it can be observed)."""
        return enforce_access(session, cause, project_ids=project_ids)

    def withdraw_version_views(
        self, session: Session, cause: Actor, version_id: str, why: str
    ) -> list[tuple[str, str]]:
        """:func:`tre_platform.views.builder.remove_version_views`."""
        return remove_version_views(session, cause, version_id, why)


__all__ = ["EnforcementReport", "StoppedWorkspace", "ViewEnforcer", "enforce_access"]
