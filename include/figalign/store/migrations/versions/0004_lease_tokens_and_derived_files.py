"""fencing tokens on leases, derived files bound to their source, dropped-record counts

* ``stage_runs.lease_token``: a fresh random token per claim, cleared by ``requeue`` and by
  every outcome. A worker may record an outcome (and the data it computed) only while the
  row still carries the token it was given, so a worker that lost its item writes nothing.
* ``paper_files.derived_from_artifact_id``: the artifact a derived file (GROBID TEI) was
  computed from, so a new version's PDF is never read through an older version's TEI.
* ``harvest_cursors.dropped``: records a listing dropped as it read them (deleted, no id …),
  by reason, so nothing leaves a window uncounted.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("stage_runs") as batch:
        batch.add_column(sa.Column("lease_token", sa.String(length=32), nullable=True))
    with op.batch_alter_table("paper_files") as batch:
        batch.add_column(sa.Column("derived_from_artifact_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_paper_files_derived_from_artifact_id_artifacts", "artifacts",
                                 ["derived_from_artifact_id"], ["id"])
    with op.batch_alter_table("harvest_cursors") as batch:
        batch.add_column(sa.Column("dropped", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("harvest_cursors") as batch:
        batch.drop_column("dropped")
    with op.batch_alter_table("paper_files") as batch:
        batch.drop_constraint("fk_paper_files_derived_from_artifact_id_artifacts", type_="foreignkey")
        batch.drop_column("derived_from_artifact_id")
    with op.batch_alter_table("stage_runs") as batch:
        batch.drop_column("lease_token")
