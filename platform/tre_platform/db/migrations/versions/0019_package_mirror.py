"""package mirror: researchers' package requests, the wheels the mirror serves, OSV advisories

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 13:18:14

The vetted package mirror (docs/adr/0017-package-mirror.md): a request holds the dependency tree the
administrator decides on; mirror_packages lists every file in the wheelhouse with its SHA-256 and licence;
package_advisories holds the OSV records an administrator loaded.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tre_platform.db.base

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "package_advisories",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("osv_id", sa.String(length=100), nullable=False),
        sa.Column("package", sa.String(length=100), nullable=False),
        sa.Column("summary", sa.String(length=500), nullable=False),
        sa.Column("aliases", sa.JSON(), nullable=False),
        sa.Column("affected", sa.JSON(), nullable=False),
        sa.Column("modified", sa.String(length=40), nullable=False),
        sa.Column("loaded_at", tre_platform.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_package_advisories")),
        sa.UniqueConstraint("osv_id", "package", name="uq_package_advisories_osv_id_package"),
    )
    with op.batch_alter_table("package_advisories", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_package_advisories_package"), ["package"], unique=False)

    op.create_table(
        "package_requests",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "pending", "approved", "refused", name="packagerequeststate", native_enum=False, length=20
            ),
            nullable=False,
        ),
        sa.Column("requested_by_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", tre_platform.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tree", sa.JSON(), nullable=False),
        sa.Column("decided_by_id", sa.String(length=32), nullable=True),
        sa.Column("decided_at", tre_platform.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("decision_comment", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["decided_by_id"], ["users.id"], name=op.f("fk_package_requests_decided_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["requested_by_id"], ["users.id"], name=op.f("fk_package_requests_requested_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_package_requests")),
    )
    with op.batch_alter_table("package_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_package_requests_name"), ["name"], unique=False)

    op.create_table(
        "mirror_packages",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("licence", sa.String(length=300), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=True),
        sa.Column("added_at", tre_platform.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["package_requests.id"],
            name=op.f("fk_mirror_packages_request_id_package_requests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mirror_packages")),
        sa.UniqueConstraint("filename", name=op.f("uq_mirror_packages_filename")),
    )
    with op.batch_alter_table("mirror_packages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mirror_packages_name"), ["name"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("mirror_packages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mirror_packages_name"))

    op.drop_table("mirror_packages")
    with op.batch_alter_table("package_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_package_requests_name"))

    op.drop_table("package_requests")
    with op.batch_alter_table("package_advisories", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_package_advisories_package"))

    op.drop_table("package_advisories")
