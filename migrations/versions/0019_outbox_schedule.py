"""Posts prepared ahead: a queued post keeps the schedule whose occurrence it is.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-30

A nudge's post is written up to a minute before it is due (core/outbox.py `AHEAD`) and held by the
process that wrote it; pausing, removing or moving the schedule before then deletes it. `schedule_id`
names the schedule (NULL for every other post, and for every row before this revision).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # A plain ADD COLUMN, no foreign key: either would copy the SQLite table and lose AUTOINCREMENT (see
    # 0014). No index: the outbox holds what is unsent, and a schedule is withdrawn by a command.
    op.add_column("outbox", sa.Column("schedule_id", Id, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("schedule_id")
