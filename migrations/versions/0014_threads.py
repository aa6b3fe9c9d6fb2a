"""A thread for every decision: the group's switch, the review's message, what a threaded post needs.

Revision ID: 0014
Revises: 0011
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
down_revision = "0011"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("groups") as batch:
        batch.add_column(sa.Column("auto_threads", sa.Boolean(), nullable=False, server_default=sa.true()))
    with op.batch_alter_table("reviews") as batch:
        batch.add_column(sa.Column("message_id", sa.Text(), nullable=True))
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("channel_line", sa.Text(), nullable=True))
        batch.add_column(sa.Column("thread_only", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("review_id", Id, nullable=True))
        batch.create_foreign_key(
            op.f("fk_outbox_review_id_reviews"), "reviews", ["review_id"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_constraint(op.f("fk_outbox_review_id_reviews"), type_="foreignkey")
        batch.drop_column("review_id")
        batch.drop_column("thread_only")
        batch.drop_column("channel_line")
    with op.batch_alter_table("reviews") as batch:
        batch.drop_column("message_id")
    with op.batch_alter_table("groups") as batch:
        batch.drop_column("auto_threads")
