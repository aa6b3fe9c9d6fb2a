"""Shared responsibility: the group's roles, their rotation pools, and the weekly wraps.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30

`roles` keeps each group's roles (the built-in ones are added on the group's first `role` command) with
who holds each, how it rotates and the next week boundary the bot looks at it. `role_pool` keeps who
opted into a rotation and when each last held the role. `wraps` keeps each week's draft for the
wrapper, the digest that goes to the group if they do not wrap in a day, and the wrap they posted.
New tables only: nothing existing is altered.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "roles",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("group_id", Id, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("duty", sa.Text, nullable=False),
        sa.Column("built_in", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("holder_key", sa.String(300), nullable=False, server_default=""),
        sa.Column("holder_name", sa.Text, nullable=False, server_default=""),
        sa.Column("held_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rotation", sa.String(16), nullable=False, server_default="off"),
        sa.Column("next_turn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_week_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_roles")),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.id"], name=op.f("fk_roles_group_id_groups"), ondelete="CASCADE"
        ),
        sa.UniqueConstraint("group_id", "name", name=op.f("uq_roles_group_id")),
    )
    op.create_index(op.f("ix_roles_holder_key"), "roles", ["holder_key"])
    op.create_index(op.f("ix_roles_next_week_at"), "roles", ["next_week_at"])
    op.create_table(
        "role_pool",
        sa.Column("role_id", Id, nullable=False),
        sa.Column("user_key", sa.String(300), nullable=False),
        sa.Column("user_name", sa.Text, nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_held_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("times_held", sa.Integer, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("role_id", "user_key", name=op.f("pk_role_pool")),
        sa.ForeignKeyConstraint(
            ["role_id"], ["roles.id"], name=op.f("fk_role_pool_role_id_roles"), ondelete="CASCADE"
        ),
    )
    op.create_index(op.f("ix_role_pool_user_key"), "role_pool", ["user_key"])
    op.create_table(
        "wraps",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("group_id", Id, nullable=False),
        sa.Column("week_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("wrapper_key", sa.String(300), nullable=False),
        sa.Column("wrapper_name", sa.Text, nullable=False),
        sa.Column("drafted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("digest", sa.Text, nullable=False, server_default=""),
        sa.Column("fallback_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("text", sa.Text, nullable=False, server_default=""),
        sa.Column("wrapped_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wraps")),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.id"], name=op.f("fk_wraps_group_id_groups"), ondelete="CASCADE"
        ),
    )
    op.create_index(op.f("ix_wraps_group_id"), "wraps", ["group_id"])
    op.create_index(op.f("ix_wraps_wrapper_key"), "wraps", ["wrapper_key"])
    op.create_index(op.f("ix_wraps_fallback_at"), "wraps", ["fallback_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_wraps_fallback_at"), table_name="wraps")
    op.drop_index(op.f("ix_wraps_wrapper_key"), table_name="wraps")
    op.drop_index(op.f("ix_wraps_group_id"), table_name="wraps")
    op.drop_table("wraps")
    op.drop_index(op.f("ix_role_pool_user_key"), table_name="role_pool")
    op.drop_table("role_pool")
    op.drop_index(op.f("ix_roles_next_week_at"), table_name="roles")
    op.drop_index(op.f("ix_roles_holder_key"), table_name="roles")
    op.drop_table("roles")
