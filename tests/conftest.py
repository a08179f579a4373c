"""Shared fixtures: an isolated data directory and a migrated database per test.

The database backend is chosen by ``--db`` (sqlite, the default, or postgres). With postgres each test
gets its own schema in the ``test`` database on 127.0.0.1:5432, so runs never see each other.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

from tre_platform.clock import clock
from tre_platform.db.session import make_session_factory, reset_engines
from tre_platform.settings import get_settings

# The machine is shared and noisy: never fail a property test on time, only on behaviour.
hypothesis_settings.register_profile(
    "tre", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
hypothesis_settings.load_profile("tre")

# Spark's Python workers must run this interpreter (it has pyarrow and tre_lib), not whatever `python3`
# is first on PATH. Set before any SparkSession exists.
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)

# Cedar decides every policy request as well as the compiled policies, and any difference fails the
# test (ADR 0011): the whole suite is a differential test of the compiled form. Inherited by the
# services tests start.
os.environ.setdefault("TRE_POLICY_VERIFY", "true")

POSTGRES_URL = os.environ.get("TRE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--db", default="sqlite", choices=["sqlite", "postgres"], help="database backend")


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test has its own data directory and TRE_ENV=test; the clock is never left frozen."""
    data_dir = tmp_path / "tre-data"
    monkeypatch.setenv("TRE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("TRE_ENV", "test")
    # Enforcement after changes creates Unix users/groups and talks to the hub: only the tests about it
    # turn it on (tests/integration/cli, tests/integration/views).
    monkeypatch.setenv("TRE_ENFORCE_ON_CHANGE", "false")
    # `tre up` would fetch the workspace environment's packages into the mirror: only the mirror's tests do.
    monkeypatch.setenv("TRE_PACKAGE_BASE_SET", "false")
    # An append-only (chattr +a) witness log could not be removed with the test's directory.
    monkeypatch.setenv("TRE_AUDIT_WITNESS_APPEND_ONLY", "false")
    monkeypatch.delenv("TRE_DATABASE_URL", raising=False)
    monkeypatch.delenv("TRE_SECRET_KEY", raising=False)
    get_settings.cache_clear()
    yield data_dir
    clock.unfreeze()
    get_settings.cache_clear()
    reset_engines()


@pytest.fixture(scope="session")
def _migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite database migrated to head once per run: the template every test's database copies.

    Alembic's own engine (no WAL pragma) closes the file in rollback-journal mode, so the one file is
    the whole database.
    """
    from alembic import command

    from tre_platform.db.migrate import alembic_config

    path = tmp_path_factory.mktemp("migrated") / "template.db"
    command.upgrade(alembic_config(f"sqlite:///{path}"), "head")
    return path


@pytest.fixture
def db_url(
    request: pytest.FixtureRequest, _isolated_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A migrated, empty database (SQLite file or a fresh PostgreSQL schema) named by TRE_DATABASE_URL."""
    from tre_platform.db.migrate import upgrade

    backend = request.config.getoption("--db")
    if backend == "postgres":
        schema = f"t_{uuid.uuid4().hex[:12]}"
        admin = create_engine(POSTGRES_URL)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
        monkeypatch.setenv("TRE_DATABASE_URL", url)
        get_settings.cache_clear()
        upgrade(url)
        yield url
        reset_engines()
        with admin.begin() as conn:
            # Fail loudly rather than hang if a test left a transaction open on its schema.
            conn.execute(text("SET LOCAL lock_timeout = '30s'"))
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    else:
        # The migrations ran once for the whole run (tests/integration/db runs them on every backend
        # itself); each test gets a byte copy of that database, ~100x cheaper than migrating again.
        path = _isolated_settings / "tre.db"
        url = f"sqlite:///{path}"
        monkeypatch.setenv("TRE_DATABASE_URL", url)
        get_settings.cache_clear()
        get_settings().ensure_data_dir()
        shutil.copyfile(request.getfixturevalue("_migrated_sqlite"), path)
        yield url


@pytest.fixture
def engine(db_url: str) -> Engine:
    from tre_platform.db.session import get_engine

    return get_engine(url=db_url)


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session on the migrated test database; the test commits what it wants kept."""
    factory = make_session_factory(engine)
    with factory() as sess:
        yield sess
        sess.rollback()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With ``--db postgres`` run only the tests that touch the database (the rest ran on SQLite), but
    not those marked ``sqlite_only``: what they check (an engine's output, the CLI's messages) is the
    same on either backend, and each costs a demo world or a Spark job."""
    if config.getoption("--db") != "postgres":
        return
    selected, deselected = [], []
    for item in items:
        touches = "db_url" in getattr(item, "fixturenames", ())
        (selected if touches and item.get_closest_marker("sqlite_only") is None else deselected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """The one local SparkSession of the test run: every test folder shares it, so it carries every
    setting any of them needs (Splink's similarity jar, Arrow), small and quiet for a 2-core machine."""
    from pyspark.sql import SparkSession
    from splink.backends.spark import similarity_jar_location

    session = (
        SparkSession.builder.master("local[1]")
        .appName("tre-tests")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.jars", similarity_jar_location())
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.driver.memory", "2g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def dask_client() -> Iterator[Any]:
    """One in-process Dask cluster (one worker, one thread) for the whole run; dashboard on a free port."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        yield client
