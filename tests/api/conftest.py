"""Fixtures: a seeded world per test, a client, cheap argon2 (defined in tests/factories.py).

``db_url``, ``db`` and ``session`` here are the world's database; on PostgreSQL every test runs in a
transaction that is rolled back, so use ``db``/``session`` (never a new engine) to look at the data.
"""

from factories import (
    _cheap_argon2,
    _postgres_template,
    _shared_app,
    _sqlite_template,
    client,
    db,
    db_url,
    session,
    world,
    world_sessions,
)

__all__ = [
    "_cheap_argon2",
    "_postgres_template",
    "_shared_app",
    "_sqlite_template",
    "client",
    "db",
    "db_url",
    "session",
    "world",
    "world_sessions",
]
