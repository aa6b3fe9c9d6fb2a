"""Reminders before consent polls and reviews close; the weekly radar and its record; phase advice.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-11

Groups get their reminder window (the last share of a consent poll's or review's time in which members
who have not responded are reminded; NULL is the default, 0 is off), whether the weekly radar runs,
their own radar thresholds, when the radar runs next, and when phase advice was last given. Polls and
reviews get the time their reminders are due. The consent polls and reviews open at this revision are
reminded in their last quarter, the default.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
DEFAULT_SHARE = 0.25


def _remind_open(table: str, start: str, where: sa.ColumnElement[bool] | None = None) -> None:
    t = sa.table(
        table,
        sa.column("id"),
        sa.column(start, sa.DateTime(timezone=True)),
        sa.column("closes_at", sa.DateTime(timezone=True)),
        sa.column("closed_at", sa.DateTime(timezone=True)),
        sa.column("remind_at", sa.DateTime(timezone=True)),
        sa.column("kind"),
    )
    query = sa.select(t.c.id, t.c[start], t.c.closes_at).where(t.c.closed_at.is_(None))
    if where is not None:
        query = query.where(where)
    bind = op.get_bind()
    for row_id, opened, closes in bind.execute(query).all():
        opened, closes = _aware(opened), _aware(closes)
        when = closes - (closes - opened) * DEFAULT_SHARE
        bind.execute(t.update().where(t.c.id == row_id).values(remind_at=when))


def _aware(value: datetime | str) -> datetime:
    if isinstance(value, str):  # SQLite without type information
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def upgrade() -> None:
    with op.batch_alter_table("groups") as batch:
        batch.add_column(sa.Column("remind_window", sa.Integer, nullable=True))
        batch.add_column(sa.Column("auto_radar", sa.Boolean, nullable=False, server_default=sa.true()))
        batch.add_column(sa.Column("radar_limits", sa.Text, nullable=False, server_default=""))
        batch.add_column(sa.Column("radar_next_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("advised_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("polls") as batch:
        batch.add_column(sa.Column("remind_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("reviews") as batch:
        batch.add_column(sa.Column("remind_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(op.f("ix_polls_remind_at"), "polls", ["remind_at"])
    op.create_index(op.f("ix_reviews_remind_at"), "reviews", ["remind_at"])
    op.create_index(op.f("ix_groups_radar_next_at"), "groups", ["radar_next_at"])
    op.create_table(
        "radar_findings",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("group_id", Id, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("subject_key", sa.String(300), nullable=False, server_default=""),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_radar_findings")),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.id"], name=op.f("fk_radar_findings_group_id_groups"), ondelete="CASCADE"
        ),
    )
    op.create_index(op.f("ix_radar_findings_group_id"), "radar_findings", ["group_id"])
    op.create_index(op.f("ix_radar_findings_subject_key"), "radar_findings", ["subject_key"])
    _remind_open("polls", "created_at", sa.column("kind") == "consent")
    _remind_open("reviews", "started_at")


def downgrade() -> None:
    op.drop_index(op.f("ix_radar_findings_subject_key"), table_name="radar_findings")
    op.drop_index(op.f("ix_radar_findings_group_id"), table_name="radar_findings")
    op.drop_table("radar_findings")
    op.drop_index(op.f("ix_groups_radar_next_at"), table_name="groups")
    op.drop_index(op.f("ix_reviews_remind_at"), table_name="reviews")
    op.drop_index(op.f("ix_polls_remind_at"), table_name="polls")
    with op.batch_alter_table("reviews") as batch:
        batch.drop_column("remind_at")
    with op.batch_alter_table("polls") as batch:
        batch.drop_column("remind_at")
    with op.batch_alter_table("groups") as batch:
        batch.drop_column("advised_at")
        batch.drop_column("radar_next_at")
        batch.drop_column("radar_limits")
        batch.drop_column("auto_radar")
        batch.drop_column("remind_window")
