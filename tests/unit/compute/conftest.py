"""Views on disk written with the manifest format, one Dask LocalCluster per session, the control plane."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from compute_views import make_view
from factories import _cheap_argon2
from sqlalchemy import select
from sqlalchemy.orm import Session
from workspace_processes import ControlPlane

from tre_platform.hub.local import serve_control_plane

__all__ = ["_cheap_argon2"]  # the demo world's users are hashed cheaply (notebook tests seed it)


@pytest.fixture
def views(tmp_path: Path) -> Path:
    root = tmp_path / "projects" / "P-1" / "views"
    make_view(
        root,
        "hes",
        pd.DataFrame(
            {"demographic_id": ["a", "b", "c", "d"], "age": [30, 41, 52, 63], "chapter": ["I", "I", "X", "X"]}
        ),
    )
    make_view(
        root,
        "lfs-2026",
        pd.DataFrame({"demographic_id": ["b", "c", "e"], "status": ["employed", "inactive", "inactive"]}),
    )
    (root / ".builds").mkdir()
    return root


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[Any]:
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0")
    yield cluster
    cluster.close()


@pytest.fixture
def control_plane(db_url: str, session: Session, tmp_path: Path) -> Iterator[ControlPlane]:
    """The real control plane on the test database, seeded with the demo world; alice's workspace token."""
    from tre_platform.actor import Actor
    from tre_platform.api.projects.models import Project, ProjectState
    from tre_platform.api.users import service as users
    from tre_platform.api.users.models import User
    from tre_platform.api.users.schemas import TokenCreate
    from tre_platform.demo.seed import seed
    from tre_platform.hub.workspace import WORKSPACE_TOKEN_SCOPES

    seed(session)
    alice = session.scalars(select(User).where(User.username == "alice")).one()
    project = session.scalars(
        select(Project).where(Project.lead_id == alice.id, Project.state == ProjectState.active)
    ).one()
    _, token = users.create_api_token(
        session,
        Actor.of(alice),
        TokenCreate(name=f"workspace {project.code}", scopes=WORKSPACE_TOKEN_SCOPES, expires_in_days=1),
    )
    session.commit()
    with serve_control_plane(os.environ, tmp_path / "control-plane.log") as (url, _):
        yield ControlPlane(url, token, project.code, project.id)
