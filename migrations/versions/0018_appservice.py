"""Matrix as an application service: the ids of the transactions the homeserver pushed.

Revision ID: 0018
Revises: 0016
Create Date: 2026-11-30

`inbound_batches` records the id of each batch a platform pushes (a Matrix appservice transaction) in the
unit of work that applies its events, so that a transaction pushed again is answered without applying
it twice. A new table: nothing existing is altered.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0016"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "inbound_batches",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("namespace", sa.String(32), nullable=False),
        sa.Column("batch_id", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_batches")),
        sa.UniqueConstraint("namespace", "batch_id", name=op.f("uq_inbound_batches_namespace")),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("inbound_batches")
