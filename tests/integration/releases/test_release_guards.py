"""The database itself refuses to edit or delete the airlock's ledgers (migration 0011), on both backends.

Every statement here is raw SQL on a connection of its own, as an attacker with database access (or a bug
that bypassed the service layer) would send it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

import tre_platform.db.models  # noqa: F401  (registers every table on Base.metadata)
from tre_platform.db.base import Base
from tre_platform.db.migrate import alembic_config, upgrade

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)

ROWS: dict[str, dict[str, Any]] = {
    "privacy_ledger_entries": {
        "id": "e" * 32,
        "scope_kind": "project",
        "scope_id": "p1",
        "project_id": "p1",
        "dataset_id": None,
        "epsilon": 0.5,
        "delta": 0.0,
        "description": "count of admissions",
        "actor": "rita",
        "charge_id": "c" * 32,
        "at": NOW,
    },
    "released_tables": {
        "id": "r" * 32,
        "project_id": "p1",
        "dataset_key": "d1",
        "request_id": None,
        "file_id": None,
        "record": {"cells": []},
        "released_at": NOW,
    },
}
#: A column of each table to try to change, and the value to try.
EDITS = {"privacy_ledger_entries": ("epsilon", 0.0), "released_tables": ("dataset_key", "elsewhere")}


def _insert(engine: Engine, table: str) -> None:
    # Inserted through the model's table so column types (JSON, UTC timestamps) are bound as the app does.
    with engine.begin() as conn:
        conn.execute(Base.metadata.tables[table].insert().values(**ROWS[table]))


def _count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def _value(engine: Engine, table: str, column: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            text(f"SELECT {column} FROM {table} WHERE id = :id"), {"id": ROWS[table]["id"]}
        ).scalar_one()


@pytest.mark.parametrize("table", sorted(ROWS))
def test_ledger_rows_can_be_added(engine: Engine, table: str) -> None:
    _insert(engine, table)
    assert _count(engine, table) == 1


@pytest.mark.parametrize("table", sorted(ROWS))
def test_the_database_refuses_to_update_a_ledger_row(engine: Engine, table: str) -> None:
    _insert(engine, table)
    column, value = EDITS[table]
    before = _value(engine, table, column)
    with pytest.raises(DBAPIError, match=f"UPDATE on {table} is not allowed"), engine.begin() as conn:
        conn.execute(text(f"UPDATE {table} SET {column} = :value"), {"value": value})
    assert _value(engine, table, column) == before


@pytest.mark.parametrize("table", sorted(ROWS))
def test_the_database_refuses_to_delete_a_ledger_row(engine: Engine, table: str) -> None:
    _insert(engine, table)
    with pytest.raises(DBAPIError, match=f"DELETE on {table} is not allowed"), engine.begin() as conn:
        conn.execute(text(f"DELETE FROM {table}"))
    assert _count(engine, table) == 1


def test_downgrading_removes_the_guards_and_upgrading_restores_them(db_url: str, engine: Engine) -> None:
    _insert(engine, "released_tables")
    command.downgrade(alembic_config(db_url), "0010")
    engine.dispose()  # SQLite connections cache the old schema; start afresh after DDL elsewhere
    with engine.begin() as conn:
        conn.execute(text("UPDATE released_tables SET dataset_key = 'moved'"))
    upgrade(db_url)
    engine.dispose()
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("DELETE FROM released_tables"))
    assert _value(engine, "released_tables", "dataset_key") == "moved"
