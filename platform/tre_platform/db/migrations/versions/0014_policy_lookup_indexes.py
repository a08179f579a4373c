"""policy lookups: index accreditations by holder and agreement scopes by dataset

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-22 02:05:00

Every access decision reads the asking user's accreditations and the agreements whose scope lists the
dataset (``tre_platform.policy.db``). Without these two indexes both are full-table scans: with 50,000
users, loading one decision's facts took ~6 ms instead of ~1.5 ms (bench/policy_bench.py). The other
lookups (user roles, project members and datasets, agreement links by agreement) already use the
indexes of their unique constraints.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_accreditations_user_id"), "accreditations", ["user_id"], unique=False)
    op.create_index(
        op.f("ix_agreement_datasets_dataset_id"), "agreement_datasets", ["dataset_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_agreement_datasets_dataset_id"), table_name="agreement_datasets")
    op.drop_index(op.f("ix_accreditations_user_id"), table_name="accreditations")
