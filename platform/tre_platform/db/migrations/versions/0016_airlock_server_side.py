"""airlock server side: exceptions to failed findings, differentially private results kept by the server

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 13:40:00

``release_files.exception`` holds a researcher's written request for an exception to a failed finding
(granted only by the two approvals of a round). ``dp_query_results`` keeps every differentially private
answer the server computed on a project view, written in the same transaction as its budget debit, so a
release can attach it by reference.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tre_platform.db.base

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("release_files") as batch:
        batch.add_column(sa.Column("exception", sa.JSON(), nullable=False, server_default="{}"))
    op.create_table(
        "dp_query_results",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("requester_id", sa.String(length=32), nullable=False),
        sa.Column("view", sa.String(length=200), nullable=False),
        sa.Column("dataset_id", sa.String(length=32), nullable=False),
        sa.Column("query", sa.JSON(), nullable=False),
        sa.Column("epsilon", sa.Float(), nullable=False),
        sa.Column("delta", sa.Float(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("charge_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", tre_platform.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_dp_query_results_project_id_projects")
        ),
        sa.ForeignKeyConstraint(
            ["requester_id"], ["users.id"], name=op.f("fk_dp_query_results_requester_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dp_query_results")),
    )
    op.create_index(op.f("ix_dp_query_results_project_id"), "dp_query_results", ["project_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_dp_query_results_project_id"), table_name="dp_query_results")
    op.drop_table("dp_query_results")
    with op.batch_alter_table("release_files") as batch:
        batch.drop_column("exception")
