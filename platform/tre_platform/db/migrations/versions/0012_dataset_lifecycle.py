"""dataset catalogue and lifecycle: topics and retention on datasets; append-only version lifecycle events

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-23 10:00:00

``dataset_versions`` is immutable (revision 0001 refuses UPDATE), so archiving or destroying a version is
recorded as a row of ``dataset_version_events`` rather than a change to the version. Those rows are the
evidence that data was destroyed on time, so the database refuses UPDATE and DELETE on them too (on
PostgreSQL through ``tre_refuse_change()`` from revision 0001).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tre_platform.db.base

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "dataset_version_events"
OPERATIONS = ("UPDATE", "DELETE")


def upgrade() -> None:
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("topics", sa.JSON(), nullable=False, server_default=sa.text("'[]'")))
        batch_op.add_column(
            sa.Column("retention_days", sa.Integer(), nullable=False, server_default=sa.text("1826"))
        )
        batch_op.add_column(
            sa.Column("archive_days", sa.Integer(), nullable=False, server_default=sa.text("365"))
        )
    op.create_table(
        TABLE,
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("version_id", sa.String(length=32), nullable=False),
        sa.Column("dataset_id", sa.String(length=32), nullable=False),
        sa.Column(
            "action",
            sa.Enum("archive", "destroy", name="lifecycleaction", native_enum=False, length=10),
            nullable=False,
        ),
        sa.Column("at", tre_platform.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("actor_id", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("retention_until", sa.Date(), nullable=True),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["users.id"], name=op.f("fk_dataset_version_events_actor_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_dataset_version_events_dataset_id_datasets")
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["dataset_versions.id"],
            name=op.f("fk_dataset_version_events_version_id_dataset_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset_version_events")),
        sa.UniqueConstraint("version_id", "action", name="uq_dataset_version_events_step"),
    )
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dataset_version_events_version_id"), ["version_id"], unique=False
        )
    dialect = op.get_bind().dialect.name
    for operation in OPERATIONS:
        name = f"tre_{TABLE}_no_{operation.lower()}"
        if dialect == "postgresql":
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {operation} ON {TABLE} "
                "FOR EACH ROW EXECUTE FUNCTION tre_refuse_change()"
            )
        else:
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {operation} ON {TABLE} BEGIN SELECT RAISE(ABORT, "
                f"'{operation} on {TABLE} is not allowed: the table is append-only'); END"
            )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for operation in OPERATIONS:
        name = f"tre_{TABLE}_no_{operation.lower()}"
        if dialect == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {TABLE}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dataset_version_events_version_id"))
    op.drop_table(TABLE)
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.drop_column("archive_days")
        batch_op.drop_column("retention_days")
        batch_op.drop_column("topics")
