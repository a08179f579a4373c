"""Fixtures for view and hub tests: a KEK, a data directory researchers can reach, Unix clean-up, Spark."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from factories import _cheap_argon2
from sqlalchemy.orm import Session
from tre_platform.settings import get_settings
from tre_platform.views.settings import get_workspace_settings
from workspace_world import WorkspaceWorld, build_workspace_world, traversable_data_dir, unix_accounts_cleanup

from tre_lib.pseudonymise import encode_key, generate_kek

__all__ = ["_cheap_argon2", "_kek", "data_dir", "spark", "wworld"]


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


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[1]")
        .appName("tre-views-tests")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    yield session
    session.stop()
