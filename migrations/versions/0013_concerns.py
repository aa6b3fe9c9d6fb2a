"""Concerns heard: what members who react 🤔 or ⛔ on a consent poll say their concern is.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-14

`concerns` keeps each concern with its goal, by name or anonymous (empty author key and name, and the
day only as its time), and whether a facilitator marked it addressed. `concern_asks` keeps whom a
consent poll asked for their concern, so that nobody is asked twice on one poll.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "concerns",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("group_id", Id, nullable=False),
        sa.Column("goal_id", Id, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("author_key", sa.String(300), nullable=False, server_default=""),
        sa.Column("author_name", sa.Text, nullable=False, server_default=""),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("addressed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("addressed_by_key", sa.String(300), nullable=False, server_default=""),
        sa.Column("addressed_by_name", sa.Text, nullable=False, server_default=""),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_concerns")),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.id"], name=op.f("fk_concerns_group_id_groups"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["goal_id"], ["goals.id"], name=op.f("fk_concerns_goal_id_goals"), ondelete="CASCADE"
        ),
    )
    op.create_index(op.f("ix_concerns_group_id"), "concerns", ["group_id"])
    op.create_index(op.f("ix_concerns_goal_id"), "concerns", ["goal_id"])
    op.create_index(op.f("ix_concerns_author_key"), "concerns", ["author_key"])
    op.create_table(
        "concern_asks",
        sa.Column("poll_id", Id, nullable=False),
        sa.Column("user_key", sa.String(300), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("poll_id", "user_key", name=op.f("pk_concern_asks")),
        sa.ForeignKeyConstraint(
            ["poll_id"], ["polls.id"], name=op.f("fk_concern_asks_poll_id_polls"), ondelete="CASCADE"
        ),
    )
    op.create_index(op.f("ix_concern_asks_user_key"), "concern_asks", ["user_key"])


def downgrade() -> None:
    op.drop_index(op.f("ix_concern_asks_user_key"), table_name="concern_asks")
    op.drop_table("concern_asks")
    op.drop_index(op.f("ix_concerns_author_key"), table_name="concerns")
    op.drop_index(op.f("ix_concerns_goal_id"), table_name="concerns")
    op.drop_index(op.f("ix_concerns_group_id"), table_name="concerns")
    op.drop_table("concerns")
