"""Time-based enforcement without an outside scheduler: the jobs ``tre up`` runs in-process.

Decisions compare dates themselves, so an expired accreditation, project or agreement refuses access at
the next decision with no job at all. These jobs make the *running* state follow on time, with no API
call in between: every minute, projects past their end date are expired and every project is re-decided
(:func:`tre_platform.enforcement.get_enforcer`: views no longer allowed removed, workspaces stopped,
tokens revoked); daily, the retention sweep archives or destroys dataset versions past retention.

The job list is data (:data:`JOBS`, filled by :func:`register`); each job is a plain function that can
be called directly (the tests call them under a frozen :data:`tre_platform.clock.clock`). Adding a job is
one line::

    register(Job("ingest-leftovers-sweep", "landing copies and staging of killed ingests",
                 dt.timedelta(hours=1), ingest_leftovers_sweep))

Example:
    >>> scheduler = start()        # doctest: +SKIP  (what `tre up` does)
    >>> scheduler.shutdown()       # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tre_platform.actor import Actor
from tre_platform.db.session import session_scope
from tre_platform.enforcement import get_enforcer

if TYPE_CHECKING:
    from apscheduler.schedulers.background import BackgroundScheduler

log = logging.getLogger(__name__)

#: Who the jobs act as in the audit log (enforcement itself decides as the enforcement identity).
SCHEDULER = "scheduler"


@dataclass(frozen=True)
class Job:
    """One periodic job: an id, what it does (for people), how often, and the function to call."""

    id: str
    description: str
    every: dt.timedelta
    func: Callable[[], Any]


#: The jobs :func:`start` schedules, in order. Extend with :func:`register`.
JOBS: list[Job] = []


def register(job: Job) -> Job:
    """Add ``job`` to :data:`JOBS` (replacing a job with the same id); returns it."""
    JOBS[:] = [j for j in JOBS if j.id != job.id]
    JOBS.append(job)
    return job


def enforce_expiries() -> Any:
    """Expire projects past their end date, then re-decide every project as the enforcement identity:
    views of expired agreements and projects removed, workspaces of expired accreditations, projects
    and memberships stopped, the tokens they justified revoked. Returns the enforcement report."""
    from tre_platform.api.projects.service import expire_due

    actor = Actor.system(SCHEDULER)
    with session_scope() as session:
        expire_due(session, actor)
        report = get_enforcer().enforce(session, actor, None)
    for problem in getattr(report, "problems", ()):
        log.warning("scheduled enforcement: %s", problem)
    return report


def retention_sweep() -> Any:
    """Archive or destroy the dataset versions past their retention date (``tre dataset sweep``)."""
    from tre_platform.api.datasets.lifecycle import sweep

    with session_scope() as session:
        return sweep(session, Actor.system(SCHEDULER))


register(
    Job(
        "enforce-expiries",
        "expiries of accreditations, projects and agreements: views, workspaces, tokens",
        dt.timedelta(minutes=1),
        enforce_expiries,
    )
)
register(
    Job(
        "retention-sweep",
        "archive or destroy dataset versions past retention",
        dt.timedelta(days=1),
        retention_sweep,
    )
)


def orphan_process_sweep() -> Any:
    """Kill every process of a researcher's Unix user that has no running server (a ``setsid nohup``
    left behind by a stopped workspace), and remove leftover workspace sandboxes."""
    from tre_platform.hub.sandbox import sweep_orphan_processes

    if os.geteuid() != 0:  # no researcher accounts or sandboxes exist without root (single-user mode)
        return []
    return sweep_orphan_processes()


register(
    Job(
        "sweep-orphan-processes",
        "processes of researchers with no running server; leftover sandboxes",
        dt.timedelta(minutes=1),
        orphan_process_sweep,
    )
)


def ingest_leftovers_sweep() -> Any:
    """Remove what killed ingests left behind: landing copies and staging no live ingest holds."""
    from tre_platform.pipelines.ingest import sweep_ingest_leftovers

    return sweep_ingest_leftovers()


register(
    Job(
        "ingest-leftovers-sweep",
        "landing copies and staging of killed ingests",
        dt.timedelta(hours=1),
        ingest_leftovers_sweep,
    )
)


def run_job(job: Job) -> None:
    """Run one job, logging (never raising) a failure: the next tick tries again."""
    try:
        job.func()
    except Exception:
        log.exception("scheduled job %s failed; it runs again at its next tick", job.id)


def start(jobs: list[Job] | None = None) -> BackgroundScheduler:
    """Start a background scheduler running ``jobs`` (default :data:`JOBS`); stop it with
    ``.shutdown()``. Each job also runs once at start, so a restart catches up at once."""
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler(timezone=dt.UTC, job_defaults={"coalesce": True, "max_instances": 1})
    now = dt.datetime.now(dt.UTC)
    for job in jobs if jobs is not None else JOBS:
        scheduler.add_job(
            run_job,
            "interval",
            args=[job],
            id=job.id,
            name=job.description,
            seconds=job.every.total_seconds(),
            next_run_time=now,
        )
    scheduler.start()
    return scheduler
