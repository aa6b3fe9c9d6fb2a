"""Every adapter-state key in a namespace: the core's prompt rotation moves under "core.".

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

Adapter keys were already stored as "<platform>.<key>"; only the core's "prompts:<group>:<phase>"
keys had none. Keeping them keeps each group's rotation of reflection prompts where it was.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

state = sa.table("adapter_state", sa.column("key", sa.String))


def upgrade() -> None:
    op.execute(state.update().where(state.c.key.like("prompts:%")).values(key="core." + state.c.key))


def downgrade() -> None:
    old = state.c.key.like("core.prompts:%")
    op.execute(state.update().where(old).values(key=sa.func.substr(state.c.key, len("core.") + 1)))
