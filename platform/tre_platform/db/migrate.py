"""Alembic, driven from code: ``tre db upgrade`` and the tests use the same function."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from tre_platform.settings import get_settings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # '%' must be escaped for ConfigParser interpolation (URL-encoded query strings contain it).
    config.set_main_option("sqlalchemy.url", (url or get_settings().resolved_database_url).replace("%", "%%"))
    return config


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Bring the database at ``url`` (default: the configured one) up to ``revision``."""
    if url is None or url.startswith("sqlite:///"):
        get_settings().ensure_data_dir()
    command.upgrade(alembic_config(url), revision)


def current_revision(url: str | None = None) -> str | None:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    engine = create_engine(url or get_settings().resolved_database_url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
