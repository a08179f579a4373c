"""account security: TOTP replay protection and failed sign-in attempts for lockout

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-22 02:00:00

``users.totp_last_step`` holds the time step of the last TOTP code accepted, so the same code (or an older
one) is refused within its validity window. ``login_attempts`` records each failed password or TOTP step
(by username as typed and by client address) so repeated failures lock the account and the client out.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tre_platform.db.base

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("totp_last_step", sa.BigInteger(), nullable=True))
    op.create_table(
        "login_attempts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("step", sa.String(length=16), nullable=False),
        sa.Column("at", tre_platform.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_attempts")),
    )
    op.create_index("ix_login_attempts_username_at", "login_attempts", ["username", "at"], unique=False)
    op.create_index("ix_login_attempts_client_at", "login_attempts", ["client", "at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_login_attempts_client_at", table_name="login_attempts")
    op.drop_index("ix_login_attempts_username_at", table_name="login_attempts")
    op.drop_table("login_attempts")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("totp_last_step")
