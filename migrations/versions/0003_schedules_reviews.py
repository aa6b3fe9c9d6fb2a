"""Schedules with claimed deliveries, reviews, reflections, and group timezone, quiet hours, activity.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("groups") as batch:
        batch.add_column(sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"))
        batch.add_column(sa.Column("quiet_start", sa.String(5), nullable=True))
        batch.add_column(sa.Column("quiet_end", sa.String(5), nullable=True))
        batch.add_column(sa.Column("auto_review", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch.add_column(sa.Column("auto_checkin", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch.add_column(sa.Column("last_activity_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("heartbeat_sent_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "schedules",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("group_id", Id, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("cron", sa.String(120), nullable=False),
        sa.Column("description", sa.String(200), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("next_occurrence", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.id"], name=op.f("fk_schedules_group_id_groups"), ondelete="CASCADE"
        ),
    )
    op.create_index(op.f("ix_schedules_group_id"), "schedules", ["group_id"])
    op.create_index("ix_schedules_due", "schedules", ["paused", "next_due_at"])
    op.create_table(
        "deliveries",
        sa.Column("schedule_id", Id, nullable=False),
        sa.Column("occurrence", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("schedule_id", "occurrence", name=op.f("pk_deliveries")),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedules.id"],
            name=op.f("fk_deliveries_schedule_id_schedules"),
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "reviews",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("group_id", Id, nullable=False),
        sa.Column("started_by", sa.String(255), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closes_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviews")),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.id"], name=op.f("fk_reviews_group_id_groups"), ondelete="CASCADE"
        ),
    )
    op.create_index(op.f("ix_reviews_group_id"), "reviews", ["group_id"])
    op.create_index("ix_reviews_due", "reviews", ["closed_at", "closes_at"])
    op.create_table(
        "reflections",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("group_id", Id, nullable=False),
        sa.Column("review_id", Id, nullable=True),
        sa.Column("question", sa.Integer(), nullable=True),
        sa.Column("user_key", sa.String(300), nullable=False),
        sa.Column("user_name", sa.String(255), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reflections")),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.id"], name=op.f("fk_reflections_group_id_groups"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["review_id"], ["reviews.id"], name=op.f("fk_reflections_review_id_reviews"), ondelete="CASCADE"
        ),
    )
    op.create_index(op.f("ix_reflections_group_id"), "reflections", ["group_id"])
    op.create_index(op.f("ix_reflections_review_id"), "reflections", ["review_id"])
    op.create_index(op.f("ix_reflections_user_key"), "reflections", ["user_key"])


def downgrade() -> None:
    op.drop_table("reflections")
    op.drop_table("reviews")
    op.drop_table("deliveries")
    op.drop_table("schedules")
    with op.batch_alter_table("groups") as batch:
        for column in (
            "heartbeat_sent_at",
            "last_activity_at",
            "auto_checkin",
            "auto_review",
            "quiet_end",
            "quiet_start",
            "timezone",
        ):
            batch.drop_column(column)
