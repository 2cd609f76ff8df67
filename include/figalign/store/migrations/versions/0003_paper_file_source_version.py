"""paper files remember which listing of the paper they were fetched for

arXiv keeps one row per paper (its OAI format has no version number); a new version shows
up as a new ``updated`` date. ``paper_files.source_updated_at`` records the paper's
``source_updated_at`` when the file was downloaded, so fetch can tell a file of the
current version from one of an older version (and download the new one).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("paper_files") as batch:
        batch.add_column(sa.Column("source_updated_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("paper_files") as batch:
        batch.drop_column("source_updated_at")
