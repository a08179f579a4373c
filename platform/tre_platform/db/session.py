"""Engines and sessions. One engine per URL per process; sessions are short and explicit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from tre_platform.settings import Settings, get_settings

_engines: dict[tuple[str, str | None], Engine] = {}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def get_engine(
    settings: Settings | None = None, *, url: str | None = None, schema: str | None = None
) -> Engine:
    """The engine for the configured database (cached). ``schema`` pins a PostgreSQL search_path (tests)."""
    settings = settings or get_settings()
    url = url or settings.resolved_database_url
    key = (url, schema)
    if key in _engines:
        return _engines[key]
    kwargs: dict[str, Any] = {"future": True}
    if url.startswith("sqlite"):
        if ":memory:" not in url and url.startswith("sqlite:///"):
            settings.ensure_data_dir()
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    elif schema:
        kwargs["connect_args"] = {"options": f"-csearch_path={schema}"}
    engine = create_engine(url, pool_pre_ping=True, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
    _engines[key] = engine
    return engine


def reset_engines() -> None:
    """Dispose every cached engine (tests, and after a fork)."""
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


def make_session_factory(engine: Engine | None = None) -> sessionmaker[Session]:
    return sessionmaker(bind=engine or get_engine(), expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """A transaction: commit on success, roll back on any error."""
    session = make_session_factory(engine)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
