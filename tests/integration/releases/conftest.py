"""The airlock's world: a project with two datasets under agreements, its researchers, three output checkers.

Built through the service layer on the root conftest's migrated database (SQLite, or a fresh PostgreSQL
schema with ``--db postgres``), so every test runs against a real database and the real policy engine.
The world itself is in airlock_world.py (tests import it from there, never from a conftest).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from airlock_world import Airlock, build_airlock
from factories import _cheap_argon2
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

__all__ = ["_cheap_argon2"]


@pytest.fixture
def airlock(session: Session) -> Airlock:
    return build_airlock(session)


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    """The real application on the test database."""
    from tre_platform.api.app import create_app
    from tre_platform.settings import get_settings

    app = create_app(get_settings())
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
