"""dataset schema versions: a schema can be revised; each published version keeps the one it was ingested under

Revision ID: 0018
Revises: 0016
Create Date: 2026-12-07 14:00:00

``datasets.schema`` stays the current schema and ``datasets.schema_version`` its number; every schema a
dataset has had is a row of ``dataset_schema_versions`` (version 1 backfilled from the current schema).
``dataset_versions`` is not altered (it is immutable, and rebuilding it on SQLite would drop its triggers):
a published version's schema is the newest schema version created before it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tre_platform.db.base

revision: str = "0018"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "dataset_schema_versions"


def upgrade() -> None:
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("schema_version", sa.Integer(), nullable=False, server_default=sa.text("1"))
        )
    op.create_table(
        TABLE,
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("dataset_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("schema", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", tre_platform.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_dataset_schema_versions_dataset_id_datasets")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_dataset_schema_versions_created_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset_schema_versions")),
        sa.UniqueConstraint("dataset_id", "version", name="uq_dataset_schema_versions_number"),
    )
    op.create_index(op.f("ix_dataset_schema_versions_dataset_id"), TABLE, ["dataset_id"], unique=False)
    # Version 1 of every existing dataset is its current schema, dated when the dataset was registered.
    op.execute(
        sa.text(
            f"INSERT INTO {TABLE} (id, dataset_id, version, schema, reason, created_by_id, created_at) "  # noqa: S608
            "SELECT id, id, 1, schema, 'registered', NULL, created_at FROM datasets"
        )
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_dataset_schema_versions_dataset_id"), table_name=TABLE)
    op.drop_table(TABLE)
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.drop_column("schema_version")
