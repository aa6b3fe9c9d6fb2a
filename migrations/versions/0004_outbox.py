"""The outbox of posts, failed (dead-letter) events, and names and ids of any length the platforms allow.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Columns that held names and platform ids as VARCHAR(255): a Matrix display name may be longer.
WIDENED = {
    "groups": ("channel_id", "channel_name"),
    "phase_changes": ("by_name",),
    "adapter_state": ("key",),
    "polls": ("author_name", "channel_id", "message_id"),
    "poll_reactions": ("user_name",),
    "goals": ("proposer_name",),
    "schedules": ("created_by",),
    "reviews": ("started_by",),
    "reflections": ("user_name",),
}


def upgrade() -> None:
    for table, columns in WIDENED.items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.alter_column(column, type_=sa.Text(), existing_type=sa.String(255))
    op.create_table(
        "outbox",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("group_id", Id, nullable=True),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("channel_id", sa.Text(), nullable=False),
        sa.Column("channel_name", sa.Text(), nullable=False, server_default=""),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("reply_to", sa.Text(), nullable=True),
        sa.Column("user_id", sa.Text(), nullable=True),
        sa.Column("user_name", sa.Text(), nullable=True),
        sa.Column("reactions", sa.Text(), nullable=False, server_default="[]"),
        sa.Column("poll_id", Id, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.id"], name=op.f("fk_outbox_group_id_groups"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["poll_id"], ["polls.id"], name=op.f("fk_outbox_poll_id_polls"), ondelete="SET NULL"
        ),
        sqlite_autoincrement=True,  # row ids are idempotency keys: never reused
    )
    op.create_index(op.f("ix_outbox_group_id"), "outbox", ["group_id"])
    op.create_index("ix_outbox_due", "outbox", ["state", "platform", "next_attempt_at"])
    op.create_table(
        "failed_events",
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("platform", "event_id", name=op.f("pk_failed_events")),
    )
    op.create_index(op.f("ix_failed_events_at"), "failed_events", ["at"])


def downgrade() -> None:
    op.drop_table("failed_events")
    op.drop_table("outbox")
    for table, columns in WIDENED.items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.alter_column(column, type_=sa.String(255), existing_type=sa.Text())
