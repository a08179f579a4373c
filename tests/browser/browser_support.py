"""Arranging what the browser flows need directly through the services (the same code the API runs)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pandas as pd
import pyotp
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from tre_lib.disclosure import protect_table
from tre_lib.outputs.specs import TableSpec, table_to_csv, write_data
from tre_platform.actor import Actor
from tre_platform.api.projects.models import Project, ProjectState
from tre_platform.api.releases import service as releases
from tre_platform.api.releases.schemas import ReleaseCreate
from tre_platform.api.users.models import User


def release_in_review(
    server: object, monkeypatch: pytest.MonkeyPatch, username: str, frame: pd.DataFrame
) -> str:
    """A release request of ``username``'s active demo project, holding a protected region count table,
    submitted (so the server has run its checks) and waiting for the output checkers; returns its id."""
    from tre_platform.db.session import reset_engines, session_scope
    from tre_platform.settings import get_settings

    for name, value in server.env.items():  # type: ignore[attr-defined]
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    reset_engines()
    try:
        with session_scope() as session:
            user = session.scalar(select(User).where(User.username == username))
            assert user is not None
            project = session.scalar(
                select(Project).where(Project.lead_id == user.id, Project.state == ProjectState.active)
            )
            assert project is not None, f"{username} leads an active demo project"
            actor = Actor.of(user)
            request = releases.create_request(
                session,
                actor,
                ReleaseCreate(
                    project_id=project.id,
                    title="Admissions by region",
                    justification="Regional counts for the report's first table.",
                ),
            )
            spec = TableSpec(index=("region",), columns=())
            table = protect_table(frame, "region", None, rules="default").table
            releases.add_file(
                session,
                actor,
                request.id,
                name="admissions-by-region.csv",
                kind="table",
                content=table_to_csv(table),
                spec=spec.to_dict(),
                data=write_data(frame[["region"]]),
                data_name="admissions.parquet",
                description="People admitted, by region.",
            )
            releases.submit(session, actor, request.id)
            return request.id
    finally:
        reset_engines()
        get_settings.cache_clear()


def totp_code(server: object, username: str, secret: str | None = None) -> str:
    """A TOTP code for ``username`` that the server has not accepted yet.

    The server refuses a code of a time step it already accepted (replay protection; the demo's own
    enrolment used one), so this waits for the next 30-second step when the current one is spent. It
    reads the last accepted step from the server's database rather than guessing, so no sign-in fails
    (a failed code would count towards the account's lockout).
    """
    from sqlalchemy import create_engine, text

    secret = secret or server.logins[username].totp_secret  # type: ignore[attr-defined]
    assert secret, f"{username} has no second factor"
    engine = create_engine(server.env["TRE_DATABASE_URL"])  # type: ignore[attr-defined]
    try:
        with engine.connect() as conn:
            last = conn.execute(
                text("SELECT totp_last_step FROM users WHERE username = :u"), {"u": username}
            ).scalar()
    finally:
        engine.dispose()
    totp = pyotp.TOTP(secret)
    # Polls the wall clock (the server's clock): codes change every 30 seconds, nothing to wait on.
    while last is not None and totp.timecode(dt.datetime.now(dt.UTC)) <= int(last):
        time.sleep(0.5)
    return totp.now()


def sign_in(page: Page, server: object, username: str, password: str | None = None) -> None:
    login = server.logins[username]  # type: ignore[attr-defined]
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password or login.password)
    page.get_by_role("button", name="Sign in").click()
    if login.totp_secret:
        expect(page.get_by_role("heading", name="Enter your authenticator code")).to_be_visible()
        page.get_by_label("6-digit code").fill(totp_code(server, username))
        page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Welcome")


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def shot(page: Page, shots: Path, name: str) -> None:
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
