"""Time-based enforcement without an outside scheduler: the jobs `tre up` runs, under a frozen clock.

An accreditation that expires at midnight stops the researcher's server, takes them out of the project's
group and revokes the project's tokens at the next tick - no API call in between; `tre up` starts the
scheduler with the control plane and stops it with it.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from factories import SYSTEM
from recording_hub import RecordingHub
from sqlalchemy.orm import Session
from workspace_world import WorkspaceWorld

from tre_platform.actor import Actor
from tre_platform.api.users import service as users
from tre_platform.api.users.models import ApiToken
from tre_platform.api.users.schemas import TokenCreate
from tre_platform.clock import clock
from tre_platform.scheduler import JOBS, Job, enforce_expiries, register, start
from tre_platform.settings import get_settings
from tre_platform.views import build_views
from tre_platform.views.storage import group_members, project_group, unix_username


@pytest.fixture
def enforcing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Only the scheduler enforces here: nothing reacts to a change.
    monkeypatch.setenv("TRE_ENFORCE_ON_CHANGE", "false")
    monkeypatch.setenv("TRE_WORKSPACE_CONTROL_CLASS", "recording_hub:RecordingHub")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_an_accreditation_expiring_at_midnight_is_enforced_at_the_next_tick(
    session: Session, wworld: WorkspaceWorld, enforcing: None
) -> None:
    alice, bob, p1, p2 = wworld.alice, wworld.bob, wworld.p1, wworld.p2
    build_views(session, SYSTEM, p1.code)
    build_views(session, SYSTEM, p2.code)
    alice.accreditations[0].expires_on = clock.today()
    token, _ = users.create_api_token(
        session,
        Actor.of(alice),
        TokenCreate(name="workspace", scopes=["api"], expires_in_days=3),
        project_id=p1.id,
    )
    session.commit()
    RecordingHub.reset({(alice.username, p1.code), (bob.username, p2.code)})
    name = unix_username(alice.username, alice.unix_username)

    midnight = dt.datetime.combine(clock.today() + dt.timedelta(days=1), dt.time(0, 0, 30), tzinfo=dt.UTC)
    with clock.frozen(midnight - dt.timedelta(minutes=1)):
        enforce_expiries()  # the last tick of the last valid day changes nothing
    assert RecordingHub.stopped == []
    with clock.frozen(midnight):
        enforce_expiries()
    session.expire_all()
    assert RecordingHub.stopped == [(alice.username, p1.code)]
    assert RecordingHub.running == {(bob.username, p2.code)}
    assert name not in group_members(project_group(p1.code))
    revoked = session.get(ApiToken, token.id)
    assert revoked is not None and revoked.revoked_at is not None
    # The views do not depend on who uses them: both projects keep theirs.
    for project in (p1, p2):
        assert (
            get_settings().resolved_data_dir / "projects" / project.code / "views" / wworld.hes.name
        ).exists()


def test_the_job_list_is_data_and_a_job_is_one_line_to_add() -> None:
    assert [job.id for job in JOBS][:2] == ["enforce-expiries", "retention-sweep"]
    assert {job.id: job.every for job in JOBS}["enforce-expiries"] == dt.timedelta(minutes=1)
    assert {job.id: job.every for job in JOBS}["retention-sweep"] == dt.timedelta(days=1)
    calls: list[int] = []
    job = Job("probe", "records a call", dt.timedelta(hours=1), lambda: calls.append(1))
    before = list(JOBS)
    try:
        register(job)
        scheduler = start([job])
        try:
            assert scheduler.running and [j.id for j in scheduler.get_jobs()] == ["probe"]
        finally:
            scheduler.shutdown(wait=True)
        assert not scheduler.running
        assert calls == [1]  # each job runs once at start
    finally:
        JOBS[:] = before


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_tre_up_starts_the_scheduler_and_stops_it_with_itself(tmp_path: Path, db_url: str) -> None:
    env = {
        **os.environ,
        "TRE_DATA_DIR": str(tmp_path / "up-data"),
        "TRE_DATABASE_URL": f"sqlite:///{tmp_path / 'up.db'}",
        "TRE_ENV": "test",
        "TRE_ENFORCE_ON_CHANGE": "false",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from tre_platform.cli import app; app()",
            "up",
            "--no-hub",
            "--port",
            str(_free_port()),
            "--host",
            "127.0.0.1",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        for line in process.stdout:
            lines.append(line)
            if "Application startup complete" in line:
                break
        assert any(line.startswith("scheduler: enforce-expiries every 0:01:00") for line in lines), lines
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate()
    assert process.returncode == 0, [*lines, rest]
    assert "scheduler stopped" in rest
