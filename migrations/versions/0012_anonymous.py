"""Anonymous polls: a poll may take its votes privately, under a keyed hash per member and poll.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30

Polls get `anonymous` (false for every poll before). While an anonymous poll is open, its key lies in
`poll_secrets`; its votes are rows of `poll_reactions` whose user key is the member's keyed hash, and
whose name is empty. Closing the poll deletes the key, so nothing ties a member to a vote any more.
Outbox rows that would tie a member to a secret vote or reflection (their confirmations) are `sealed`
("poll:7", "review:3", "reflection"): deleted whatever their outcome, and at the close of their poll
or review if still unsent.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("polls") as batch:
        batch.add_column(sa.Column("anonymous", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "poll_secrets",
        sa.Column("poll_id", Id, sa.ForeignKey("polls.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
    )
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("sealed", sa.Text(), nullable=True))
        batch.add_column(sa.Column("buttons", sa.Text(), nullable=False, server_default="[]"))
        batch.create_index(op.f("ix_outbox_sealed"), ["sealed"])


def downgrade() -> None:
    # Below this revision every vote is a visible reaction: open anonymous polls are closed as they are,
    # their keys gone first, so that their hashed votes can never be tied to members.
    op.drop_table("poll_secrets")
    op.execute("DELETE FROM outbox WHERE sealed IS NOT NULL")
    op.execute("UPDATE polls SET closed_at = closes_at WHERE anonymous AND closed_at IS NULL")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_index(op.f("ix_outbox_sealed"))
        batch.drop_column("sealed")
        batch.drop_column("buttons")
    with op.batch_alter_table("polls") as batch:
        batch.drop_column("anonymous")
