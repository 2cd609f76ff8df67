"""figures.image_origin: how a figure's image was made

``pdf-crop`` (the typeset figure, every panel as published), ``composite`` (panel files
laid out as the source arranges them), ``single-file``, … as the parsers say
(``records.IMAGE_ORIGINS``). Stored so a dataset builder can count and select whole-figure
images by origin (``figalign status``, the explorer, exports) instead of only reading it in
``figalign parse`` JSON. Existing rows stay NULL until their paper is parsed again.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("figures") as batch:
        batch.add_column(sa.Column("image_origin", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("figures") as batch:
        batch.drop_column("image_origin")
