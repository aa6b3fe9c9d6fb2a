"""The roster: who is in each group, since when, how active; newcomers' welcomes and buddies.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10

Groups get their own welcome text and the end of the window in which joins share one welcome. Members
who took part before this revision are on the roster from their first recorded act in the group (a goal,
a poll, a vote, a reflection, a phase move, a nudge, a review) and last active at their last one, so
that nobody who was there already is welcomed as a newcomer.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
BOT_KEY = "peerbot:peerbot"
FORGOTTEN = "former:%"


def _acts() -> sa.Subquery:
    """(group, member key, name, when) of every act recorded before this revision."""

    def t(name: str, *columns: str) -> sa.TableClause:
        return sa.table(name, *(sa.column(c) for c in columns))

    goals = t("goals", "group_id", "proposer_key", "proposer_name", "created_at")
    polls = t("polls", "id", "group_id", "author_key", "author_name", "created_at")
    votes = t("poll_reactions", "poll_id", "user_key", "user_name")
    reflections = t("reflections", "group_id", "user_key", "user_name", "at")
    changes = t("phase_changes", "group_id", "by_key", "by_name", "at")
    schedules = t("schedules", "group_id", "created_by_key", "created_by", "created_at")
    reviews = t("reviews", "group_id", "started_by_key", "started_by", "started_at")
    parts = [
        sa.select(goals.c.group_id, goals.c.proposer_key, goals.c.proposer_name, goals.c.created_at),
        sa.select(polls.c.group_id, polls.c.author_key, polls.c.author_name, polls.c.created_at),
        # A vote keeps no time of its own: its poll's opening stands for it.
        sa.select(polls.c.group_id, votes.c.user_key, votes.c.user_name, polls.c.created_at).select_from(
            votes.join(polls, polls.c.id == votes.c.poll_id)
        ),
        sa.select(reflections.c.group_id, reflections.c.user_key, reflections.c.user_name, reflections.c.at),
        sa.select(changes.c.group_id, changes.c.by_key, changes.c.by_name, changes.c.at),
        sa.select(
            schedules.c.group_id, schedules.c.created_by_key, schedules.c.created_by, schedules.c.created_at
        ),
        sa.select(reviews.c.group_id, reviews.c.started_by_key, reviews.c.started_by, reviews.c.started_at),
    ]
    return sa.union_all(*parts).subquery("acts")


def _seed_rosters() -> None:
    acts = _acts()
    group_id, key, name, at = acts.c
    groups = sa.table("groups", sa.column("id"), sa.column("platform"))
    members = sa.table(
        "members",
        sa.column("group_id"),
        sa.column("user_key"),
        sa.column("name"),
        sa.column("joined_at"),
        sa.column("last_active_at"),
    )
    seeded = (
        sa.select(group_id, key, sa.func.max(name), sa.func.min(at), sa.func.max(at))
        .select_from(acts.join(groups, groups.c.id == group_id))
        .where(
            key != "",
            key != BOT_KEY,
            key.not_like(FORGOTTEN),
            key.like(groups.c.platform + ":%"),  # a member of the group's own platform
        )
        .group_by(group_id, key)
    )
    columns = ["group_id", "user_key", "name", "joined_at", "last_active_at"]
    op.execute(members.insert().from_select(columns, seeded))


def upgrade() -> None:
    with op.batch_alter_table("groups") as batch:
        batch.add_column(sa.Column("welcome_text", sa.Text, nullable=False, server_default=""))
        batch.add_column(sa.Column("welcome_until", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "members",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("group_id", Id, nullable=False),
        sa.Column("user_key", sa.String(300), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("left_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_active_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("intro", sa.Text, nullable=False, server_default=""),
        sa.Column("private", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("buddy", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("reminders", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("buddy_key", sa.String(300), nullable=False, server_default=""),
        sa.Column("paired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("welcome_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_members")),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.id"], name=op.f("fk_members_group_id_groups"), ondelete="CASCADE"
        ),
        sa.UniqueConstraint("group_id", "user_key", name=op.f("uq_members_group_id")),
    )
    op.create_index(op.f("ix_members_user_key"), "members", ["user_key"])
    op.create_index(op.f("ix_members_welcome_due_at"), "members", ["welcome_due_at"])
    _seed_rosters()


def downgrade() -> None:
    op.drop_index(op.f("ix_members_welcome_due_at"), table_name="members")
    op.drop_index(op.f("ix_members_user_key"), table_name="members")
    op.drop_table("members")
    with op.batch_alter_table("groups") as batch:
        batch.drop_column("welcome_until")
        batch.drop_column("welcome_text")
