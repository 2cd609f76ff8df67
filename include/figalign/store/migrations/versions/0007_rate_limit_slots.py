"""rate_limit_slots: the per-host rate limit shared by every machine

One row per host: when it may next be asked (``next_at``) and who is asking it now
(``holder`` until ``held_until``). Used by ``clients/ratelimit_pg.py`` when the store is
Postgres; the file-lock limiter stays for SQLite (one machine). Downgrade drops the table
(the state is transient: at worst one request goes early).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_slots",
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=True),
        sa.Column("held_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("host", name=op.f("pk_rate_limit_slots")),
    )


def downgrade() -> None:
    op.drop_table("rate_limit_slots")
