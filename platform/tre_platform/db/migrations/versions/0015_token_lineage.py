"""token lineage: the token each API token was minted with, and the project that justified it

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 13:45:00

A token minted with another token may not outlive or outrank it, and revoking an accreditation, a
membership or a project (or stopping a workspace) revokes the tokens it justified
(docs/adr/0013-enforcement-identity-and-tokens.md). Existing tokens have no parent and no project.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parent_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("project_id", sa.String(length=32), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_api_tokens_parent_id_api_tokens"),
            "api_tokens",
            ["parent_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_api_tokens_project_id_projects"),
            "projects",
            ["project_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_index(batch_op.f("ix_api_tokens_parent_id"), ["parent_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_api_tokens_project_id"), ["project_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_tokens_project_id"))
        batch_op.drop_index(batch_op.f("ix_api_tokens_parent_id"))
        batch_op.drop_constraint(batch_op.f("fk_api_tokens_project_id_projects"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("fk_api_tokens_parent_id_api_tokens"), type_="foreignkey")
        batch_op.drop_column("project_id")
        batch_op.drop_column("parent_id")
