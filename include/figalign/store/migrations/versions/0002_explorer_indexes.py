"""explorer indexes

Indexes the dataset explorer needs to keep its pages bounded at millions of rows: sorting
and range-filtering by a score, walking one prompt's or model's recaptions in figure order
(comparison view), and listing/filtering papers by discipline and licence and figures by kind.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""
from __future__ import annotations

from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_metrics_metric_caption_kind_value", "metrics", ["metric", "caption_kind", "value"]),
    ("ix_captions_kind_prompt_hash_figure_id", "captions", ["kind", "prompt_hash", "figure_id"]),
    ("ix_captions_kind_model_figure_id", "captions", ["kind", "model", "figure_id"]),
    ("ix_papers_discipline", "papers", ["discipline"]),
    ("ix_papers_licence", "papers", ["licence"]),
    ("ix_figures_kind", "figures", ["kind"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)
