"""The Alembic migrations and the SQLAlchemy models describe the same database."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

import tre_platform.db.models  # noqa: F401
from tre_platform.db.base import Base
from tre_platform.db.migrate import current_revision


def test_migrations_and_models_agree(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], f"models and migrations differ; generate a migration: {diff}"


def test_database_is_at_the_head_revision(db_url: str) -> None:
    from alembic.script import ScriptDirectory

    from tre_platform.db.migrate import alembic_config

    head = ScriptDirectory.from_config(alembic_config(db_url)).get_current_head()
    assert current_revision(db_url) == head


def test_every_model_table_exists(engine: Engine) -> None:
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables


def test_upgrade_is_idempotent(db_url: str, engine: Engine) -> None:
    from tre_platform.db.migrate import upgrade

    upgrade(db_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM organisations")).scalar_one() == 0
