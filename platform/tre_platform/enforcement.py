"""The one way in for enforcement: what the domains call after a change that can take access away.

Domains (agreements, users, projects, datasets) never import the view builder or the hub. They call
:func:`access_changed` (or :func:`withdraw_version_views`) here; the work is done by an
:class:`Enforcer`, and running workspaces are listed and stopped through a :class:`WorkspaceControl`.
Both are plug-ins named by a dotted path in the settings (``TRE_ENFORCER_CLASS``,
``TRE_WORKSPACE_CONTROL_CLASS``), the way JupyterHub names its Spawner and Authenticator, so this module
imports no domain and the import graph has no circle (``lint-imports`` checks it).

Enforcement acts as the system's own identity (:meth:`tre_platform.actor.Actor.enforcer`), never as
the person whose change triggered it: a data owner revoking an agreement may not build views, and
that refusal must never be read as "access withdrawn" (docs/adr/0013-enforcement-identity-and-tokens.md).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from tre_platform.errors import TreError
from tre_platform.settings import get_settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from tre_platform.actor import Actor

log = logging.getLogger(__name__)
_suppressed: ContextVar[bool] = ContextVar("tre_enforcement_suppressed", default=False)


class WorkspaceControlUnavailable(TreError):
    """The workspace control (the hub) could not be reached or refused the control plane."""

    status_code = 502
    code = "hub_unavailable"


@dataclass(frozen=True)
class RunningServer:
    """A workspace server reported as running (or starting)."""

    username: str
    server_name: str
    project: str
    ready: bool
    state: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class WorkspaceControl(Protocol):
    """Lists and stops running workspaces. The default is JupyterHub's REST API
    (:class:`tre_platform.hub.client.HubClient`).

    Implementations provide ``from_settings()`` (a classmethod building one from the settings), and:
    """

    def running_servers(self) -> list[RunningServer]:
        """Every running or starting server, with the project it was started for."""
        ...

    def stop_server(self, username: str, server_name: str = "") -> None:
        """Stop one server; idempotent (stopping a stopped server is not an error)."""
        ...

    def close_project(self, code: str) -> str | None:
        """Archive and remove a closed project's workspace homes and shared folder (its servers are
        stopped first); return where the archive is, or None when there was nothing to keep."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class Enforcer(Protocol):
    """Makes running state (views, workspaces, tokens) catch up with the policy decisions.

    Every method is idempotent, decides as the system's enforcement identity, and touches only what is
    no longer allowed. ``cause`` is who made the change: it is recorded in the audit log, never used
    to decide. The default is :class:`tre_platform.views.enforce.ViewEnforcer`.
    """

    def enforce(self, session: Session, cause: Actor, project_ids: Sequence[str] | None = None) -> Any:
        """Re-decide these projects (None: every project); return a report."""
        ...

    def withdraw_version_views(self, session: Session, cause: Actor, version_id: str, why: str) -> list[Any]:
        """Remove every project view built from a dataset version (archived or destroyed);
        return (project code, view name) pairs removed."""
        ...


def _load(dotted: str) -> Any:
    module, _, attr = dotted.partition(":")
    try:
        target: Any = importlib.import_module(module)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise TreError(f"cannot load {dotted!r} ({exc}); give 'package.module:ClassName'") from exc
    return target


def get_enforcer() -> Enforcer:
    """The configured :class:`Enforcer` (``TRE_ENFORCER_CLASS``)."""
    enforcer: Enforcer = _load(get_settings().enforcer_class)()
    return enforcer


def workspace_control() -> WorkspaceControl:
    """The configured :class:`WorkspaceControl` (``TRE_WORKSPACE_CONTROL_CLASS``), from the settings.

    Raises:
        WorkspaceControlUnavailable: it cannot be configured here (e.g. no hub set up).
    """
    cls = _load(get_settings().workspace_control_class)
    try:
        control: WorkspaceControl = cls.from_settings()
    except (OSError, TreError) as exc:
        raise WorkspaceControlUnavailable(f"workspace control not configured: {exc}") from exc
    return control


@contextmanager
def suppressed() -> Iterator[None]:
    """Defer enforcement (bulk set-up such as the demo seed, which enforces once at the end)."""
    token = _suppressed.set(True)
    try:
        yield
    finally:
        _suppressed.reset(token)


def access_changed(session: Session, cause: Actor, project_ids: Sequence[str] | None = None) -> None:
    """Enforce the new state for these projects (None: every project). Called by the domains after a
    revocation, expiry, close or membership change, in the caller's transaction so the enforcement's
    audit events commit with the change. ``TRE_ENFORCE_ON_CHANGE=false`` turns it off (the scheduler in
    ``tre up`` and ``tre view enforce`` still enforce)."""
    if _suppressed.get() or not get_settings().enforce_on_change:
        return
    report = get_enforcer().enforce(session, cause, list(project_ids) if project_ids else None)
    for problem in getattr(report, "problems", ()):
        log.warning("enforcement: %s", problem)


def withdraw_version_views(
    session: Session, cause: Actor, version_id: str, why: str
) -> list[tuple[str, str]]:
    """Remove the views built from a dataset version that left research use (always, not a hook)."""
    return list(get_enforcer().withdraw_version_views(session, cause, version_id, why))
