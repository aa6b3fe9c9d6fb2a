"""A thread for every decision: the group's switch, the review's message, what a threaded post needs.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-14

Groups get `auto_threads` (on, as for every group before this revision). Reviews keep the message
their questions were posted as (the root of their thread; NULL for reviews before this revision, whose
posts then go to the channel). A queued post keeps the line the channel gets when its text goes to the
thread, whether it is for the thread alone, and the review whose message it becomes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Plain ADD COLUMNs, not a batch: a batch copies a SQLite table for a default that is an expression,
    # and the copy of `outbox` would lose AUTOINCREMENT and with it the promise that a row id (an
    # idempotency key) is never used twice.
    op.add_column("groups", sa.Column("auto_threads", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.add_column("reviews", sa.Column("message_id", sa.Text(), nullable=True))
    op.add_column("outbox", sa.Column("channel_line", sa.Text(), nullable=True))
    op.add_column("outbox", sa.Column("thread_only", sa.Boolean(), nullable=False, server_default=sa.false()))
    # No foreign key for the same reason: adding one copies the table.
    op.add_column("outbox", sa.Column("review_id", Id, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("review_id")
        batch.drop_column("thread_only")
        batch.drop_column("channel_line")
    with op.batch_alter_table("reviews") as batch:
        batch.drop_column("message_id")
    with op.batch_alter_table("groups") as batch:
        batch.drop_column("auto_threads")
