"""Fixtures for view and hub tests: a KEK, a data directory researchers can reach, Unix clean-up, Spark."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from factories import _cheap_argon2
from sqlalchemy.orm import Session
from workspace_world import WorkspaceWorld, build_workspace_world, traversable_data_dir, unix_accounts_cleanup

from tre_lib.pseudonymise import encode_key, generate_kek
from tre_platform.settings import get_settings
from tre_platform.views.settings import get_workspace_settings

__all__ = ["_cheap_argon2", "_kek", "data_dir", "wworld"]


@pytest.fixture(autouse=True)
def _kek(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TRE_KEK", encode_key(generate_kek()))
    monkeypatch.delenv("TRE_STORAGE_MODE", raising=False)
    get_settings.cache_clear()
    get_workspace_settings.cache_clear()
    yield
    get_workspace_settings.cache_clear()


@pytest.fixture
def data_dir(monkeypatch: pytest.MonkeyPatch, db_url: str) -> Iterator[Path]:
    with traversable_data_dir(monkeypatch) as path, unix_accounts_cleanup():
        yield path


@pytest.fixture
def wworld(session: Session, data_dir: Path) -> WorkspaceWorld:
    return build_workspace_world(session)
