"""Keys beside the names on schedules and reviews, so that forget-me finds a member who changed name.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

Rows written before this revision keep an empty key; forget-me matches those by name.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("schedules") as batch:
        batch.add_column(sa.Column("created_by_key", sa.String(300), nullable=False, server_default=""))
    with op.batch_alter_table("reviews") as batch:
        batch.add_column(sa.Column("started_by_key", sa.String(300), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("reviews") as batch:
        batch.drop_column("started_by_key")
    with op.batch_alter_table("schedules") as batch:
        batch.drop_column("created_by_key")
