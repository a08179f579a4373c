"""Database: SQLAlchemy 2 declarative base, engines and sessions, Alembic migrations."""

from tre_platform.db.base import Base, new_id, utcnow
from tre_platform.db.session import get_engine, make_session_factory, reset_engines, session_scope

__all__ = ["Base", "get_engine", "make_session_factory", "new_id", "reset_engines", "session_scope", "utcnow"]
