"""Who put a goal forward, beside its proposer: a goal made from a reflection is its author's.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04

Until this revision the member who ran `goal propose` was always recorded as the proposer, also for
a goal made from someone else's reflection; so that member is who put each existing goal forward.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

goals = sa.table(
    "goals",
    sa.column("proposer_key", sa.String),
    sa.column("proposer_name", sa.Text),
    sa.column("put_forward_by_key", sa.String),
    sa.column("put_forward_by_name", sa.Text),
)


def upgrade() -> None:
    with op.batch_alter_table("goals") as batch:
        batch.add_column(sa.Column("put_forward_by_key", sa.String(300), nullable=False, server_default=""))
        batch.add_column(sa.Column("put_forward_by_name", sa.Text, nullable=False, server_default=""))
    op.execute(
        goals.update().values(
            put_forward_by_key=goals.c.proposer_key, put_forward_by_name=goals.c.proposer_name
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("goals") as batch:
        batch.drop_column("put_forward_by_name")
        batch.drop_column("put_forward_by_key")
