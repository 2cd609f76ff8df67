"""stage runs that are not done, by stage, status and entity id

The explorer's "figures whose filter (or recaption, score, parse, fetch) failed with reason
R" used to walk every figure newest first and probe each one's stage run: at 10 M figures
with the failures among the older ones that is millions of probes (13 s,
docs/benchmarks.md). This partial index holds only rows not done (failures, skips, the
open tail: a few percent of a healthy store) against entities with numeric ids, in entity
order, so the grid reads the matching runs in the order it pages (``explore.queries``). The
reason is not a key column (a filter without one would lose the order) but, on Postgres,
included with ``entity_id``, so the walk is index-only and checks the reason as it goes.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

NAME = "ix_stage_runs_unsettled_entity"
WHERE = "status <> 'done' AND entity_type IN ('paper', 'figure', 'caption')"  # models.UNSETTLED_SQL, frozen
# models.entity_number, frozen: on Postgres a bare cast would fail the insert of any row whose
# id is not digits (file, tar and meca entities), so it is guarded; SQLite's CAST never fails
NUMBER = {"postgresql": "(CASE WHEN entity_id ~ '^[0-9]{1,18}$' THEN CAST(entity_id AS BIGINT) END)",
          "sqlite": "CAST(entity_id AS INTEGER)"}


def upgrade() -> None:
    number = NUMBER.get(op.get_bind().dialect.name, NUMBER["sqlite"])
    op.create_index(NAME, "stage_runs", ["stage", "entity_type", "status", sa.text(number)], unique=False,
                    postgresql_include=["entity_id", "reason", "error_class"],
                    postgresql_where=sa.text(WHERE), sqlite_where=sa.text(WHERE))


def downgrade() -> None:
    op.drop_index(NAME, table_name="stage_runs")
