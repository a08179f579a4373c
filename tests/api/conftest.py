"""Fixtures of the REST API tests: a seeded world, a client, cheap argon2 (see tests/factories.py)."""

from factories import _cheap_argon2, _shared_app, _sqlite_template, client, db, world

__all__ = ["_cheap_argon2", "_shared_app", "_sqlite_template", "client", "db", "world"]
