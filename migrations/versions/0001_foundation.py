"""Foundation: groups, phase history, processed events, adapter state.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "groups",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("channel_id", sa.String(255), nullable=False),
        sa.Column("channel_name", sa.String(255), nullable=False, server_default=""),
        sa.Column("phase", sa.String(32), nullable=False),
        sa.Column("phase_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_groups")),
        sa.UniqueConstraint("platform", "channel_id", name=op.f("uq_groups_platform")),
    )
    op.create_table(
        "phase_changes",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("group_id", Id, nullable=False),
        sa.Column("from_phase", sa.String(32), nullable=True),
        sa.Column("to_phase", sa.String(32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("by_name", sa.String(255), nullable=False),
        sa.Column("by_key", sa.String(300), nullable=False, server_default=""),
        sa.Column("reason", sa.Text(), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_phase_changes")),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["groups.id"],
            name=op.f("fk_phase_changes_group_id_groups"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(op.f("ix_phase_changes_group_id"), "phase_changes", ["group_id"])
    op.create_table(
        "processed_events",
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("platform", "event_id", name=op.f("pk_processed_events")),
    )
    op.create_index(op.f("ix_processed_events_at"), "processed_events", ["at"])
    op.create_table(
        "adapter_state",
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_adapter_state")),
    )


def downgrade() -> None:
    op.drop_table("adapter_state")
    op.drop_index(op.f("ix_processed_events_at"), table_name="processed_events")
    op.drop_table("processed_events")
    op.drop_index(op.f("ix_phase_changes_group_id"), table_name="phase_changes")
    op.drop_table("phase_changes")
    op.drop_table("groups")
