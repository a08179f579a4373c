"""The golden-case world in a migrated database, with the clock frozen on the world's day."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from policy_db_world import NOON, DbWorld, build_world
from sqlalchemy.orm import Session

from tre_platform.clock import clock
from tre_platform.policy import PolicyEngine
from tre_platform.settings import REPO_ROOT


@pytest.fixture(scope="session")
def policy_engine() -> PolicyEngine:
    return PolicyEngine.load(REPO_ROOT / "policies")


@pytest.fixture
def world(session: Session) -> Iterator[DbWorld]:
    with clock.frozen(NOON):
        yield build_world(session)


@pytest.fixture
def policies_dir() -> Path:
    return REPO_ROOT / "policies"
