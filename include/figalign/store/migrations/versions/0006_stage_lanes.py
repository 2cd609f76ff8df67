"""stage lanes: which kind of worker slot an item needs

* ``stage_runs.lane`` (default ``default``): the plan of a stage with lanes sorts its pending
  items into them (parse: ``grobid`` for a PDF-only paper with GROBID configured, else
  ``default``), and each lane's mapped task claims only its own, so only work that calls
  GROBID takes a ``grobid`` pool slot.
* the claim index becomes (stage, status, lane): claims with and without a lane use it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("stage_runs") as batch:
        batch.add_column(sa.Column("lane", sa.String(length=32), nullable=False, server_default="default"))
        batch.drop_index("ix_stage_runs_stage_status")
        batch.create_index("ix_stage_runs_stage_status_lane", ["stage", "status", "lane"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("stage_runs") as batch:
        batch.drop_index("ix_stage_runs_stage_status_lane")
        batch.create_index("ix_stage_runs_stage_status", ["stage", "status"], unique=False)
        batch.drop_column("lane")
