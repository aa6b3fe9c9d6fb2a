"""A goal may reshape another: `goal amend` proposes a new version of a proposed or blocked goal.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-12

Goals get the goal they reshape (NULL for a goal proposed afresh, as every goal before this revision).
The old goal is then superseded, a status stored as text like the others.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("goals") as batch:
        batch.add_column(sa.Column("reshapes_id", Id, nullable=True))
        batch.create_foreign_key(
            op.f("fk_goals_reshapes_id_goals"), "goals", ["reshapes_id"], ["id"], ondelete="SET NULL"
        )
        batch.create_index(op.f("ix_goals_reshapes_id"), ["reshapes_id"])


def downgrade() -> None:
    # A superseded goal has no link to explain it below this revision: it reads as dropped.
    op.execute("UPDATE goals SET status = 'dropped' WHERE status = 'superseded'")
    with op.batch_alter_table("goals") as batch:
        batch.drop_index(op.f("ix_goals_reshapes_id"))
        batch.drop_constraint(op.f("fk_goals_reshapes_id_goals"), type_="foreignkey")
        batch.drop_column("reshapes_id")
