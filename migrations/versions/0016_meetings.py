"""Meetings: their occurrences (announced, reminded, started), members' RSVPs, and the outbox's link
from an announcement to its occurrence.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30

`meetings` keeps each meeting, one-off or recurring, with the days skipped and when it was cancelled.
`meeting_occurrences` keeps the next occurrence of each (planned ahead) and the past ones, for
attendance; `next_due_at` is what the tick claims. `meeting_rsvps` keeps one RSVP per member and
occurrence. The outbox gets `occurrence_id`: the posted announcement becomes its occurrence's message.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "meetings",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("group_id", Id, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("cron", sa.String(120), nullable=True),
        sa.Column("description", sa.String(200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("skips", sa.Text, nullable=False, server_default=""),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_by_key", sa.String(300), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meetings")),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.id"], name=op.f("fk_meetings_group_id_groups"), ondelete="CASCADE"
        ),
    )
    op.create_index(op.f("ix_meetings_group_id"), "meetings", ["group_id"])
    op.create_index(op.f("ix_meetings_created_by_key"), "meetings", ["created_by_key"])
    op.create_table(
        "meeting_occurrences",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("meeting_id", Id, nullable=False),
        sa.Column("group_id", Id, nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("announce_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("remind_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("announced", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("reminded", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("skipped", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("platform", sa.String(32), nullable=True),
        sa.Column("channel_id", sa.Text, nullable=True),
        sa.Column("message_id", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meeting_occurrences")),
        sa.ForeignKeyConstraint(
            ["meeting_id"],
            ["meetings.id"],
            name=op.f("fk_meeting_occurrences_meeting_id_meetings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["groups.id"],
            name=op.f("fk_meeting_occurrences_group_id_groups"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("meeting_id", "starts_at", name=op.f("uq_meeting_occurrences_meeting_id")),
    )
    op.create_index(op.f("ix_meeting_occurrences_meeting_id"), "meeting_occurrences", ["meeting_id"])
    op.create_index(op.f("ix_meeting_occurrences_next_due_at"), "meeting_occurrences", ["next_due_at"])
    op.create_index("ix_meeting_occurrences_message", "meeting_occurrences", ["platform", "message_id"])
    op.create_table(
        "meeting_rsvps",
        sa.Column("occurrence_id", Id, nullable=False),
        sa.Column("user_key", sa.String(300), nullable=False),
        sa.Column("user_name", sa.Text, nullable=False),
        sa.Column("choice", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("occurrence_id", "user_key", name=op.f("pk_meeting_rsvps")),
        sa.ForeignKeyConstraint(
            ["occurrence_id"],
            ["meeting_occurrences.id"],
            name=op.f("fk_meeting_rsvps_occurrence_id_meeting_occurrences"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(op.f("ix_meeting_rsvps_user_key"), "meeting_rsvps", ["user_key"])
    # A plain ADD COLUMN, not a batch, and no foreign key: a batch would copy `outbox` on SQLite and
    # lose AUTOINCREMENT (see 0014).
    op.add_column("outbox", sa.Column("occurrence_id", Id, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("occurrence_id")
    op.drop_index(op.f("ix_meeting_rsvps_user_key"), table_name="meeting_rsvps")
    op.drop_table("meeting_rsvps")
    op.drop_index("ix_meeting_occurrences_message", table_name="meeting_occurrences")
    op.drop_index(op.f("ix_meeting_occurrences_next_due_at"), table_name="meeting_occurrences")
    op.drop_index(op.f("ix_meeting_occurrences_meeting_id"), table_name="meeting_occurrences")
    op.drop_table("meeting_occurrences")
    op.drop_index(op.f("ix_meetings_created_by_key"), table_name="meetings")
    op.drop_index(op.f("ix_meetings_group_id"), table_name="meetings")
    op.drop_table("meetings")
