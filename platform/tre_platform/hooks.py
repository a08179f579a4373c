"""What happens after a change that can take access away or grant it.

Decisions never depend on these hooks: the policy engine evaluates expiry and revocation at decision time.
The hooks make the *consequences* immediate: views are rebuilt or removed and running workspaces that lost
access are stopped (``tre_platform.views.enforce.enforce_access``). They run in the caller's transaction so
their audit events commit with the change. ``TRE_ENFORCE_ON_CHANGE=false`` turns them off (the test suite
does, except where a test is about them; an operator can run ``tre view enforce`` instead).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

from sqlalchemy.orm import Session

from tre_platform.actor import Actor
from tre_platform.settings import get_settings

log = logging.getLogger(__name__)
_suppressed: ContextVar[bool] = ContextVar("tre_hooks_suppressed", default=False)


@contextmanager
def suppressed() -> Iterator[None]:
    """Defer enforcement (bulk set-up such as the demo seed, which enforces once at the end)."""
    token = _suppressed.set(True)
    try:
        yield
    finally:
        _suppressed.reset(token)


def access_changed(session: Session, actor: Actor, project_ids: Sequence[str] | None = None) -> None:
    """Enforce the new state for these projects (None: every project that has views)."""
    if _suppressed.get() or not get_settings().enforce_on_change:
        return
    from tre_platform.views.enforce import enforce_access

    report = enforce_access(session, actor, project_ids=list(project_ids) if project_ids else None)
    for problem in report.problems:
        log.warning("enforcement: %s", problem)
