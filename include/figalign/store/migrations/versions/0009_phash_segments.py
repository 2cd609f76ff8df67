"""a store-resident near-duplicate index; partial indexes for the queue's open rows

* ``figures.phash_bits`` (the 64-bit pHash as a signed BIGINT) and ``phash_b0..2`` (its bands
  of 22, 21 and 21 bits), each band indexed over kept figures only, with the hash and id in
  the index so a probe never reads the table (``figalign.store.duplicates``). Existing rows
  are backfilled from ``phash``; a malformed hash stays NULL, as the parser would leave it.
* ``stage_runs``: ``(stage, id)`` over open rows (pending or running) — the claim walks it in
  id order and ``pending`` counts it, instead of sorting a stage's whole backlog — and over
  open rows on their last attempt, which each claim ends when their lease has lapsed.
* ``figures (filter_reason, id)`` over filtered figures: the explorer's filter by reason
  walks it newest first instead of every newer figure (a million unfiltered ones, say).

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-03
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0009'
down_revision = '0007'
branch_labels = None
depends_on = None

KEPT = "filter_reason IS NULL AND image_artifact_id IS NOT NULL"
FILTERED = "filter_reason IS NOT NULL"
BANDS = ((42, 22), (21, 21), (0, 21))  # figalign.dedup.STORE_BANDS, frozen here
OPEN = "status IN ('pending', 'running')"
LAST_ATTEMPT = f"{OPEN} AND attempts >= max_attempts"
QUEUE_INDEXES = (("ix_stage_runs_stage_id_open", OPEN), ("ix_stage_runs_stage_id_last_attempt", LAST_ATTEMPT))
_figures = sa.table("figures", sa.column("id", sa.Integer), sa.column("phash", sa.String),
                    sa.column("phash_bits", sa.BigInteger),
                    *(sa.column(f"phash_b{i}", sa.Integer) for i in range(len(BANDS))))


def _columns(phash: str | None) -> dict | None:
    if not phash or len(phash) != 16:
        return None
    try:
        value = int(phash, 16)
    except ValueError:
        return None
    out = {"phash_bits": value - (1 << 64) if value >= 1 << 63 else value}
    out.update({f"phash_b{i}": (value >> shift) & ((1 << width) - 1) for i, (shift, width) in enumerate(BANDS)})
    return out


def _backfill() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":  # in the server: a big store never travels to Python
        bands = ", ".join(f"phash_b{i} = ((h.bits >> {shift}) & {(1 << width) - 1})::int"
                          for i, (shift, width) in enumerate(BANDS))
        op.execute(f"""UPDATE figures f SET phash_bits = h.bits, {bands}
                       FROM (SELECT id, ('x' || phash)::bit(64)::bigint AS bits FROM figures
                             WHERE phash ~ '^[0-9a-fA-F]{{16}}$') h WHERE f.id = h.id""")
        return
    rows = bind.execute(sa.select(_figures.c.id, _figures.c.phash).where(_figures.c.phash.is_not(None))).all()
    for figure_id, phash in rows:
        values = _columns(phash)
        if values:
            bind.execute(_figures.update().where(_figures.c.id == figure_id).values(**values))


def upgrade() -> None:
    with op.batch_alter_table("figures") as batch:
        batch.add_column(sa.Column("phash_bits", sa.BigInteger(), nullable=True))
        for i in range(len(BANDS)):
            batch.add_column(sa.Column(f"phash_b{i}", sa.Integer(), nullable=True))
    _backfill()
    for i in range(len(BANDS)):
        op.create_index(f"ix_figures_phash_b{i}_kept", "figures", [f"phash_b{i}", "phash_bits", "id"], unique=False,
                        postgresql_where=sa.text(KEPT), sqlite_where=sa.text(KEPT))
    op.create_index("ix_figures_filter_reason_id", "figures", ["filter_reason", "id"], unique=False,
                    postgresql_where=sa.text(FILTERED), sqlite_where=sa.text(FILTERED))
    for name, where in QUEUE_INDEXES:
        op.create_index(name, "stage_runs", ["stage", "id"], unique=False,
                        postgresql_where=sa.text(where), sqlite_where=sa.text(where))


def downgrade() -> None:
    for name, _where in reversed(QUEUE_INDEXES):
        op.drop_index(name, table_name="stage_runs")
    op.drop_index("ix_figures_filter_reason_id", table_name="figures")
    for i in reversed(range(len(BANDS))):
        op.drop_index(f"ix_figures_phash_b{i}_kept", table_name="figures")
    with op.batch_alter_table("figures") as batch:
        for i in reversed(range(len(BANDS))):
            batch.drop_column(f"phash_b{i}")
        batch.drop_column("phash_bits")
