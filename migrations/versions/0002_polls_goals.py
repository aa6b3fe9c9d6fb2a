"""Polls with their reactions, goals, group settings and signals.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("groups") as batch:
        batch.add_column(sa.Column("goal_quorum", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("decision_window_s", sa.Integer(), nullable=True))
    op.create_table(
        "signals",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("group_id", Id, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signals")),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.id"], name=op.f("fk_signals_group_id_groups"), ondelete="CASCADE"
        ),
    )
    op.create_index(op.f("ix_signals_group_id"), "signals", ["group_id"])
    op.create_table(
        "polls",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("group_id", Id, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("options", sa.Text(), nullable=False),
        sa.Column("multiple", sa.Boolean(), nullable=False),
        sa.Column("hidden", sa.Boolean(), nullable=False),
        sa.Column("author_key", sa.String(300), nullable=False),
        sa.Column("author_name", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closes_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("channel_id", sa.String(255), nullable=False),
        sa.Column("message_id", sa.String(255), nullable=True),
        sa.Column("vote_seq", sa.BigInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_polls")),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.id"], name=op.f("fk_polls_group_id_groups"), ondelete="CASCADE"
        ),
    )
    op.create_index(op.f("ix_polls_group_id"), "polls", ["group_id"])
    op.create_index("ix_polls_message", "polls", ["platform", "message_id"])
    op.create_index("ix_polls_due", "polls", ["closed_at", "closes_at"])
    op.create_table(
        "poll_reactions",
        sa.Column("poll_id", Id, nullable=False),
        sa.Column("user_key", sa.String(300), nullable=False),
        sa.Column("option", sa.Integer(), nullable=False),
        sa.Column("user_name", sa.String(255), nullable=False),
        sa.Column("present", sa.Boolean(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("poll_id", "user_key", "option", name=op.f("pk_poll_reactions")),
        sa.ForeignKeyConstraint(
            ["poll_id"], ["polls.id"], name=op.f("fk_poll_reactions_poll_id_polls"), ondelete="CASCADE"
        ),
    )
    op.create_table(
        "goals",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("group_id", Id, nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("proposer_key", sa.String(300), nullable=False),
        sa.Column("proposer_name", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("poll_id", Id, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_goals")),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.id"], name=op.f("fk_goals_group_id_groups"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["poll_id"], ["polls.id"], name=op.f("fk_goals_poll_id_polls"), ondelete="SET NULL"
        ),
    )
    op.create_index(op.f("ix_goals_group_id"), "goals", ["group_id"])
    op.create_index(op.f("ix_goals_poll_id"), "goals", ["poll_id"])


def downgrade() -> None:
    op.drop_table("goals")
    op.drop_table("poll_reactions")
    op.drop_index("ix_polls_due", table_name="polls")
    op.drop_index("ix_polls_message", table_name="polls")
    op.drop_table("polls")
    op.drop_table("signals")
    with op.batch_alter_table("groups") as batch:
        batch.drop_column("decision_window_s")
        batch.drop_column("goal_quorum")
