"""Engines and sessions. One engine per URL per process; sessions are short and explicit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from tre_platform.settings import Settings, get_settings

_engines: dict[tuple[str, str | None], Engine] = {}
#: Connections kept open, and opened beyond them at busy times (see get_engine).
POOL_SIZE = 10
POOL_OVERFLOW = 40


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
    if not url.startswith("sqlite") or (":memory:" not in url and url.startswith("sqlite:///")):
        # As many connections as the server has worker threads (anyio's default: 40), and some to spare,
        # so a request never waits for a connection behind requests that wait for a lock.
        kwargs.update(pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW)
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


#: SQLite's answers when another connection holds the lock too long, or a snapshot went stale.
_SQLITE_BUSY = ("database is locked", "database table is locked", "database is busy")
#: PostgreSQL SQLSTATEs for a lock or serialisation conflict that a retry resolves.
_POSTGRES_RETRYABLE = {"40001", "40P01", "55P03"}


def is_busy(exc: DBAPIError) -> bool:
    """Whether ``exc`` is a transient lock conflict (retry later), not a fault or a real conflict.

    Also true for a unique violation on the audit chain: two appends after the same head, which the
    chain lock prevents, so only a writer that bypassed it can meet one.
    """
    original = exc.orig
    text = str(original).lower()
    if any(marker in text for marker in _SQLITE_BUSY):
        return True
    if getattr(original, "sqlstate", None) in _POSTGRES_RETRYABLE:
        return True
    if getattr(original, "pgcode", None) in _POSTGRES_RETRYABLE:
        return True
    return isinstance(exc, IntegrityError) and "audit_events" in text


def health_engine(settings: Settings | None = None) -> Engine:
    """A one-connection engine for health checks, so they never wait for the shared pool (cached)."""
    settings = settings or get_settings()
    url = settings.resolved_database_url
    if url.startswith("sqlite") and (":memory:" in url or not url.startswith("sqlite:///")):
        return get_engine(settings)  # one connection per thread already
    key = (url, "health")
    if key not in _engines:
        args = {"check_same_thread": False, "timeout": 5} if url.startswith("sqlite") else {}
        _engines[key] = create_engine(
            url, pool_size=1, max_overflow=0, pool_timeout=5, pool_pre_ping=True, connect_args=args
        )
    return _engines[key]


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
