"""Arranging what the browser flows need directly through the services (the same code the API runs)."""

from __future__ import annotations

import pandas as pd
import pytest
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
