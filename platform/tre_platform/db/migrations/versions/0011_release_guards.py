"""the airlock's ledgers are append-only: refuse UPDATE and DELETE on privacy-ledger entries and released tables

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-22 10:00:00

The differential-privacy ledger (``privacy_ledger_entries``) is what stops a project spending more ε than
its agreements allow, and the released-tables ledger (``released_tables``) is what the differencing check
compares every new table with. Editing or deleting a row of either would silently give back budget or hide
an earlier release, so the database itself refuses it, as it does for ``audit_events`` (revision 0001).
The budget heads (``privacy_budget_heads``) are not guarded: they are lock rows whose counter every debit
updates, and they hold no amounts.

On PostgreSQL the triggers call ``tre_refuse_change()``, which revision 0001 created (and its downgrade
drops); on SQLite each trigger raises on its own.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GUARDED: dict[str, tuple[str, ...]] = {
    "privacy_ledger_entries": ("UPDATE", "DELETE"),
    "released_tables": ("UPDATE", "DELETE"),
}


def _trigger(table: str, operation: str) -> str:
    return f"tre_{table}_no_{operation.lower()}"


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table, operations in GUARDED.items():
        for operation in operations:
            name = _trigger(table, operation)
            if dialect == "postgresql":
                op.execute(
                    f"CREATE TRIGGER {name} BEFORE {operation} ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION tre_refuse_change()"
                )
            else:
                op.execute(
                    f"CREATE TRIGGER {name} BEFORE {operation} ON {table} BEGIN SELECT RAISE(ABORT, "
                    f"'{operation} on {table} is not allowed: the table is append-only'); END"
                )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table, operations in GUARDED.items():
        for operation in operations:
            name = _trigger(table, operation)
            if dialect == "postgresql":
                op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
            else:
                op.execute(f"DROP TRIGGER IF EXISTS {name}")
